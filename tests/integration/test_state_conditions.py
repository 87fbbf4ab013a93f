"""A read-only or full state folder is an operating condition, not a bug: every command
says what is wrong with which folder and exits 3; `audit verify` and `audit export`
work on an auditor's read-only copy.

Two kinds of proof:

- real file systems: the commands run as a subprocess in a private mount namespace
  (``unshare -m``) on a tmpfs remounted read-only, or one filled to the last byte.
  Tests run as root, and root ignores permission bits, so a chmod'ed folder would
  prove nothing; a read-only mount holds for root. Skipped (saying so) where the
  sandbox does not allow mounts;
- real SQLite errors at the sqlite boundary, always: the state databases opened
  ``mode=ro`` (SQLite raises "attempt to write a readonly database") or with
  ``max_page_count`` at their current size (SQLite raises "database or disk is full").
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connector.state.sqlite import base as store_module
from tests.integration.test_end_to_end import demo, pinned_now, run

pytestmark = pytest.mark.slapd

__all__ = ["demo", "pinned_now"]  # fixtures, used by name

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def _mounts_allowed() -> bool:
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs tmpfs $d && umount $d"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def _in_mount_namespace(script: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("unshare") is None or not _mounts_allowed():
        pytest.skip("needs `unshare -m` and tmpfs mounts (root with CAP_SYS_ADMIN)")
    return subprocess.run(
        ["unshare", "-m", "bash", "-euc", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _config_with_state(demo: dict[str, Any], state: Path) -> Path:
    cfg: Path = demo["config"]
    text = cfg.read_text(encoding="utf-8")
    head, section, rest = text.partition("[state]\n")
    old = next(line for line in rest.splitlines() if line.startswith("dir = "))
    other = cfg.with_name("misync-copy.toml")
    other.write_text(head + section + rest.replace(old, f'dir = "{state}"', 1), encoding="utf-8")
    return other


def _cli(cfg: Path, *args: str) -> str:
    """A shell command running misync with this configuration; prints its exit code.
    The evaluation instant is not pinned here: these commands only read the state,
    or fail on it before any policy is evaluated."""
    argv = " ".join([sys.executable, "-m", "connector.cli", "-c", str(cfg), *args])
    return f'set +e; {argv} > "$OUT/{args[0]}-{len(args)}.out" 2>&1; echo "$?"; set -e'


def _records(state: Path) -> int:
    db = sqlite3.connect(state / "audit.sqlite3")
    try:
        return int(db.execute("select count(*) from records").fetchone()[0])
    finally:
        db.close()


def _applied(demo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> Path:
    code, _ = run(demo, "apply", capsys=capsys)
    assert code == 0
    state: Path = demo["tmp"] / "state"
    assert _records(state) > 0
    return state


def test_audit_verify_and_export_work_on_a_read_only_copy(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = _applied(demo, capsys)
    records = _records(state)
    copy, out = tmp_path / "auditor-copy", tmp_path / "out"
    copy.mkdir()
    out.mkdir()
    cfg = _config_with_state(demo, copy)
    proc = _in_mount_namespace(
        f"""
        OUT={out}
        mount -t tmpfs -o size=8m tmpfs {copy}
        cp -a {state}/. {copy}/
        mount -o remount,ro {copy}
        touch {copy}/probe 2>/dev/null && {{ echo "the copy is writable"; exit 9; }}
        echo "verify=$({_cli(cfg, "audit", "verify")})"
        echo "export=$({_cli(cfg, "audit", "export", "--format", "jsonl")})"
        echo "plan=$({_cli(cfg, "plan")})"
        echo "apply=$({_cli(cfg, "apply")})"
        """
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    codes = dict(line.split("=", 1) for line in proc.stdout.split())
    verify = (out / "audit-2.out").read_text()
    export = (out / "audit-4.out").read_text()
    assert codes["verify"] == "0", verify
    assert f"audit trail intact: {records} records" in verify
    assert codes["export"] == "0", export
    lines = [json.loads(x) for x in export.splitlines() if x.startswith("{")]
    assert [r["seq"] for r in lines] == list(range(1, records + 1))
    # the commands that must write say why they cannot, and exit 3 (no traceback)
    for command in ("plan", "apply"):
        text = (out / f"{command}-1.out").read_text()
        assert codes[command] == "3", text
        assert f"state folder {copy}: it is on a read-only file system" in text
        assert "internal error" not in text and "Traceback" not in text


def test_a_full_state_folder_stops_apply_with_exit_3_and_the_cause(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = _applied(demo, capsys)
    full, out = tmp_path / "full", tmp_path / "out"
    full.mkdir()
    out.mkdir()
    cfg = _config_with_state(demo, full)
    proc = _in_mount_namespace(
        f"""
        OUT={out}
        mount -t tmpfs -o size=2m tmpfs {full}
        cp -a {state}/. {full}/
        for db in {full}/*.sqlite3; do  # an empty write-ahead log: every write must grow it
            {sys.executable} -c "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('pragma wal_checkpoint(TRUNCATE)')" "$db"
        done
        dd if=/dev/zero of={full}/filler bs=4k 2>/dev/null || true
        echo "apply=$({_cli(cfg, "apply")})"
        echo "verify=$({_cli(cfg, "audit", "verify")})"
        """
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    codes = dict(line.split("=", 1) for line in proc.stdout.split())
    text = (out / "apply-1.out").read_text()
    assert codes["apply"] == "3", text
    assert f"state folder {full}: the disk is full" in text
    assert "internal error" not in text and "Traceback" not in text
    assert codes["verify"] == "0", (out / "audit-2.out").read_text()


# -- at the sqlite boundary: real SQLite errors, no mount needed ---------------------------


_REAL_CONNECT = sqlite3.connect


def _disk_full_error() -> sqlite3.OperationalError:
    """A real SQLITE_FULL, raised by SQLite itself on a database that may not grow."""
    scratch = _REAL_CONNECT(":memory:")
    try:
        scratch.execute("create table t(x)")
        scratch.execute("pragma max_page_count = 2")
        scratch.execute("insert into t values (randomblob(100000))")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorname != "SQLITE_FULL":
            raise
        return exc
    finally:
        scratch.close()
    raise AssertionError("SQLite did not refuse to grow")


class _FullDisk(sqlite3.Connection):
    """Every statement that writes fails as SQLite fails on a full disk."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if sql.lstrip().split(" ", 1)[0].lower() in ("insert", "update", "delete", "replace"):
            raise _disk_full_error()
        return super().execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        raise _disk_full_error()


def _connect_limited(how: str) -> Any:
    real = _REAL_CONNECT

    def connect(path: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if how == "full":
            return real(path, *args, factory=_FullDisk, **kwargs)
        db = real(path, *args, **kwargs)
        db.execute("pragma query_only = 1")  # writes: SQLITE_READONLY, as on a read-only disk
        return db

    return connect


@pytest.mark.parametrize(
    ("how", "says"),
    [("full", "the disk is full (database or disk is full)"), ("readonly", "attempt to write")],
)
def test_state_database_errors_are_exit_3_with_the_cause(
    demo: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    says: str,
) -> None:
    _applied(demo, capsys)  # the databases exist; the next run needs to write to them
    monkeypatch.setattr(store_module.sqlite3, "connect", _connect_limited(how))
    code, _ = run(demo, "apply", capsys=capsys)
    err = demo["last_err"]
    assert code == 3, err
    assert f"state folder {demo['tmp'] / 'state'}" in err and says in err
    assert "internal error" not in err
