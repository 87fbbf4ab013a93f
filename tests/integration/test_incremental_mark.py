"""Incremental reads that are silently off (issue 13 item 15), on a real slapd.

The daemon's incremental cycles need a mark: the base entry's ``modifyTimestamp``. A
directory whose access rules hide it from the bind DN (389 DS grants it only explicitly)
gives none, so every cycle reads the whole directory. That must not be silent: the
CyclePlanner logs ``cycle.no_incremental_mark`` once (not every cycle), ``misync status``
shows it, and ``config check --connect`` says it. The same world with the attribute
visible says nothing and goes incremental.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from connector.app import Runtime
from connector.cli import main
from connector.devtools.slapd import LocalSlapd
from connector.health import collect_status, render_status
from connector.runs.cycle import CyclePlanner
from connector.settings import load_settings
from tests.conftest import DEMO, ROOT, demo_seed_ldif, ldap_scope_on

pytestmark = pytest.mark.slapd
SUFFIX = "dc=mis,dc=test"
SERVICE = f"cn=misync,{SUFFIX}"
HIDDEN = f"cn=blind,{SUFFIX}"  # may read everything but modifyTimestamp
ACCESS = f"""
access to attrs=userPassword
    by anonymous auth
    by * none
access to attrs=modifyTimestamp
    by dn.exact="{HIDDEN}" none
    by * read
access to *
    by * read
"""


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlapd]:
    """This module's own slapd: two readers, one of them blind to modifyTimestamp."""
    with LocalSlapd(tmp_path_factory.mktemp("mark"), suffix=SUFFIX, access=ACCESS) as s:
        s.add_service_account("cn=misync", "seeing-pw")
        s.add_service_account("cn=blind", "blind-pw")
        yield s


def _world(tmp_path: Path, slapd: LocalSlapd, bind_dn: str, password: str) -> Path:
    scope = ldap_scope_on(slapd, tmp_path)
    slapd.add_ldif(demo_seed_ldif(scope))
    feeds = tmp_path / "feeds"
    shutil.copytree(DEMO / "feeds", feeds)
    pw = tmp_path / "bind-password"
    pw.write_text(password + "\n", encoding="utf-8")
    pw.chmod(0o600)
    cfg = tmp_path / "misync.toml"
    cfg.write_text(
        f"""
[feeds]
dir = "{feeds}"
mapping = "{ROOT / "mappings" / "feeds.toml"}"
max_age_hours = 0
[target]
mapping = "{ROOT / "mappings" / "openldap-ppolicy.toml"}"
[target.ldap]
url = "{slapd.url}"
bind_dn = "{bind_dn}"
password_file = "{pw}"
base_dn = "{scope.people_dn}"
group_base_dn = "{scope.groups_dn}"
clock_margin_seconds = 0
[state]
dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    return cfg


@pytest.mark.parametrize(
    ("bind_dn", "password", "hidden"),
    [
        pytest.param(HIDDEN, "blind-pw", True, id="modifyTimestamp-hidden"),
        pytest.param(SERVICE, "seeing-pw", False, id="modifyTimestamp-readable"),
    ],
)
def test_a_directory_that_hides_the_mark_is_said_once_in_the_log_status_and_check(
    tmp_path: Path,
    slapd: LocalSlapd,
    capsys: pytest.CaptureFixture[str],
    bind_dn: str,
    password: str,
    hidden: bool,
) -> None:
    cfg = _world(tmp_path, slapd, bind_dn, password)
    rt = Runtime(load_settings(cfg))
    with capture_logs() as logs, rt.store() as store:
        reconciler = CyclePlanner(rt)
        results = [reconciler.cycle(store) for _ in range(3)]
        status: dict[str, Any] = collect_status(rt.settings, store, rt.clock())
    warned = [e for e in logs if e["event"] == "cycle.no_incremental_mark"]
    said = "incremental reads are off"
    if hidden:
        # every cycle is a full read, and the log says why once, not every cycle
        assert [r.full for r in results] == [True, True, True]
        assert len(warned) == 1, warned
        assert warned[0]["log_level"] == "warning"
        assert said in warned[0]["message"] and "modifyTimestamp" in warned[0]["message"]
        assert any(said in w for w in status["warnings"]), status["warnings"]
        assert f"warning: {said}" in render_status(status)
    else:
        assert [r.full for r in results] == [True, False, False]
        assert warned == []
        assert status["warnings"] == []
    capsys.readouterr()
    assert main(["-c", str(cfg), "config", "check", "--connect"]) == 0
    out = capsys.readouterr().out
    assert "directory connection OK" in out
    assert (said in out) is hidden, out
    # misync status prints the same line
    assert main(["-c", str(cfg), "status"]) == 0
    assert (f"warning: {said}" in capsys.readouterr().out) is hidden


def test_status_says_nothing_before_any_cycle(tmp_path: Path, slapd: LocalSlapd) -> None:
    cfg = _world(tmp_path, slapd, HIDDEN, "blind-pw")
    rt = Runtime(load_settings(cfg))
    with rt.store() as store:
        status = collect_status(rt.settings, store, rt.clock())
    assert status["warnings"] == []
    assert "warning:" not in render_status(status)


@pytest.mark.parametrize(
    ("bind_dn", "password", "hidden"),
    [
        pytest.param(HIDDEN, "blind-pw", True, id="modifyTimestamp-hidden"),
        pytest.param(SERVICE, "seeing-pw", False, id="modifyTimestamp-readable"),
    ],
)
def test_a_plan_reads_warm_only_where_the_mark_is_readable(
    tmp_path: Path, slapd: LocalSlapd, bind_dn: str, password: str, hidden: bool
) -> None:
    """``misync plan`` (connector.runs.directory): with the mark hidden, every plan is a
    full scan that says why; with it readable, a plan after an apply's full scan is warm."""
    from connector.runs import make_plan

    cfg = _world(tmp_path, slapd, bind_dn, password)
    rt = Runtime(load_settings(cfg))
    with rt.store() as store:
        # the first as an apply reads (its full scan saved), the second a dry run
        reads = [make_plan(rt, store, rt.clock(), save_snapshot=s)[0].read for s in (True, False)]
        assert ("no_mark" in store.snapshot_meta()) is hidden
    assert all(r is not None for r in reads)
    assert [r.warm for r in reads if r] == [False, not hidden]
    if hidden:
        assert reads[1] is not None
        assert "no change mark" in reads[1].reason
