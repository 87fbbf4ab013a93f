"""The result of reading the feeds: validated records, rejected rows, per-feed health."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from connector.model.records import (
    AccessRequest,
    Contract,
    Nda,
    Organization,
    RequesterDesignation,
    Separation,
    Training,
    Worker,
)


class FeedName(StrEnum):
    ORGANIZATIONS = "organizations"
    CONTRACTS = "contracts"
    WORKERS = "workers"
    SEPARATIONS = "separations"
    TRAINING = "training"
    NDAS = "ndas"
    REQUESTERS = "requesters"
    REQUESTS = "requests"


#: The feeds whose rows are keyed by organization (``org_id``): a rejection's ``key`` is
#: an org_id there, a person_id in every other feed.
ORG_KEYED_FEEDS = frozenset({FeedName.ORGANIZATIONS, FeedName.CONTRACTS})
#: The feeds a requester check reads (is the requester designated, employed, separated).
REQUESTER_FEEDS = frozenset({FeedName.REQUESTERS, FeedName.WORKERS, FeedName.SEPARATIONS})


class FeedState(StrEnum):
    OK = "ok"
    MISSING = "missing"
    UNREADABLE = "unreadable"  # cannot be opened/decoded, or the header lacks a column
    STALE = "stale"  # older than the configured age
    SHRUNK = "shrunk"  # far fewer rows than the last good run
    EMPTY = "empty"  # no data rows where some are required


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row that failed validation. Never dropped silently: it is in the plan and the log."""

    feed: str
    file: str
    line: int
    column: str | None
    value: str | None
    reason: str
    key: str = ""  # the row's subject as read (person_id, or org_id for org feeds), if any
    # The row's own columns that say which area it is about, as read (empty when the row
    # has none, or they could not be read): ``org`` is a roster or separation row's
    # org_id, ``wda`` an organization or requester designation row's wda. They place the
    # row in an area (connector.reconcile.areas) and are not written to plan files or the
    # trail (a plan's checksum is what it was); a run's archived feeds give them back.
    org: str = field(default="", compare=False)
    wda: str = field(default="", compare=False)

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class FileStamp:
    """A feed file as it was read: where, its size and modification time (ns) when the
    read began, and the sha256 of the bytes actually parsed. A run records the stamps of
    what it evaluated; a file whose stamp differs from them changed since it was last
    seen (connector.feeds.settle)."""

    path: str
    size: int
    mtime_ns: int
    digest: str


@dataclass(frozen=True, slots=True)
class FeedHealth:
    feed: FeedName
    file: str
    state: FeedState
    rows: int  # accepted data rows
    rejected: int
    detail: str = ""
    modified_at: datetime | None = None
    digest: str = ""  # sha256 of the file bytes, for the audit trail
    #: the file as read (None: missing, or not read because it was still being written)
    stamp: FileStamp | None = None

    @property
    def healthy(self) -> bool:
        return self.state is FeedState.OK


@dataclass(frozen=True, slots=True)
class FeedSet:
    """Everything read from the feeds for one evaluation."""

    organizations: tuple[Organization, ...] = ()
    contracts: tuple[Contract, ...] = ()
    workers: tuple[Worker, ...] = ()
    separations: tuple[Separation, ...] = ()
    training: tuple[Training, ...] = ()
    ndas: tuple[Nda, ...] = ()
    requesters: tuple[RequesterDesignation, ...] = ()
    requests: tuple[AccessRequest, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    health: Mapping[FeedName, FeedHealth] = field(default_factory=dict)

    def records(self, name: FeedName) -> tuple[Any, ...]:
        """The records of feed ``name`` (each field is named by its feed's value)."""
        return cast(tuple[Any, ...], getattr(self, name.value))

    def unhealthy(self) -> frozenset[FeedName]:
        """Feeds that must not drive any action (missing, unreadable, stale, shrunk, empty).

        A feed absent from ``health`` is considered healthy (unit tests build FeedSets by hand).
        """
        return frozenset(name for name, h in self.health.items() if not h.healthy)
