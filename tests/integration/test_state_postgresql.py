"""The `misync` command with its state on PostgreSQL, against a real slapd and a private
PostgreSQL: the demo world applies with the same plan and outcomes as on SQLite, and
`state migrate` moves a real SQLite state (made by an apply) into PostgreSQL with the
audit trail's head unchanged, after which the next apply runs on PostgreSQL."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connector import app
from connector.audit import AuditTrail
from connector.cli import main
from connector.state import StateStore, Store
from connector.state.postgres import PgStateStore
from tests.configs import ldap_toml
from tests.conftest import DEMO, demo_seed_ldif, ldap_scope_on

pytestmark = [pytest.mark.slapd, pytest.mark.postgresql]

NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def pinned_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "now", lambda: NOW)


def world(slapd: Any, folder: Path, state_url: str = "") -> dict[str, Any]:
    """The demo world on a fresh branch of ``slapd``, its config in ``folder``."""
    folder.mkdir()
    scope = ldap_scope_on(slapd, folder)
    slapd.add_ldif(demo_seed_ldif(scope))
    feeds = folder / "feeds"
    shutil.copytree(DEMO / "feeds", feeds)
    ldap = scope.settings
    url_line = f'url = "{state_url}"' if state_url else ""
    cfg = folder / "misync.toml"
    cfg.write_text(
        f"""
{ldap_toml(feeds=feeds, url=ldap.url, bind_dn=ldap.bind_dn, password_file=ldap.password_file, base_dn=scope.people_dn, group_base_dn=scope.groups_dn)}

[guard]
max_unexplained_share = 0.5

[apply]
backoff_seconds = 0
reenable_external_disables = true

[state]
dir = "{folder / "state"}"
{url_line}
""",
        encoding="utf-8",
    )
    return {"config": cfg, "scope": scope, "dir": folder / "state", "url": state_url}


def cli(w: dict[str, Any], *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["-c", str(w["config"]), *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def open_store(w: dict[str, Any]) -> Store:
    return PgStateStore.from_url(w["url"]) if w["url"] else StateStore(w["dir"] / "state.sqlite3")


def outcomes(w: dict[str, Any]) -> tuple[list[tuple[str, str, str | None]], set[int | None]]:
    """(op, person, outcome) of every journal entry (branch names left out), and the audit
    seqs they were closed with (which entry gets which depends on the workers' order)."""
    with open_store(w) as s:
        journal = s.journal()
    return (
        sorted((j.op, j.person_id or "", j.outcome) for j in journal),
        {j.audit_seq for j in journal},
    )


def verified_head(w: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    code, out = cli(w, "audit", "verify", capsys=capsys)
    assert code == 0, out
    match = re.search(r"audit trail intact: (\d+) records, head (\d+ [0-9a-f]{64})", out)
    assert match, out
    return match.group(2)


def test_apply_on_postgresql_matches_sqlite(
    slapd: Any, tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lite = world(slapd, tmp_path / "sqlite")
    pg = world(slapd, tmp_path / "pg", pg_url)
    plans = []
    for w in (lite, pg):
        code = main(["-c", str(w["config"]), "plan", "--format", "json"])
        plan = json.loads(capsys.readouterr().out)
        assert code == 0
        plans.append(
            (
                plan["summary"],
                sorted((a["op"], a["person_id"] or "", len(a["reasons"])) for a in plan["actions"]),
                sorted((b["person_id"], b["severity"]) for b in plan["breaches"]),
            )
        )
        code, out = cli(w, "apply", capsys=capsys)
        assert code == 0, out
    assert plans[0] == plans[1]
    assert plans[0][0]["disable"] == 4
    assert outcomes(lite) == outcomes(pg)
    done, seqs = outcomes(pg)
    assert len(done) == len(seqs) == 8
    assert all(outcome == "ok" for _, _, outcome in done)
    assert None not in seqs
    with open_store(pg) as s:
        assert len(s.logon_ids()) == 2
        assert s.open_journal_entries() == []
        last = s.last_run()
        assert last is not None
        assert last.status == "ok"
    assert not (pg["dir"] / "state.sqlite3").exists()  # the state is in PostgreSQL
    assert not (pg["dir"] / "audit.sqlite3").exists()
    assert verified_head(lite, capsys).split()[0] == verified_head(pg, capsys).split()[0]
    code, out = cli(pg, "plan", "--detailed-exitcode", capsys=capsys)
    assert code == 0, out  # nothing left to do


def _everything(s: Store) -> dict[str, Any]:
    return {
        "journal": s.journal(),
        "logon_ids": s.logon_ids(),
        "runs": s.runs(1000),
        "breaches": s.open_breaches(),
        "alerts": s.alerts(1000),
        "failures": s.failures(),
        "snapshot": (s.load_snapshot(), s.snapshot_meta()),
        "feeds": (s.last_good_feed_rows(), s.decision_digests(), s.feed_health()),
        "schedule": s.schedule(),
        "misync_disabled": s.misync_disabled(),
        "meta": s.meta("schema_version"),
    }


def test_migrate_a_real_sqlite_state_then_apply_on_postgresql(
    slapd: Any, tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    w = world(slapd, tmp_path / "w")
    assert cli(w, "apply", capsys=capsys)[0] == 0
    with StateStore(w["dir"] / "state.sqlite3") as s:  # something in every kind of table
        s.record_failure("uid=x", NOW, "refused")
        s.raise_alert("breach", "uid=x", "critical", "late", {"n": 1}, NOW, run_id=None)
        s.open_breach("uid=y", "P9", NOW, "breach", "separated", NOW)
        s.set_schedule("cycle", NOW)
        s.save_snapshot({"mark": "7"}, {"uid=x": "{}"}, [], replace=True)
        before = _everything(s)
    head = verified_head(w, capsys)

    code, out = cli(w, "state", "migrate", "--to", pg_url, capsys=capsys)
    assert code == 0, out
    assert f"head {head}" in out
    with PgStateStore.from_url(pg_url) as s:
        assert _everything(s) == before
    assert len(before["journal"]) == 8

    code, out = cli(w, "state", "migrate", "--to", pg_url, capsys=capsys)
    assert code == 5, out
    assert "not empty" in out

    # the same configuration, now on PostgreSQL: same head, and the next apply goes on
    pg = dict(w, url=pg_url)
    cfg = w["config"].read_text().replace("[state]", f'[state]\nurl = "{pg_url}"')
    pg["config"] = tmp_path / "pg.toml"
    pg["config"].write_text(cfg)
    assert verified_head(pg, capsys) == head
    _drift(w["scope"], "aortiz")
    code, out = cli(pg, "apply", capsys=capsys)
    assert code == 0, out
    after = verified_head(pg, capsys)
    assert int(after.split()[0]) > int(head.split()[0])
    with PgStateStore.from_url(pg_url) as s:
        journal = s.journal()
        assert len(journal) == 9
        assert (journal[-1].op, journal[-1].outcome) == ("update", "ok")
        assert journal[-1].id > before["journal"][-1].id
    with AuditTrail(w["dir"] / "audit.sqlite3") as t:  # the SQLite copy was left alone
        assert f"{t.head()[0]} {t.head()[1]}" == head


def test_migrate_refuses_a_trail_that_does_not_verify(
    slapd: Any, tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    w = world(slapd, tmp_path / "w")
    assert cli(w, "apply", capsys=capsys)[0] == 0
    db = sqlite3.connect(w["dir"] / "audit.sqlite3")
    db.execute("update records set data = replace(data, 'disable', 'enable')")
    db.commit()
    db.close()
    code, out = cli(w, "state", "migrate", "--to", pg_url, capsys=capsys)
    assert code == 5, out
    assert "does not verify" in out
    with PgStateStore.from_url(pg_url) as s:
        assert s.journal() == []


def _drift(scope: Any, uid: str) -> None:
    """Someone edits an account by hand: the next plan puts it back (an update)."""
    ldap = scope.settings
    conn = ldap3.Connection(
        ldap3.Server(ldap.url), ldap.bind_dn, ldap.bind_password(), auto_bind=True
    )
    try:
        conn.modify(
            f"uid={uid},{scope.people_dn}",
            {"physicalDeliveryOfficeName": [(ldap3.MODIFY_REPLACE, ["Nowhere"])]},
        )
    finally:
        conn.unbind()


@pytest.mark.parametrize("command", [["audit", "verify"], ["plan"], ["status"]])
def test_an_unreachable_state_database_is_exit_3_not_a_bug(
    slapd: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    from connector.devtools.slapd import free_port

    url = f"postgresql://misync@127.0.0.1:{free_port()}/misync"  # nobody listens there
    w = world(slapd, tmp_path / "w", url)
    code, out = cli(w, *command, capsys=capsys)
    assert code == 3, out
    assert f"state.url {url}: cannot connect" in out
    assert "internal error" not in out


def test_config_check_connect_logs_in_to_the_state_database(
    slapd: Any, tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.devtools.slapd import free_port

    w = world(slapd, tmp_path / "up", pg_url)
    code, out = cli(w, "config", "check", "--connect", capsys=capsys)
    assert code == 0, out
    assert f"state database connection OK: {pg_url}" in out
    assert f"state in {pg_url}" in out
    down = f"postgresql://misync@127.0.0.1:{free_port()}/misync"
    w = world(slapd, tmp_path / "down", down)
    code, out = cli(w, "config", "check", "--connect", capsys=capsys)
    assert code == 2, out
    assert f"state.url {down}: cannot connect" in out
