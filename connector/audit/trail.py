"""A hash-chained, append-only audit trail that auditors can verify without misync.

Each record has ``seq`` (1, 2, 3 ... with no gaps), ``at`` (ISO 8601 UTC), ``kind``,
``run_id``, ``data`` (canonical JSON: keys sorted, separators ``,`` and ``:``, UTF-8),
``prev`` (the previous record's hash; 64 zeros for the first) and ``hash``::

    hash = sha256( "\\n".join([str(seq), at, kind, run_id, data, prev]) ).hexdigest()

(``data`` holds no raw newline: JSON escapes them.) Editing, deleting, inserting or
reordering a record breaks the chain. Truncating the tail is caught by the **head
anchor**: ``<file>.head`` holds the last seq and hash, rewritten atomically after every
append, and each run also logs the head (``run.finished``, journald) so that a copy
lives outside this file. ``misync audit export`` writes every field, so the recipe
above can be re-computed with any sha256 tool.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

GENESIS = "0" * 64


def canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(seq: int, at: str, kind: str, run_id: str, data: str, prev: str) -> str:
    body = "\n".join([str(seq), at, kind, run_id, data, prev])
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: str
    kind: str
    run_id: str
    data: str
    prev: str
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records: int
    head_seq: int
    head_hash: str
    problems: tuple[str, ...]


class AuditTrail:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=full")
        self._db.execute(
            "create table if not exists records (seq integer primary key, at text not null, "
            "kind text not null, run_id text not null, data text not null, prev text not null, "
            "hash text not null)"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _last(self) -> tuple[int, str]:
        row = self._db.execute("select seq, hash from records order by seq desc limit 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def append(
        self, kind: str, data: Mapping[str, Any], run_id: str = "", at: datetime | None = None
    ) -> AuditRecord:
        last = self.append_many([(kind, data)], run_id=run_id, at=at)
        assert last is not None
        return last

    def append_many(
        self,
        items: Iterable[tuple[str, Mapping[str, Any]]],
        run_id: str = "",
        at: datetime | None = None,
    ) -> AuditRecord | None:
        stamp = (at or datetime.now(UTC)).astimezone(UTC).isoformat()
        last: AuditRecord | None = None
        with self._lock:
            self._db.execute("begin immediate")
            try:
                seq, prev = self._last()
                rows = []
                for kind, data in items:
                    seq += 1
                    text = canonical(data)
                    h = record_hash(seq, stamp, kind, run_id, text, prev)
                    rows.append((seq, stamp, kind, run_id, text, prev, h))
                    prev = h
                self._db.executemany("insert into records values (?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise
            if rows:
                last = AuditRecord(*rows[-1])
                self._write_head(last)
        return last

    def _write_head(self, rec: AuditRecord) -> None:
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        body = json.dumps({"seq": rec.seq, "hash": rec.hash, "at": rec.at})
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.head_path)

    def head(self) -> tuple[int, str]:
        with self._lock:
            return self._last()

    def _records(self) -> list[AuditRecord]:
        with self._lock:
            rows = self._db.execute("select * from records order by rowid").fetchall()
        return [AuditRecord(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def verify(self, anchor: tuple[int, str] | None = None) -> VerifyResult:
        """Re-compute the chain; compare its end with the head anchor."""
        problems: list[str] = []
        prev = GENESIS
        expected_seq = 1
        records = self._records()
        for rec in records:
            if rec.seq != expected_seq:
                problems.append(
                    f"seq {rec.seq}: expected seq {expected_seq} (record missing or reordered)"
                )
            if rec.prev != prev:
                problems.append(f"seq {rec.seq}: does not chain to the previous record")
            if record_hash(rec.seq, rec.at, rec.kind, rec.run_id, rec.data, rec.prev) != rec.hash:
                problems.append(f"seq {rec.seq}: content does not match its hash (edited)")
            prev = rec.hash
            expected_seq = rec.seq + 1
        head_seq, head_hash = (records[-1].seq, records[-1].hash) if records else (0, GENESIS)
        if anchor is None:
            anchor = self._read_anchor(problems, bool(records))
        if anchor is not None and anchor != (head_seq, head_hash):
            a_seq, a_hash = anchor
            problems.append(
                f"seq {head_seq}: the head anchor says seq {a_seq} hash {a_hash[:16]}…, the trail "
                f"ends at seq {head_seq} hash {head_hash[:16]}… (truncated or rewritten)"
            )
        return VerifyResult(not problems, len(records), head_seq, head_hash, tuple(problems))

    def _read_anchor(self, problems: list[str], has_records: bool) -> tuple[int, str] | None:
        try:
            body = json.loads(self.head_path.read_text(encoding="utf-8"))
            return int(body["seq"]), str(body["hash"])
        except FileNotFoundError:
            if has_records:
                problems.append(f"head anchor {self.head_path} is missing")
        except (ValueError, KeyError, TypeError):
            problems.append(f"head anchor {self.head_path} is corrupt")
        return None

    def export(
        self,
        out: TextIO,
        fmt: str = "csv",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        fields = ["seq", "at", "kind", "run_id", "data", "prev", "hash"]
        writer = csv.writer(out) if fmt == "csv" else None
        if writer is not None:
            writer.writerow(fields)
        n = 0
        for rec in self._records():
            at = datetime.fromisoformat(rec.at)
            if (since and at < since) or (until and at > until):
                continue
            row = [rec.seq, rec.at, rec.kind, rec.run_id, rec.data, rec.prev, rec.hash]
            if writer is not None:
                writer.writerow(row)
            else:
                out.write(
                    json.dumps(dict(zip(fields, row, strict=True)), ensure_ascii=False) + "\n"
                )
            n += 1
        return n
