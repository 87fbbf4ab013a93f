"""Watch the feed folder by polling: size and mtime of each watched file, and a hash when
those move (so a touch without a change, or a copy of the same bytes, is no change).

A change is reported once it has *settled*: the new content must be seen unchanged on
the next poll, so a file caught half-written is never acted on (the strict reader would
also refuse a broken row, but a file cut at a line boundary reads as a shorter feed).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
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
        self._reported: dict[Path, Stamp] = {}  # as of the last report (or baseline)
        self._primed = False

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
        for path in self._files:
            now = self._stamp(path)
            before = self._seen.get(path)
            self._seen[path] = now
            if not self._primed:
                self._reported[path] = now
                continue
            settled = before is not None and before.digest == now.digest
            if settled and self._reported.get(path, MISSING).digest != now.digest:
                self._reported[path] = now
                changed.append(os.fspath(path.name))
        self._primed = True
        return changed
