"""One run at a time per state folder: an exclusive ``flock`` on ``misync.lock``.

With a PostgreSQL store the daemon that leads also marks its state folder
(``misync.leader``: its epoch and pid), so that a command run with the same folder on
the same host knows it may act under that epoch, between the daemon's runs
(``connector.runs.fence``).

Two applies on one state folder would each plan from the same snapshot and write the
same accounts, and each would take the other's open journal entries for a crash. The
lock is advisory, held by the process for the whole run, and released by the kernel
when the process ends (so a crash never leaves it stuck).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from connector.errors import ExitCode, MisyncError


class StateBusyError(MisyncError):
    """Another misync process holds the state folder (exit 7; try again later)."""

    exit_code = ExitCode.BUSY
    temporary = True


@contextmanager
def state_lock(directory: Path, *, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the state folder's lock; ``StateBusyError`` if another process holds it for
    longer than ``wait_seconds`` (0: do not wait)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "misync.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _take(fd, path, wait_seconds)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


LEADER_MARK = "misync.leader"


def mark_leader(directory: Path, epoch: int, pid: int) -> None:
    """The daemon leads under ``epoch``: say so in its state folder (replaced at once)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{LEADER_MARK}.tmp"
    tmp.write_text(f"{epoch} {pid}\n", encoding="ascii")
    tmp.replace(directory / LEADER_MARK)


def clear_leader_mark(directory: Path) -> None:
    """The daemon no longer leads (stepped down, stopped)."""
    (directory / LEADER_MARK).unlink(missing_ok=True)


def leader_mark(directory: Path) -> tuple[int, int] | None:
    """(epoch, pid) of the daemon that marked ``directory`` as leading, or None."""
    try:
        epoch, pid = (directory / LEADER_MARK).read_text(encoding="ascii").split()
        return int(epoch), int(pid)
    except (OSError, ValueError):
        return None


def _take(fd: int, path: Path, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                waited = f", waited {wait_seconds:g} s" if wait_seconds else ""
                raise StateBusyError(
                    f"{path}: another misync run holds the state folder (pid {holder}{waited})"
                ) from None
            time.sleep(0.1)
