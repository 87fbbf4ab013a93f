"""The state folder as an operating condition: read-only, full, missing, damaged.

SQLite and the file system report these as ``sqlite3.OperationalError`` and ``OSError``.
They are not bugs: an operator fixes them (free space, a writable mount, a restored
copy), so the command says what happened, to which folder, and exits 3, without a
traceback. :func:`state_condition` recognizes them at the command's edge; any other
error is still a bug.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from connector.errors import ExitCode, MisyncError

#: SQLite primary result codes that are conditions of the storage, not of the code.
_SQLITE: dict[int, str] = {
    3: "permission denied",  # SQLITE_PERM
    8: "the state folder is read-only",  # SQLITE_READONLY
    10: "the disk could not be read or written (I/O error)",  # SQLITE_IOERR
    11: "a state database is damaged",  # SQLITE_CORRUPT
    13: "the disk is full",  # SQLITE_FULL
    # SQLITE_CANTOPEN
    14: "a state database cannot be opened (missing, unreadable, or its folder read-only)",
    26: "a state file is not a SQLite database",  # SQLITE_NOTADB
}
_OS: dict[int, str] = {
    errno.EROFS: "the state folder is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "the disk could not be read or written (I/O error)",
}


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or during, innermost cause last. A failed
    rollback ("no transaction is active") must not hide the disk that was full."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def state_condition(exc: BaseException, state_dir: Path) -> str | None:
    """One line saying what is wrong with ``state_dir``, if ``exc`` is such a condition."""
    found: str | None = None
    for e in reversed(_chain(exc)):  # the root cause first
        if isinstance(e, sqlite3.Error):
            code = getattr(e, "sqlite_errorcode", None)
            what = _SQLITE.get(code & 0xFF) if isinstance(code, int) else None
            if what:
                found = f"{what} ({e})"
                break
        elif isinstance(e, OSError) and e.errno in _OS:
            name = e.filename
            if name is None or _inside(Path(str(name)), state_dir):
                found = f"{_OS[e.errno]} ({e.strerror}: {name or state_dir})"
                break
    if found is None:
        return None
    # SQLite often reports a full or read-only disk as an I/O or open error: say what the
    # file system says, which is what the operator has to fix.
    try:
        fs = os.statvfs(state_dir)
    except OSError:
        return f"state folder {state_dir}: {found}"
    if fs.f_flag & os.ST_RDONLY:
        found = f"it is on a read-only file system ({found})"
    elif fs.f_bavail == 0:
        found = f"the disk is full, no space left ({found})"
    return f"state folder {state_dir}: {found}"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


class StateUnavailableError(MisyncError):
    """The state database cannot be reached or opened (PostgreSQL down, refused, wrong
    password, TLS failure): an operating condition, exit 3, not a bug."""

    exit_code = ExitCode.UNAVAILABLE
    temporary = True


class FencedError(MisyncError):
    """A journal write under a leader epoch that is no longer the current one: another
    host took over (issue 17). The writer must stop and step down; nothing it would do
    after this may touch the directory, so it is never retried."""

    exit_code = ExitCode.BUSY
    temporary = False
