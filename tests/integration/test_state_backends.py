"""One contract for both state backends (as APScheduler tests every data store): SQLite
in a folder and PostgreSQL (a private server, a fresh database per test) must behave
the same for the journal, logon IDs, runs, breaches, alerts, the snapshot, failures and
quarantine, feed state, the schedule, and the audit chain (append, head anchor, verify,
export, tampering, concurrent appenders from threads and from two processes)."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connector.audit import AuditIntegrityError, AuditLog, AuditTrail, head_mac, record_hash
from connector.audit.postgres import AUDIT_TABLES, PgAuditTrail
from connector.devtools.postgres import LocalPostgres
from connector.state import (
    FeedHealthRow,
    HeldRow,
    JournalClose,
    LogonIdConflictError,
    StateStore,
    Store,
    ports,
)
from connector.state.postgres import STATE_TABLES, PgStateStore

pytestmark = pytest.mark.postgresql

T0 = datetime(2026, 11, 25, 17, tzinfo=UTC)
GENESIS = "0" * 64


@dataclass
class Backend:
    """How a test opens one backend, and how it reaches under it to tamper."""

    name: str
    open_store: Callable[[], Store]
    open_trail: Callable[..., AuditLog]
    sql: Callable[[str], None]  # a statement on the audit records table, named {records}
    head: Callable[[], Any]  # the stored head anchor (a dict), None if absent
    set_head: Callable[[dict[str, Any] | None], None]
    child: str  # Python code that opens a trail as `t` in another process


def _sqlite(tmp_path: Path) -> Backend:
    import json

    folder = tmp_path / "state"
    audit_db = folder / "audit.sqlite3"
    head_file = folder / "audit.sqlite3.head"

    def sql(statement: str) -> None:
        db = sqlite3.connect(audit_db)
        db.execute(statement.replace("{records}", "records"))
        db.commit()
        db.close()

    def head() -> Any:
        return json.loads(head_file.read_text()) if head_file.exists() else None

    def set_head(body: dict[str, Any] | None) -> None:
        if body is None:
            head_file.unlink()
        else:
            head_file.write_text(json.dumps(body))

    return Backend(
        "sqlite",
        lambda: StateStore(folder / "state.sqlite3"),
        lambda key=None, read_only=False: AuditTrail(audit_db, key=key, read_only=read_only),
        sql,
        head,
        set_head,
        f"from pathlib import Path\nfrom connector.audit import AuditTrail\n"
        f"t = AuditTrail(Path({str(audit_db)!r}))\n",
    )


def _postgresql(url: str) -> Backend:
    def sql(statement: str) -> None:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(statement.replace("{records}", "audit_records"))  # type: ignore[arg-type]

    def head() -> Any:
        with psycopg.connect(url) as c:
            row = c.execute("select seq, hash, at, mac from audit_head").fetchone()
        if row is None:
            return None
        return {"seq": row[0], "hash": row[1], "at": row[2]} | ({"mac": row[3]} if row[3] else {})

    def set_head(body: dict[str, Any] | None) -> None:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("delete from audit_head")
            if body is not None:
                c.execute(
                    "insert into audit_head values (1, %s, %s, %s, %s)",
                    (body["seq"], body["hash"], body.get("at", ""), body.get("mac")),
                )

    return Backend(
        "postgresql",
        lambda: PgStateStore.from_url(url),
        lambda key=None, read_only=False: PgAuditTrail(
            psycopg.connect(url, autocommit=True), key, read_only=read_only
        ),
        sql,
        head,
        set_head,
        "import psycopg\nfrom connector.audit.postgres import PgAuditTrail\n"
        f"t = PgAuditTrail(psycopg.connect({url!r}, autocommit=True))\n",
    )


@pytest.fixture(scope="module")
def contract_db(postgres: LocalPostgres) -> str:
    """One database for this module's tests, emptied before each (faster than a new one)."""
    url = postgres.create_database("contract")
    PgStateStore.from_url(url).close()
    PgAuditTrail(psycopg.connect(url, autocommit=True)).close()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    url: str = request.getfixturevalue("contract_db")
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            "truncate "  # type: ignore[arg-type]
            + ", ".join(STATE_TABLES + AUDIT_TABLES)
            + " restart identity"
        )
    return _postgresql(url)


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    with backend.open_store() as s:
        yield s


def test_implements_every_port(store: Store) -> None:
    for name in ports.__all__:
        assert isinstance(store, getattr(ports, name)), name


# -- logon IDs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reservations", "conflict"),
    [
        ([("P1", "alee"), ("P1", "alee")], None),
        ([("P1", "alee"), ("P1", "ALEE")], None),
        ([("P1", "alee"), ("P2", "alee")], "belongs to P1"),
        ([("P1", "alee"), ("P2", "ALee")], "belongs to P1"),
        ([("P1", "alee"), ("P1", "annlee")], "already holds logon ID alee"),
    ],
)
def test_logon_ids_unique_case_insensitive_for_life(
    store: Store, reservations: list[tuple[str, str]], conflict: str | None
) -> None:
    *first, last = reservations
    for pid, logon in first:
        store.reserve_logon_id(pid, logon)
    if conflict is None:
        store.reserve_logon_id(*last)
    else:
        with pytest.raises(LogonIdConflictError, match=conflict):
            store.reserve_logon_id(*last)
    assert store.logon_ids() == {"P1": "alee"}
    assert store.taken_logon_ids() == {"alee"}
    assert store.logon_ids(["P1", "P2", "P9"]) == {"P1": "alee"}
    assert store.logon_ids(["P9"]) == {}


def test_logon_id_races_from_threads_give_it_to_one(store: Store) -> None:
    won: list[str] = []

    def claim(pid: str) -> None:
        try:
            store.reserve_logon_id(pid, "SAME")
            won.append(pid)
        except LogonIdConflictError:
            pass

    threads = [threading.Thread(target=claim, args=(f"P{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert store.logon_ids() == {won[0]: "SAME"}


# -- journal ----------------------------------------------------------------------------


def test_journal_begin_record_close(store: Store) -> None:
    ids = store.journal_begin_many(
        "r1",
        [
            ("uid=a", "disable", "P1", "uid=a", {"why": "separated", "ü": 1}),
            ("uid=b", "create", "P2", None, {"why": "new"}),
            ("uid=C", "enable", "P3", "uid=C", {}),
        ],
    )
    assert len(ids) == 3
    assert ids == sorted(ids)
    assert [e.key for e in store.open_journal_entries()] == ["uid=a", "uid=b", "uid=C"]
    store.journal_record([(ids[1], "ok", "uid=b2", ""), (ids[2], "error", None, "refused")])
    opened = {e.id: e for e in store.open_journal_entries()}
    assert (opened[ids[1]].outcome, opened[ids[1]].account_id) == ("ok", "uid=b2")
    assert opened[ids[0]].payload == {"why": "separated", "ü": 1}
    store.journal_close(
        [
            JournalClose(ids[0], 7, "uid=A", None, op="disable"),
            JournalClose(ids[1], 8, "uid=b", None, op="create"),
            JournalClose(ids[2], 9, "uid=C", "refused", op="enable"),
        ],
        at=T0,
    )
    assert store.open_journal_entries() == []
    rows = store.journal("r1")
    assert [r.audit_seq for r in rows] == [7, 8, 9]
    assert all(r.ended_at == T0 for r in rows)
    assert store.journal("r2") == []
    assert store.last_journal_audit_seq() == 9
    assert store.misync_disabled() == frozenset({"uid=a"})
    assert store.failure_count("uid=C") == 1
    store.forget_misync_disables(["UID=A"])  # case-insensitive, as LDAP names are
    assert store.misync_disabled() == frozenset()
    assert store.action_counts() == {("create", "ok"): 1, ("enable", "error"): 1}


def test_an_enable_clears_misyncs_disable_mark(store: Store) -> None:
    (d,) = store.journal_begin_many("r1", [("uid=a", "disable", "P1", "uid=a", {})])
    store.journal_close([JournalClose(d, 1, "uid=a", None, op="disable")])
    assert store.misync_disabled() == {"uid=a"}
    (e,) = store.journal_begin_many("r2", [("uid=A", "enable", "P1", "uid=A", {})])
    store.journal_close([JournalClose(e, 2, "uid=A", None, op="enable")])
    assert store.misync_disabled() == frozenset()


def test_journal_entry_is_committed_before_begin_returns(backend: Backend) -> None:
    """A process that dies right after journal_begin_many leaves the entry open."""
    store_code = {
        "sqlite": "from connector.state import StateStore\ns = StateStore(Path({db!r}))\n",
        "postgresql": "from connector.state.postgres import PgStateStore\n"
        "s = PgStateStore.from_url({db!r})\n",
    }[backend.name]
    with backend.open_store() as s:
        db = str(s.path) if isinstance(s, StateStore) else getattr(s, "where", "")
    code = (
        "import os\nfrom pathlib import Path\n"
        + store_code.format(db=db)
        + "s.journal_begin_many('run1', [('uid=a', 'disable', 'P1', 'uid=a', {'w': 1})])\n"
        "os._exit(1)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 1
    with backend.open_store() as s:
        (entry,) = s.open_journal_entries()
        assert (entry.run_id, entry.op, entry.payload, entry.outcome) == (
            "run1",
            "disable",
            {"w": 1},
            None,
        )


# -- runs -------------------------------------------------------------------------------


def test_runs(store: Store) -> None:
    store.start_run("r1", "apply", T0, "sha256:abc")
    store.start_run("r2", "cycle", T0 + timedelta(hours=1), None)
    assert {r.run_id for r in store.unfinished_runs()} == {"r1", "r2"}
    store.finish_run("r1", "ok", {"create": 2})
    assert [r.run_id for r in store.unfinished_runs()] == ["r2"]
    store.finish_run("r2", "failed", {})
    assert store.runs(1)[0].run_id == "r2"
    last = store.last_run("ok")
    assert last is not None
    assert (last.run_id, last.kind, last.as_of, last.plan, last.summary) == (
        "r1",
        "apply",
        T0,
        "sha256:abc",
        {"create": 2},
    )
    assert last.finished_at is not None
    assert last.finished_at.tzinfo is not None
    latest = store.last_run()
    assert latest is not None
    assert latest.run_id == "r2"
    assert store.run_counts() == {"ok": 1, "failed": 1}


def test_full_run_finished_counts_only_a_finished_apply(store: Store) -> None:
    assert not store.full_run_finished()
    store.start_run("t1", "fastpath", T0, None)
    store.finish_run("t1", "ok", {})
    store.start_run("a1", "apply", T0, None)
    assert not store.full_run_finished()  # started, not finished
    store.finish_run("a1", "incomplete", {})
    assert store.full_run_finished()


# -- breaches ---------------------------------------------------------------------------


def test_one_open_breach_per_account(store: Store) -> None:
    store.open_breach("uid=a", "P1", T0, "breach", "separated", T0)
    store.open_breach("uid=a", "P1", T0 + timedelta(hours=1), "breach", "again", T0)
    (row,) = store.open_breaches().values()
    assert (row.account_id, row.deadline, row.reasons, row.alerted_at) == (
        "uid=a",
        T0,
        "separated",
        T0,
    )
    store.mark_alerted("uid=a", T0 + timedelta(hours=2))
    assert store.open_breaches()["uid=a"].alerted_at == T0 + timedelta(hours=2)
    store.close_breach("uid=a", T0, "disabled")
    assert store.open_breaches() == {}
    store.open_breach("uid=a", "P1", T0, "breach", "separated", T0)  # may open again later
    assert list(store.open_breaches()) == ["uid=a"]


# -- alerts -----------------------------------------------------------------------------


def test_alert_lifecycle(store: Store) -> None:
    row, created = store.raise_alert(
        "breach", "uid=a", "critical", "late", {"n": 1, "at": T0}, T0, run_id="r1"
    )
    assert created
    assert (row.kind, row.key, row.fields, row.opened_at, row.seen_run) == (
        "breach",
        "uid=a",
        {"n": 1, "at": str(T0)},
        T0,
        "r1",
    )
    again, created = store.raise_alert(
        "breach", "uid=a", "critical", "later", {"n": 2}, T0, run_id=None
    )
    assert not created
    assert (again.id, again.summary, again.fields, again.seen_run) == (
        row.id,
        "later",
        {"n": 2},
        "r1",
    )
    store.alert_sent(row.id, T0, ("email", "webhook"), reminder=False)
    store.alert_sent(row.id, T0 + timedelta(hours=1), ("webhook",), reminder=True)
    opened = store.open_alert("breach", "uid=a")
    assert opened is not None
    assert (opened.reminders, opened.undelivered, opened.sent_at) == (
        1,
        ("webhook",),
        T0 + timedelta(hours=1),
    )
    store.alert_delivered(row.id, ())
    assert store.open_alerts()[0].undelivered == ()
    store.close_alert(row.id, T0, "resolved")
    assert store.open_alerts() == []
    assert store.open_alert("breach", "uid=a") is None
    third, created = store.raise_alert("breach", "uid=a", "critical", "back", {}, T0, run_id="r3")
    assert created
    assert third.id != row.id
    assert [a.id for a in store.alerts()] == [third.id, row.id]  # newest first
    assert store.alerts()[1].resolution == "resolved"


# -- snapshot, failures, feeds, schedule, meta ------------------------------------------


def test_snapshot(store: Store) -> None:
    store.save_snapshot({"mark": "1"}, {"a": "{}", "b": '{"x":1}'}, [], replace=True)
    store.save_snapshot({"mark": "2", "full": "t"}, {"c": "{}", "b": "{}"}, ["a"], replace=False)
    assert store.load_snapshot() == {"b": "{}", "c": "{}"}
    assert store.snapshot_meta() == {"mark": "2", "full": "t"}
    store.save_snapshot({"mark": "3"}, {"d": "{}"}, [], replace=True)
    assert store.load_snapshot() == {"d": "{}"}
    assert store.snapshot_meta() == {"mark": "3"}


def test_snapshot_compare_and_set(store: Store) -> None:
    """A snapshot written relative to a view goes in only onto that view (its
    ``generation``): the daemon, plans and applies share it (connector.runs.directory)."""
    assert store.save_snapshot({"generation": "g1"}, {"a": "1"}, [], replace=True, expect="")
    # another process saved g1 since our view "" was loaded: nothing is written
    assert not store.save_snapshot({"generation": "x"}, {"b": "2"}, ["a"], replace=False, expect="")
    assert store.load_snapshot() == {"a": "1"}
    assert store.snapshot_meta() == {"generation": "g1"}
    assert store.save_snapshot({"generation": "g2"}, {"b": "2"}, [], replace=False, expect="g1")
    assert store.load_snapshot() == {"a": "1", "b": "2"}
    assert store.snapshot_meta() == {"generation": "g2"}
    # no expectation: written whatever is there (a whole view)
    assert store.save_snapshot({"generation": "g3"}, {"c": "3"}, [], replace=True)
    assert store.load_snapshot() == {"c": "3"}


def test_plan_memo(store: Store) -> None:
    """The plan memo (connector.runs.memo): a meta and rows by kind, replaced whole by
    each save; rows looked up by key in any number (SQLite binds them in chunks); an
    empty meta is no memo."""
    assert store.memo_meta() == {}
    assert store.memo_rows("settled") == {}
    settled = [("settled", f"uid=u{i},ou=people", f"d{i}\x1fP{i}\x1f") for i in range(1200)]
    people = [("people", f"p{i}", json.dumps({f"P{i}": {"workers": [i + 2]}})) for i in range(1200)]
    store.save_memo({"format": "1", "generation": "g1"}, iter(settled + people))
    assert store.memo_meta() == {"format": "1", "generation": "g1"}
    assert store.memo_rows("settled") == {k: v for _, k, v in settled}
    assert store.memo_rows("people") == {k: v for _, k, v in people}
    wanted = [f"p{i}" for i in range(0, 1200, 2)] + ["p5", "nobody", "p5"]  # > 500 keys
    assert store.memo_rows("people", iter(wanted)) == {
        k: v for _, k, v in people if k in set(wanted)
    }
    assert store.memo_rows("people", []) == {}
    assert store.memo_rows("settled", ["p1"]) == {}  # by kind
    # a save replaces everything: rows and meta
    store.save_memo({"format": "1", "generation": "g2"}, [("people", "p1", "x")])
    assert store.memo_meta() == {"format": "1", "generation": "g2"}
    assert store.memo_rows("people") == {"p1": "x"}
    assert store.memo_rows("settled") == {}
    # an empty meta: no memo left
    store.save_memo({}, [])
    assert store.memo_meta() == {}
    assert store.memo_rows("people") == {}


def test_failures_and_quarantine(store: Store) -> None:
    assert [store.record_failure("uid=a", T0, f"try {i}") for i in range(3)] == [1, 2, 3]
    assert store.quarantined(3) == {"uid=a": "try 2"}
    assert store.quarantined(4) == {}
    assert store.failures() == {"uid=a": (3, T0, "try 2")}
    store.release("uid=a")
    assert store.quarantined(1) == {}
    assert store.failure_count("uid=a") == 0


def test_feed_state(store: Store) -> None:
    store.record_feed_rows("r1", {"workers": 100})
    store.record_feed_rows("r2", {"workers": 90, "ndas": 5})
    assert store.last_good_feed_rows() == {"workers": 90, "ndas": 5}
    store.record_decision_digests({f"P{i}": "x" for i in range(2000)})
    store.record_decision_digests({"P1": "y"})
    digests = store.decision_digests()
    assert (len(digests), digests["P1"], digests["P2"]) == (2000, "y", "x")
    # a targeted run asks only for its people (more than one SQLite batch of them here)
    among = [f"P{i}" for i in range(1, 1200, 2)] + ["P1", "nobody"]
    few = store.decision_digests(among)
    assert few == {p: digests[p] for p in among if p in digests} and len(few) == 600
    health = [
        FeedHealthRow("workers", "ok", 90, 0, "", T0, "r2", T0),
        FeedHealthRow("ndas", "stale", 5, 1, "old", None, "r2", T0),
    ]
    store.record_feed_health("r2", T0, health)
    assert store.feed_health() == sorted(health, key=lambda r: r.feed)


def test_feed_stamps(store: Store) -> None:
    assert store.feed_stamps() == {}
    store.record_feed_stamps({"workers": ("/srv/feeds/workers.csv", 120, 10**18, "ab" * 32)})
    store.record_feed_stamps({"ndas": ("/srv/feeds/ndas.csv", 7, 5, "cd" * 32)})
    assert store.feed_stamps() == {"ndas": ("/srv/feeds/ndas.csv", 7, 5, "cd" * 32)}


# -- held actions and operators' decisions ----------------------------------------------


def _held(key: str, digest: str = "d1", *, accepted: bool = False) -> HeldRow:
    code, _, obj = key.partition(":")
    return HeldRow(key, code, "enable", obj, "P1", obj, "u1", "why", digest, T0, T0, "r0", accepted)


def test_held_rows_full_run_replaces_targeted_run_adds(store: Store) -> None:
    a, b = "disabled_outside_misync:uid=a", "quarantined:uid=b"
    store.record_held("r1", T0, [_held(a), _held(b)], full=True)
    store.record_held("r2", T0 + timedelta(hours=1), [_held(a, "d2", accepted=True)], full=False)
    rows = {r.key: r for r in store.held()}
    assert set(rows) == {a, b}  # a targeted run refreshes, never removes
    assert (rows[a].digest, rows[a].accepted, rows[a].run_id) == ("d2", True, "r2")
    assert (rows[a].first_seen, rows[a].last_seen) == (T0, T0 + timedelta(hours=1))
    store.record_held("r3", T0 + timedelta(hours=2), [_held(b)], full=True)
    assert [r.key for r in store.held()] == [b]  # a full run replaces the list
    store.record_held("r4", T0 + timedelta(hours=3), [], full=True)
    assert store.held() == []


def test_one_open_decision_per_held_key(store: Store) -> None:
    key = "disabled_outside_misync:uid=a"
    first, none = store.decide_held(key, "accept", digest="d1", reason="r", by="ann", at=T0)
    assert none is None
    assert (first.verdict, first.by, first.until, first.closed_at) == ("accept", "ann", None, None)
    until = T0 + timedelta(days=3)
    second, superseded = store.decide_held(
        key, "approve", digest="d1", reason="go", by="bob", at=T0 + timedelta(hours=1), until=until
    )
    assert superseded is not None
    assert superseded.id == first.id
    assert (second.verdict, second.until) == ("approve", until)
    assert [d.id for d in store.held_decisions()] == [second.id]
    closed = store.close_held_decision(
        key, at=T0 + timedelta(hours=2), by="misync", resolution="done"
    )
    assert closed is not None
    assert closed.id == second.id
    assert store.held_decisions() == []
    assert store.close_held_decision(key, at=T0, by="x", resolution="none") is None
    history = store.held_decisions(closed=True)
    assert [(d.id, d.resolution, d.closed_by) for d in history] == [
        (first.id, "superseded", "bob"),
        (second.id, "done", "misync"),
    ]


def test_schedule_and_meta(store: Store) -> None:
    store.set_schedule("cycle", T0)
    store.set_schedule("full", None)
    store.set_schedule("cycle", T0 + timedelta(minutes=1))
    assert store.schedule() == {"cycle": T0 + timedelta(minutes=1), "full": None}
    assert store.meta("enabled_total") is None
    store.set_meta("enabled_total", "12")
    store.set_meta("enabled_total", "13")
    assert store.meta("enabled_total") == "13"


# -- the audit chain --------------------------------------------------------------------


@pytest.fixture
def trail(backend: Backend) -> Iterator[AuditLog]:
    with backend.open_trail() as t:
        t.append_many(
            [("operation", {"op": "disable", "n": i, "journal": 100 + i}) for i in range(1, 6)],
            run_id="r1",
            at=T0,
        )
        yield t


def test_the_same_records_hash_the_same_on_both(tmp_path: Path, pg_url: str) -> None:
    heads = []
    for b in (_sqlite(tmp_path), _postgresql(pg_url)):
        with b.open_trail() as t:
            t.append_many([("run.started", {"a": "é"}), ("operation", {"n": 1})], "r1", at=T0)
            t.append("run.finished", {"ok": True}, "r1", at=T0)
            heads.append((t.head(), b.head()["hash"]))
    assert heads[0] == heads[1]
    seq, hash_ = heads[0][0]
    assert seq == 3
    assert hash_ == heads[0][1]


def test_append_head_verify_export(trail: AuditLog, backend: Backend) -> None:
    assert trail.head()[0] == 5
    assert backend.head()["seq"] == 5
    assert backend.head()["hash"] == trail.head()[1]
    result = trail.verify()
    assert (result.ok, result.records, result.head_seq, result.problems) == (True, 5, 5, ())
    assert trail.verify(anchor=(3, trail.run_records("r1")[2].hash)).ok
    assert not trail.verify(anchor=(9, "f" * 64)).ok
    assert [r.seq for r in trail.run_records("r1")] == [1, 2, 3, 4, 5]
    assert trail.run_records("nope") == []
    assert trail.audited_journal_entries(2) == {103: 3, 104: 4, 105: 5}
    for fmt in ("csv", "jsonl"):
        out = io.StringIO()
        assert trail.export(out, fmt) == 5
        assert trail.head()[1] in out.getvalue()
    with backend.open_trail(read_only=True) as ro:
        assert ro.verify().ok
        with pytest.raises(Exception, match="read-only"):
            ro.append("x", {})


def test_export_is_the_same_on_both(tmp_path: Path, pg_url: str) -> None:
    outputs = []
    for b in (_sqlite(tmp_path), _postgresql(pg_url)):
        with b.open_trail() as t:
            t.append_many([("operation", {"n": i, "s": "ü,\n"}) for i in range(4)], "r1", at=T0)
            for fmt in ("csv", "jsonl"):
                out = io.StringIO()
                t.export(out, fmt, since=T0 - timedelta(1), until=T0 + timedelta(1))
                outputs.append(out.getvalue())
    assert outputs[:2] == outputs[2:]
    assert outputs[0].count("\n") >= 5


# (name, statement, what verify says, whether the next append is refused: an append
# checks the tail against the head anchor; verify re-computes the whole chain)
TAMPERING: list[tuple[str, str, str, bool]] = [
    (
        "edit data",
        "update {records} set data = replace(data, 'disable', 'enable') where seq = 3",
        "seq 3: content does not match its hash",
        False,
    ),
    ("edit time", "update {records} set at = '2020-01-01' where seq = 2", "seq 2: content", False),
    ("delete middle", "delete from {records} where seq = 3", "seq 4: expected seq 3", False),
    ("delete tail", "delete from {records} where seq = 5", "the head anchor says seq 5", True),
    ("empty", "delete from {records}", "the head anchor says seq 5", True),
    (
        "forged record",
        " ".join(
            [
                "insert into {records} values (6, 'x', 'operation', 'r9', '{}',",
                f"'{GENESIS}', '{record_hash(6, 'x', 'operation', 'r9', '{}', GENESIS)}')",
            ]
        ),
        "seq 6: does not chain",
        True,
    ),
]


@pytest.mark.parametrize(
    ("statement", "problem", "refused"), [pytest.param(*c[1:], id=c[0]) for c in TAMPERING]
)
def test_tampering_is_detected(
    trail: AuditLog, backend: Backend, statement: str, problem: str, refused: bool
) -> None:
    backend.sql(statement)
    with backend.open_trail() as t:
        result = t.verify()
        assert not result.ok
        assert any(problem in p for p in result.problems), result.problems
        if refused:
            with pytest.raises(AuditIntegrityError):
                t.check()
            with pytest.raises(AuditIntegrityError):
                t.append("operation", {"n": 6})


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        (None, "is missing"),
        ({"seq": 3, "hash": "a" * 64, "at": ""}, "seq 3: the head anchor says hash"),
        ({"seq": 9, "hash": "a" * 64, "at": ""}, "the head anchor says seq 9"),
    ],
)
def test_head_anchor_tampering(
    trail: AuditLog, backend: Backend, head: dict[str, Any] | None, problem: str
) -> None:
    backend.set_head(head)
    with backend.open_trail() as t:
        result = t.verify()
        assert not result.ok
        assert any(problem in p for p in result.problems), result.problems
        with pytest.raises(AuditIntegrityError):
            t.append("operation", {})


def test_keyed_head_refuses_a_forged_anchor(backend: Backend) -> None:
    key = b"k" * 32
    with backend.open_trail(key) as t:
        t.append_many([("operation", {"n": i}) for i in range(3)], "r1", at=T0)
        seq, hash_ = t.head()
    assert backend.head()["mac"] == head_mac(key, seq, hash_)
    # drop the last record and move the head back to match, without the key
    backend.sql("delete from {records} where seq = 3")
    backend.set_head({"seq": 2, "hash": _hash_at(backend, 2), "at": "", "mac": "0" * 64})
    with backend.open_trail(key) as t:
        result = t.verify()
        assert not result.ok
        assert any("mac does not match" in p for p in result.problems), result.problems
        with pytest.raises(AuditIntegrityError, match="mac"):
            t.append("operation", {})


def _hash_at(backend: Backend, seq: int) -> str:
    with backend.open_trail(read_only=True) as t:
        return next(r.hash for r in t.run_records("r1") if r.seq == seq)


def test_concurrent_appenders_from_threads(backend: Backend) -> None:
    with backend.open_trail() as shared, backend.open_trail() as other:
        errors: list[BaseException] = []

        def work(t: AuditLog, n: int) -> None:
            try:
                for i in range(15):
                    t.append_many([("operation", {"t": n, "i": i}), ("x", {"t": n})], f"r{n}")
            except BaseException as exc:  # noqa: BLE001 -- a thread's error is kept and asserted on below
                errors.append(exc)

        threads = [
            threading.Thread(target=work, args=(shared if n % 2 else other, n)) for n in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        result = shared.verify()
        assert (result.ok, result.records, result.problems) == (True, 6 * 15 * 2, ())


def test_concurrent_appenders_from_two_processes(backend: Backend) -> None:
    with backend.open_trail() as t:
        t.append("run.started", {})
    code = backend.child + textwrap.dedent(
        """
        import sys
        for i in range(40):
            t.append_many([("operation", {"p": sys.argv[1], "i": i})], "r" + sys.argv[1])
        t.close()
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in (1, 2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with backend.open_trail() as t:
        result = t.verify()
        assert (result.ok, result.records, result.head_seq, result.warnings) == (
            True,
            81,
            81,
            (),
        )
        assert len(t.run_records("r1")) == len(t.run_records("r2")) == 40


def test_a_new_trail_is_empty_and_anchored_at_genesis(backend: Backend) -> None:
    with backend.open_trail() as t:
        assert t.head() == (0, GENESIS)
        t.check()
        result = t.verify()
        assert (result.ok, result.records) == (True, 0)
        assert any("empty" in w for w in result.warnings)


def test_a_least_privileged_role_runs_but_cannot_rewrite_the_trail(
    postgres: LocalPostgres,
) -> None:
    """The tables made once by their owner, misync may run as a role without CREATE, and
    with UPDATE, DELETE and TRUNCATE on audit_records revoked (docs/DECISIONS.md)."""
    url = postgres.create_database("leastpriv")
    PgStateStore.from_url(url).close()
    PgAuditTrail(psycopg.connect(url, autocommit=True)).close()
    postgres.psql(
        "create role misync_app login; grant usage on schema public to misync_app; "
        "grant select, insert, update, delete on all tables in schema public to misync_app; "
        "grant usage on all sequences in schema public to misync_app; "
        "revoke update, delete, truncate on audit_records from misync_app",
        "leastpriv",
    )
    app_url = postgres.url("leastpriv", user="misync_app")
    with PgStateStore.from_url(app_url) as s:
        s.reserve_logon_id("P1", "alee")
        (entry,) = s.journal_begin_many("r1", [("uid=a", "disable", "P1", "uid=a", {})])
        s.journal_close([JournalClose(entry, 1, "uid=a", None, op="disable")])
    with PgAuditTrail(psycopg.connect(app_url, autocommit=True)) as t:
        t.append("operation", {"journal": entry})
        assert t.verify().ok
        for statement in ("update audit_records set data = '{}'", "delete from audit_records"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                t._conn.execute(statement)  # type: ignore[arg-type]


def test_a_lost_connection_is_an_operating_condition(contract_db: str) -> None:
    """The server ending misync's session (restart, failover, an admin) is reported as
    the state being unavailable (exit 3 at the command's edge), and an append that
    cannot be written as an audit write failure (exit 10): never as a bug."""
    from connector.audit import AuditWriteError
    from connector.state import StateUnavailableError

    with (
        PgStateStore.from_url(contract_db) as store,
        PgAuditTrail(psycopg.connect(contract_db, autocommit=True)) as trail,
        PgAuditTrail(psycopg.connect(contract_db, autocommit=True)) as other,
        psycopg.connect(contract_db, autocommit=True) as admin,
    ):
        for conn in (store._conn, trail._conn, other._conn):
            admin.execute("select pg_terminate_backend(%s)", (conn.info.backend_pid,))
        with pytest.raises(StateUnavailableError, match=r"state database .*contract"):
            store.meta("k")
        with pytest.raises(StateUnavailableError):
            store.set_meta("k", "v")
        with pytest.raises(StateUnavailableError, match=r"audit trail .*audit_records"):
            trail.verify()
        with pytest.raises(AuditWriteError, match="cannot append 1 record"):
            other.append("operation", {})


def test_an_upgrade_adding_tables_needs_a_role_that_may_create_them(
    postgres: LocalPostgres,
) -> None:
    """A state made by an earlier version lacks the tables added since (0.5.0: the plan
    memo's). A role without CREATE cannot open it: it is told which tables and what to
    do (exit 3 at the command's edge), not shown a traceback; once the owner has opened
    it, the role runs."""
    from connector.state import StateUnavailableError

    url = postgres.create_database("upgrade")
    PgStateStore.from_url(url).close()
    postgres.psql("drop table plan_memo; drop table plan_memo_meta", "upgrade")  # as 0.4.0 left it
    postgres.psql(
        "create role misync_up login; grant usage on schema public to misync_up; "
        "grant select, insert, update, delete on all tables in schema public to misync_up; "
        "grant usage on all sequences in schema public to misync_up",
        "upgrade",
    )
    app_url = postgres.url("upgrade", user="misync_up")
    with pytest.raises(
        StateUnavailableError, match=r"tables plan_memo_meta, plan_memo are missing"
    ):
        PgStateStore.from_url(app_url)
    PgStateStore.from_url(url).close()  # the owner: the tables are made
    postgres.psql(
        "grant select, insert, update, delete on all tables in schema public to misync_up",
        "upgrade",
    )
    with PgStateStore.from_url(app_url) as s:
        s.save_memo({"format": "1"}, [("settled", "k", "v")])
        assert s.memo_meta() == {"format": "1"}
