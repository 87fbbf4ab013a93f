"""What the state store hands out (one frozen row type per table it is read from), its
conflict error, and ``FeedStamps``: shared by the SQLite and the PostgreSQL backends."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.errors import MisyncError

SCHEMA_VERSION = 2


class LogonIdConflictError(MisyncError):
    """The logon ID belongs to someone else, or the person already has another one."""


@dataclass(frozen=True, slots=True)
class LeaderRow:
    """Who leads (PostgreSQL only, issue 17): the epoch of the last takeover, the
    leader's host and pid, since when, and when it last renewed its lease."""

    epoch: int
    host: str
    pid: int
    since: datetime
    renewed_at: datetime
    lease_seconds: int


@dataclass(frozen=True, slots=True)
class JournalRow:
    id: int
    run_id: str
    key: str
    op: str
    person_id: str | None
    account_id: str | None
    payload: dict[str, Any]
    begun_at: datetime
    ended_at: datetime | None
    outcome: str | None  # set with ended_at null: known, not yet audited
    detail: str | None
    audit_seq: int | None = None  # the seq of its audit record (closed entries)


@dataclass(frozen=True, slots=True)
class JournalClose:
    """One outcome to close: its audit record's seq, and what it does to failure counts."""

    entry_id: int
    audit_seq: int | None
    key: str
    failure: str | None  # None: clear the object's failure count; else count one, this detail
    count_failure: bool = True  # False for outcomes that say nothing of the object
    op: str = ""  # a successful "disable"/"enable" marks/unmarks the account as misync's


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    kind: str
    as_of: datetime
    plan: str | None
    started_at: datetime
    finished_at: datetime | None
    status: str | None
    summary: dict[str, int]


@dataclass(frozen=True, slots=True)
class BreachRow:
    account_id: str
    person_id: str
    deadline: datetime
    severity: str
    reasons: str
    opened_at: datetime
    alerted_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An alert that was raised (and, while ``closed_at`` is None, is still open)."""

    id: int
    kind: str
    key: str
    severity: str
    summary: str
    fields: dict[str, Any]
    opened_at: datetime
    sent_at: datetime | None  # last time it went out (first send or reminder)
    reminders: int
    seen_run: str | None  # the last run that raised it
    undelivered: tuple[str, ...]  # sinks that failed the last send (retried at remind)
    closed_at: datetime | None
    resolution: str | None


@dataclass(frozen=True, slots=True)
class FeedHealthRow:
    feed: str
    state: str
    rows: int
    rejected: int
    detail: str
    modified_at: datetime | None
    run_id: str
    checked_at: datetime


@dataclass(frozen=True, slots=True)
class HeldRow:
    """A held action as the last run that saw it recorded it (``misync held list``)."""

    key: str  # code:object
    code: str
    op: str
    object: str  # the action's key: the account id, or person:ID for a create
    person_id: str | None
    account_id: str | None
    logon_id: str | None
    message: str
    digest: str
    first_seen: datetime
    last_seen: datetime
    run_id: str
    accepted: bool = False  # left as it is by an operator's accept in that run


@dataclass(frozen=True, slots=True)
class HeldDecisionRow:
    """An operator's decision on a held action; open while ``closed_at`` is None."""

    id: int
    key: str
    verdict: str  # accept | approve
    digest: str | None
    reason: str
    by: str
    at: datetime
    until: datetime | None
    closed_at: datetime | None = None
    closed_by: str | None = None
    resolution: str | None = None


#: meta key: the stamps of the feed files the last evaluation read (connector.feeds.settle)
FEED_STAMPS = "feed_stamps"


class FeedStamps:
    """The stamps of the feed files the last evaluation read (``connector.feeds.settle``),
    kept as one meta value: the same for every backend that has ``meta``/``set_meta``."""

    def meta(self, key: str) -> str | None:
        raise NotImplementedError

    def set_meta(self, key: str, value: str) -> None:
        raise NotImplementedError

    def feed_stamps(self) -> dict[str, tuple[str, int, int, str]]:
        """Per feed, the file the last evaluation read: (path, size, mtime_ns, sha256)."""
        raw = self.meta(FEED_STAMPS)
        if not raw:
            return {}
        try:
            data = json.loads(raw)
            return {feed: (str(v[0]), int(v[1]), int(v[2]), str(v[3])) for feed, v in data.items()}
        except (ValueError, TypeError, IndexError, AttributeError):
            return {}  # unreadable: every file counts as changed (it settles, nothing lost)

    def record_feed_stamps(self, stamps: Mapping[str, tuple[str, int, int, str]]) -> None:
        """Replace the stamps of what was evaluated (a feed not in ``stamps`` was not read)."""
        self.set_meta(FEED_STAMPS, json.dumps({k: list(v) for k, v in stamps.items()}))
