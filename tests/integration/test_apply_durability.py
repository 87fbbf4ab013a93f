"""Apply durability on a real slapd (issue 6 items 1 and 6, issue 7 group commit).

- A full audit database (SQLite ``max_page_count`` on misync's own audit connection:
  a real SQLITE_FULL, not a mock) stops the run with the cause; no journal entry is
  closed without its audit record; the next run audits what the directory holds, and
  the journal and the trail agree one to one.
- A directory that stops answering (slapd SIGSTOPped mid-apply) trips the circuit
  breaker: the rest is journaled and audited as not attempted, and after SIGCONT the
  next run converges.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector import app, runs
from connector.audit import AuditTrail
from connector.cli import main
from connector.devtools.slapd import LocalSlapd
from connector.executor import ActionOutcome
from connector.model.plan import Plan
from connector.settings import load_settings
from connector.state import StateStore
from tests.configs import ldap_toml
from tests.conftest import DEMO, demo_seed_ldif

pytestmark = pytest.mark.slapd
NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
ORPHANS = 20


@dataclass
class World:
    config: Path
    state: Path
    scope: Any


def orphans_ldif(people_dn: str) -> str:
    """Accounts in the directory and in no feed: each one an orphan to disable."""
    return "\n".join(
        f"dn: uid=gone{i:02},{people_dn}\nobjectClass: inetOrgPerson\nuid: gone{i:02}\n"
        f"cn: Gone {i}\nsn: Gone\nemployeeNumber: P8{i:03}\n"
        for i in range(ORPHANS)
    )


def make_world(tmp_path: Path, scope: Any, slapd: Any, apply: str, ldap: str = "") -> World:
    slapd.add_ldif(demo_seed_ldif(scope))
    slapd.add_ldif(orphans_ldif(scope.people_dn))
    feeds = tmp_path / "feeds"
    shutil.copytree(DEMO / "feeds", feeds)
    s = scope.settings
    cfg = tmp_path / "misync.toml"
    cfg.write_text(
        f"""
{ldap_toml(feeds=feeds, url=s.url, bind_dn=s.bind_dn, password_file=s.password_file, base_dn=scope.people_dn, group_base_dn=scope.groups_dn)}
{ldap}
[guard]
max_unexplained_share = 1.0
max_unexplained_disables = 1000
[apply]
backoff_seconds = 0
reenable_external_disables = true  # as config/demo/misync.toml: the story's P1007 lock
{apply}
[state]
dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    return World(cfg, tmp_path / "state", scope)


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "now", lambda: NOW)


def operation_records(state: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(state / "audit.sqlite3") as db:
        rows = db.execute("select seq, data from records where kind = 'operation'").fetchall()
    return [{"seq": seq, **json.loads(data)} for seq, data in rows]


def assert_journal_and_audit_agree(state: Path) -> None:
    """Every journal entry is closed with the seq of an operation record naming it, and
    every operation record names exactly one entry: one to one."""
    with StateStore(state / "state.sqlite3") as store:
        entries = store.journal()
    records = operation_records(state)
    by_seq = {r["seq"]: r for r in records}
    assert [e.id for e in entries if e.ended_at is None] == []
    for e in entries:
        assert e.audit_seq is not None, f"entry {e.id} closed without an audit record"
        rec = by_seq[e.audit_seq]
        assert (rec["journal"], rec["op"], rec["outcome"]) == (e.id, e.op, e.outcome)
    assert sorted(r["journal"] for r in records) == sorted(e.id for e in entries)


def test_a_full_audit_database_stops_the_run_and_the_next_run_audits_what_landed(
    tmp_path: Path,
    ldap_scope: Any,
    slapd: LocalSlapd,
    pinned: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world = make_world(
        tmp_path, ldap_scope, slapd, "workers = 2\ncommit_batch = 1000\ncommit_interval_ms = 60000"
    )
    real_append = AuditTrail.append_many

    def disk_fills_up(self: AuditTrail, items: Any, *args: Any, **kwargs: Any) -> Any:
        items = list(items)
        if any(kind == "operation" for kind, _ in items):
            # the disk is full from now on: SQLite refuses to grow the audit database
            pages = self._db.execute("pragma page_count").fetchone()[0]
            self._db.execute(f"pragma max_page_count = {pages}")
        return real_append(self, items, *args, **kwargs)

    monkeypatch.setattr(AuditTrail, "append_many", disk_fills_up)
    code = main(["-c", str(world.config), "apply"])
    err = capsys.readouterr().err
    assert code == 10, err
    assert "database or disk is full" in err
    assert "no transaction is active" not in err
    with StateStore(world.state / "state.sqlite3") as store:
        entries = store.journal()
    assert entries and all(e.ended_at is None for e in entries)  # none closed unaudited
    landed = {e.account_id for e in entries if e.outcome == "ok"}
    assert len(landed) >= ORPHANS  # the directory holds these changes
    assert operation_records(world.state) == []

    monkeypatch.setattr(AuditTrail, "append_many", real_append)  # space is freed
    code = main(["-c", str(world.config), "apply"])
    assert code == 0, capsys.readouterr()
    late = {r["account_id"] for r in operation_records(world.state) if r.get("audited_late")}
    assert landed <= late  # each outcome the directory holds is audited, as it was
    assert main(["-c", str(world.config), "audit", "verify"]) == 0
    assert "intact" in capsys.readouterr().out
    assert_journal_and_audit_agree(world.state)


class StopAfter:
    """A RunObserver that SIGSTOPs the directory once the first outcomes are in."""

    def __init__(self, proc: Any, after: int) -> None:
        self.proc, self.after, self.seen = proc, after, 0

    def evaluated(self, feeds: Any, decisions: Any, as_of: Any) -> None:
        pass

    def planned(self, plan: Plan) -> None:
        pass

    def outcome(self, outcome: ActionOutcome) -> None:
        self.seen += 1
        if self.seen == self.after:
            os.kill(self.proc.pid, signal.SIGSTOP)


@pytest.fixture
def own_slapd(tmp_path: Path) -> Iterator[LocalSlapd]:
    with LocalSlapd(tmp_path / "slapd") as server:
        yield server
        if server._proc is not None:
            os.kill(server._proc.pid, signal.SIGCONT)


def test_a_stalled_directory_trips_the_circuit_breaker_and_the_next_run_resumes(
    tmp_path: Path, own_slapd: LocalSlapd, pinned: None
) -> None:
    from tests.conftest import LdapScope, ldap_scope_on

    scope: LdapScope = ldap_scope_on(own_slapd, tmp_path)
    world = make_world(
        tmp_path,
        scope,
        own_slapd,
        "workers = 2\nmax_attempts = 2\ncircuit_breaker_after = 3\ncommit_batch = 1",
        ldap="connect_timeout = 1\nreceive_timeout = 1",
    )
    rt = app.Runtime(load_settings(world.config))
    stopper = StopAfter(own_slapd._proc, after=3)
    result = runs.run_apply(rt, observer=stopper)
    report = result.report
    assert "circuit breaker" in report.stopped
    assert result.status == "stopped"
    statuses = [o.status for o in report.outcomes]
    assert statuses.count("ok") >= 3
    # the breaker stopped the run: most of it was never tried (without it, every action
    # would have waited out its timeouts: 2 attempts x 1 s each, one after the other)
    assert statuses.count("not_attempted") >= len(statuses) - 3 - 2 * 3
    assert_journal_and_audit_agree(world.state)

    assert own_slapd._proc is not None
    os.kill(own_slapd._proc.pid, signal.SIGCONT)  # the directory answers again
    again = runs.run_apply(rt)
    assert again.report.stopped == ""
    assert again.report.failed == ()
    assert {o.action.key for o in again.report.outcomes} >= {
        o.action.key for o in report.outcomes if o.status == "not_attempted"
    }
    with StateStore(world.state / "state.sqlite3") as store:
        plan, _ = runs.make_plan(rt, store, NOW)
    assert plan.actions == ()
    assert_journal_and_audit_agree(world.state)


class StopWhenPlanned(StopAfter):
    """SIGSTOPs the directory after the run read it, before the executor connects."""

    def planned(self, plan: Plan) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)


def test_a_bind_with_no_answer_costs_the_connect_timeout_and_trips_the_breaker(
    tmp_path: Path, own_slapd: LocalSlapd, pinned: None
) -> None:
    """A hung server accepts TCP connections (its listen backlog) and never answers the
    bind. The bind waits connect_timeout (1 s here), not receive_timeout (20 s: meant
    for a slow answer); each bind with no answer counts towards the circuit breaker, so
    the run stops early with the rest recorded as not attempted; the fast path's own
    look-ups give up as fast."""
    import time

    from connector.runs.targeted import run_targeted
    from connector.targets.base import TargetUnavailableError
    from tests.conftest import LdapScope, ldap_scope_on

    scope: LdapScope = ldap_scope_on(own_slapd, tmp_path)
    world = make_world(
        tmp_path,
        scope,
        own_slapd,
        "workers = 1\nmax_attempts = 2\ncircuit_breaker_after = 2\ncommit_batch = 1",
        ldap="connect_timeout = 1\nreceive_timeout = 20",
    )
    rt = app.Runtime(load_settings(world.config))
    started = time.monotonic()
    result = runs.run_apply(rt, observer=StopWhenPlanned(own_slapd._proc, after=0))
    took = time.monotonic() - started
    report = result.report
    assert "circuit breaker" in report.stopped, report.stopped
    statuses = [o.status for o in report.outcomes]
    assert statuses.count("ok") == 0
    assert statuses.count("not_attempted") == len(statuses) - 1  # only the first was tried
    assert took < 12, took  # 2 binds x 1 s, not 2 x 20 s
    assert_journal_and_audit_agree(world.state)

    started = time.monotonic()  # the fast path, still hung: its look-up gives up as fast
    with pytest.raises(TargetUnavailableError):
        run_targeted(rt, ["P1001"])
    assert time.monotonic() - started < 8

    assert own_slapd._proc is not None
    os.kill(own_slapd._proc.pid, signal.SIGCONT)  # the directory answers again
    again = runs.run_apply(rt)
    assert again.report.stopped == "" and again.report.failed == ()
