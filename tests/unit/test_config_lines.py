"""A configuration error names the file, the line the bad setting is written on, and the
field; a setting the file does not write (a default, the environment) has no line."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.settings import ConfigError, load_settings

BASE = """[target.ldap]
base_dn = "ou=people,dc=x"

[alerts.email]
host = "127.0.0.1"
to = ["itsd@x.org"]
"""


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (  # a key: its own line
            '\n[apply]\nworkers = 4\nmax_attempts = "many"\n',
            "line 10: apply.max_attempts: Input should be a valid integer",
        ),
        (  # a list item on a later line of the key: the key's line
            '\n[areas.WDA-07]\nemail = ["a@x.org",\n  "not-an-address"]\n',
            "line 9: areas.WDA-07.email: Value error, item 2, 'not-an-address', is not an",
        ),
        (  # a quoted table name
            '\n[areas."WDA-08"]\nemail = []\n',
            "line 9: areas.WDA-08.email: List should have at least 1 item",
        ),
        (  # a key the table lacks: the table's header
            "\n[areas.WDA-09]\n",
            "line 8: areas.WDA-09.email: Field required",
        ),
        (  # an unknown key
            "\n[alerts]\nreminder_hour = 4\n",
            "line 9: alerts.reminder_hour: Extra inputs are not permitted",
        ),
    ],
)
def test_the_error_names_the_line(tmp_path: Path, tail: str, expected: str) -> None:
    cfg = tmp_path / "misync.toml"
    cfg.write_text(BASE + tail, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert f"{cfg}: {expected}" in str(err.value)


def test_areas_need_the_alert_relay(tmp_path: Path) -> None:
    cfg = tmp_path / "misync.toml"
    cfg.write_text(
        '[target.ldap]\nbase_dn = "o=x"\n\n[areas.WDA-07]\nemail = ["a@x.org"]\n',
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigError,
        match=r"areas: monitors are set for WDA-07, but .*"
        r"\[alerts.email\] relay, which is not configured",
    ):
        load_settings(cfg)
