"""Read only the rows of a feed file that changed since a version already read.

The daemon's fast path (connector.runs.incremental) keeps the bytes of the separations
and roster files its last run evaluated. When one of them changes, ``read_delta``
compares the new version with the old one line by line *at the same position* (line
``i`` of the old file against line ``i`` of the new one) and validates only the lines
that differ, with the reader's own row parser (``connector.feeds.reader._Rows``), so
a changed row is rejected exactly as a full read would reject it, naming its file,
line and column. Every other row keeps the record (or the rejection) the last read
made of it: it is the same bytes on the same line.

A row inserted or removed in the middle moves every later row to another line, and
so changes every later line (and the line each of their reasons names): those rows
are read again too, which is right but costs what a full read costs; past
``MAX_CHANGED_SHARE`` of the file the caller reads the feeds whole instead.

Whatever this module cannot vouch for raises ``NoDelta`` (the caller falls back to
the full read): the file still being written or changing during the read (the settle
rule of connector.feeds.settle), a changed header, a changed line that is not one
CSV record of its own, a rejected row that cannot be attributed to anybody, too many
changed lines, the file over ``feeds.max_bytes``/``feeds.max_rows``, and, in a feed
with a primary key, a changed row whose key another (unchanged) row also has, before
or after the change (both would be rejected as duplicates: a full read settles it).
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from connector.errors import MisyncError
from connector.feeds.layout import FeedLayout
from connector.feeds.reader import (
    KEY_COLUMN,
    UNIQUE_COLUMN,
    _header,
    _Rows,
    _Unreadable,
)
from connector.feeds.rows import builder
from connector.feeds.settle import stat_key, unchanged_since, wait_settled
from connector.feeds.values import clean
from connector.model.feeds import FeedName, FileStamp, Rejection
from connector.settings import FeedsSettings

#: Past this share of a file's lines changed (or this many lines), the feeds are read
#: whole: the row-by-row path would cost as much, with more to go wrong.
MAX_CHANGED_SHARE = 0.2
MAX_CHANGED_LINES = 20_000
MIN_CHANGED_LINES = 50  # a small file may change whole: it is cheap either way


class NoDelta(MisyncError):
    """The change cannot be read row by row; ``str()`` says why (caught by the fast
    path, which reads the feeds whole instead: never shown as an error)."""


@dataclass(frozen=True)
class Version:
    """One version of a feed file as a run read it: its bytes, its stamp, and what the
    read made of it (records and rejections, each in line order)."""

    data: bytes
    stamp: FileStamp
    records: tuple[Any, ...]
    rejected: tuple[Rejection, ...]


@dataclass(frozen=True)
class Delta:
    """The new version of one file, read row by row."""

    version: Version
    modified: datetime | None
    #: the keys (person ids) of every row on a changed line, as it was and as it is
    touched: frozenset[str]
    changed_lines: int
    #: the records of the changed lines (accepted rows only), and those lines (1-based)
    parsed: tuple[Any, ...] = ()
    gone: frozenset[int] = frozenset()


def _split(data: bytes) -> tuple[list[bytes], bool]:
    """The physical lines of ``data`` (as ``grep -n`` counts them: ended by LF), without
    their LF, and whether the last one has its LF."""
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
        return pieces, True
    return pieces, False


def _text(piece: bytes, terminated: bool, line: int, file: str) -> str:
    try:
        text = piece.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise NoDelta(f"{file} line {line}: not UTF-8 ({exc.reason})") from None
    return text + "\n" if terminated else text


def _fields(text: str, line: int, file: str) -> list[str]:
    """The one CSV record on one physical line; NoDelta for a line that is not one
    (an open quote, a lone CR: the full read decides what the file is then)."""
    try:
        records = list(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise NoDelta(f"{file} line {line}: not one CSV record ({exc})") from None
    if len(records) > 1:
        raise NoDelta(f"{file} line {line}: more than one CSV record")
    return records[0] if records else []


class _Sparse:
    """The changed lines of a file for ``_Rows.read``: a ``csv.reader`` look-alike that
    numbers each record with its true line (``line_num`` is the line before the next
    record's) and keeps the raw text of the last one given (``last``)."""

    def __init__(self, lines: Sequence[tuple[int, str]], file: str) -> None:
        self._lines = lines
        self._file = file
        self._at = 0
        self.line_num = lines[0][0] - 1 if lines else 0
        self.last = ""

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        if self._at >= len(self._lines):
            raise StopIteration
        line, text = self._lines[self._at]
        self._at += 1
        self.last = text
        fields = _fields(text, line, self._file)
        self.line_num = self._lines[self._at][0] - 1 if self._at < len(self._lines) else line
        return fields


def read_bytes_settled(
    path: Path, settings: FeedsSettings, seen: FileStamp, deadline: float
) -> tuple[bytes, FileStamp, datetime | None]:
    """The bytes of one whole version of a changed file, under the settle rule every
    read follows (connector.feeds.settle): wait until it has stopped changing, read it,
    and check it did not move during the read. NoDelta when it is missing, still being
    written, over ``feeds.max_bytes``, or changed during the read."""
    try:
        st = path.stat()
    except OSError as exc:
        raise NoDelta(f"{path.name}: cannot stat ({exc.strerror})") from None
    if not unchanged_since(seen, path, st):
        settled = wait_settled(path, st, settings.settle_seconds, deadline)
        if settled is None:
            raise NoDelta(f"{path.name}: still being written")
        st = settled
    if settings.max_bytes and st.st_size > settings.max_bytes:
        raise NoDelta(f"{path.name}: over feeds.max_bytes")
    try:
        data = path.read_bytes()
        after = path.stat()
    except OSError as exc:
        raise NoDelta(f"{path.name}: cannot read ({exc.strerror})") from None
    if stat_key(after) != stat_key(st) or len(data) != after.st_size:
        raise NoDelta(f"{path.name}: changed during the read")
    digest = hashlib.sha256(data).hexdigest()
    stamp = FileStamp(os.fspath(path), after.st_size, after.st_mtime_ns, digest)
    return data, stamp, datetime.fromtimestamp(after.st_mtime, UTC)


def read_delta(
    name: FeedName,
    path: Path,
    *,
    layout: FeedLayout,
    settings: FeedsSettings,
    old: Version,
    unique_holders: Mapping[str, Any] | None = None,
    deadline: float | None = None,
) -> Delta | None:
    """The new version of ``path`` read against ``old`` (the version the last run read),
    only its changed lines parsed; None when the file is still ``old`` (same path,
    size and mtime). ``unique_holders``: for a feed with a primary key, the record of
    the accepted row holding each key in ``old`` (rejected rows are in
    ``old.rejected``). Raises ``NoDelta`` when the change cannot be read row by row."""
    try:
        st = path.stat()
    except OSError:
        raise NoDelta(f"{path.name}: missing or unreadable now") from None
    if unchanged_since(old.stamp, path, st):
        return None
    file = path.name
    deadline = deadline if deadline is not None else time.monotonic() + settings.settle_max_seconds
    data, stamp, modified = read_bytes_settled(path, settings, old.stamp, deadline)
    if stamp.digest == old.stamp.digest:  # touched, same bytes
        return Delta(Version(data, stamp, old.records, old.rejected), modified, frozenset(), 0)
    new_lines, new_end = _split(data)
    old_lines, old_end = _split(old.data)
    if not new_lines or not old_lines or new_lines[0] != old_lines[0]:
        raise NoDelta(f"{file}: the header changed")
    if settings.max_rows and len(new_lines) - 1 > settings.max_rows:
        raise NoDelta(f"{file}: more lines than feeds.max_rows")
    changed = _changed_positions(old_lines, old_end, new_lines, new_end)
    limit = min(MAX_CHANGED_LINES, max(MIN_CHANGED_LINES, int(MAX_CHANGED_SHARE * len(old_lines))))
    if len(changed) > limit:
        raise NoDelta(f"{file}: {len(changed)} lines changed (more than {limit})")
    touched, records, rejected = _parse_changed(
        name, file, layout, (old_lines, old_end), (new_lines, new_end), changed
    )
    gone = {i + 1 for i in changed}
    if name in UNIQUE_COLUMN:
        _no_duplicates_across(file, name, touched, gone, old, unique_holders or {})
    kept = [r for r in old.records if r.source.line not in gone]
    kept_rejected = [r for r in old.rejected if r.line not in gone]
    version = Version(
        data,
        stamp,
        tuple(sorted([*kept, *records], key=lambda r: r.source.line)),
        tuple(sorted([*kept_rejected, *rejected], key=lambda r: r.line)),
    )
    return Delta(
        version, modified, frozenset(touched), len(changed), tuple(records), frozenset(gone)
    )


def _parse_changed(
    name: FeedName,
    file: str,
    layout: FeedLayout,
    old: tuple[list[bytes], bool],
    new: tuple[list[bytes], bool],
    changed: list[int],
) -> tuple[set[str], list[Any], list[Rejection]]:
    """The keys on the changed lines (old and new), and the records and rejections of
    the new ones, parsed by the reader's own row parser with their true line numbers."""
    old_lines, old_end = old
    new_lines, new_end = new
    head = parse_header(name, file, new_lines[0], layout)
    key_at = head[2][KEY_COLUMN[name]]

    def key_of(lines: list[bytes], end: bool, i: int) -> tuple[str, str]:
        text = _text(lines[i], end or i < len(lines) - 1, i + 1, file)
        fields = _fields(text, i + 1, file)
        return text, clean(fields[key_at]) if key_at < len(fields) else ""

    touched: set[str] = set()
    sparse: list[tuple[int, str]] = []
    for i in changed:
        if i < len(old_lines):
            touched.add(key_of(old_lines, old_end, i)[1])
        if i < len(new_lines):
            text, key = key_of(new_lines, new_end, i)
            touched.add(key)
            sparse.append((i + 1, text))
    touched.discard("")
    records, rejected, unattributable = parse_rows(name, file, layout, head, sparse)
    if unattributable:
        raise NoDelta(f"{file} line {unattributable[0]}: a rejected row with no readable key")
    return touched, records, rejected


#: a feed file's header as the reader parses it: the header, the logical -> file column
#: names, and each logical column's position
Header = tuple[list[str], dict[str, str], dict[str, int]]


def parse_header(name: FeedName, file: str, first: bytes, layout: FeedLayout) -> Header:
    """The header line of a feed file, as the reader parses it; NoDelta if it is not one."""
    try:
        return _header(name, file, iter([_fields(_text(first, True, 1, file), 1, file)]), layout)
    except _Unreadable as exc:
        raise NoDelta(str(exc)) from None


def parse_rows(
    name: FeedName,
    file: str,
    layout: FeedLayout,
    head: Header,
    sparse: Sequence[tuple[int, str]],
) -> tuple[list[Any], list[Rejection], list[int]]:
    """Some lines of a feed file (their 1-based numbers and text, in order) parsed by the
    reader's own row parser with their true line numbers: the records, the rejections
    and the lines of rejected rows with no key (``_Rows.result``)."""
    header, wanted, index = head
    rows = _Rows(name, file, header, index, builder(name, layout.request_statuses))
    source = _Sparse(sparse, file)
    try:
        rows.read(source, cast("Any", source), 0)  # ``source`` is the reader and its source
    except _Unreadable as exc:
        raise NoDelta(str(exc)) from None
    rows.reject_duplicates(wanted)
    return rows.result(wanted)


def _changed_positions(
    old: list[bytes], old_end: bool, new: list[bytes], new_end: bool
) -> list[int]:
    """The 0-based positions whose line differs (content or line end), header included,
    and every position only one of the two files has."""
    short = min(len(old), len(new))
    # one comparison in C first: an append, or a cut at the end, changes no common line
    same = new[:short] == old[:short]
    changed = [] if same else [i for i in range(short) if old[i] != new[i]]
    # the last line of either file may differ only in its line end
    for i in {len(old) - 1, len(new) - 1}:
        if i < short and i not in changed:
            o_end = old_end or i < len(old) - 1
            n_end = new_end or i < len(new) - 1
            if o_end != n_end:
                changed.append(i)
    changed.extend(range(short, max(len(old), len(new))))
    return sorted(changed)


def _no_duplicates_across(
    file: str,
    name: FeedName,
    touched: set[str],
    gone: set[int],
    old: Version,
    holders: Mapping[str, Any],
) -> None:
    """In a feed with a primary key (the roster: person_id), a changed row whose key an
    unchanged row also has makes both duplicates (or stops them being duplicates): the
    full read decides. The key column is the subject column in the feeds this module
    reads (``KEY_COLUMN == UNIQUE_COLUMN``); other feeds are refused."""
    if KEY_COLUMN[name] != UNIQUE_COLUMN[name]:
        raise NoDelta(f"{file}: its primary key is not its subject")
    for key in touched:
        holder = holders.get(key)
        line = holder.source.line if holder is not None else None
        if line is not None and line not in gone:
            raise NoDelta(f"{file} line {line}: {key} is also on an unchanged row")
    for r in old.rejected:
        if r.key in touched and r.line not in gone:
            raise NoDelta(f"{file} line {r.line}: {r.key} is also on an unchanged row")
