"""Read and validate the feeds.

Every bad row becomes a ``Rejection`` naming the file, the line (physical, header =
line 1), the file's column name, the value and the reason; all the errors of a row are
reported, not only the first. Nothing is dropped silently and nothing is guessed.

Feed health (``FeedHealth``): MISSING (no file) > UNREADABLE (cannot be opened or
decoded, or a required column is missing from the header) > EMPTY (no accepted row;
only ``separations`` may be empty) > SHRUNK (rows fell by more than ``shrink_share``
and by at least ``shrink_min_rows`` since the last good run) > STALE (older than
``max_age_hours``). Missing and unreadable feeds contribute no records; stale and
shrunk feeds keep theirs (disables may cite them) but drive nothing themselves.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from connector.feeds.layout import COLUMNS, FeedLayout, load_feed_layout
from connector.model.feeds import FeedHealth, FeedName, FeedSet, FeedState, Rejection
from connector.model.records import (
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

E = TypeVar("E", bound=StrEnum)


class _Bad(ValueError):
    """One field failed; the message is the reason."""


class _Row:
    """Typed access to one CSV row by logical column; collects every field error."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.errors: dict[str, str] = {}

    def _get(self, col: str, conv: Callable[[str], Any], *, required: bool) -> Any:
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
        return value if isinstance(value, str) else ""

    def date(self, col: str, *, required: bool = True) -> date | None:
        return self._get(col, _date, required=required)  # type: ignore[no-any-return]

    def instant(self, col: str) -> datetime | None:
        return self._get(col, _instant, required=True)  # type: ignore[no-any-return]

    def enum(self, col: str, kind: type[E]) -> E | None:
        return self._get(col, lambda raw: _enum(raw, kind), required=True)  # type: ignore[no-any-return]

    def boolean(self, col: str, *, required: bool) -> bool:
        value = self._get(col, _bool, required=required)
        return bool(value)

    def items(self, col: str) -> tuple[str, ...]:
        raw = self.values.get(col, "")
        return tuple(p.strip() for p in raw.split(";") if p.strip())

    def fail(self, col: str, reason: str) -> None:
        self.errors.setdefault(col, reason)


def _date(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _Bad(f"not a date (YYYY-MM-DD): {raw!r}") from None


def _instant(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise _Bad(f"not an ISO 8601 instant: {raw!r}") from None
    if value.tzinfo is None:
        raise _Bad(f"instant {raw!r} needs a UTC offset (e.g. 2026-11-25T17:00:00-08:00)")
    return value


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    raise _Bad(f"not a boolean (true/false): {raw!r}")


def _enum(raw: str, kind: type[E]) -> E:
    try:
        return kind(raw.lower())
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


def _contract(r: _Row, src: SourceRef) -> Contract | None:
    ctype = r.enum("type", ContractType)
    counterparty = r.text("counterparty").lower()
    if ctype is not None and counterparty and counterparty not in _COUNTERPARTIES[ctype]:
        r.fail(
            "counterparty",
            f"{counterparty!r} is not a valid counterparty for a {ctype} "
            f"contract ({', '.join(_COUNTERPARTIES[ctype])})",
        )
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
    rec = Worker(
        r.text("person_id"),
        r.text("org_id"),
        r.text("given_name"),
        r.text("family_name"),
        r.text("email", required=False),
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


def _request(r: _Row, src: SourceRef) -> AccessRequest | None:
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
        r.enum("status", RequestStatus) or RequestStatus.PENDING,
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


def _read_one(
    name: FeedName, path: Path, layout: FeedLayout
) -> tuple[list[Any], list[Rejection], FeedState, str, str]:
    """Parse one file: records, rejections, state (OK/MISSING/UNREADABLE), detail, digest."""
    file = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], [], FeedState.MISSING, f"{file}: file not found in {path.parent}", ""
    except OSError as exc:
        return [], [], FeedState.UNREADABLE, f"{file}: cannot read: {exc.strerror}", ""
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return [], [], FeedState.UNREADABLE, f"{file} line {line}: not UTF-8 ({exc.reason})", digest
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return [], [], FeedState.UNREADABLE, f"{file} line 1: no header row", digest
    except csv.Error as exc:
        return [], [], FeedState.UNREADABLE, f"{file} line 1: {exc}", digest
    wanted = {logical: layout.column(name, logical) for logical in COLUMNS[name]}
    missing = [col for col in wanted.values() if col not in header]
    if missing:
        return (
            [],
            [],
            FeedState.UNREADABLE,
            f"{file} line 1: missing column(s) {', '.join(missing)}",
            digest,
        )
    index = {logical: header.index(col) for logical, col in wanted.items()}
    records: list[Any] = []
    rejected: list[Rejection] = []
    seen: dict[str, int] = {}
    unique = UNIQUE_COLUMN.get(name)
    key_col = KEY_COLUMN[name]
    build = BUILDERS[name]
    line = reader.line_num
    while True:
        start = line + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rejected.append(Rejection(name.value, file, start, None, None, f"malformed CSV: {exc}"))
            line = reader.line_num
            continue
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue  # a blank line is not a row
        if len(fields) != len(header):
            rejected.append(
                Rejection(
                    name.value,
                    file,
                    start,
                    None,
                    None,
                    f"{len(fields)} fields where the header has {len(header)}",
                )
            )
            continue
        values = {logical: fields[i] for logical, i in index.items()}
        key = values.get(key_col, "").strip()
        row = _Row(values)
        src = SourceRef(name.value, file, start)
        rec = build(row, src)
        if unique is not None and not row.errors:
            k = values[unique].strip()
            if k in seen:
                row.fail(unique, f"duplicate {unique} {k!r}, first at line {seen[k]}")
                rec = None
            else:
                seen[k] = start
        if row.errors or rec is None:
            for logical, reason in row.errors.items():
                rejected.append(
                    Rejection(
                        name.value,
                        file,
                        start,
                        wanted[logical],
                        values.get(logical, ""),
                        reason,
                        key=key,
                    )
                )
            continue
        records.append(rec)
    return records, rejected, FeedState.OK, "", digest


def read_feeds(
    settings: FeedsSettings,
    *,
    now: datetime,
    tz: ZoneInfo,
    previous_rows: Mapping[FeedName, int] | None = None,
    layout: FeedLayout | None = None,
) -> FeedSet:
    """Read every feed in ``settings.dir``. Never raises for bad data: it is in the result."""
    layout = layout or load_feed_layout(settings.mapping)
    previous = previous_rows or {}
    out: dict[FeedName, list[Any]] = {}
    rejected: list[Rejection] = []
    health: dict[FeedName, FeedHealth] = {}
    for name in FeedName:
        path = settings.dir / layout.files[name]
        records, rej, state, detail, digest = _read_one(name, path, layout)
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
            name, path.name, state, len(records), len(rej), detail, modified, digest
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
