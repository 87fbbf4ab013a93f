"""Where each feed lives and what its columns are called (mappings/feeds.toml)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connector.errors import MisyncError
from connector.model.feeds import FeedName
from connector.model.records import DEFAULT_REQUEST_STATUSES, RequestStatus

#: SPEC.md's default file names and (logical) columns.
COLUMNS: dict[FeedName, tuple[str, ...]] = {
    FeedName.ORGANIZATIONS: ("org_id", "name", "kind", "wda"),
    FeedName.CONTRACTS: (
        "contract_id",
        "org_id",
        "type",
        "counterparty",
        "business_case",
        "signed_on",
        "starts_on",
        "ends_on",
        "terminated_on",
        "security_admin_approved_on",
        "contracts_office_approved_on",
        "data_owner_approved_on",
    ),
    FeedName.WORKERS: (
        "person_id",
        "org_id",
        "given_name",
        "family_name",
        "email",
        "office",
        "supervisor_id",
        "status",
        "separated_on",
    ),
    FeedName.SEPARATIONS: ("person_id", "org_id", "separated_at", "reason"),
    FeedName.TRAINING: ("person_id", "course", "completed_on"),
    FeedName.NDAS: ("person_id", "signed_on"),
    FeedName.REQUESTERS: ("person_id", "wda", "designated_by", "starts_on", "ends_on"),
    FeedName.REQUESTS: (
        "request_id",
        "action",
        "person_id",
        "requester_id",
        "submitted_at",
        "effective_on",
        "status",
        "profile",
        "offices",
        "cert_training",
        "cert_profile_approved",
        "cert_nda",
        "supervisor_id",
    ),
}


class FeedLayoutError(MisyncError):
    """The feed layout file is invalid; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class FeedLayout:
    files: dict[FeedName, str]
    columns: dict[FeedName, dict[str, str]]  # logical name -> the file's column name
    #: requests.csv status word (exact, as written) -> what it means; any other word is
    #: a rejected row
    request_statuses: Mapping[str, RequestStatus] = field(
        default_factory=lambda: dict(DEFAULT_REQUEST_STATUSES)
    )

    def column(self, feed: FeedName, logical: str) -> str:
        return self.columns[feed].get(logical, logical)


def _words(values: list[str]) -> list[str]:
    for v in values:
        if not v or v != v.strip() or not v.isprintable():
            raise ValueError(f"{v!r}: a status word is printable, with no surrounding blanks")
    return values


class _Statuses(BaseModel):
    """``[feeds.requests.statuses]``: the words of the request form's status column."""

    model_config = ConfigDict(extra="forbid")
    approved: list[str] = Field(min_length=1)  # the request acts
    not_approved: list[str] = []  # read and ignored (submitted, pending, denied, ...)

    _w = field_validator("approved", "not_approved")(_words)


class _Feed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str | None = None
    columns: dict[str, str] = {}
    statuses: _Statuses | None = None  # requests only


class _Layout(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feeds: dict[FeedName, _Feed] = {}


def load_feed_layout(path: Path | None) -> FeedLayout:
    files = {name: f"{name.value}.csv" for name in FeedName}
    columns: dict[FeedName, dict[str, str]] = {name: {} for name in FeedName}
    if path is None:
        return FeedLayout(files, columns)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        layout = _Layout.model_validate(raw)
    except FileNotFoundError as exc:
        raise FeedLayoutError(f"{path}: feed layout file not found") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FeedLayoutError(f"{path}: cannot read feed layout: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise FeedLayoutError(f"{path}: {problems}") from exc
    for name, feed in layout.feeds.items():
        unknown = set(feed.columns) - set(COLUMNS[name])
        if unknown:
            raise FeedLayoutError(
                f"{path}: feeds.{name.value}.columns: unknown column(s) "
                f"{', '.join(sorted(unknown))} (known: {', '.join(COLUMNS[name])})"
            )
        if feed.file:
            files[name] = feed.file
        columns[name] = dict(feed.columns)
    statuses = dict(DEFAULT_REQUEST_STATUSES)
    for name, feed in layout.feeds.items():
        if feed.statuses is None:
            continue
        if name is not FeedName.REQUESTS:
            raise FeedLayoutError(
                f"{path}: feeds.{name.value}.statuses: only feeds.requests has statuses"
            )
        both = sorted(set(feed.statuses.approved) & set(feed.statuses.not_approved))
        if both:
            raise FeedLayoutError(
                f"{path}: feeds.requests.statuses: {', '.join(both)} cannot be both approved "
                "and not_approved"
            )
        statuses = dict.fromkeys(feed.statuses.approved, RequestStatus.APPROVED)
        statuses |= dict.fromkeys(feed.statuses.not_approved, RequestStatus.NOT_APPROVED)
    result = FeedLayout(files, columns, statuses)
    _check_distinct(path, result, {name for name, feed in layout.feeds.items() if feed.file})
    return result


def _check_distinct(path: Path, layout: FeedLayout, set_here: set[FeedName]) -> None:
    """Two logical columns of a feed in one file column, or two feeds in one file, would
    read one value as two different things: refuse the layout, naming the field."""
    for name in FeedName:
        by_column: dict[str, list[str]] = {}
        for logical in COLUMNS[name]:
            by_column.setdefault(layout.column(name, logical), []).append(logical)
        for column, logicals in by_column.items():
            if len(logicals) > 1:
                raise FeedLayoutError(
                    f"{path}: feeds.{name.value}.columns: {' and '.join(logicals)} all map "
                    f"to the file column {column!r}; each needs its own column"
                )
    owner: dict[str, FeedName] = {}
    for name in FeedName:
        file = os.path.normpath(layout.files[name])
        other = owner.setdefault(file, name)
        if other is not name:
            # Name the field written in the layout file rather than a default.
            blamed, kept = (other, name) if name not in set_here else (name, other)
            raise FeedLayoutError(
                f"{path}: feeds.{blamed.value}.file: {layout.files[blamed]!r} is also the file "
                f"of feeds.{kept.value}{'' if kept in set_here else ' (the default)'}; "
                "each feed needs its own file"
            )
