"""Never read a feed file caught mid-write.

A feed job that writes a file in place (or in two halves, with a pause) leaves, for a
moment, a shorter file that may still be valid CSV: cut at a line boundary, it reads
as a roster in which the rest of the people have left. Every run reads the feeds
through ``read_feeds``, which applies this rule to each file:

1. **Changed since last evaluated?** The state store keeps the stamp (path, size,
   mtime in ns, sha256 of the bytes parsed) of every file the last run evaluated. A
   file with the same path, size and mtime is the file already evaluated: it is read
   at once.
2. **Settle.** Otherwise the file is read only once it has been unchanged for
   ``feeds.settle_seconds``: its mtime is at least that old, or its size, mtime and
   inode have not moved for that long while watched (the second also covers an mtime
   in the future: a skewed clock on a file server). The wait is bounded by
   ``feeds.settle_max_seconds`` for the whole read of the eight feeds; a file still
   changing then is not read at all and the feed is unusable for that run ("still
   being written"), which holds what it drives, as any unusable feed does.
3. **Re-check after the read.** The file is stat'ed before it is opened and again
   after it was parsed; if its size, mtime or inode moved (written or replaced during
   the read) and its bytes now differ from the bytes parsed, what was parsed is
   thrown away and the file is read again once it has settled, within the same bound.

So the records of a run are always those of one whole version of each file, and a
version that was still being written is never one of them.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from connector.model.feeds import FileStamp

#: How often a settling file is looked at again (seconds, at most).
POLL = 0.2

StatKey = tuple[int, int, int, int]  # size, mtime_ns, inode, device


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def unchanged_since(seen: FileStamp | None, path: Path, st: os.stat_result) -> bool:
    """The file is the one ``seen`` describes (same path, size and mtime)."""
    return (
        seen is not None
        and seen.path == os.fspath(path)
        and (seen.size, seen.mtime_ns) == (st.st_size, st.st_mtime_ns)
    )


def file_digest(path: Path) -> str:
    """The sha256 of the file's bytes now ("" if it cannot be read)."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return ""
    return h.hexdigest()


def wait_settled(
    path: Path,
    st: os.stat_result,
    window: float,
    deadline: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> os.stat_result | None:
    """Wait until ``path`` has been unchanged for ``window`` seconds; its stat then, or
    None when ``deadline`` (``time.monotonic()``) passed first. A file that disappears
    counts as settled (the read reports it missing)."""
    watched_since = time.monotonic()
    last = stat_key(st)
    while True:
        now = time.monotonic()
        age = time.time() - st.st_mtime_ns / 1e9
        quiet = now - watched_since
        if age >= window or quiet >= window:
            return st
        if now >= deadline:
            return None
        sleep(max(min(POLL, window - max(age, quiet), deadline - now), 0.01))
        try:
            st = path.stat()
        except FileNotFoundError:
            return st
        if stat_key(st) != last:
            last, watched_since = stat_key(st), time.monotonic()
