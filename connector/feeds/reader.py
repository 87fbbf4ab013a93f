"""Read the feed files: the CSV reader, one file at a time, and ``read_feeds``.

Every bad row becomes a ``Rejection`` naming the file, the line (physical, header =
line 1), the file's column name, the value and the reason; all the errors of a row are
reported, not only the first. Nothing is dropped silently and nothing is guessed. The
values are parsed by ``connector.feeds.values``, each feed's rows built by
``connector.feeds.rows``, and a feed read whole is judged by ``connector.feeds.judge``.

Feed health (``FeedHealth``): MISSING (no file) > UNREADABLE (cannot be opened or
decoded; malformed CSV; a line break inside a field, which no feed has and which means
rows may have been swallowed; a header lacking a required column or repeating one; or a
rejected row whose subject (person_id, or org_id for the org feeds) cannot be read, so
that it cannot be attributed to anybody) > what the judge finds (EMPTY, SHRUNK, STALE).
Missing and unreadable feeds contribute no records.

Every rejection carries ``key``, the row's subject, read even from a row with the wrong
number of fields, so that the planner holds that person's (or organization's) actions:
a rejected row is never read as "no row". Rows sharing a primary key
(``UNIQUE_COLUMN``) are all rejected, each naming the others' lines.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import structlog

from connector.errors import MisyncError
from connector.feeds.judge import judge
from connector.feeds.layout import COLUMNS, FeedLayout, load_feed_layout
from connector.feeds.rows import builder
from connector.feeds.settle import POLL, file_digest, stat_key, unchanged_since, wait_settled
from connector.feeds.values import Row, clean, describe, invisible
from connector.model.feeds import FeedHealth, FeedName, FeedSet, FeedState, FileStamp, Rejection
from connector.model.identity import IdMatch, id_key
from connector.model.records import SourceRef
from connector.settings import FeedsSettings

KEY_COLUMN: dict[FeedName, str] = {
    FeedName.ORGANIZATIONS: "org_id",
    FeedName.CONTRACTS: "org_id",
    FeedName.WORKERS: "person_id",
    FeedName.SEPARATIONS: "person_id",
    FeedName.TRAINING: "person_id",
    FeedName.NDAS: "person_id",
    FeedName.REQUESTERS: "person_id",
    FeedName.REQUESTS: "person_id",
}
UNIQUE_COLUMN: dict[FeedName, str] = {
    FeedName.ORGANIZATIONS: "org_id",
    FeedName.CONTRACTS: "contract_id",
    FeedName.WORKERS: "person_id",
    FeedName.REQUESTS: "request_id",
}

#: The columns of a row that say which area it is about (logical names): kept on its
#: rejections (``Rejection.org``/``.wda``) so that a rejected row can be placed in an area.
AREA_COLUMNS: dict[FeedName, tuple[str, str]] = {
    FeedName.WORKERS: ("org", "org_id"),
    FeedName.SEPARATIONS: ("org", "org_id"),
    FeedName.ORGANIZATIONS: ("wda", "wda"),
    FeedName.REQUESTERS: ("wda", "wda"),
}


def _area_fields(name: FeedName, values: Mapping[str, str] | Any) -> dict[str, str]:
    """``{"org": …}`` or ``{"wda": …}`` read from a row's ``values`` (a mapping of
    logical columns) or from its accepted record; {} for a feed without such a column."""
    spec = AREA_COLUMNS.get(name)
    if spec is None:
        return {}
    field_name, logical = spec
    raw = values.get(logical, "") if isinstance(values, Mapping) else getattr(values, logical, "")
    value = clean(str(raw or ""))
    return {field_name: value} if value and not invisible(value) else {}


#: How many other line numbers a duplicate-key rejection lists before "and N more".
MAX_LINES_LISTED = 5


class _Unreadable(MisyncError):
    """The whole file cannot be trusted; the message names the file and the line (caught
    inside the reader: the feed is held as unreadable, never read in part)."""


def _lines_listed(lines: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:MAX_LINES_LISTED])
    more = len(lines) - MAX_LINES_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _decode(file: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _Unreadable(f"{file} line {line}: not UTF-8 ({exc.reason})") from None


def _next_record(file: str, reader: Iterator[list[str]], start: int) -> list[str]:
    """The next record; malformed CSV (strict) makes the whole file unreadable."""
    try:
        return next(reader)
    except csv.Error as exc:
        raise _Unreadable(f"{file} line {start}: malformed CSV ({exc}); rows may be lost") from None


def _no_line_breaks(file: str, start: int, fields: Sequence[str], names: Sequence[str]) -> None:
    """No feed has multi-line values: a line break in a field means damage (an unterminated
    quote, say) that may have swallowed rows, so the whole file is unreadable. The first
    such field starts on the record's first line, ``start``."""
    for i, value in enumerate(fields):
        if "\r" in value or "\n" in value:
            column = names[i] if i < len(names) else f"field {i + 1}"
            raise _Unreadable(
                f"{file} line {start}, column {column}: line break inside a field "
                "(an unterminated quote?); rows may have been swallowed"
            )


def _header(
    name: FeedName, file: str, reader: Iterator[list[str]], layout: FeedLayout
) -> tuple[list[str], dict[str, str], dict[str, int]]:
    """Header names, logical -> file column, logical -> index; or ``_Unreadable``."""
    try:
        fields = _next_record(file, reader, 1)
    except StopIteration:
        raise _Unreadable(f"{file} line 1: no header row") from None
    _no_line_breaks(file, 1, fields, [f"{i + 1}" for i in range(len(fields))])
    header = [h.strip() for h in fields]
    for i, h in enumerate(header):
        bad = invisible(h)
        if bad:
            raise _Unreadable(
                f"{file} line 1: header column {i + 1} ({clean(h)!r}) contains invisible "
                f"character(s) {describe(bad)}"
            )
    counts: dict[str, int] = defaultdict(int)
    for h in header:
        counts[h] += 1
    dupes = [h for h, n in counts.items() if n > 1 and h]
    if dupes:
        raise _Unreadable(
            f"{file} line 1: duplicate column{'s' if len(dupes) > 1 else ''} "
            f"{', '.join(dupes)} in the header"
        )
    wanted = {logical: layout.column(name, logical) for logical in COLUMNS[name]}
    missing = [col for col in wanted.values() if col not in counts]
    if missing:
        raise _Unreadable(f"{file} line 1: missing column(s) {', '.join(missing)}")
    return header, wanted, {logical: header.index(col) for logical, col in wanted.items()}


class _Lines:
    """The lines of a feed file, decoded one at a time: the whole file is never in memory.

    Hashes every byte read (the feed's digest), numbers the lines as ``grep -n`` does
    (ended by LF; CR LF is fine, a lone CR is left to the csv module, which refuses it),
    and stops with ``_Unreadable`` on a line that is not UTF-8 or once more than
    ``max_bytes`` have been read (a file that grew after it was measured). ``last`` is
    the last line given out."""

    def __init__(self, fh: BinaryIO, file: str, max_bytes: int) -> None:
        self._fh, self._file, self._max = fh, file, max_bytes
        self._hash = hashlib.sha256()
        self._read = 0
        self.line = 0
        self.last = ""

    def __iter__(self) -> Iterator[str]:
        for raw in self._fh:
            self._read += len(raw)
            if self._max and self._read > self._max:
                raise _Unreadable(_too_big(self._file, self._read, self._max, grew=True))
            self._hash.update(raw)
            self.line += 1
            try:
                text = raw.decode("utf-8-sig" if self.line == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise _Unreadable(
                    f"{self._file} line {self.line}: not UTF-8 ({exc.reason})"
                ) from None
            # A lone CR is left inside the line: the csv module refuses it (malformed CSV,
            # or a line break inside a quoted field), naming this line as grep -n counts.
            self.last = text
            yield text

    def digest(self) -> str:
        """The sha256 of the whole file: the rest is hashed (not parsed) if reading stopped
        early; "" when the file is over the size limit."""
        for raw in iter(lambda: self._fh.read(1 << 20), b""):
            self._read += len(raw)
            if self._max and self._read > self._max:
                return ""
            self._hash.update(raw)
        return self._hash.hexdigest()


def _too_big(file: str, size: int, limit: int, *, grew: bool = False) -> str:
    how = "grew past" if grew else "is"
    return (
        f"{file}: {how} {size} bytes, more than feeds.max_bytes ({limit}); the feed is "
        "refused unread (raise the limit if the file is genuine)"
    )


def _read_one(
    name: FeedName, path: Path, layout: FeedLayout, settings: FeedsSettings
) -> tuple[list[Any], list[Rejection], FeedState, str, str]:
    """Parse one file: records, rejections, state (OK/MISSING/UNREADABLE), detail, digest."""
    file = path.name
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return [], [], FeedState.MISSING, f"{file}: file not found in {path.parent}", ""
    except OSError as exc:
        return [], [], FeedState.UNREADABLE, f"{file}: cannot read: {exc.strerror}", ""
    with fh:
        try:
            return _read_open(name, file, fh, layout, settings)
        except OSError as exc:
            return [], [], FeedState.UNREADABLE, f"{file}: cannot read: {exc.strerror}", ""


def _read_open(
    name: FeedName, file: str, fh: BinaryIO, layout: FeedLayout, settings: FeedsSettings
) -> tuple[list[Any], list[Rejection], FeedState, str, str]:
    """``_read_one`` on the opened file (an ``OSError`` is the caller's to report)."""
    size = os.fstat(fh.fileno()).st_size
    if settings.max_bytes and size > settings.max_bytes:
        return [], [], FeedState.UNREADABLE, _too_big(file, size, settings.max_bytes), ""
    source = _Lines(fh, file, settings.max_bytes)
    try:
        records, rejected, unattributable = _parse(name, file, source, layout, settings.max_rows)
    except _Unreadable as exc:
        return [], [], FeedState.UNREADABLE, str(exc), source.digest()
    digest = source.digest()
    if unattributable:
        key = layout.column(name, KEY_COLUMN[name])
        others = (
            f" (also line(s) {_lines_listed(unattributable[1:])})" if unattributable[1:] else ""
        )
        detail = (
            f"{file} line {unattributable[0]}: a rejected row with no readable {key}{others}; "
            "it cannot be attributed to anybody, so the feed is unusable for everybody"
        )
        return [], rejected, FeedState.UNREADABLE, detail, digest
    return records, rejected, FeedState.OK, "", digest


def _read_whole(
    name: FeedName,
    path: Path,
    layout: FeedLayout,
    settings: FeedsSettings,
    seen: FileStamp | None,
    deadline: float,
) -> tuple[tuple[list[Any], list[Rejection], FeedState, str, str], FileStamp | None]:
    """``_read_one`` of one whole version of the file (connector.feeds.settle): wait for
    a changed file to settle, parse it, and parse it again if it moved during the read.
    The stamp is that of the version parsed (None when nothing was)."""
    window = settings.settle_seconds
    log = structlog.get_logger("misync.feeds")
    waited = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        try:
            st = path.stat()
        except OSError:
            return _read_one(name, path, layout, settings), None  # missing or unreadable
        if not unchanged_since(seen, path, st):
            settled = wait_settled(path, st, window, deadline)
            if settled is None:
                return _still_written(path, settings), None
            st = settled
        result = _read_one(name, path, layout, settings)
        if result[2] is FeedState.MISSING:  # removed meanwhile
            return result, None
        try:
            after: os.stat_result | None = path.stat()
        except OSError:
            after = None
        digest = result[4]
        if after is not None and (
            stat_key(after) == stat_key(st) or (digest and file_digest(path) == digest)
        ):
            if attempts > 1 or time.monotonic() - waited >= 1:
                log.info(
                    "feed.settled",
                    file=path.name,
                    waited_seconds=round(time.monotonic() - waited, 1),
                    reads=attempts,
                )
            stamp = FileStamp(os.fspath(path), after.st_size, after.st_mtime_ns, digest)
            return result, stamp if digest else None
        log.warning("feed.changed_during_read", file=path.name, read=attempts)
        seen = None  # it is changing: wait for it to settle before the next read
        if time.monotonic() >= deadline:
            return _still_written(path, settings), None
        if window == 0:
            time.sleep(POLL)


def _still_written(
    path: Path, settings: FeedsSettings
) -> tuple[list[Any], list[Rejection], FeedState, str, str]:
    detail = (
        f"{path.name}: still being written: it kept changing for "
        f"feeds.settle_max_seconds ({settings.settle_max_seconds:g} s) and was not read; "
        f"it is read once it has been unchanged for {settings.settle_seconds:g} s"
    )
    return [], [], FeedState.UNREADABLE, detail, ""


def _parse(
    name: FeedName, file: str, source: _Lines, layout: FeedLayout, max_rows: int = 0
) -> tuple[list[Any], list[Rejection], list[int]]:
    """Records, rejections (in line order) and the lines of rejected rows with no key.

    Lines are read one at a time and accepted rows keep only their record (the line, key
    and primary key of the duplicate check are read back from it), so memory is a small
    multiple of the records kept. More than ``max_rows`` rows (when not 0) stop the read
    with ``_Unreadable``.
    """
    reader = csv.reader(source, strict=True)
    header, wanted, index = _header(name, file, reader, layout)
    rows = _Rows(name, file, header, index, builder(name, layout.request_statuses))
    rows.read(reader, source, max_rows)
    rows.reject_duplicates(wanted)
    return rows.result(wanted)


def _reject_invisible(row: Row, values: Mapping[str, str]) -> None:
    for logical, value in values.items():
        bad_chars = invisible(value)
        if bad_chars:
            row.fail(logical, f"contains invisible character(s) {describe(bad_chars)}")


class _Rows:
    """The rows of one feed as they are read: the records accepted, the rows with errors
    (line, key, primary key, errors by logical column, values), the rows with the wrong
    number of fields, and the lines of each primary key seen more than once."""

    def __init__(
        self,
        name: FeedName,
        file: str,
        header: list[str],
        index: dict[str, int],
        build: Callable[[Row, SourceRef], Any],
    ) -> None:
        self.name, self.file, self.header, self.index = name, file, header, index
        self.build = build
        self.unique = UNIQUE_COLUMN.get(name)
        self.key_at = index[KEY_COLUMN[name]]
        self.records: list[Any] = []
        self.memo: dict[str, str] = {}
        self.bad: list[tuple[int, str, str, dict[str, str], Mapping[str, str]]] = []
        self.shapeless: list[Rejection] = []  # rows with the wrong number of fields
        self.first: dict[str, int] = {}  # primary key -> first line
        self.dups: dict[str, list[int]] = {}  # primary key -> every line, when more than one

    def read(self, reader: Any, source: _Lines, max_rows: int) -> None:
        """Every record of ``reader`` (a ``csv.reader`` over ``source``) after the header.
        The loop binds what it uses to locals: it runs once per row of feeds of 100k+."""
        file, header, name, index = self.file, self.header, self.name, self.index
        build, memo = self.build, self.memo
        unique, key_at, width = self.unique, self.key_at, len(self.header)
        keep, reject = self.records.append, self.bad.append
        feed = name.value  # an enum's value is a property: read it once, not per row
        count = 0
        while True:
            start = reader.line_num + 1
            try:
                fields = _next_record(file, reader, start)
            except StopIteration:
                break
            # One test per row in the common case: line breaks and invisible characters
            # are all non-printable.
            suspicious = not "".join(fields).isprintable()
            if suspicious:
                _no_line_breaks(file, start, fields, header)
            if not fields:
                continue  # an empty line is not a row; a line of blanks or commas is one
            count += 1
            if max_rows and count > max_rows:
                raise _Unreadable(
                    f"{file} line {start}: more than feeds.max_rows ({max_rows}) rows; the "
                    "feed is refused (raise the limit if the file is genuine)"
                )
            if len(fields) != width:
                self._shapeless(start, fields, source.last)
                continue
            if not source.last.endswith("\n"):
                self._unterminated(start, fields, source.last)
                continue
            values = {logical: fields[i] for logical, i in index.items()}
            row = Row(values, memo)
            if suspicious:
                _reject_invisible(row, values)
            rec = build(row, SourceRef(feed, file, start))
            u = clean(values[unique]) if unique else ""
            if u:
                self._seen(u, start)
            if row.errors or rec is None:
                reject((start, clean(fields[key_at]), u, row.errors, values))
            else:
                keep(rec)

    def _shapeless(self, start: int, fields: list[str], raw: str) -> None:
        """A row with the wrong number of fields: rejected whole, with its key if it has
        one."""
        key = clean(fields[self.key_at]) if self.key_at < len(fields) else ""
        reason = f"{len(fields)} fields where the header has {len(self.header)}"
        raw_row = raw.rstrip("\r\n")
        self.shapeless.append(
            Rejection(self.name.value, self.file, start, None, raw_row, reason, key=key)
        )

    def _unterminated(self, start: int, fields: list[str], raw: str) -> None:
        """The last line has no line end: the file may have been cut short while it was
        written (a row cut after a separator still has every field, its last ones empty).
        The row is rejected with its key, so what it would drive is held for that key,
        never read as a row with empty values."""
        key = clean(fields[self.key_at]) if self.key_at < len(fields) else ""
        area = _area_fields(self.name, {k: fields[i] for k, i in self.index.items()})
        self.shapeless.append(
            Rejection(
                self.name.value,
                self.file,
                start,
                None,
                raw,
                "the last line has no line end: the file may have been cut short while it "
                "was written, so this row is not trusted (a feed file ends with a line end)",
                key=key,
                **area,
            )
        )

    def _seen(self, u: str, start: int) -> None:
        """Primary key ``u`` is on line ``start``: the lines of a key on several rows."""
        if u in self.dups:
            self.dups[u].append(start)
        elif u in self.first:
            self.dups[u] = [self.first[u], start]
        else:
            self.first[u] = start

    def reject_duplicates(self, wanted: Mapping[str, str]) -> None:
        """Every row whose primary key is on more than one row is rejected, naming the
        others' lines."""
        unique, dups = self.unique, self.dups
        if unique is None or not dups:
            return
        accepted = []
        for rec in self.records:  # an accepted record's fields are its row's values, cleaned
            u = getattr(rec, unique)
            if u in dups:
                values = {unique: u}
                spec = AREA_COLUMNS.get(self.name)
                if spec is not None:
                    values[spec[1]] = getattr(rec, spec[1])
                key = getattr(rec, KEY_COLUMN[self.name])
                self.bad.append((rec.source.line, key, u, {}, values))
            else:
                accepted.append(rec)
        self.records = accepted
        for line, _, u, errors, _ in self.bad:
            if u in dups:
                others = _lines_listed([n for n in dups[u] if n != line])
                reason = (
                    f"duplicate {wanted[unique]} {u!r}, also at line(s) {others}; "
                    "every row with it is rejected"
                )
                errors[unique] = f"{errors[unique]}; {reason}" if unique in errors else reason

    def result(self, wanted: Mapping[str, str]) -> tuple[list[Any], list[Rejection], list[int]]:
        rejected = list(self.shapeless)
        unattributable = [r.line for r in self.shapeless if not r.key]
        for line, key, _, errors, row_values in self.bad:
            if not key:
                unattributable.append(line)
            area = _area_fields(self.name, row_values)
            for logical, reason in errors.items():
                value = row_values.get(logical, "")
                rejected.append(
                    Rejection(
                        self.name.value,
                        self.file,
                        line,
                        wanted[logical],
                        value,
                        reason,
                        key=key,
                        **area,
                    )
                )
        rejected.sort(key=lambda r: r.line)  # stable: a row's own rejections keep their order
        unattributable.sort()
        return self.records, rejected, unattributable


def check_headers(settings: FeedsSettings, layout: FeedLayout | None = None) -> list[str]:
    """For ``misync config check``: every feed file exists (``separations`` may be empty,
    not missing), is UTF-8, and its header has every column the layout needs and no
    duplicate. One problem line per issue, naming the file; reads only the header line.

    Raises ``FeedLayoutError`` when ``layout`` is not given and the layout file is bad."""
    layout = layout or load_feed_layout(settings.mapping)
    problems: list[str] = []
    for name in FeedName:
        path = settings.dir / layout.files[name]
        try:
            with path.open("rb") as fh:
                first = fh.readline(1 << 20)
        except FileNotFoundError:
            problems.append(f"{path}: feed file not found")
            continue
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror}")
            continue
        try:
            text = _decode(str(path), first)
            _header(name, str(path), csv.reader(io.StringIO(text, newline=""), strict=True), layout)
        except _Unreadable as exc:
            problems.append(str(exc))
    return problems


def read_feed(
    settings: FeedsSettings, name: FeedName, layout: FeedLayout | None = None
) -> tuple[list[Any], FeedState, str]:
    """One feed's valid records, its state and the detail (``config check``'s look at
    the organizations feed); no settle wait."""
    layout = layout or load_feed_layout(settings.mapping)
    records, _, state, detail, _ = _read_one(
        name, settings.dir / layout.files[name], layout, settings
    )
    return records, state, detail


def read_feeds(
    settings: FeedsSettings,
    *,
    now: datetime,
    tz: ZoneInfo,
    previous_rows: Mapping[FeedName, int] | None = None,
    layout: FeedLayout | None = None,
    id_match: IdMatch | None = None,
    seen: Mapping[FeedName, FileStamp] | None = None,
) -> FeedSet:
    """Read every feed in ``settings.dir``. Never raises for bad data: it is in the result.

    ``seen``: the stamps of the files the last run evaluated. A file that changed since
    is read only once it has stopped changing, and every file is re-checked after its
    read (``connector.feeds.settle``); each feed's health carries the stamp of what was
    read, for the caller to record.

    ``id_match`` is how the target compares person ids (the mapping's
    ``correlation_match``): rows whose person ids differ as strings but are one id under
    it (``P1001`` and ``p1001`` under caseIgnoreMatch) are all rejected, each naming the
    others, since the directory cannot tell those people apart."""
    layout = layout or load_feed_layout(settings.mapping)
    previous = previous_rows or {}
    seen_stamps = seen or {}
    deadline = time.monotonic() + settings.settle_max_seconds
    read: dict[FeedName, tuple[list[Any], list[Rejection], FeedState, str, str]] = {}
    stamps: dict[FeedName, FileStamp | None] = {}
    for name in FeedName:
        read[name], stamps[name] = _read_whole(
            name,
            settings.dir / layout.files[name],
            layout,
            settings,
            seen_stamps.get(name),
            deadline,
        )
    if id_match is not None:
        _reject_colliding_ids(read, layout, id_match)
    out: dict[FeedName, list[Any]] = {}
    rejected: list[Rejection] = []
    health: dict[FeedName, FeedHealth] = {}
    for name in FeedName:
        path = settings.dir / layout.files[name]
        records, rej, state, detail, digest = read[name]
        modified = None
        if state is not FeedState.MISSING:
            try:
                modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            except OSError:
                modified = None
        if state is FeedState.OK:
            state, detail = judge(
                name, path.name, len(records), previous.get(name), modified, now=now, s=settings
            )
        if state in (FeedState.MISSING, FeedState.UNREADABLE):
            records = []
        out[name] = records
        rejected += rej
        health[name] = FeedHealth(
            name, path.name, state, len(records), len(rej), detail, modified, digest, stamps[name]
        )
    return FeedSet(
        organizations=tuple(out[FeedName.ORGANIZATIONS]),
        contracts=tuple(out[FeedName.CONTRACTS]),
        workers=tuple(out[FeedName.WORKERS]),
        separations=tuple(out[FeedName.SEPARATIONS]),
        training=tuple(out[FeedName.TRAINING]),
        ndas=tuple(out[FeedName.NDAS]),
        requesters=tuple(out[FeedName.REQUESTERS]),
        requests=tuple(out[FeedName.REQUESTS]),
        rejected=tuple(rejected),
        health=health,
    )


#: The columns that hold person ids, per feed (logical names).
PERSON_ID_COLUMNS: dict[FeedName, tuple[str, ...]] = {
    FeedName.WORKERS: ("person_id",),
    FeedName.SEPARATIONS: ("person_id",),
    FeedName.TRAINING: ("person_id",),
    FeedName.NDAS: ("person_id",),
    FeedName.REQUESTERS: ("person_id",),
    FeedName.REQUESTS: ("person_id", "requester_id"),
}


def _spellings(
    read: dict[FeedName, tuple[list[Any], list[Rejection], FeedState, str, str]],
    match: IdMatch,
) -> dict[str, dict[str, object]]:
    """Person id key -> spelling -> its first place ("file line N", or the SourceRef
    that prints so), only for the keys spelled two ways or more. ``first`` holds every
    key's first spelling and place (a person's rows name them about six times)."""
    spellings: dict[str, dict[str, object]] = {}
    first: dict[str, tuple[str, object]] = {}
    key_of: dict[str, str] = {}  # spelling -> key (the rows share one string per id)

    def see(value: str, place: object) -> None:
        key = key_of.get(value)
        if key is None:
            key = key_of[value] = id_key(match, value)
        seen = first.get(key)
        if seen is None:
            first[key] = (value, place)
        elif seen[0] != value:
            spellings.setdefault(key, {seen[0]: seen[1]}).setdefault(value, place)

    for name, cols in PERSON_ID_COLUMNS.items():
        records, rejections, _, _, _ = read[name]
        for rec in records:
            for col in cols:
                value = getattr(rec, col)
                if value:
                    see(value, rec.source)
        for rej in rejections:
            if rej.key:
                see(rej.key, f"{rej.file} line {rej.line}")
    return spellings


def _reject_colliding_ids(
    read: dict[FeedName, tuple[list[Any], list[Rejection], FeedState, str, str]],
    layout: FeedLayout,
    match: IdMatch,
) -> None:
    """Move every accepted row that names a person id spelled two ways (one id under
    ``match``, two strings in the feeds) to the rejections, in place. Rejected rows'
    subjects count as spellings too: an unreadable ``p1001`` row and an accepted
    ``P1001`` row are the same person for the directory."""
    spellings = _spellings(read, match)
    clashes = {
        value: places for places in spellings.values() if len(places) > 1 for value in places
    }
    if not clashes:
        return
    for name, cols in PERSON_ID_COLUMNS.items():
        records, rejections, state, detail, digest = read[name]
        kept: list[Any] = []
        added: list[Rejection] = []
        for rec in records:
            bad = [col for col in cols if getattr(rec, col) in clashes]
            if not bad:
                kept.append(rec)
                continue
            for col in bad:
                value = getattr(rec, col)
                others = [f"{v!r} ({where})" for v, where in clashes[value].items() if v != value]
                added.append(
                    Rejection(
                        name.value,
                        rec.source.file,
                        rec.source.line,
                        layout.column(name, col),
                        value,
                        f"{value!r} is the same person id as {', '.join(others)} for the "
                        f"target ({match}): the directory cannot tell them apart, so every "
                        "row with either is rejected",
                        key=rec.person_id,
                        **_area_fields(name, rec),
                    )
                )
        if added:
            merged = sorted([*rejections, *added], key=lambda r: r.line)
            read[name] = (kept, merged, state, detail, digest)
