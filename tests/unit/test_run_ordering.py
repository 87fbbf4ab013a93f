"""The crash-safe ordering of a run (connector/runs), on the in-memory target shipped in
``connector.testing``: what the journal, the breaches and the audit trail hold at the
instant each write reaches the directory, and after a run that stopped midway.

These are the fast checks of the layer above the target port; the proofs on real
servers are tests/integration/test_apply_durability.py and tests/chaos.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connector.app import Runtime
from connector.audit import AuditTrail, AuditWriteError
from connector.model.accounts import Account
from connector.runs import ReviewedPlan, run_apply
from connector.settings import load_settings
from connector.targets.base import TargetNotRespondingError
from connector.testing import MemoryDirectory, Write
from tests.configs import ROOT

AS_OF = datetime.fromisoformat("2026-11-25T09:00:00-08:00")
DEMO_FEEDS = ROOT / "config" / "demo" / "feeds"


def _toml(tmp: Path, extra: str = "") -> Path:
    feeds = tmp / "feeds"
    shutil.copytree(DEMO_FEEDS, feeds)
    (tmp / "pw").write_text("unused\n")
    (tmp / "pw").chmod(0o600)
    cfg = tmp / "misync.toml"
    cfg.write_text(
        f"""[feeds]
dir = "{feeds}"
mapping = "{ROOT / "mappings" / "feeds.toml"}"
max_age_hours = 0

[target]
kind = "ldap"
mapping = "{ROOT / "mappings" / "openldap-ppolicy.toml"}"

[target.ldap]
url = "ldap://127.0.0.1:1"
bind_dn = "cn=admin,dc=mis,dc=example"
password_file = "{tmp / "pw"}"
base_dn = "ou=people,dc=mis,dc=example"
group_base_dn = "ou=groups,dc=mis,dc=example"

[guard]
max_unexplained_share = 0.9

[apply]
workers = 2
backoff_seconds = 0
backoff_max_seconds = 0
commit_batch = 2

[state]
dir = "{tmp / "state"}"
{extra}
"""
    )
    return cfg


def _enabled(person_id: str, n: int) -> Account:
    return Account(
        f"uid=u{n},ou=people,dc=mis,dc=example",
        person_id,
        f"u{n}",
        True,
        {"employeeNumber": (person_id,)},
    )


@pytest.fixture
def world(tmp_path: Path) -> tuple[Runtime, MemoryDirectory]:
    directory = MemoryDirectory(description="memory://ou=people,dc=mis,dc=example")
    # enabled accounts of two people who lost access (P1003 contract end, P1004
    # separation: both past their deadline as of AS_OF) and of one orphan
    for n, pid in enumerate(("P1003", "P1004", "P9999")):
        directory.add(_enabled(pid, n))
    rt = Runtime(load_settings(_toml(tmp_path)), target_factory=directory.connect)
    rt.clock = lambda: AS_OF
    return rt, directory


def _db(rt: Runtime) -> sqlite3.Connection:
    """A second reader of the state store, as a crash would leave it."""
    return sqlite3.connect(f"file:{rt.settings.state.db}?mode=ro", uri=True)


def test_every_write_has_an_open_journal_entry_before_it_reaches_the_directory(
    world: tuple[Runtime, MemoryDirectory],
) -> None:
    rt, directory = world
    seen: list[tuple[Write, list[tuple[Any, ...]]]] = []

    def check(w: Write) -> None:
        with _db(rt) as db:
            rows = db.execute(
                "select op, person_id, account_id from journal where ended_at is null"
            ).fetchall()
        seen.append((w, rows))

    directory.before_write = check
    result = run_apply(rt)

    assert result.status in {"ok", "incomplete"}
    assert len(seen) == len(directory.writes) > 0
    for w, open_entries in seen:
        ops = {(op, pid) for op, pid, _ in open_entries} | {
            (op, aid) for op, _, aid in open_entries
        }
        assert (w.op, w.subject) in ops, f"{w} reached the directory with no open entry"


def test_breaches_are_open_before_the_disable_that_fixes_them(
    world: tuple[Runtime, MemoryDirectory],
) -> None:
    rt, directory = world
    open_at_disable: dict[str, set[str]] = {}

    def check(w: Write) -> None:
        if w.op == "disable":
            with _db(rt) as db:
                rows = db.execute(
                    "select account_id from breaches where closed_at is null"
                ).fetchall()
            open_at_disable[w.subject] = {r[0] for r in rows}

    directory.before_write = check
    run_apply(rt)

    late = {
        a.account_id for a in directory.accounts.values() if a.correlation in {"P1003", "P1004"}
    }
    assert late <= set(open_at_disable)
    for account_id in late:
        assert account_id in open_at_disable[account_id]
    with rt.store() as store:
        assert not (late & set(store.open_breaches()))  # fixed by the run, then closed


def test_every_entry_is_closed_with_the_seq_of_its_audit_record(
    world: tuple[Runtime, MemoryDirectory],
) -> None:
    rt, _ = world
    result = run_apply(rt)
    with rt.store() as store:
        entries = store.journal(result.run_id)
    with AuditTrail(rt.settings.state.audit_db, read_only=True) as trail:
        records = {r.seq: r for r in trail.run_records(result.run_id)}
        assert trail.verify().ok
    assert entries
    for e in entries:
        assert e.ended_at is not None and e.audit_seq is not None
        record = records[e.audit_seq]
        assert record.kind == "operation"
        assert f'"op": "{e.op}"' in record.data or f'"op":"{e.op}"' in record.data


def test_a_failed_audit_write_stops_the_run_and_the_next_run_audits_what_landed(
    world: tuple[Runtime, MemoryDirectory], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, directory = world
    real = AuditTrail.append_many
    calls = {"n": 0}

    def failing(self: AuditTrail, records: Any, *args: Any, **kwargs: Any) -> Any:
        if any(kind == "operation" for kind, _ in records):
            calls["n"] += 1
            if calls["n"] >= 2:  # one group of outcomes is audited, then the disk is full
                raise AuditWriteError("database or disk is full")
        return real(self, records, *args, **kwargs)

    monkeypatch.setattr(AuditTrail, "append_many", failing)
    with pytest.raises(AuditWriteError):
        run_apply(rt)
    landed = len(directory.writes)
    with rt.store() as store:
        open_entries = store.open_journal_entries()
    assert open_entries, "outcomes not audited must stay open"
    assert any(e.outcome for e in open_entries), "known outcomes are written on the entry"

    monkeypatch.setattr(AuditTrail, "append_many", real)
    second = run_apply(rt)
    with rt.store() as store:
        assert store.open_journal_entries() == []
        journal = store.journal()
    with AuditTrail(rt.settings.state.audit_db, read_only=True) as trail:
        assert trail.verify().ok
        audited = {r.seq for r in trail.run_records(second.run_id)}
    recovered = [e for e in journal if e.run_id != second.run_id and e.audit_seq in audited]
    assert recovered, "the next run audits the outcomes the failed run left open"
    # nothing was carried out twice: every write of the first run stands once
    assert len(directory.writes) >= landed
    subjects = [(w.op, w.subject) for w in directory.writes]
    assert len(subjects) == len(set(subjects))


def test_a_stalled_directory_trips_the_breaker_and_the_rest_is_not_attempted(
    tmp_path: Path,
) -> None:
    directory = MemoryDirectory(description="memory://ou=people,dc=mis,dc=example")
    for n, pid in enumerate(("P1003", "P1004", "P9999")):
        directory.add(_enabled(pid, n))
    directory.fail("*", *(TargetNotRespondingError("no answer") for _ in range(50)))
    cfg = _toml(tmp_path, "")
    text = cfg.read_text().replace(
        "commit_batch = 2", "commit_batch = 2\ncircuit_breaker_after = 2"
    )
    cfg.write_text(text)
    rt = Runtime(load_settings(cfg), target_factory=directory.connect)
    rt.clock = lambda: AS_OF

    result = run_apply(rt)

    assert result.status == "stopped"
    assert directory.writes == []
    statuses = {o.status for o in result.report.outcomes}
    assert "not_attempted" in statuses
    with rt.store() as store:
        assert store.open_journal_entries() == []
        entries = store.journal(result.run_id)
    assert len(entries) == len(result.report.outcomes)
    assert all(e.audit_seq is not None for e in entries)


# -- one opening and closing for every way a plan is obtained (connector.runs.run) ------


class _Recorder:
    """An alert sink that wants run boundaries (as the alert manager does) and an
    observer, writing what it hears into one list of events."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    # AlertSink / RunAwareSink
    def send(self, alert: Any) -> None:
        self.events.append(f"alert:{alert.kind}")

    def run_started(self, run_id: str) -> None:
        self.events.append("run_started")

    def run_finished(self, run_id: str, *, full: bool = True) -> None:
        self.events.append(f"run_finished(full={full})")

    # RunObserver
    def evaluated(self, feeds: Any, decisions: Any, as_of: Any) -> None:
        self.events.append(f"evaluated({len(decisions)})")

    def planned(self, plan: Any) -> None:
        self.events.append("planned")

    def outcome(self, outcome: Any) -> None:
        self.events.append("outcome")


def _fresh(rt: Runtime, rec: _Recorder, hook: Any) -> Any:
    return run_apply(rt, alerts=rec, observer=rec)


def _reviewed(rt: Runtime, rec: _Recorder, hook: Any) -> Any:
    from connector.runs import make_plan

    with rt.store() as store:
        plan, _ = make_plan(rt, store, AS_OF)
    return run_apply(rt, ReviewedPlan(plan), alerts=rec, observer=rec)


def _cycle(rt: Runtime, rec: _Recorder, hook: Any) -> Any:
    from connector.runs import IncrementalCycle, Run
    from connector.runs.cycle import CyclePlanner

    return Run(
        rt, IncrementalCycle(CyclePlanner(rt)), alerts=rec, observer=rec, evaluated=hook
    ).execute()


def _targeted(rt: Runtime, rec: _Recorder, hook: Any) -> Any:
    from connector.runs.targeted import run_targeted

    return run_targeted(
        rt, ["P1003", "P1004"], kind="fastpath", alerts=rec, observer=rec, evaluated=hook
    )


SOURCES = {  # name: (how the run is started, whether it reads the whole directory)
    "fresh": (_fresh, True),
    "reviewed": (_reviewed, True),
    "incremental cycle": (_cycle, True),
    "targeted people": (_targeted, False),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_plan_source_gets_the_same_opening_and_closing(
    world: tuple[Runtime, MemoryDirectory], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The audit trail is checked before an alert sink hears that a run started (a
    tampered trail never opens a run window); the plan record is written before the
    observers hear of the plan; what the run read comes before the plan, the plan
    before any outcome; the sink hears the end last, ``full`` only for a run that read
    the whole directory."""
    rt, directory = world
    events: list[str] = []
    real_check, real_append = AuditTrail.check, AuditTrail.append

    def check(self: AuditTrail, *args: Any, **kwargs: Any) -> Any:
        events.append("audit.check")
        return real_check(self, *args, **kwargs)

    def append(self: AuditTrail, kind: str, *args: Any, **kwargs: Any) -> Any:
        events.append(f"audit:{kind}")
        return real_append(self, kind, *args, **kwargs)

    start, full = SOURCES[name]
    rec = _Recorder(events)
    seen: list[Any] = []
    if name == "reviewed":  # the reviewed plan is made before the run: not recorded here
        from connector.runs import make_plan

        with rt.store() as store:
            plan, _ = make_plan(rt, store, AS_OF)
        monkeypatch.setattr(AuditTrail, "check", check)
        monkeypatch.setattr(AuditTrail, "append", append)
        result = run_apply(rt, ReviewedPlan(plan), alerts=rec, observer=rec)
    else:
        monkeypatch.setattr(AuditTrail, "check", check)
        monkeypatch.setattr(AuditTrail, "append", append)
        result = start(rt, rec, seen.append)

    assert result is not None and directory.writes, events
    assert events[:2] == ["audit.check", "run_started"], events
    assert events[-1] == f"run_finished(full={full})", events
    evaluated = next(i for i, e in enumerate(events) if e.startswith("evaluated("))
    planned = events.index("planned")
    assert events.index("audit:plan") < evaluated < planned < events.index("outcome")
    assert events.index("audit:run") < len(events) - 1  # finished, then the sink hears it
    if full:
        assert events[evaluated] == f"evaluated({_everyone(rt)})"
    else:  # a targeted run records and tells only the people it looked at
        assert events[evaluated] == "evaluated(2)"
    if seen:  # the daemon's hook gets the whole evaluation, whatever the source
        assert len(seen) == 1 and len(seen[0].decisions) == _everyone(rt)


def _everyone(rt: Runtime) -> int:
    from connector.runs import evaluate

    with rt.store() as store:
        return len(evaluate(rt, store, AS_OF).decisions)


def test_a_tampered_trail_stops_every_source_before_the_sink_hears_of_a_run(
    world: tuple[Runtime, MemoryDirectory], monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.audit import AuditIntegrityError

    rt, directory = world

    def refuse(self: AuditTrail, *args: Any, **kwargs: Any) -> Any:
        raise AuditIntegrityError("record 3: hash mismatch")

    monkeypatch.setattr(AuditTrail, "check", refuse)
    for name, (start, _) in sorted(SOURCES.items()):
        events: list[str] = []
        with pytest.raises(AuditIntegrityError):
            start(rt, _Recorder(events), None)
        assert events == [], name
    assert directory.writes == []
