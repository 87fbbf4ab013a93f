"""Read and validate the feeds.

Every bad row becomes a ``Rejection`` naming the file, the line (physical, header =
line 1), the file's column name, the value and the reason; all the errors of a row are
reported, not only the first. Nothing is dropped silently and nothing is guessed.

Feed health (``FeedHealth``): MISSING (no file) > UNREADABLE (cannot be opened or
decoded; malformed CSV; a line break inside a field, which no feed has and which means
rows may have been swallowed; a header lacking a required column or repeating one; or a
rejected row whose subject (person_id, or org_id for the org feeds) cannot be read, so
that it cannot be attributed to anybody) > EMPTY (no accepted row;
only ``separations`` may be empty) > SHRUNK (rows fell by more than ``shrink_share``
and by at least ``shrink_min_rows`` since the last good run) > STALE (older than
``max_age_hours``). Missing and unreadable feeds contribute no records; stale and
shrunk feeds keep theirs (disables may cite them) but drive nothing themselves.

Every rejection carries ``key``, the row's subject, read even from a row with the wrong
number of fields, so that the planner holds that person's (or organization's) actions:
a rejected row is never read as "no row". Values are strict: dates ``YYYY-MM-DD``,
instants ``YYYY-MM-DDTHH:MM[:SS[.fff]]`` (1 to 6 digits) then ``Z`` or ``±HH:MM``, booleans
``true``/``false``, enumerations exactly as SPEC.md spells them; a value with an
invisible character (Unicode Cc, Cf, Zl, Zp: a control character, a stray BOM, a
zero-width space) is rejected. Rows sharing a primary key (``UNIQUE_COLUMN``) are all
rejected, each naming the others' lines.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import re
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from zoneinfo import ZoneInfo

import structlog
from email_validator import EmailNotValidError, validate_email

from connector.errors import MisyncError
from connector.feeds.layout import COLUMNS, FeedLayout, load_feed_layout
from connector.feeds.settle import POLL, file_digest, stat_key, unchanged_since, wait_settled
from connector.model.feeds import FeedHealth, FeedName, FeedSet, FeedState, FileStamp, Rejection
from connector.model.identity import IdMatch, id_key
from connector.model.records import (
    DEFAULT_REQUEST_STATUSES,
    AccessRequest,
    Contract,
    ContractType,
    Nda,
    Organization,
    OrgKind,
    RequestAction,
    RequesterDesignation,
    RequestStatus,
    Separation,
    SourceRef,
    Training,
    Worker,
    WorkerStatus,
)
from connector.settings import FeedsSettings

MAY_BE_EMPTY = frozenset({FeedName.SEPARATIONS})
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
OPTIONAL_TEXT = frozenset(
    {
        "business_case",
        "email",
        "office",
        "supervisor_id",
        "reason",
        "profile",
        "offices",
        "designated_by",
        "name",
    }
)

#: Columns whose values repeat across many rows (a course, an organization): the rows of
#: one read share one string object per value, to keep memory near the data kept.
SHARED_TEXT = frozenset(
    {"course", "org_id", "wda", "counterparty", "designated_by", "requester_id", "profile"}
)
#: Unicode categories of characters that cannot be seen in a value: control (Cc, which
#: includes tab, CR and LF), format (Cf: BOM, zero-width space, bidi marks), and the
#: line and paragraph separators (Zl, Zp).
INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})
#: How many other line numbers a duplicate-key rejection lists before "and N more".
MAX_LINES_LISTED = 5

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LOCAL = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
_INSTANT = re.compile(_LOCAL + r"(?:Z|[+-][0-9]{2}:[0-9]{2})")
_NAIVE = re.compile(_LOCAL)

E = TypeVar("E", bound=StrEnum)


class _Bad(MisyncError):
    """One field failed; the message is the reason (caught per field: a rejected row)."""


class _Unreadable(MisyncError):
    """The whole file cannot be trusted; the message names the file and the line (caught
    inside the reader: the feed is held as unreadable, never read in part)."""


def _invisible(value: str) -> list[str]:
    """The invisible characters in ``value``, each once, in order of appearance."""
    if value.isprintable():  # the fast path: Cc, Cf, Zl and Zp are all non-printable
        return []
    return list(dict.fromkeys(ch for ch in value if unicodedata.category(ch) in INVISIBLE))


def _describe(chars: Sequence[str]) -> str:
    return ", ".join(
        f"U+{ord(ch):04X} ({unicodedata.name(ch, 'control character')})" for ch in chars
    )


def _clean(value: str) -> str:
    """``value`` without invisible characters or surrounding blanks (to attribute a row)."""
    if value.isprintable():
        return value.strip()
    return "".join(ch for ch in value if unicodedata.category(ch) not in INVISIBLE).strip()


def _lines_listed(lines: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:MAX_LINES_LISTED])
    more = len(lines) - MAX_LINES_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


class _Row:
    """Typed access to one CSV row by logical column; collects every field error."""

    def __init__(self, values: Mapping[str, str], memo: dict[str, str] | None = None) -> None:
        self.values = values
        self.errors: dict[str, str] = {}
        self._memo = memo if memo is not None else {}

    def _get(self, col: str, conv: Callable[[str], Any], *, required: bool) -> Any:
        if col in self.errors:  # already rejected (an invisible character): no second guess
            return None
        raw = self.values.get(col, "").strip()
        if raw == "":
            if required:
                self.errors[col] = "required value is empty"
            return None
        try:
            return conv(raw)
        except _Bad as exc:
            self.errors[col] = str(exc)
            return None

    def text(self, col: str, *, required: bool = True) -> str:
        value = self._get(col, str, required=required)
        if not isinstance(value, str):
            return ""
        if col in SHARED_TEXT:  # one string object for a value many rows repeat
            return self._memo.setdefault(value, value)
        return value

    def date(self, col: str, *, required: bool = True) -> date | None:
        return self._get(col, _date, required=required)  # type: ignore[no-any-return]

    def instant(self, col: str) -> datetime | None:
        return self._get(col, _instant, required=True)  # type: ignore[no-any-return]

    def enum(self, col: str, kind: type[E]) -> E | None:
        return self._get(col, lambda raw: _enum(raw, kind), required=True)  # type: ignore[no-any-return]

    def email(self, col: str, *, required: bool) -> str:
        value = self._get(col, _email, required=required)
        return value if isinstance(value, str) else ""

    def boolean(self, col: str, *, required: bool) -> bool:
        value = self._get(col, _bool, required=required)
        return bool(value)

    def items(self, col: str) -> tuple[str, ...]:
        raw = self.values.get(col, "")
        return tuple(p.strip() for p in raw.split(";") if p.strip())

    def fail(self, col: str, reason: str) -> None:
        self.errors.setdefault(col, reason)


@functools.lru_cache(maxsize=4096)  # feeds repeat dates: one object each (errors not cached)
def _date(raw: str) -> date:
    if _DATE.fullmatch(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise _Bad(f"not a date (YYYY-MM-DD): {raw!r}")


_INSTANT_FORM = "YYYY-MM-DDTHH:MM[:SS[.fff]] then Z or ±HH:MM, e.g. 2026-11-25T17:00:00-08:00"


def _instant(raw: str) -> datetime:
    if _NAIVE.fullmatch(raw):
        raise _Bad(f"instant {raw!r} needs a UTC offset (e.g. 2026-11-25T17:00:00-08:00)")
    if _INSTANT.fullmatch(raw):
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass
    raise _Bad(f"not an ISO 8601 instant ({_INSTANT_FORM}): {raw!r}")


def _email(raw: str) -> str:
    """An email address as written, if it is one (RFC 5322 addr-spec, checked by
    email-validator without any DNS query); never rewritten, so the value kept is the
    value read."""
    try:
        validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        raise _Bad(f"not a valid email address: {raw!r} ({exc})") from None
    return raw


def _bool(raw: str) -> bool:
    if raw in ("true", "false"):
        return raw == "true"
    raise _Bad(f"not a boolean (true/false): {raw!r}")


def _enum(raw: str, kind: type[E]) -> E:
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise _Bad(f"{raw!r} is not one of: {allowed}") from None


# -- one builder per feed: (row, source) -> record or None (errors are in row.errors) ------


def _organization(r: _Row, src: SourceRef) -> Organization | None:
    rec = Organization(
        r.text("org_id"),
        r.text("name", required=False),
        r.enum("kind", OrgKind) or OrgKind.OTHER,
        r.text("wda"),
        src,
    )
    return None if r.errors else rec


_COUNTERPARTIES = {
    ContractType.WIOA_SERVICES: ("lwdb", "esd", "dol"),
    ContractType.DATA_SHARING: ("esd", "lwdb"),
}
_ANY_COUNTERPARTY = tuple(dict.fromkeys(c for cs in _COUNTERPARTIES.values() for c in cs))


def _contract(r: _Row, src: SourceRef) -> Contract | None:
    ctype = r.enum("type", ContractType)
    counterparty = r.text("counterparty")
    if ctype is not None and counterparty and counterparty not in _COUNTERPARTIES[ctype]:
        r.fail(
            "counterparty",
            f"{counterparty!r} is not a valid counterparty for a {ctype} "
            f"contract ({', '.join(_COUNTERPARTIES[ctype])})",
        )
    elif ctype is None and counterparty and counterparty not in _ANY_COUNTERPARTY:
        r.fail("counterparty", f"{counterparty!r} is not one of: {', '.join(_ANY_COUNTERPARTY)}")
    starts, ends = r.date("starts_on"), r.date("ends_on", required=False)
    signed, terminated = (
        r.date("signed_on", required=False),
        r.date("terminated_on", required=False),
    )
    if starts and ends and ends < starts:
        r.fail("ends_on", f"ends_on {ends} is before starts_on {starts}")
    if signed and terminated and terminated < signed:
        r.fail("terminated_on", f"terminated_on {terminated} is before signed_on {signed}")
    rec = Contract(
        r.text("contract_id"),
        r.text("org_id"),
        ctype or ContractType.WIOA_SERVICES,
        counterparty,
        r.text("business_case", required=False),
        signed,
        starts or date.min,
        ends,
        terminated,
        r.date("security_admin_approved_on", required=False),
        r.date("contracts_office_approved_on", required=False),
        r.date("data_owner_approved_on", required=False),
        src,
    )
    return None if r.errors else rec


def _worker(r: _Row, src: SourceRef) -> Worker | None:
    status = r.enum("status", WorkerStatus)
    separated_on = r.date("separated_on", required=False)
    if status is WorkerStatus.SEPARATED and separated_on is None and "separated_on" not in r.errors:
        r.fail("separated_on", "required when status is separated (the last day worked)")
    elif status not in (None, WorkerStatus.SEPARATED) and r.values.get("separated_on", "").strip():
        r.fail(
            "separated_on",
            f"status {status} contradicts separated_on (only a separated worker has a last "
            "day worked)",
        )
    rec = Worker(
        r.text("person_id"),
        r.text("org_id"),
        r.text("given_name"),
        r.text("family_name"),
        r.email("email", required=False),
        r.text("office", required=False),
        r.text("supervisor_id", required=False),
        status or WorkerStatus.ACTIVE,
        separated_on,
        src,
    )
    return None if r.errors else rec


def _separation(r: _Row, src: SourceRef) -> Separation | None:
    at = r.instant("separated_at")
    rec = Separation(
        r.text("person_id"),
        r.text("org_id", required=False),
        at or datetime.min.replace(tzinfo=UTC),
        r.text("reason", required=False),
        src,
    )
    return None if r.errors else rec


def _training(r: _Row, src: SourceRef) -> Training | None:
    rec = Training(r.text("person_id"), r.text("course"), r.date("completed_on") or date.min, src)
    return None if r.errors else rec


def _nda(r: _Row, src: SourceRef) -> Nda | None:
    rec = Nda(r.text("person_id"), r.date("signed_on") or date.min, src)
    return None if r.errors else rec


def _requester(r: _Row, src: SourceRef) -> RequesterDesignation | None:
    starts, ends = r.date("starts_on"), r.date("ends_on", required=False)
    if starts and ends and ends < starts:
        r.fail("ends_on", f"ends_on {ends} is before starts_on {starts}")
    rec = RequesterDesignation(
        r.text("person_id"), r.text("wda"), r.text("designated_by"), starts or date.min, ends, src
    )
    return None if r.errors else rec


def _status(raw: str, words: Mapping[str, RequestStatus]) -> RequestStatus:
    meaning = words.get(raw)
    if meaning is None:
        approved = ", ".join(w for w, m in words.items() if m is RequestStatus.APPROVED)
        other = ", ".join(w for w, m in words.items() if m is not RequestStatus.APPROVED)
        raise _Bad(
            f"{raw!r} is not a request status (acting: {approved}; read and ignored: "
            f"{other or 'none'}; see [feeds.requests.statuses] in the feed layout)"
        )
    return meaning


def _request(
    r: _Row, src: SourceRef, statuses: Mapping[str, RequestStatus] = DEFAULT_REQUEST_STATUSES
) -> AccessRequest | None:
    action = r.enum("action", RequestAction)
    is_add = action is RequestAction.ADD
    profile = r.text("profile", required=is_add)
    rec = AccessRequest(
        r.text("request_id"),
        action or RequestAction.ADD,
        r.text("person_id"),
        r.text("requester_id"),
        r.instant("submitted_at") or datetime.min.replace(tzinfo=UTC),
        r.date("effective_on") or date.min,
        r._get("status", lambda raw: _status(raw, statuses), required=True)
        or RequestStatus.NOT_APPROVED,
        profile,
        r.items("offices"),
        r.boolean("cert_training", required=is_add),
        r.boolean("cert_profile_approved", required=is_add),
        r.boolean("cert_nda", required=is_add),
        r.text("supervisor_id", required=False),
        src,
    )
    return None if r.errors else rec


BUILDERS: dict[FeedName, Callable[[_Row, SourceRef], Any]] = {
    FeedName.ORGANIZATIONS: _organization,
    FeedName.CONTRACTS: _contract,
    FeedName.WORKERS: _worker,
    FeedName.SEPARATIONS: _separation,
    FeedName.TRAINING: _training,
    FeedName.NDAS: _nda,
    FeedName.REQUESTERS: _requester,
    FeedName.REQUESTS: _request,
}


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
        bad = _invisible(h)
        if bad:
            raise _Unreadable(
                f"{file} line 1: header column {i + 1} ({_clean(h)!r}) contains invisible "
                f"character(s) {_describe(bad)}"
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
            size = os.fstat(fh.fileno()).st_size
            if settings.max_bytes and size > settings.max_bytes:
                return [], [], FeedState.UNREADABLE, _too_big(file, size, settings.max_bytes), ""
            source = _Lines(fh, file, settings.max_bytes)
            try:
                records, rejected, unattributable = _parse(
                    name, file, source, layout, settings.max_rows
                )
            except _Unreadable as exc:
                return [], [], FeedState.UNREADABLE, str(exc), source.digest()
            digest = source.digest()
        except OSError as exc:
            return [], [], FeedState.UNREADABLE, f"{file}: cannot read: {exc.strerror}", ""
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
    unique = UNIQUE_COLUMN.get(name)
    key_at = index[KEY_COLUMN[name]]
    build = BUILDERS[name]
    if name is FeedName.REQUESTS:
        build = functools.partial(_request, statuses=layout.request_statuses)
    records: list[Any] = []
    rows = 0
    memo: dict[str, str] = {}
    # Rows with errors: line, key, primary key, errors (logical -> reason), values.
    bad: list[tuple[int, str, str, dict[str, str], Mapping[str, str]]] = []
    shapeless: list[Rejection] = []  # rows with the wrong number of fields
    first: dict[str, int] = {}  # primary key -> first line
    dups: dict[str, list[int]] = {}  # primary key -> every line, when more than one
    while True:
        start = reader.line_num + 1
        try:
            fields = _next_record(file, reader, start)
        except StopIteration:
            break
        # One test per row in the common case: line breaks and invisible characters are
        # all non-printable.
        suspicious = not "".join(fields).isprintable()
        if suspicious:
            _no_line_breaks(file, start, fields, header)
        if not fields:
            continue  # an empty line is not a row; a line of blanks or commas is one
        rows += 1
        if max_rows and rows > max_rows:
            raise _Unreadable(
                f"{file} line {start}: more than feeds.max_rows ({max_rows}) rows; the feed "
                "is refused (raise the limit if the file is genuine)"
            )
        key = _clean(fields[key_at]) if key_at < len(fields) else ""
        if len(fields) != len(header):
            reason = f"{len(fields)} fields where the header has {len(header)}"
            raw_row = source.last.rstrip("\r\n")
            shapeless.append(Rejection(name.value, file, start, None, raw_row, reason, key=key))
            continue
        values = {logical: fields[i] for logical, i in index.items()}
        row = _Row(values, memo)
        for logical, value in values.items() if suspicious else ():
            bad_chars = _invisible(value)
            if bad_chars:
                row.fail(logical, f"contains invisible character(s) {_describe(bad_chars)}")
        rec = build(row, SourceRef(name.value, file, start))
        u = _clean(values[unique]) if unique else ""
        if u:
            if u in dups:
                dups[u].append(start)
            elif u in first:
                dups[u] = [first[u], start]
            else:
                first[u] = start
        if row.errors or rec is None:
            bad.append((start, key, u, row.errors, values))
        else:
            records.append(rec)
    if unique is not None and dups:
        accepted = []
        for rec in records:  # an accepted record's fields are its row's values, cleaned
            u = getattr(rec, unique)
            if u in dups:
                bad.append((rec.source.line, getattr(rec, KEY_COLUMN[name]), u, {}, {unique: u}))
            else:
                accepted.append(rec)
        records = accepted
        for line, _, u, errors, _ in bad:
            if u in dups:
                others = _lines_listed([n for n in dups[u] if n != line])
                reason = (
                    f"duplicate {wanted[unique]} {u!r}, also at line(s) {others}; "
                    "every row with it is rejected"
                )
                errors[unique] = f"{errors[unique]}; {reason}" if unique in errors else reason
    rejected = list(shapeless)
    unattributable = [r.line for r in shapeless if not r.key]
    for line, key, _, errors, row_values in bad:
        if not key:
            unattributable.append(line)
        for logical, reason in errors.items():
            value = row_values.get(logical, "")
            rejected.append(
                Rejection(name.value, file, line, wanted[logical], value, reason, key=key)
            )
    rejected.sort(key=lambda r: r.line)  # stable: a row's own rejections keep their order
    unattributable.sort()
    return records, rejected, unattributable


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
            state, detail = _judge(
                name, path.name, len(records), previous.get(name), modified, now, settings
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


def _reject_colliding_ids(
    read: dict[FeedName, tuple[list[Any], list[Rejection], FeedState, str, str]],
    layout: FeedLayout,
    match: IdMatch,
) -> None:
    """Move every accepted row that names a person id spelled two ways (one id under
    ``match``, two strings in the feeds) to the rejections, in place. Rejected rows'
    subjects count as spellings too: an unreadable ``p1001`` row and an accepted
    ``P1001`` row are the same person for the directory."""
    spellings: dict[str, dict[str, str]] = defaultdict(dict)  # key -> spelling -> place
    for name, cols in PERSON_ID_COLUMNS.items():
        records, rejections, _, _, _ = read[name]
        for rec in records:
            for col in cols:
                value = getattr(rec, col)
                if value:
                    spellings[id_key(match, value)].setdefault(value, str(rec.source))
        for rej in rejections:
            if rej.key:
                spellings[id_key(match, rej.key)].setdefault(rej.key, f"{rej.file} line {rej.line}")
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
                    )
                )
        if added:
            merged = sorted([*rejections, *added], key=lambda r: r.line)
            read[name] = (kept, merged, state, detail, digest)


def _judge(
    name: FeedName,
    file: str,
    rows: int,
    previous: int | None,
    modified: datetime | None,
    now: datetime,
    s: FeedsSettings,
) -> tuple[FeedState, str]:
    if rows == 0 and name not in MAY_BE_EMPTY:
        return FeedState.EMPTY, f"{file}: no usable rows; an empty feed is never read as 'nobody'"
    if (
        previous is not None
        and rows < previous * (1 - s.shrink_share)
        and previous - rows >= s.shrink_min_rows
    ):
        return FeedState.SHRUNK, (
            f"{file}: {rows} rows, down from {previous} at the last good run "
            f"(more than {s.shrink_share:.0%} fewer)"
        )
    if (
        s.max_age_hours > 0
        and modified is not None
        and now - modified > timedelta(hours=s.max_age_hours)
    ):
        age = (now - modified).total_seconds() / 3600
        return FeedState.STALE, f"{file}: last modified {age:.0f} h ago (max {s.max_age_hours:g} h)"
    return FeedState.OK, ""
