"""Watch the feed folder by polling: size and mtime of each watched file, and a hash when
those move (so a touch without a change, or a copy of the same bytes, is no change).

A change is reported once it has *settled*: the new content must be seen unchanged on
the next poll (the run it starts reads the file only once it has settled anyway:
connector.feeds.settle).

The baseline a change is measured against is what the last run actually evaluated
(``baseline``: the digests of the files it parsed, set by the daemon after every
evaluation), not what the first poll happened to see: a row appended between a run's
read and the next poll is a change. Without any baseline (no run yet, nothing recorded)
the first poll takes one.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Stamp:
    size: int
    mtime_ns: int
    digest: str  # sha256 of the content; "" for a missing file


MISSING = Stamp(-1, -1, "")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class FeedWatcher:
    """``poll()`` returns the names of the watched files whose content changed and has
    settled since the last report. The first poll only takes the baseline."""

    def __init__(self, files: Iterable[Path]) -> None:
        self._files = tuple(files)
        self._seen: dict[Path, Stamp] = {}  # as of the last poll
        self._reported: dict[Path, str] = {}  # digest as of the last report (or baseline)
        self._primed = False
        self._lock = threading.Lock()  # poll (watch job) and baseline (after a run)

    def baseline(self, digests: Mapping[Path, str]) -> None:
        """What a run just evaluated: path -> sha256 of the bytes it parsed ("" or no
        entry: it read nothing there, e.g. a missing file). A file that differs from it
        is reported once it has settled."""
        with self._lock:
            for path in self._files:
                self._reported[path] = digests.get(path, "")
            self._primed = True

    def _stamp(self, path: Path) -> Stamp:
        try:
            st = path.stat()
        except FileNotFoundError:
            return MISSING
        old = self._seen.get(path)
        if old is not None and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return old  # unchanged metadata: no need to read it again
        try:
            return Stamp(st.st_size, st.st_mtime_ns, _digest(path))
        except OSError:
            return MISSING

    def poll(self) -> list[str]:
        changed: list[str] = []
        stamps = {path: self._stamp(path) for path in self._files}  # outside the lock
        with self._lock:
            for path, now in stamps.items():
                before = self._seen.get(path)
                self._seen[path] = now
                if not self._primed:
                    self._reported[path] = now.digest
                    continue
                settled = before is not None and before.digest == now.digest
                if settled and self._reported.get(path, "") != now.digest:
                    self._reported[path] = now.digest
                    changed.append(os.fspath(path.name))
            self._primed = True
        return changed
