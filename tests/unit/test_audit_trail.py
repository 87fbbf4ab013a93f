"""The audit trail's head anchor: appending never launders tampering, a run stopped
between commit and anchor is told apart from tampering, concurrent appends serialize,
an external anchor (``audit verify --anchor``) and the optional keyed head."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector import cli
from connector.audit import AuditError, AuditIntegrityError, AuditTrail, head_mac, record_hash

T0 = datetime(2026, 11, 25, 17, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]

# A process that appends one record and is killed between the commit and the head write
# (the genesis anchor of a brand-new trail, seq 0, is still written).
CRASH = """
import os, sys
from pathlib import Path
from connector.audit import trail as m
real = m.AuditTrail._write_head
def write_head(self, seq, hash_, at):
    if seq == 0:
        return real(self, seq, hash_, at)
    os._exit(9)
m.AuditTrail._write_head = write_head
m.AuditTrail(Path(sys.argv[1])).append("run", {"status": "ok"}, run_id="killed")
"""

APPENDER = """
import sys
from pathlib import Path
from connector.audit import AuditTrail
with AuditTrail(Path(sys.argv[1])) as t:
    for i in range(int(sys.argv[3])):
        t.append("operation", {"worker": sys.argv[2], "n": i}, run_id=sys.argv[2])
"""


@dataclass(frozen=True)
class Trail:
    path: Path
    hashes: dict[int, str]  # seq -> hash, as written before any tampering

    @property
    def head(self) -> Path:
        return self.path.with_name(self.path.name + ".head")


@pytest.fixture
def trail(tmp_path: Path) -> Trail:
    path = tmp_path / "state" / "audit.sqlite3"
    with AuditTrail(path) as t:
        t.append_many([("operation", {"n": i}) for i in range(1, 6)], run_id="r1", at=T0)
        hashes = {r.seq: r.hash for r in t._records()}
    return Trail(path, hashes)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "misync.toml"
    mapping = ROOT / "mappings" / "openldap-ppolicy.toml"
    cfg.write_text(
        f'[target]\nkind = "ldap"\nmapping = "{mapping}"\n'
        '[target.ldap]\nbase_dn = "ou=people,dc=x"\ngroup_base_dn = "ou=groups,dc=x"\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n',
        encoding="utf-8",
    )
    return cfg


def verify_cli(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["-c", str(config), "audit", "verify", *extra])
    return code, capsys.readouterr().out


def _sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def _crash(t: Trail) -> None:
    proc = subprocess.run([sys.executable, "-c", CRASH, str(t.path)], check=False)
    assert proc.returncode == 9


def _restore_older_copy(t: Trail) -> None:
    old = t.path.with_name("old.sqlite3")
    with sqlite3.connect(t.path) as live, sqlite3.connect(old) as copy:
        live.backup(copy)
    with AuditTrail(t.path) as a:  # two more normal records: the head moves to seq 7
        a.append_many([("operation", {"n": 6}), ("operation", {"n": 7})], run_id="r2")
    with sqlite3.connect(old) as copy, sqlite3.connect(t.path) as live:
        copy.backup(live)  # the backup of seq 1..5 put back over the live database


def _forge_continuation(t: Trail) -> None:
    """A record after the head that does not chain from it (prev is the genesis)."""
    row = (6, "x", "operation", "r9", "{}", "0" * 64)
    with sqlite3.connect(t.path) as db:
        db.execute("insert into records values (?, ?, ?, ?, ?, ?, ?)", (*row, record_hash(*row)))


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _rewrite_head(t: Trail) -> None:
    _write(t.head, f'{{"seq": 5, "hash": "{"a" * 64}", "at": ""}}')


def _delete_everything(t: Trail) -> None:
    _sql(t.path, "delete from records")
    t.head.unlink()


@dataclass(frozen=True)
class Case:
    tamper: Callable[[Trail], None]
    exit: int  # of `audit verify` after the tampering (0 intact, 6 altered)
    message: str  # a line `audit verify` prints
    append: str  # "refused" (AuditIntegrityError) or "accepted"
    exit_after: int  # of `audit verify` after the append attempt: never laundered
    anchor: tuple[int, bool] | None = None  # --anchor SEQ:HASH (genuine hash or not)


CASES: dict[str, Case] = {
    "untouched": Case(lambda t: None, 0, "intact: 5 records", "accepted", 0),
    "edit a record": Case(
        lambda t: _sql(t.path, "update records set data = '{\"n\":9}' where seq = 3"),
        6,
        "seq 3: content does not match its hash",
        "accepted",
        6,
    ),
    "delete a record": Case(
        lambda t: _sql(t.path, "delete from records where seq = 3"),
        6,
        "seq 4: expected seq 3",
        "accepted",
        6,
    ),
    "swap two records": Case(
        lambda t: _sql(
            t.path,
            "update records set seq = 100 where seq = 2",
            "update records set seq = 2 where seq = 3",
            "update records set seq = 3 where seq = 100",
        ),
        6,
        "does not chain",
        "accepted",
        6,
    ),
    "truncate tail then append": Case(
        lambda t: _sql(t.path, "delete from records where seq = 5"),
        6,
        "the head anchor says seq 5",
        "refused",
        6,
    ),
    "restore an older copy then append": Case(
        _restore_older_copy, 6, "the head anchor says seq 7", "refused", 6
    ),
    "delete all records, keep the head": Case(
        lambda t: _sql(t.path, "delete from records"),
        6,
        "the head anchor says seq 5",
        "refused",
        6,
    ),
    "delete all records and the head, verify --anchor": Case(
        _delete_everything,
        6,
        "the external anchor names seq 5",
        "accepted",
        6,
        anchor=(5, True),
    ),
    "delete all records and the head, no anchor": Case(
        _delete_everything,
        0,
        "can only be checked against an anchor kept elsewhere",
        "accepted",
        0,
    ),
    "delete the head": Case(lambda t: t.head.unlink(), 6, "is missing", "refused", 6),
    "corrupt the head": Case(lambda t: _write(t.head, "{"), 6, "is corrupt", "refused", 6),
    "rewrite the head": Case(_rewrite_head, 6, "the head anchor says hash aaaa", "refused", 6),
    "head behind by one after a crash": Case(
        _crash, 0, "the head anchor is 1 record(s) behind", "accepted", 0
    ),
    "forged record after the head": Case(
        _forge_continuation, 6, "seq 6: does not chain", "refused", 6
    ),
    "--anchor at an earlier record": Case(
        lambda t: None, 0, "intact: 5 records", "accepted", 0, anchor=(3, True)
    ),
    "--anchor with another hash": Case(
        lambda t: None,
        6,
        "seq 3: the external anchor says hash ffff",
        "accepted",
        6,
        anchor=(3, False),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_tampering_is_caught_and_never_laundered_by_the_next_append(
    trail: Trail, config: Path, capsys: pytest.CaptureFixture[str], case: Case
) -> None:
    """verify reports the tampering; the next append either refuses or leaves it visible."""
    case.tamper(trail)
    extra: list[str] = []
    if case.anchor is not None:
        seq, genuine = case.anchor
        extra = ["--anchor", f"{seq}:{trail.hashes[seq] if genuine else 'f' * 64}"]
    code, out = verify_cli(config, capsys, *extra)
    assert (code, case.message in out) == (case.exit, True), out
    with AuditTrail(trail.path) as t:
        if case.append == "refused":
            with pytest.raises(AuditIntegrityError, match="run `misync audit verify`"):
                t.append("run", {"status": "ok"}, run_id="next")
        else:
            t.append("run", {"status": "ok"}, run_id="next")
    code, out = verify_cli(config, capsys, *extra)
    assert code == case.exit_after, out
    assert "behind" not in out  # a stopped run is caught up by the next append


def test_refused_append_writes_nothing(trail: Trail) -> None:
    _sql(trail.path, "delete from records where seq = 5")
    before = trail.head.read_bytes()
    with AuditTrail(trail.path) as t:
        with pytest.raises(AuditIntegrityError, match="database ends at seq 4"):
            t.append_many([("run", {"a": 1}), ("run", {"a": 2})])
        assert t.head() == (4, trail.hashes[4])
    assert trail.head.read_bytes() == before
    assert issubclass(AuditIntegrityError, AuditError)


def test_a_crash_during_the_first_append_reads_as_head_behind(tmp_path: Path) -> None:
    """A new trail is anchored at the genesis (seq 0) before its first commit."""
    path = tmp_path / "audit.sqlite3"
    _crash(Trail(path, {}))
    with AuditTrail(path) as t:
        result = t.verify()
        assert (result.ok, result.records, result.anchor_behind) == (True, 1, 1)
        t.append("run", {"status": "ok"})
        assert (t.verify().ok, t.verify().anchor_behind, t.verify().warnings) == (True, 0, ())


def test_two_processes_appending_200_records_each_end_with_400_that_verify(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite3"
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(path), name, "200"])
        for name in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with AuditTrail(path) as t:
        result = t.verify()
        assert (result.ok, result.records, result.head_seq, result.warnings) == (
            True,
            400,
            400,
            (),
        )
        runs = [r.run_id for r in t._records()]
    assert (runs.count("a"), runs.count("b")) == (200, 200)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_append_waits_for_the_lock_and_sqlite_waits_when_busy(trail: Trail) -> None:
    """The lock file serializes appends across processes; busy_timeout covers the rest."""
    with AuditTrail(trail.path) as t:
        assert t._db.execute("pragma busy_timeout").fetchone()[0] == 30_000
        fd = os.open(t.lock_path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another process in mid-append would hold it
        done = threading.Event()

        def append() -> None:
            t.append("run", {})
            done.set()

        worker = threading.Thread(target=append)
        worker.start()
        time.sleep(0.3)
        assert not done.is_set()
        os.close(fd)
        worker.join(timeout=10)
        assert done.is_set()
        assert t.verify().head_seq == 6


@pytest.mark.parametrize("text", ["5", "0:" + "a" * 64, "5:" + "a" * 63, "5:" + "g" * 64])
def test_bad_anchor_is_a_usage_error(config: Path, text: str) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["-c", str(config), "audit", "verify", "--anchor", text])
    assert exc.value.code == 2


# -- keyed head (HMAC-SHA256 of "seq:hash") ---------------------------------------------

KEY = b"k" * 32


def _forge_head(key: bytes | None) -> Callable[[Trail], None]:
    """Truncate the tail and rewrite the head to match, signed with ``key`` (or unsigned)."""

    def tamper(t: Trail) -> None:
        _sql(t.path, "delete from records where seq = 5")
        mac = f', "mac": "{head_mac(key, 4, t.hashes[4])}"' if key else ""
        t.head.write_text(f'{{"seq": 4, "hash": "{t.hashes[4]}", "at": ""{mac}}}')

    return tamper


KEYED: dict[str, tuple[Callable[[Trail], None], str | None]] = {
    "untouched": (lambda t: None, None),
    "truncated, head rewritten without a mac": (_forge_head(None), "carries no mac"),
    "truncated, head signed with another key": (_forge_head(b"x" * 32), "does not match"),
}


@pytest.mark.parametrize(("tamper", "problem"), KEYED.values(), ids=KEYED.keys())
def test_keyed_head_catches_a_rewritten_head(
    tmp_path: Path, tamper: Callable[[Trail], None], problem: str | None
) -> None:
    path = tmp_path / "audit.sqlite3"
    with AuditTrail(path, key=KEY) as t:
        t.append_many([("operation", {"n": i}) for i in range(1, 6)], at=T0)
        hashes = {r.seq: r.hash for r in t._records()}
    tamper(Trail(path, hashes))
    with AuditTrail(path) as unkeyed:  # without the key, a consistent forgery passes
        assert unkeyed.verify().ok
    with AuditTrail(path, key=KEY) as t:
        result = t.verify()
        if problem is None:
            assert result.ok, result.problems
            t.append("run", {})
            assert t.verify().ok
        else:
            assert not result.ok
            assert any(problem in p for p in result.problems), result.problems
            with pytest.raises(AuditIntegrityError, match=problem):
                t.append("run", {})


def test_a_head_temp_file_left_by_a_killed_writer_is_removed(tmp_path: Path) -> None:
    """A SIGKILL between mkstemp and the rename leaves a temp file; the next write clears it."""
    with AuditTrail(tmp_path / "audit.sqlite3") as trail:
        trail.append("run", {"n": 1})
        stale = tmp_path / ".audit.sqlite3.head.abc123.tmp"
        stale.write_text("{}")
        trail.append("run", {"n": 2})
        assert not stale.exists()
        assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == []
        assert trail.verify().ok


def _folder(path: Path) -> dict[str, bytes]:
    """The folder's files and bytes, but SQLite's own -wal and -shm bookkeeping (a
    read-only connection on a writable folder may create them; the read-only copy
    test in tests/integration/test_state_conditions.py shows none are needed)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(path.iterdir())
        if not p.name.endswith(("-wal", "-shm"))
    }


def test_read_only_trail_writes_nothing_and_reads_a_live_write_ahead_log(tmp_path: Path) -> None:
    """verify/export open the trail read-only: not one file is created or changed, and
    records still only in the writer's -wal file (a copy taken while a run was open)
    are read."""
    path = tmp_path / "audit.sqlite3"
    writer = AuditTrail(path)
    writer.append("run", {"n": 1})
    writer._db.execute("pragma wal_autocheckpoint = 0")
    writer.append("run", {"n": 2})
    assert (tmp_path / "audit.sqlite3-wal").stat().st_size > 0
    before = _folder(tmp_path)
    with AuditTrail(path, read_only=True) as reader:
        checked = reader.verify()
        assert (checked.ok, checked.records) == (True, 2)
        with pytest.raises(AuditError, match="read-only"):
            reader.append("run", {"n": 3})
    assert _folder(tmp_path) == before
    writer.close()


def test_read_only_trail_of_a_closed_copy_and_of_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    with AuditTrail(path) as writer:
        writer.append("run", {"n": 1})
    assert not (tmp_path / "audit.sqlite3-wal").exists()  # checkpointed on close
    before = _folder(tmp_path)
    with AuditTrail(path, read_only=True) as reader:
        assert reader.verify().records == 1
    assert _folder(tmp_path) == before  # nothing created, nothing changed
    with AuditTrail(tmp_path / "missing" / "audit.sqlite3", read_only=True) as nothing:
        checked = nothing.verify()
        assert (checked.ok, checked.records) == (True, 0)
        assert "the trail is empty" in checked.warnings[0]
    assert not (tmp_path / "missing").exists()  # verify created nothing
