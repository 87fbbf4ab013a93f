"""The audit trail in PostgreSQL: the same chain, hash rules and anchor checks as the
SQLite trail (``connector.audit.trail``, whose docstring states them), stored in two
tables of the state database:

- ``audit_records (seq, at, kind, run_id, data, prev, hash)``: ``at`` and ``data`` are
  kept as the exact text that was hashed (``data`` is canonical JSON in a ``text``
  column, not ``jsonb``, which would re-format it and break the hash);
- ``audit_head (id = 1, seq, hash, at, mac)``: the head anchor, with the same HMAC
  (``head_mac``) when ``audit.key_file`` is set.

An append takes a transaction-scoped advisory lock (one appender at a time, across
processes and hosts), checks that the records still end where the head says, inserts
the records and moves the head, all in one transaction: unlike the file anchor, the
head here is never behind. ``verify`` reads the records and the head in one
repeatable-read snapshot. The database role misync uses needs only SELECT and INSERT
on ``audit_records`` (docs/DECISIONS.md: a DBA may revoke UPDATE, DELETE, TRUNCATE).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg

from connector.audit.trail import (
    GENESIS,
    AuditError,
    AuditRecord,
    AuditTrail,
    AuditWriteError,
    canonical,
    head_mac,
    record_hash,
)
from connector.state.postgres import (
    AUDIT_LOCK,
    SCHEMA_LOCK,
    PostgresStateError,
    safe_url,
    schema_present,
)

AUDIT_TABLES = ("audit_records", "audit_head")

AUDIT_SCHEMA = """
create table if not exists audit_records (
  seq bigint primary key, at text not null, kind text not null, run_id text not null,
  data text not null, prev text not null, hash text not null);
create index if not exists audit_records_run on audit_records (run_id);
create table if not exists audit_head (
  id integer primary key check (id = 1), seq bigint not null, hash text not null,
  at text not null, mac text);
"""

_SELECT = "select seq, at, kind, run_id, data, prev, hash from audit_records "


def _record(r: tuple[Any, ...]) -> AuditRecord:
    return AuditRecord(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6])


def create_audit_schema(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Create the audit tables if missing (nothing is created where they exist)."""
    if schema_present(conn, AUDIT_TABLES):
        return
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(AUDIT_SCHEMA)  # fixed DDL text


class PgAuditTrail(AuditTrail):
    """The audit trail in PostgreSQL. It shares ``AuditTrail``'s chain logic (the head
    anchor check before an append, ``verify``, ``export``) and replaces its storage:
    records, head anchor, lock and transactions."""

    def __init__(
        self,
        conn: psycopg.Connection[tuple[Any, ...]],
        key: bytes | None = None,
        *,
        read_only: bool = False,
        where: str = "",
    ) -> None:
        # no super().__init__: nothing of the SQLite file is opened or created
        self._conn = conn
        self._key = key
        self._lock = threading.RLock()
        self.read_only = read_only
        self.name = f"{where or safe_url(conn.info.dsn)} (audit_records)"
        self.head_name = f"{where or safe_url(conn.info.dsn)} (audit_head)"
        if not read_only:
            create_audit_schema(conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> PgAuditTrail:
        return self

    def _exists(self) -> bool:
        row = self._conn.execute("select to_regclass('audit_records') is not null").fetchone()
        return bool(row and row[0])

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        """A lost or refusing server is an operating condition (exit 3), not a bug."""
        try:
            yield
        except psycopg.OperationalError as exc:
            raise PostgresStateError(
                f"audit trail {self.name}: {str(exc).strip() or type(exc).__name__}"
            ) from exc

    @contextlib.contextmanager
    def _flock(self, exclusive: bool) -> Iterator[None]:
        """``verify`` reads the records and the head as one state: one snapshot."""
        with self._lock, self._unavailable(), self._conn.transaction():
            self._conn.execute("set transaction isolation level repeatable read read only")
            if exclusive:
                self._conn.execute("select pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
            yield

    def _last(self) -> tuple[int, str]:
        if self.read_only and not self._exists():
            return 0, GENESIS
        with self._unavailable():
            row = self._conn.execute(
                "select seq, hash from audit_records order by seq desc limit 1"
            ).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def append_many(
        self,
        items: Iterable[tuple[str, Mapping[str, Any]]],
        run_id: str = "",
        at: datetime | None = None,
    ) -> AuditRecord | None:
        """As ``AuditTrail.append_many``; records and head move in one transaction."""
        if self.read_only:
            raise AuditError(f"audit trail {self.name} is open read-only (verify, export)")
        stamp = (at or datetime.now(UTC)).astimezone(UTC).isoformat()
        todo = [(kind, canonical(data)) for kind, data in items]
        if not todo:
            return None
        try:
            with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute("select pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
                seq, prev = self._check_before_append()
                rows = []
                for kind, text in todo:
                    seq += 1
                    h = record_hash(seq, stamp, kind, run_id, text, prev)
                    rows.append((seq, stamp, kind, run_id, text, prev, h))
                    prev = h
                cur.executemany(
                    "insert into audit_records (seq, at, kind, run_id, data, prev, hash) "
                    "values (%s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
                last = AuditRecord(*rows[-1])
                self._write_head(last.seq, last.hash, last.at)
        except psycopg.Error as exc:
            raise AuditWriteError(
                f"audit trail {self.name}: cannot append {len(todo)} record(s): {str(exc).strip()}"
            ) from exc
        return last

    def check(self) -> None:
        with self._lock, self._unavailable(), self._conn.transaction():
            self._conn.execute("select pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
            self._check_before_append()
            raise psycopg.Rollback  # write nothing, not even a genesis head

    def _records_from(self, seq: int) -> list[AuditRecord]:
        rows = self._conn.execute(_SELECT + "where seq >= %s order by seq", (seq,)).fetchall()
        return [_record(r) for r in rows]

    def _head_body(self) -> Any:
        if self.read_only and not self._exists():
            return None
        row = self._conn.execute(
            "select seq, hash, at, mac from audit_head where id = 1"
        ).fetchone()
        if row is None:
            return None
        body: dict[str, Any] = {"seq": row[0], "hash": row[1], "at": row[2]}
        if row[3] is not None:
            body["mac"] = row[3]
        return body

    def _write_head(self, seq: int, hash_: str, at: str) -> None:
        """Move the head (inside the caller's transaction)."""
        mac = head_mac(self._key, seq, hash_) if self._key is not None else None
        self._conn.execute(
            "insert into audit_head (id, seq, hash, at, mac) values (1, %s, %s, %s, %s) "
            "on conflict (id) do update set seq = excluded.seq, hash = excluded.hash, "
            "at = excluded.at, mac = excluded.mac",
            (seq, hash_, at, mac),
        )

    def audited_journal_entries(self, after_seq: int) -> dict[int, int]:
        with self._lock, self._unavailable():
            rows = self._conn.execute(
                "select seq, data::jsonb -> 'journal' from audit_records "
                "where seq > %s and kind = 'operation' order by seq",
                (after_seq,),
            ).fetchall()
        return {int(r[1]): int(r[0]) for r in rows if isinstance(r[1], int)}

    def _records(self) -> list[AuditRecord]:
        with self._lock, self._unavailable():
            if self.read_only and not self._exists():
                return []
            rows = self._conn.execute(_SELECT + "order by seq").fetchall()
        return [_record(r) for r in rows]

    def run_records(self, run_id: str) -> list[AuditRecord]:
        with self._lock, self._unavailable():
            if self.read_only and not self._exists():
                return []
            rows = self._conn.execute(
                _SELECT + "where run_id = %s order by seq", (run_id,)
            ).fetchall()
        return [_record(r) for r in rows]

    def copy_records(self, records: Iterable[AuditRecord], head: tuple[int, str, str]) -> int:
        """``state migrate``: insert records exactly as they are (their hashes are not
        re-computed, so the copy is the same chain) and set the head. Refuses to write
        into a trail that has any record or head already."""
        n = 0
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("select pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
            if (
                cur.execute("select 1 from audit_records limit 1").fetchone()
                or cur.execute("select 1 from audit_head").fetchone()
            ):
                raise AuditError(f"audit trail {self.name} is not empty")
            with cur.copy(
                "copy audit_records (seq, at, kind, run_id, data, prev, hash) from stdin"
            ) as copy:
                for rec in records:
                    copy.write_row(
                        (rec.seq, rec.at, rec.kind, rec.run_id, rec.data, rec.prev, rec.hash)
                    )
                    n += 1
            self._write_head(*head)
        return n
