"""``[state] url``: a PostgreSQL URL without a password, naming a host and a database;
the password comes from ``state.password_file``; a remote server without certificate
checks is warned about."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.settings import ConfigError, Settings, config_warnings, load_settings


def _config(tmp_path: Path, state: str) -> Path:
    cfg = tmp_path / "misync.toml"
    cfg.write_text(
        '[target]\nkind = "ldap"\n[target.ldap]\nbase_dn = "ou=people,dc=x"\n'
        f'[state]\ndir = "state"\n{state}\n',
        encoding="utf-8",
    )
    return cfg


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://misync:secret@db/misync", "no password in the URL"),
        ("mysql://misync@db/misync", "starts with postgresql://"),
        ("postgresql://misync@db", "names no database"),
        ("postgresql://misync@db:99999/misync", "not a PostgreSQL URL"),
        ("postgresql:///misync", "names no host"),
    ],
)
def test_bad_state_urls_are_refused(tmp_path: Path, url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as err:
        load_settings(_config(tmp_path, f'url = "{url}"'))
    assert "state.url" in str(err.value)


def test_password_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "pg-password").write_text("s3cret\n", encoding="utf-8")
    s = load_settings(
        _config(
            tmp_path, 'url = "postgresql://misync@127.0.0.1/misync"\npassword_file = "pg-password"'
        )
    )
    assert s.state.backend == "postgresql"
    assert s.state.password_file == tmp_path / "pg-password"
    assert s.state.db_password() == "s3cret"
    assert s.state.dir == tmp_path / "state"


@pytest.mark.parametrize(
    ("url", "sslmode", "warned"),
    [
        ("postgresql://m@db.example/m", "prefer", True),
        ("postgresql://m@db.example/m", "require", True),
        ("postgresql://m@db.example/m", "verify-full", False),
        ("postgresql://m@127.0.0.1/m", "prefer", False),
        ("", "prefer", False),
    ],
)
def test_remote_state_without_certificate_checks_is_warned(
    url: str, sslmode: str, warned: bool
) -> None:
    s = Settings.model_validate(
        {
            "target": {"kind": "ldap", "ldap": {"base_dn": "ou=p,dc=x"}},
            "state": {"url": url, "sslmode": sslmode},
        }
    )
    assert any("state.url" in w for w in config_warnings(s)) == warned


def test_without_psycopg_the_operator_is_told_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from connector.audit import open_audit
    from connector.state import StateUnavailableError, open_store

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )
    s = load_settings(_config(tmp_path, 'url = "postgresql://misync@127.0.0.1/misync"'))
    for opener in (lambda: open_store(s.state), lambda: open_audit(s.state, None)):
        with pytest.raises(StateUnavailableError, match=r"pip install 'misync\[postgresql\]'"):
            opener()
