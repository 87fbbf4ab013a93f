"""A hash-chained, append-only audit trail that auditors can verify without misync.

Each record has ``seq`` (1, 2, 3 ... with no gaps), ``at`` (ISO 8601 UTC), ``kind``,
``run_id``, ``data`` (canonical JSON: keys sorted, separators ``,`` and ``:``, UTF-8),
``prev`` (the previous record's hash; 64 zeros for the first) and ``hash``::

    hash = sha256( "\\n".join([str(seq), at, kind, run_id, data, prev]) ).hexdigest()

(``data`` holds no raw newline: JSON escapes them.) Editing, deleting, inserting or
reordering a record breaks the chain. Truncating the tail, or putting back an older copy
of the database, is caught by the **head anchor**: ``<file>.head`` holds the last seq and
hash (JSON ``{"seq", "hash", "at"}``, plus ``"mac"`` = HMAC-SHA256 of ``"seq:hash"`` when
a key is configured). Each run also logs the head (``run.finished`` with ``audit_seq``
and ``audit_head``, journald), so a copy lives outside this folder:
``misync audit verify --anchor SEQ:HASH`` checks the trail against it.

Appending never launders tampering: under an exclusive lock (``<file>.lock``, held across
the database commit and the head write) it first checks that the database still ends
where the head says, and raises :class:`AuditIntegrityError` if not. The one accepted
difference is a head that is *behind* the database by records that chain from it: a run
stopped between the commit and the head write. ``misync audit export`` writes every
field, so the recipe above can be re-computed with any sha256 tool.

With ``[state] url`` the same chain lives in PostgreSQL (``connector.audit.postgres``):
the same records and hashes, the head anchor in a table.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import hmac
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from connector.errors import ExitCode, MisyncError

GENESIS = "0" * 64

#: What ``config check``, ``audit verify`` and every apply run say when no key is set.
UNKEYED_WARNING = (
    "audit.key_file is not set: whoever can write the state folder can rebuild and re-hash "
    "the whole audit trail, head file included, and `audit verify` cannot tell; set "
    "audit.key_file (a key outside state.dir, e.g. systemd LoadCredential=) and keep the "
    "audit_seq/audit_head of each run.finished event off this host (journald forwarding) "
    "for `audit verify --anchor SEQ:HASH`"
)
BUSY_TIMEOUT_MS = 30_000


class AuditError(MisyncError):
    """The audit trail cannot be used as asked (exit 3)."""

    exit_code = ExitCode.UNAVAILABLE


class AuditIntegrityError(AuditError):
    """The trail does not match its head anchor: appending would hide tampering.

    The run must stop; an operator runs ``misync audit verify`` and investigates."""

    exit_code = ExitCode.TAMPERED


class AuditWriteError(AuditError):
    """A record could not be written (disk full, read-only folder, I/O error).

    The cause is SQLite's or the OS's own words (``database or disk is full``). A run
    that meets it stops: a change that cannot be audited must not count as done."""

    exit_code = ExitCode.AUDIT_WRITE


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open. SQLite ends the transaction itself on
    some errors (SQLITE_FULL, SQLITE_IOERR); a second rollback would then raise "cannot
    rollback - no transaction is active" and hide the real cause."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("rollback")


def canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(seq: int, at: str, kind: str, run_id: str, data: str, prev: str) -> str:
    body = "\n".join([str(seq), at, kind, run_id, data, prev])
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def head_mac(key: bytes, seq: int, hash_: str) -> str:
    """HMAC-SHA256 of ``"seq:hash"``, hex: what a keyed head file stores as ``mac``."""
    return hmac.new(key, f"{seq}:{hash_}".encode(), hashlib.sha256).hexdigest()


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
    warnings: tuple[str, ...] = ()
    anchor_behind: int = 0  # records committed after the head anchor (a stopped run)


class AuditTrail:
    """The trail in SQLite, with its head anchor file. The chain rules (the anchor check
    before an append, ``verify``, ``export``) use storage only through ``_flock``,
    ``_last``, ``_records``, ``_records_from``, ``_head_body`` and ``_write_head``;
    ``connector.audit.postgres.PgAuditTrail`` replaces those (and ``append_many``,
    ``check``, ``run_records``, ``audited_journal_entries``) to keep the same chain in
    PostgreSQL."""

    def __init__(self, path: Path, key: bytes | None = None, *, read_only: bool = False) -> None:
        """Open (and create) the trail for appending, or with ``read_only`` open it for
        ``verify`` and ``export`` only, writing nothing at all: no folder, file, lock,
        journal mode or table is created, so an auditor's copy on read-only storage
        (or a folder that must not change) can be checked."""
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        self.lock_path = path.with_name(path.name + ".lock")
        self.name = str(path)  # where the records are, for messages
        self.head_name = str(self.head_path)  # where the head anchor is
        self._key = key
        self._lock = threading.RLock()
        self.read_only = read_only
        if read_only:
            self._db = _open_read_only(path)
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute(f"pragma busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.execute("pragma synchronous=full")
        # Switching a new file to WAL does not wait on busy_timeout: serialize the setup.
        with self._flock(exclusive=True):
            self._db.execute("pragma journal_mode=wal")
            self._db.execute(
                "create table if not exists records (seq integer primary key, at text not "
                "null, kind text not null, run_id text not null, data text not null, prev "
                "text not null, hash text not null)"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _flock(self, exclusive: bool) -> Iterator[None]:
        """Serialize with other processes: appends hold it exclusively across the database
        commit and the head write, verify holds it shared to read both as one state."""
        flags = os.O_RDONLY if self.read_only else os.O_CREAT | os.O_RDWR
        try:
            fd = os.open(self.lock_path, flags, 0o600)
        except OSError:
            if exclusive:
                raise
            yield  # a read-only copy handed to an auditor: nobody appends to it
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

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
        """Append records in one transaction, then move the head anchor to the last one.

        Raises :class:`AuditIntegrityError`, appending nothing, if the database no longer
        ends where the head anchor says (truncated, emptied, an older copy put back, or
        the head file missing, corrupt or not signed by the key), and
        :class:`AuditWriteError` naming the cause if the records or the head could not be
        written (if only the head failed, the records are committed and the head is
        behind, which the next append or ``verify`` recognises)."""
        if self.read_only:
            raise AuditError(f"audit trail {self.path} is open read-only (verify, export)")
        stamp = (at or datetime.now(UTC)).astimezone(UTC).isoformat()
        todo = [(kind, canonical(data)) for kind, data in items]
        if not todo:
            return None
        try:
            with self._lock, self._flock(exclusive=True):
                try:
                    self._db.execute("begin immediate")
                    seq, prev = self._check_before_append()
                    rows = []
                    for kind, text in todo:
                        seq += 1
                        h = record_hash(seq, stamp, kind, run_id, text, prev)
                        rows.append((seq, stamp, kind, run_id, text, prev, h))
                        prev = h
                    self._db.executemany("insert into records values (?, ?, ?, ?, ?, ?, ?)", rows)
                    self._db.execute("commit")
                except BaseException:
                    _rollback(self._db)
                    raise
                last = AuditRecord(*rows[-1])
                self._write_head(last.seq, last.hash, last.at)
        except (sqlite3.Error, OSError) as exc:
            raise AuditWriteError(
                f"audit trail {self.path}: cannot append {len(todo)} record(s): {_cause(exc)}"
            ) from exc
        return last

    def check(self) -> None:
        """Raise :class:`AuditIntegrityError` now if an append would be refused, so that a
        run stops before it changes anything rather than halfway through."""
        with self._lock, self._flock(exclusive=True):
            self._db.execute("begin immediate")
            try:
                self._check_before_append()
            finally:
                _rollback(self._db)

    def _check_before_append(self) -> tuple[int, str]:
        """The database's last (seq, hash), if it still matches the head anchor."""
        last_seq, last_hash = self._last()
        try:
            anchor = self._read_head()
        except AuditIntegrityError as exc:
            raise AuditIntegrityError(f"{exc}; {_INVESTIGATE}") from exc
        if anchor is None:
            if last_seq:
                raise AuditIntegrityError(
                    f"audit trail {self.name} has {last_seq} records but no head anchor "
                    f"{self.head_name}; {_INVESTIGATE}"
                )
            # A brand-new trail. Anchor it at the genesis first, so that a stop between
            # the first commit and the first head write reads as "head behind".
            self._write_head(0, GENESIS, "")
            return last_seq, last_hash
        a_seq, a_hash = anchor
        if (a_seq, a_hash) == (last_seq, last_hash):
            return last_seq, last_hash
        if a_seq < last_seq:
            problems = self._continuation_problems(a_seq, a_hash)
            if not problems:
                return last_seq, last_hash  # a run stopped before its head write: catch up
            detail = problems[0]
        elif a_seq > last_seq:
            detail = (
                f"the head anchor says seq {a_seq}, the database ends at seq {last_seq} "
                "(truncated, emptied or an older copy restored)"
            )
        else:
            detail = f"seq {a_seq}: the head anchor has another hash (rewritten)"
        raise AuditIntegrityError(
            f"audit trail {self.name} does not match its head anchor: {detail}; {_INVESTIGATE}"
        )

    def _continuation_problems(self, a_seq: int, a_hash: str) -> list[str]:
        """Why the records after the head anchor are not a valid continuation of it."""
        recs = self._records_from(a_seq)
        if a_seq == 0:
            if a_hash != GENESIS:
                return ["the head anchor at seq 0 has another hash than the genesis"]
            prev, expected = GENESIS, 1
        else:
            if not recs or recs[0].seq != a_seq:
                return [f"seq {a_seq}: the record the head anchor names is missing"]
            if recs[0].hash != a_hash:
                return [f"seq {a_seq}: the head anchor has another hash (rewritten)"]
            prev, expected = a_hash, a_seq + 1
            recs = recs[1:]
        for rec in recs:
            if (
                rec.seq != expected
                or rec.prev != prev
                or record_hash(rec.seq, rec.at, rec.kind, rec.run_id, rec.data, rec.prev)
                != rec.hash
            ):
                return [f"seq {rec.seq}: does not chain from the head anchor at seq {a_seq}"]
            prev, expected = rec.hash, rec.seq + 1
        return []

    def _records_from(self, seq: int) -> list[AuditRecord]:
        """The records from ``seq`` on, in seq order."""
        rows = self._db.execute("select * from records where seq >= ? order by seq", (seq,))
        return [AuditRecord(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def _head_body(self) -> Any:
        """The stored head anchor, parsed (``{"seq", "hash", "at", "mac"?}``); None if
        there is none. Raises ``ValueError`` if it cannot be parsed."""
        try:
            text = self.head_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return json.loads(text)

    def _read_head(self) -> tuple[int, str] | None:
        """The head anchor's (seq, hash), its mac checked; None if there is none."""
        try:
            body = self._head_body()
            if body is None:
                return None
            seq, hash_ = int(body["seq"]), str(body["hash"])
            mac = body.get("mac")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AuditIntegrityError(f"head anchor {self.head_name} is corrupt") from exc
        if self._key is not None:
            if not isinstance(mac, str):
                raise AuditIntegrityError(
                    f"head anchor {self.head_name} carries no mac, but audit.key_file is set"
                )
            if not hmac.compare_digest(mac, head_mac(self._key, seq, hash_)):
                raise AuditIntegrityError(
                    f"head anchor {self.head_name}: its mac does not match audit.key_file "
                    "(forged, or another key)"
                )
        return seq, hash_

    def _write_head(self, seq: int, hash_: str, at: str) -> None:
        """Replace the head file atomically: a unique temporary file in the same folder,
        fsynced, renamed over the head, then the folder fsynced."""
        body: dict[str, Any] = {"seq": seq, "hash": hash_, "at": at}
        if self._key is not None:
            body["mac"] = head_mac(self._key, seq, hash_)
        folder = self.head_path.parent
        prefix = f".{self.head_path.name}."
        for stale in folder.glob(f"{prefix}*.tmp"):  # left by a process killed mid-write;
            stale.unlink(missing_ok=True)  # safe: every writer holds the exclusive flock
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(body))
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).replace(self.head_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def audited_journal_entries(self, after_seq: int) -> dict[int, int]:
        """Journal entry id -> seq of the ``operation`` records after ``after_seq`` that
        name one (``data.journal``): how crash recovery tells an entry whose record was
        committed (the run stopped before closing it) from one that was never audited."""
        with self._lock:
            rows = self._db.execute(
                "select seq, data from records where seq > ? and kind = 'operation' order by seq",
                (after_seq,),
            ).fetchall()
        out: dict[int, int] = {}
        for seq, data in rows:
            entry = json.loads(data).get("journal")
            if isinstance(entry, int):
                out[entry] = int(seq)
        return out

    def head(self) -> tuple[int, str]:
        with self._lock:
            return self._last()

    def _records(self) -> list[AuditRecord]:
        with self._lock:
            if (
                self.read_only
                and not self._db.execute(
                    "select 1 from sqlite_master where type = 'table' and name = 'records'"
                ).fetchone()
            ):
                return []  # a trail created but never written to
            rows = self._db.execute("select * from records order by rowid").fetchall()
        return [AuditRecord(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def run_records(self, run_id: str) -> list[AuditRecord]:
        """Every record one run appended, in order (to re-render its report)."""
        with self._lock:
            rows = self._db.execute(
                "select * from records where run_id = ? order by rowid", (run_id,)
            ).fetchall()
        return [AuditRecord(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def verify(self, anchor: tuple[int, str] | None = None) -> VerifyResult:
        """Re-compute the chain and compare it with the head anchor file.

        ``anchor`` is an external (seq, hash), e.g. ``audit_seq``/``audit_head`` of a
        ``run.finished`` log event: record ``seq`` must exist with that hash."""
        with self._flock(exclusive=False):  # the database and the head as one state
            records = self._records()
            try:
                head = self._read_head()
                head_error = ""
            except AuditIntegrityError as exc:
                head, head_error = None, str(exc)
        problems, broken = _chain_problems(records)
        warnings: list[str] = []
        last_seq, last_hash = (records[-1].seq, records[-1].hash) if records else (0, GENESIS)
        by_seq = {rec.seq: rec.hash for rec in records}
        behind = 0
        if head_error:
            problems.append(head_error)
        elif head is None:
            if records:
                problems.append(f"head anchor {self.head_name} is missing")
        else:
            problem, behind = _head_problem(head, by_seq, last_seq, last_hash, broken)
            if problem:
                problems.append(problem)
            elif behind:
                warnings.append(
                    f"the head anchor is {behind} record(s) behind (a run stopped between "
                    "commit and anchor); the next run brings it up to date"
                )
        if anchor is not None:
            problem = _anchor_problem(anchor, by_seq, last_seq)
            if problem:
                problems.append(problem)
        elif not records:
            warnings.append(
                "the trail is empty: an empty trail (or one deleted with its head file) can "
                "only be checked against an anchor kept elsewhere (--anchor SEQ:HASH, from "
                "the audit_seq and audit_head of a run.finished log event)"
            )
        return VerifyResult(
            not problems,
            len(records),
            last_seq,
            last_hash,
            tuple(problems),
            tuple(warnings),
            behind,
        )

    def export(
        self,
        out: TextIO,
        fmt: str = "csv",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Write the records for auditors (``EXPORT_COLUMNS``; README, "audit export").

        JSONL: one object per record, ``data`` a JSON object. Its canonical text
        (``canonical``: keys sorted, no spaces, UTF-8) is the exact string that was
        hashed. CSV: the columns auditors filter on, taken from ``data``, then the
        hashes, then ``data`` exactly as hashed, as the last column."""
        writer = csv.writer(out) if fmt == "csv" else None
        if writer is not None:
            writer.writerow(EXPORT_COLUMNS)
        n = 0
        for rec in self._records():
            at = datetime.fromisoformat(rec.at)
            if (since and at < since) or (until and at > until):
                continue
            data = _loads(rec.data)
            if writer is not None:
                columns = _filter_columns(data)
                writer.writerow(
                    [rec.seq, rec.at, rec.kind, rec.run_id, *columns, rec.prev, rec.hash, rec.data]
                )
            else:
                body = {
                    "seq": rec.seq,
                    "at": rec.at,
                    "kind": rec.kind,
                    "run_id": rec.run_id,
                    "data": data if data is not None else rec.data,
                    "prev": rec.prev,
                    "hash": rec.hash,
                }
                out.write(json.dumps(body, ensure_ascii=False) + "\n")
            n += 1
        return n


#: the CSV columns of ``audit export``: the record's own, those auditors filter on (from
#: its data; empty where a kind has none), the hashes, and the data exactly as hashed
EXPORT_COLUMNS = (
    "seq",
    "at",
    "kind",
    "run_id",
    "op",
    "person_id",
    "account_id",
    "outcome",
    "code",
    "reason_codes",
    "prev",
    "hash",
    "data",
)


def _loads(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _filter_columns(data: dict[str, Any] | None) -> list[str]:
    """op, person_id, account_id, outcome, code, reason_codes of one record's data.

    ``outcome`` is an operation's outcome, a run's or a decision's status, a breach's or
    an alert's state; ``reason_codes`` the codes of its reasons, space-separated."""
    if data is None:
        return [""] * 6

    def text(key: str) -> str:
        value = data.get(key)
        return "" if value is None or isinstance(value, dict | list) else str(value)

    reasons = data.get("reasons")
    if isinstance(reasons, list):
        codes = [str(r.get("code", "")) for r in reasons if isinstance(r, dict)]
    elif isinstance(reasons, str):  # a breach record: "separated,late_notice_disable"
        codes = [c for c in reasons.split(",") if c]
    else:
        codes = []
    outcome = text("outcome") or text("status") or text("state")
    return [
        text("op"),
        text("person_id"),
        text("account_id"),
        outcome,
        text("code"),
        " ".join(c for c in codes if c),
    ]


def _open_read_only(path: Path) -> sqlite3.Connection:
    """Open ``path`` without writing anything, even where nothing may be written.

    ``mode=ro`` reads a WAL database with its ``-wal`` and ``-shm`` files. A copy taken
    after the writer closed has neither, and SQLite then needs to create the ``-shm``
    file, which a read-only folder refuses: such a copy is complete in its main file
    and is opened ``immutable``. A copy with a ``-wal`` file that cannot be read
    that way is refused: opened immutable, its newest records would be missed."""
    if not path.exists():  # no trail yet: an empty one, created by nobody
        return sqlite3.connect(":memory:", check_same_thread=False)
    uri = f"file:{quote(str(path.resolve()))}"
    try:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
        db.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise AuditError(
                f"cannot read {path} read-only with its write-ahead log {wal.name} ({exc}); "
                "copy the whole state folder (with its -wal and -shm files) to storage "
                "where SQLite can read it, or copy it while no misync run is writing"
            ) from exc
        db = sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
    return db


_INVESTIGATE = "nothing was appended; run `misync audit verify` and investigate"


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


def _chain_problems(records: list[AuditRecord]) -> tuple[list[str], list[int]]:
    """What breaks the chain (gaps, links, edited content), and the seqs where it breaks."""
    problems: list[str] = []
    broken: list[int] = []
    prev = GENESIS
    expected_seq = 1
    for rec in records:
        n = len(problems)
        if rec.seq != expected_seq:
            problems.append(
                f"seq {rec.seq}: expected seq {expected_seq} (record missing or reordered)"
            )
        if rec.prev != prev:
            problems.append(f"seq {rec.seq}: does not chain to the previous record")
        if record_hash(rec.seq, rec.at, rec.kind, rec.run_id, rec.data, rec.prev) != rec.hash:
            problems.append(f"seq {rec.seq}: content does not match its hash (edited)")
        if len(problems) > n:
            broken.append(rec.seq)
        prev = rec.hash
        expected_seq = rec.seq + 1
    return problems, broken


def _head_problem(
    head: tuple[int, str],
    by_seq: Mapping[int, str],
    last_seq: int,
    last_hash: str,
    broken: list[int],
) -> tuple[str, int]:
    """(what is wrong with the head anchor or "", how many records it is behind). A head
    behind by records that chain from it is a run stopped between commit and anchor."""
    a_seq, a_hash = head
    if a_seq > last_seq:
        return (
            f"seq {last_seq}: the head anchor says seq {a_seq} hash {a_hash[:16]}…, the "
            f"trail ends at seq {last_seq} hash {last_hash[:16]}… (truncated, emptied "
            "or an older copy restored)",
            0,
        )
    if by_seq.get(a_seq, GENESIS if a_seq == 0 else None) != a_hash:
        return (
            f"seq {a_seq}: the head anchor says hash {a_hash[:16]}…, the trail has "
            f"{by_seq.get(a_seq, 'no such record')[:16]}… (rewritten)",
            0,
        )
    if a_seq < last_seq and not any(seq > a_seq for seq in broken):
        return "", last_seq - a_seq
    return "", 0


def _anchor_problem(anchor: tuple[int, str], by_seq: Mapping[int, str], last_seq: int) -> str:
    """What is wrong with the trail against an anchor kept elsewhere, or ""."""
    x_seq, x_hash = anchor
    if x_seq not in by_seq:
        return (
            f"the external anchor names seq {x_seq} hash {x_hash[:16]}…, the trail "
            f"ends at seq {last_seq} (truncated, emptied or an older copy restored)"
        )
    if by_seq[x_seq] != x_hash:
        return (
            f"seq {x_seq}: the external anchor says hash {x_hash[:16]}…, the trail has "
            f"{by_seq[x_seq][:16]}… (rewritten)"
        )
    return ""
