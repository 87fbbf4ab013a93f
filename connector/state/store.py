"""The state store: journal, logon IDs, runs, feed row counts, decision digests,
breaches and failure counts, in one SQLite file (WAL).

Guarantees:

- ``journal_begin``/``journal_begin_many`` commit before they return, so an entry
  exists before the directory is touched; a crash before the entry is closed leaves
  it *open* (``open_journal_entries``), with its outcome if ``journal_record`` wrote
  one. ``journal_close`` closes entries only with the seq of their audit record (the
  caller audits first), so no entry is ever closed unaudited.
- A transaction that SQLite ended itself (disk full) is not rolled back a second time:
  the caller sees the real cause, not "no transaction is active".
- ``misync_disabled``: the accounts misync disabled itself and nobody was seen enabling
  since (kept with each closed disable/enable; learnt from the journal when missing).
- Logon IDs are never deleted: an ID once assigned stays with its person for life
  and is never given to anyone else (3.j.ii). Comparison is case-insensitive.
- One connection per store, guarded by a lock, so apply's worker threads may share it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.errors import MisyncError

SCHEMA_VERSION = 2
_SCHEMA = """
create table if not exists meta (key text primary key, value text not null);
create table if not exists logon_ids (
  person_id text primary key,
  logon_id text not null unique collate nocase,
  assigned_at text not null);
create table if not exists runs (
  run_id text primary key, kind text not null, as_of text not null, plan text,
  started_at text not null, finished_at text, status text, summary text);
create table if not exists journal (
  id integer primary key autoincrement,
  run_id text not null, key text not null, op text not null,
  person_id text, account_id text, payload text not null, begun_at text not null,
  ended_at text, outcome text, detail text, audit_seq integer);
create index if not exists journal_open on journal(ended_at) where ended_at is null;
create table if not exists feed_rows (
  feed text primary key, rows integer not null, run_id text not null);
create table if not exists decisions (person_id text primary key, digest text not null);
create table if not exists breaches (
  id integer primary key autoincrement, account_id text not null, person_id text not null,
  deadline text not null, severity text not null, reasons text not null, opened_at text not null,
  alerted_at text, closed_at text, resolution text);
create unique index if not exists breaches_open on breaches(account_id) where closed_at is null;
create table if not exists target_snapshot (account_id text primary key, body text not null);
create table if not exists target_snapshot_meta (key text primary key, value text not null);
create table if not exists failures (
  key text primary key, count integer not null, last_at text not null, detail text not null);
create table if not exists alerts (
  id integer primary key autoincrement, kind text not null, key text not null,
  severity text not null, summary text not null, fields text not null, opened_at text not null,
  sent_at text, reminders integer not null default 0, seen_run text,
  undelivered text not null default '', closed_at text, resolution text);
create unique index if not exists alerts_open on alerts(kind, key) where closed_at is null;
create table if not exists schedule (job text primary key, next_at text, updated_at text not null);
create table if not exists held (
  key text primary key, code text not null, op text not null, object text not null,
  person_id text, account_id text, logon_id text, message text not null, digest text not null,
  first_seen text not null, last_seen text not null, run_id text not null,
  accepted integer not null default 0);
create table if not exists held_decisions (
  id integer primary key autoincrement, key text not null, verdict text not null,
  digest text, reason text not null, by text not null, at text not null, until text,
  closed_at text, closed_by text, resolution text);
create unique index if not exists held_decisions_open on held_decisions(key)
  where closed_at is null;
create table if not exists feed_health (
  feed text primary key, state text not null, rows integer not null, rejected integer not null,
  detail text not null, modified_at text, run_id text not null, checked_at text not null);
"""
# Accounts misync itself disabled (a successful disable in the journal) and that nobody
# has been seen enabling since: the only disabled accounts misync re-enables by default.
_MISYNC_DISABLED = """
create table misync_disabled (
  account_id text primary key collate nocase, disabled_at text not null, run_id text not null);
insert or replace into misync_disabled(account_id, disabled_at, run_id)
  select j.account_id, j.ended_at, j.run_id from journal j
  where j.op = 'disable' and j.outcome = 'ok' and j.account_id is not null
    and not exists (select 1 from journal k where k.account_id = j.account_id collate nocase
                    and k.op = 'enable' and k.outcome = 'ok' and k.id > j.id);
"""


_JOURNAL_SELECT = (
    "select id, run_id, key, op, person_id, account_id, payload, begun_at, ended_at, "
    "outcome, detail, audit_seq from journal WHERE order by id"
)


class LogonIdConflictError(MisyncError):
    """The logon ID belongs to someone else, or the person already has another one."""


@dataclass(frozen=True, slots=True)
class JournalRow:
    id: int
    run_id: str
    key: str
    op: str
    person_id: str | None
    account_id: str | None
    payload: dict[str, Any]
    begun_at: datetime
    ended_at: datetime | None
    outcome: str | None  # set with ended_at null: known, not yet audited
    detail: str | None
    audit_seq: int | None = None  # the seq of its audit record (closed entries)


@dataclass(frozen=True, slots=True)
class JournalClose:
    """One outcome to close: its audit record's seq, and what it does to failure counts."""

    entry_id: int
    audit_seq: int | None
    key: str
    failure: str | None  # None: clear the object's failure count; else count one, this detail
    count_failure: bool = True  # False for outcomes that say nothing of the object
    op: str = ""  # a successful "disable"/"enable" marks/unmarks the account as misync's


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    kind: str
    as_of: datetime
    plan: str | None
    started_at: datetime
    finished_at: datetime | None
    status: str | None
    summary: dict[str, int]


@dataclass(frozen=True, slots=True)
class BreachRow:
    account_id: str
    person_id: str
    deadline: datetime
    severity: str
    reasons: str
    opened_at: datetime
    alerted_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An alert that was raised (and, while ``closed_at`` is None, is still open)."""

    id: int
    kind: str
    key: str
    severity: str
    summary: str
    fields: dict[str, Any]
    opened_at: datetime
    sent_at: datetime | None  # last time it went out (first send or reminder)
    reminders: int
    seen_run: str | None  # the last run that raised it
    undelivered: tuple[str, ...]  # sinks that failed the last send (retried at remind)
    closed_at: datetime | None
    resolution: str | None


@dataclass(frozen=True, slots=True)
class FeedHealthRow:
    feed: str
    state: str
    rows: int
    rejected: int
    detail: str
    modified_at: datetime | None
    run_id: str
    checked_at: datetime


@dataclass(frozen=True, slots=True)
class HeldRow:
    """A held action as the last run that saw it recorded it (``misync held list``)."""

    key: str  # code:object
    code: str
    op: str
    object: str  # the action's key: the account id, or person:ID for a create
    person_id: str | None
    account_id: str | None
    logon_id: str | None
    message: str
    digest: str
    first_seen: datetime
    last_seen: datetime
    run_id: str
    accepted: bool = False  # left as it is by an operator's accept in that run


@dataclass(frozen=True, slots=True)
class HeldDecisionRow:
    """An operator's decision on a held action; open while ``closed_at`` is None."""

    id: int
    key: str
    verdict: str  # accept | approve
    digest: str | None
    reason: str
    by: str
    at: datetime
    until: datetime | None
    closed_at: datetime | None = None
    closed_by: str | None = None
    resolution: str | None = None


_HELD_SELECT = (
    "select key, code, op, object, person_id, account_id, logon_id, message, digest, "
    "first_seen, last_seen, run_id, accepted from held "
)
_DECISION_SELECT = (
    "select id, key, verdict, digest, reason, by, at, until, closed_at, closed_by, resolution "
    "from held_decisions "
)


def _decision_row(r: tuple[Any, ...]) -> HeldDecisionRow:
    return HeldDecisionRow(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        datetime.fromisoformat(r[6]),
        _dt(r[7]),
        _dt(r[8]),
        r[9],
        r[10],
    )


_ALERT_SELECT = (
    "select id, kind, key, severity, summary, fields, opened_at, sent_at, reminders, seen_run, "
    "undelivered, closed_at, resolution from alerts "
)


def _alert_row(r: tuple[Any, ...]) -> AlertRow:
    return AlertRow(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        json.loads(r[5]),
        datetime.fromisoformat(r[6]),
        _dt(r[7]),
        int(r[8]),
        r[9],
        tuple(x for x in r[10].split(",") if x),
        _dt(r[11]),
        r[12],
    )


#: meta key: the stamps of the feed files the last evaluation read (connector.feeds.settle)
FEED_STAMPS = "feed_stamps"


def _ts(value: datetime | None = None) -> str:
    return (value or datetime.now(UTC)).astimezone(UTC).isoformat()


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class FeedStamps:
    """The stamps of the feed files the last evaluation read (``connector.feeds.settle``),
    kept as one meta value: the same for every backend that has ``meta``/``set_meta``."""

    def meta(self, key: str) -> str | None:
        raise NotImplementedError

    def set_meta(self, key: str, value: str) -> None:
        raise NotImplementedError

    def feed_stamps(self) -> dict[str, tuple[str, int, int, str]]:
        """Per feed, the file the last evaluation read: (path, size, mtime_ns, sha256)."""
        raw = self.meta(FEED_STAMPS)
        if not raw:
            return {}
        try:
            data = json.loads(raw)
            return {feed: (str(v[0]), int(v[1]), int(v[2]), str(v[3])) for feed, v in data.items()}
        except (ValueError, TypeError, IndexError, AttributeError):
            return {}  # unreadable: every file counts as changed (it settles, nothing lost)

    def record_feed_stamps(self, stamps: Mapping[str, tuple[str, int, int, str]]) -> None:
        """Replace the stamps of what was evaluated (a feed not in ``stamps`` was not read)."""
        self.set_meta(FEED_STAMPS, json.dumps({k: list(v) for k, v in stamps.items()}))



class StateStore(FeedStamps):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=full")
        self._db.execute("pragma busy_timeout=10000")
        self._db.executescript(_SCHEMA)  # idempotent DDL; executescript commits on its own
        columns = {r[1] for r in self._db.execute("pragma table_info(journal)")}
        if "audit_seq" not in columns:  # a version 1 state: entries closed before it are
            self._db.execute("alter table journal add column audit_seq integer")  # legacy
        tables = {r[0] for r in self._db.execute("select name from sqlite_master")}
        if "misync_disabled" not in tables:  # new, or a state from before: learn the journal
            self._db.executescript(_MISYNC_DISABLED)
        with self._tx() as db:
            db.execute(
                "insert or ignore into meta(key, value) values('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("begin immediate")
            try:
                yield self._db
                self._db.execute("commit")
            except BaseException:
                # SQLite may have ended the transaction itself (disk full): a second
                # rollback would raise "no transaction is active" and hide the cause
                if self._db.in_transaction:
                    with suppress(sqlite3.Error):
                        self._db.execute("rollback")
                raise

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta: small named values (e.g. the enabled-account count of the last full read) -

    def meta(self, key: str) -> str | None:
        rows = self._query("select value from meta where key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "insert into meta(key, value) values (?, ?) "
                "on conflict(key) do update set value = excluded.value",
                (key, value),
            )

    # -- logon IDs (3.j.ii) ---------------------------------------------------------------

    def logon_ids(self) -> dict[str, str]:
        return dict(self._query("select person_id, logon_id from logon_ids"))

    def taken_logon_ids(self) -> set[str]:
        return {row[0].lower() for row in self._query("select logon_id from logon_ids")}

    def reserve_logon_id(self, person_id: str, logon_id: str) -> None:
        with self._tx() as db:
            mine = db.execute(
                "select logon_id from logon_ids where person_id = ?", (person_id,)
            ).fetchone()
            if mine is not None:
                if mine[0].lower() == logon_id.lower():
                    return
                raise LogonIdConflictError(f"{person_id} already holds logon ID {mine[0]}")
            other = db.execute(
                "select person_id from logon_ids where logon_id = ? collate nocase", (logon_id,)
            ).fetchone()
            if other is not None:
                raise LogonIdConflictError(f"logon ID {logon_id} belongs to {other[0]}")
            db.execute(
                "insert into logon_ids(person_id, logon_id, assigned_at) values (?, ?, ?)",
                (person_id, logon_id, _ts()),
            )

    # -- runs -----------------------------------------------------------------------------

    def start_run(self, run_id: str, kind: str, as_of: datetime, plan_checksum: str | None) -> None:
        with self._tx() as db:
            db.execute(
                "insert into runs(run_id, kind, as_of, plan, started_at) values (?, ?, ?, ?, ?)",
                (run_id, kind, _ts(as_of), plan_checksum, _ts()),
            )

    def finish_run(self, run_id: str, status: str, summary: Mapping[str, int]) -> None:
        with self._tx() as db:
            db.execute(
                "update runs set finished_at = ?, status = ?, summary = ? where run_id = ?",
                (_ts(), status, json.dumps(dict(summary), sort_keys=True), run_id),
            )

    def runs(self, limit: int = 20, *, unfinished: bool = False) -> list[RunRow]:
        where = "where finished_at is null" if unfinished else ""
        rows = self._query(
            f"select run_id, kind, as_of, plan, started_at, finished_at, status, summary "  # noqa: S608
            f"from runs {where} order by started_at desc limit ?",
            (limit,),
        )
        return [
            RunRow(
                r[0],
                r[1],
                datetime.fromisoformat(r[2]),
                r[3],
                datetime.fromisoformat(r[4]),
                _dt(r[5]),
                r[6],
                json.loads(r[7]) if r[7] else {},
            )
            for r in rows
        ]

    def full_run_finished(self) -> bool:
        """Whether a full run (``apply``: the CLI's, the daemon's reconcile) has finished:
        only such a run has recorded every breach it found (targeted runs see few
        accounts)."""
        return bool(
            self._query(
                "select 1 from runs where kind = 'apply' and finished_at is not null limit 1",
                (),
            )
        )

    def unfinished_runs(self) -> list[RunRow]:
        return self.runs(limit=1000, unfinished=True)

    # -- journal --------------------------------------------------------------------------

    def journal_begin(
        self,
        run_id: str,
        key: str,
        op: str,
        person_id: str | None,
        account_id: str | None,
        payload: Mapping[str, Any],
    ) -> int:
        with self._tx() as db:
            cur = db.execute(
                "insert into journal(run_id, key, op, person_id, account_id, payload, begun_at) "
                "values (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    key,
                    op,
                    person_id,
                    account_id,
                    json.dumps(dict(payload), sort_keys=True, ensure_ascii=False),
                    _ts(),
                ),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def journal_begin_many(
        self,
        run_id: str,
        items: Sequence[tuple[str, str, str | None, str | None, Mapping[str, Any]]],
    ) -> list[int]:
        """Begin several entries (key, op, person_id, account_id, payload) in one commit."""
        ids: list[int] = []
        now = _ts()
        with self._tx() as db:
            for key, op, person_id, account_id, payload in items:
                cur = db.execute(
                    "insert into journal(run_id, key, op, person_id, account_id, payload, "
                    "begun_at) values (?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        key,
                        op,
                        person_id,
                        account_id,
                        json.dumps(dict(payload), sort_keys=True, ensure_ascii=False),
                        now,
                    ),
                )
                assert cur.lastrowid is not None
                ids.append(cur.lastrowid)
        return ids

    def journal_end(
        self,
        entry_id: int,
        outcome: str,
        account_id: str | None,
        detail: str,
        audit_seq: int | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "update journal set ended_at = ?, outcome = ?, detail = ?, "
                "account_id = coalesce(?, account_id), audit_seq = ? where id = ?",
                (_ts(), outcome, detail, account_id, audit_seq, entry_id),
            )

    def journal_record(self, items: Sequence[tuple[int, str, str | None, str]]) -> None:
        """Write known outcomes (entry id, outcome, account id, detail) on entries that
        stay open until their audit record exists: if the audit write fails, the next
        run audits these outcomes (not "unknown") before it closes them."""
        with self._tx() as db:
            db.executemany(
                "update journal set outcome = ?, detail = ?, account_id = coalesce(?, "
                "account_id) where id = ? and ended_at is null",
                [(outcome, detail, account_id, eid) for eid, outcome, account_id, detail in items],
            )

    def journal_close(self, items: Sequence[JournalClose], at: datetime | None = None) -> None:
        """Close audited entries with their audit seq and update the failure counts, in
        one commit (the group commit of a batch of outcomes)."""
        now = _ts(at)
        with self._tx() as db:
            db.executemany(
                "update journal set ended_at = ?, audit_seq = ? where id = ?",
                [(now, c.audit_seq, c.entry_id) for c in items],
            )
            db.executemany(
                "delete from failures where key = ?",
                [(c.key,) for c in items if c.failure is None and c.count_failure],
            )
            db.executemany(
                "insert into failures(key, count, last_at, detail) values (?, 1, ?, ?) "
                "on conflict(key) do update set count = count + 1, last_at = excluded.last_at, "
                "detail = excluded.detail",
                [
                    (c.key, now, c.failure)
                    for c in items
                    if c.failure is not None and c.count_failure
                ],
            )
            ok = [c for c in items if c.failure is None and c.count_failure]
            run = (
                db.execute(
                    "select run_id from journal where id = ?", (items[0].entry_id,)
                ).fetchone()
                if items
                else None
            )
            db.executemany(
                "insert or replace into misync_disabled(account_id, disabled_at, run_id) "
                "values (?, ?, ?)",
                [(c.key, now, run[0] if run else "") for c in ok if c.op == "disable"],
            )
            db.executemany(
                "delete from misync_disabled where account_id = ?",
                [(c.key,) for c in ok if c.op == "enable"],
            )

    def misync_disabled(self) -> frozenset[str]:
        """Accounts (ids, lower-cased) misync disabled and nobody was seen enabling since."""
        return frozenset(
            r[0].lower() for r in self._query("select account_id from misync_disabled")
        )

    def forget_misync_disables(self, enabled: Iterable[str]) -> None:
        """These accounts were seen enabled: whoever disables one of them next, it was not
        (yet) misync, so the mark goes."""
        ids = [(a,) for a in enabled]
        if ids:
            with self._tx() as db:
                db.executemany("delete from misync_disabled where account_id = ?", ids)

    def last_journal_audit_seq(self) -> int:
        row = self._query("select max(audit_seq) from journal")
        return int(row[0][0] or 0)

    def _journal_rows(self, where: str, args: tuple[Any, ...]) -> list[JournalRow]:
        sql = _JOURNAL_SELECT.replace("WHERE", where)  # `where`: one of two constants below
        rows = self._query(
            sql,
            args,
        )
        return [
            JournalRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                json.loads(r[6]),
                datetime.fromisoformat(r[7]),
                _dt(r[8]),
                r[9],
                r[10],
                r[11],
            )
            for r in rows
        ]

    def open_journal_entries(self) -> list[JournalRow]:
        return self._journal_rows("where ended_at is null", ())

    def journal(self, run_id: str | None = None) -> list[JournalRow]:
        if run_id is None:
            return self._journal_rows("", ())
        return self._journal_rows("where run_id = ?", (run_id,))

    # -- feeds and decisions --------------------------------------------------------------

    def last_good_feed_rows(self) -> dict[str, int]:
        return dict(self._query("select feed, rows from feed_rows"))

    def record_feed_rows(self, run_id: str, rows: Mapping[str, int]) -> None:
        with self._tx() as db:
            db.executemany(
                "insert into feed_rows(feed, rows, run_id) values (?, ?, ?) "
                "on conflict(feed) do update set rows = excluded.rows, run_id = excluded.run_id",
                [(k, v, run_id) for k, v in rows.items()],
            )

    def decision_digests(self) -> dict[str, str]:
        return dict(self._query("select person_id, digest from decisions"))

    def record_decision_digests(self, changed: Mapping[str, str]) -> None:
        with self._tx() as db:
            db.executemany(
                "insert into decisions(person_id, digest) values (?, ?) "
                "on conflict(person_id) do update set digest = excluded.digest",
                list(changed.items()),
            )

    # -- breaches -------------------------------------------------------------------------

    def open_breaches(self) -> dict[str, BreachRow]:
        rows = self._query(
            "select account_id, person_id, deadline, severity, reasons, opened_at, alerted_at "
            "from breaches where closed_at is null"
        )
        return {
            r[0]: BreachRow(
                r[0],
                r[1],
                datetime.fromisoformat(r[2]),
                r[3],
                r[4],
                datetime.fromisoformat(r[5]),
                _dt(r[6]),
            )
            for r in rows
        }

    def open_breach(
        self,
        account_id: str,
        person_id: str,
        deadline: datetime,
        severity: str,
        reasons: str,
        at: datetime,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "insert into breaches(account_id, person_id, deadline, severity, reasons,"
                " opened_at, alerted_at) values (?, ?, ?, ?, ?, ?, ?) on conflict do nothing",
                (account_id, person_id, _ts(deadline), severity, reasons, _ts(at), _ts(at)),
            )

    def mark_alerted(self, account_id: str, at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "update breaches set alerted_at = ? where account_id = ? and closed_at is null",
                (_ts(at), account_id),
            )

    def close_breach(self, account_id: str, at: datetime, resolution: str) -> None:
        with self._tx() as db:
            db.execute(
                "update breaches set closed_at = ?, resolution = ? "
                "where account_id = ? and closed_at is null",
                (_ts(at), resolution, account_id),
            )

    # -- failures and quarantine ----------------------------------------------------------

    def record_failure(self, key: str, at: datetime, detail: str) -> int:
        with self._tx() as db:
            db.execute(
                "insert into failures(key, count, last_at, detail) values (?, 1, ?, ?) "
                "on conflict(key) do update set count = count + 1, last_at = excluded.last_at, "
                "detail = excluded.detail",
                (key, _ts(at), detail),
            )
            row = db.execute("select count from failures where key = ?", (key,)).fetchone()
            return int(row[0])

    def clear_failure(self, key: str) -> None:
        with self._tx() as db:
            db.execute("delete from failures where key = ?", (key,))

    def failure_count(self, key: str) -> int:
        rows = self._query("select count from failures where key = ?", (key,))
        return int(rows[0][0]) if rows else 0

    def quarantined(self, threshold: int) -> dict[str, str]:
        rows = self._query("select key, detail from failures where count >= ?", (threshold,))
        return dict(rows)

    def release(self, key: str) -> None:
        self.clear_failure(key)

    # -- held actions and operators' decisions on them (``misync held``) -----------------

    def record_held(
        self, run_id: str, at: datetime, rows: Sequence[HeldRow], *, full: bool
    ) -> None:
        """Record what a run held. A full run replaces the list (what it no longer holds
        is gone); a targeted run adds and refreshes only what it saw. ``first_seen``
        stays from the first run that held it."""
        with self._tx() as db:
            if full:
                keys = [r.key for r in rows]
                db.execute("create temp table if not exists held_now (key text primary key)")
                db.execute("delete from held_now")
                db.executemany(
                    "insert or ignore into held_now(key) values (?)", [(k,) for k in keys]
                )
                db.execute("delete from held where key not in (select key from held_now)")
                db.execute("delete from held_now")
            db.executemany(
                "insert into held(key, code, op, object, person_id, account_id, logon_id, "
                "message, digest, first_seen, last_seen, run_id, accepted) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict(key) do update set "
                "op = excluded.op, person_id = excluded.person_id, "
                "account_id = excluded.account_id, logon_id = excluded.logon_id, "
                "message = excluded.message, digest = excluded.digest, "
                "last_seen = excluded.last_seen, run_id = excluded.run_id, "
                "accepted = excluded.accepted",
                [
                    (
                        r.key,
                        r.code,
                        r.op,
                        r.object,
                        r.person_id,
                        r.account_id,
                        r.logon_id,
                        r.message,
                        r.digest,
                        _ts(at),
                        _ts(at),
                        run_id,
                        int(r.accepted),
                    )
                    for r in rows
                ],
            )

    def held(self) -> list[HeldRow]:
        rows = self._query(_HELD_SELECT + "order by code, object")
        return [
            HeldRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                datetime.fromisoformat(r[9]),
                datetime.fromisoformat(r[10]),
                r[11],
                bool(r[12]),
            )
            for r in rows
        ]

    def held_decisions(self, *, closed: bool = False) -> list[HeldDecisionRow]:
        """The open decisions (or, with ``closed``, every decision ever made), oldest first."""
        where = "" if closed else "where closed_at is null "
        return [_decision_row(r) for r in self._query(_DECISION_SELECT + where + "order by id")]

    def decide_held(
        self,
        key: str,
        verdict: str,
        *,
        digest: str | None,
        reason: str,
        by: str,
        at: datetime,
        until: datetime | None = None,
    ) -> tuple[HeldDecisionRow, HeldDecisionRow | None]:
        """Record a decision on ``key``; an open one on the same key is closed as
        superseded. Returns (the new decision, the superseded one or None)."""
        with self._tx() as db:
            old = db.execute(
                _DECISION_SELECT + "where key = ? and closed_at is null", (key,)
            ).fetchone()
            if old is not None:
                db.execute(
                    "update held_decisions set closed_at = ?, closed_by = ?, resolution = ? "
                    "where id = ?",
                    (_ts(at), by, "superseded", old[0]),
                )
            cur = db.execute(
                "insert into held_decisions(key, verdict, digest, reason, by, at, until) "
                "values (?, ?, ?, ?, ?, ?, ?)",
                (key, verdict, digest, reason, by, _ts(at), _ts(until) if until else None),
            )
            new = db.execute(_DECISION_SELECT + "where id = ?", (cur.lastrowid,)).fetchone()
        return _decision_row(new), _decision_row(old) if old is not None else None

    def close_held_decision(
        self, key: str, *, at: datetime, by: str, resolution: str
    ) -> HeldDecisionRow | None:
        """Close the open decision on ``key`` (revoked, carried out, reopened, resolved);
        returns it as it was, or None if there was none."""
        with self._tx() as db:
            row = db.execute(
                _DECISION_SELECT + "where key = ? and closed_at is null", (key,)
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "update held_decisions set closed_at = ?, closed_by = ?, resolution = ? "
                "where id = ?",
                (_ts(at), by, resolution, row[0]),
            )
        return _decision_row(row)

    # -- the target as last read (connector.runs.cycle) ------------------------------------

    def snapshot_meta(self) -> dict[str, str]:
        return dict(self._query("select key, value from target_snapshot_meta"))

    def load_snapshot(self) -> dict[str, str]:
        """account key -> the account as JSON (the cycle module's format)."""
        return dict(self._query("select account_id, body from target_snapshot"))

    def save_snapshot(
        self,
        meta: Mapping[str, str],
        upserts: Mapping[str, str],
        deletes: Iterable[str],
        *,
        replace: bool,
    ) -> None:
        """One transaction: the snapshot rows that changed and the meta (mark, time of the
        last full scan) that goes with them; ``replace`` drops every other row first."""
        with self._tx() as db:
            if replace:
                db.execute("delete from target_snapshot")
            db.executemany(
                "delete from target_snapshot where account_id = ?", ((k,) for k in deletes)
            )
            db.executemany(
                "insert or replace into target_snapshot(account_id, body) values (?, ?)",
                upserts.items(),
            )
            db.execute("delete from target_snapshot_meta")
            db.executemany(
                "insert into target_snapshot_meta(key, value) values (?, ?)", meta.items()
            )

    # -- alerts (connector.alerts.manager) -----------------------------------------------

    def open_alerts(self) -> list[AlertRow]:
        rows = self._query(_ALERT_SELECT + "where closed_at is null order by id")
        return [_alert_row(r) for r in rows]

    def open_alert(self, kind: str, key: str) -> AlertRow | None:
        rows = self._query(
            _ALERT_SELECT + "where closed_at is null and kind = ? and key = ?", (kind, key)
        )
        return _alert_row(rows[0]) if rows else None

    def alerts(self, limit: int = 100) -> list[AlertRow]:
        """The most recent alerts, open or closed, newest first."""
        rows = self._query(_ALERT_SELECT + "order by id desc limit ?", (limit,))
        return [_alert_row(r) for r in rows]

    def raise_alert(
        self,
        kind: str,
        key: str,
        severity: str,
        summary: str,
        fields: Mapping[str, Any],
        at: datetime,
        run_id: str | None,
    ) -> tuple[AlertRow, bool]:
        """Record an alert: (the open row, True if it was opened now). A repeat of an open
        alert only refreshes its text and the run that last saw it."""
        body = json.dumps(dict(fields), sort_keys=True, default=str)
        with self._tx() as db:
            cur = db.execute(
                "insert into alerts(kind, key, severity, summary, fields, opened_at, seen_run) "
                "values (?, ?, ?, ?, ?, ?, ?) on conflict do nothing",
                (kind, key, severity, summary, body, _ts(at), run_id),
            )
            created = cur.rowcount == 1
            if not created:
                db.execute(
                    "update alerts set summary = ?, fields = ?, severity = ?, "
                    "seen_run = coalesce(?, seen_run) "
                    "where kind = ? and key = ? and closed_at is null",
                    (summary, body, severity, run_id, kind, key),
                )
            row = db.execute(
                _ALERT_SELECT + "where kind = ? and key = ? and closed_at is null", (kind, key)
            ).fetchone()
        return _alert_row(row), created

    def alert_sent(
        self, alert_id: int, at: datetime, undelivered: tuple[str, ...], *, reminder: bool
    ) -> None:
        with self._tx() as db:
            db.execute(
                "update alerts set sent_at = ?, undelivered = ?, "
                "reminders = reminders + ? where id = ?",
                (_ts(at), ",".join(undelivered), int(reminder), alert_id),
            )

    def alert_delivered(self, alert_id: int, undelivered: tuple[str, ...]) -> None:
        with self._tx() as db:
            db.execute(
                "update alerts set undelivered = ? where id = ?", (",".join(undelivered), alert_id)
            )

    def close_alert(self, alert_id: int, at: datetime, resolution: str) -> None:
        with self._tx() as db:
            db.execute(
                "update alerts set closed_at = ?, resolution = ? "
                "where id = ? and closed_at is null",
                (_ts(at), resolution, alert_id),
            )

    # -- the daemon's schedule (written by connector.daemon, read by `misync status`) -----

    def set_schedule(self, job: str, next_at: datetime | None) -> None:
        """Record when ``job`` runs next (None: not scheduled)."""
        with self._tx() as db:
            db.execute(
                "insert into schedule(job, next_at, updated_at) values (?, ?, ?) "
                "on conflict(job) do update set next_at = excluded.next_at, "
                "updated_at = excluded.updated_at",
                (job, _ts(next_at) if next_at else None, _ts()),
            )

    def schedule(self) -> dict[str, datetime | None]:
        return {r[0]: _dt(r[1]) for r in self._query("select job, next_at from schedule")}

    # -- feed health of the last run (for `misync status` and the metrics) ---------------

    def record_feed_health(self, run_id: str, at: datetime, rows: list[FeedHealthRow]) -> None:
        with self._tx() as db:
            db.executemany(
                "insert into feed_health(feed, state, rows, rejected, detail, modified_at,"
                " run_id, checked_at) values (?, ?, ?, ?, ?, ?, ?, ?) on conflict(feed) do update"
                " set state = excluded.state, rows = excluded.rows, rejected = excluded.rejected,"
                " detail = excluded.detail, modified_at = excluded.modified_at,"
                " run_id = excluded.run_id, checked_at = excluded.checked_at",
                [
                    (
                        r.feed,
                        r.state,
                        r.rows,
                        r.rejected,
                        r.detail,
                        _ts(r.modified_at) if r.modified_at else None,
                        run_id,
                        _ts(at),
                    )
                    for r in rows
                ],
            )

    def feed_health(self) -> list[FeedHealthRow]:
        rows = self._query(
            "select feed, state, rows, rejected, detail, modified_at, run_id, checked_at "
            "from feed_health order by feed"
        )
        return [
            FeedHealthRow(
                r[0], r[1], r[2], r[3], r[4], _dt(r[5]), r[6], datetime.fromisoformat(r[7])
            )
            for r in rows
        ]

    def failures(self) -> dict[str, tuple[int, datetime, str]]:
        """Every object whose last attempts failed: key -> (count, last failure, detail)."""
        rows = self._query("select key, count, last_at, detail from failures")
        return {r[0]: (int(r[1]), datetime.fromisoformat(r[2]), r[3]) for r in rows}

    # -- counters for the metrics endpoint -----------------------------------------------

    def run_counts(self) -> dict[str, int]:
        rows = self._query(
            "select status, count(*) from runs where finished_at is not null group by status"
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def action_counts(self) -> dict[tuple[str, str], int]:
        rows = self._query(
            "select op, outcome, count(*) from journal where outcome is not null "
            "group by op, outcome"
        )
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}

    def last_run(self, status: str | None = None) -> RunRow | None:
        """The run that finished last (with that status, if given)."""
        where = "where finished_at is not null" + (" and status = ?" if status else "")
        rows = self._query(
            "select run_id, kind, as_of, plan, started_at, finished_at, status, summary "
            "from runs " + where + " order by finished_at desc limit 1",
            (status,) if status else (),
        )
        for r in rows:
            return RunRow(
                r[0],
                r[1],
                datetime.fromisoformat(r[2]),
                r[3],
                datetime.fromisoformat(r[4]),
                _dt(r[5]),
                r[6],
                json.loads(r[7]) if r[7] else {},
            )
        return None
