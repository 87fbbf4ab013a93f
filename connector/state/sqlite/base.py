"""The SQLite state store's plumbing: one connection (WAL, ``synchronous=full``) guarded
by a lock, so apply's worker threads may share it; the schema, created and migrated on
open; immediate transactions that are not rolled back twice (a transaction SQLite ended
itself, disk full, shows its real cause); and ``meta``, small named values
(``connector.state.ports.MetaStore``)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from connector.state.rows import SCHEMA_VERSION

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
create table if not exists plan_memo_meta (key text primary key, value text not null);
create table if not exists plan_memo (
  kind text not null, key text not null, body text not null, primary key (kind, key));
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


def ts(value: datetime | None = None) -> str:
    """``value`` (default: now) as stored: ISO 8601 in UTC."""
    return (value or datetime.now(UTC)).astimezone(UTC).isoformat()


def dt(value: str | None) -> datetime | None:
    """A stored instant read back (None for NULL)."""
    return datetime.fromisoformat(value) if value else None


class SqliteBase:
    """The connection, the schema and the transactions every concern of the SQLite state
    store shares, and ``meta``."""

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

    def _pairs(self, sql: str, among: Iterable[str] | None) -> dict[str, str]:
        """``sql`` (``select key, value from T``) as a dict; with ``among``, only those
        keys (``where person_id in (...)``, in chunks under SQLite's limit of bound
        parameters)."""
        if among is None:
            return dict(self._query(sql))
        wanted = list(dict.fromkeys(among))
        out: dict[str, str] = {}
        for i in range(0, len(wanted), 500):
            chunk = tuple(wanted[i : i + 500])
            marks = ",".join("?" * len(chunk))
            out.update(self._query(f"{sql} where person_id in ({marks})", chunk))
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
