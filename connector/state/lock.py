"""One run at a time per state folder: an exclusive ``flock`` on ``misync.lock``.

Two applies on one state folder would each plan from the same snapshot and write the
same accounts, and each would take the other's open journal entries for a crash. The
lock is advisory, held by the process for the whole run, and released by the kernel
when the process ends (so a crash never leaves it stuck).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from connector.errors import ExitCode, MisyncError


class StateBusyError(MisyncError):
    """Another misync process holds the state folder (exit 7; try again later)."""

    exit_code = ExitCode.BUSY
    temporary = True


@contextmanager
def state_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "misync.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            raise StateBusyError(
                f"{path}: another misync run holds the state folder (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
