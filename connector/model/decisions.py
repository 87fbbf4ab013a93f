"""A policy decision for one person at one instant, with every reason and its clause."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from connector.model.feeds import FeedName
from connector.model.records import SourceRef


class Status(StrEnum):
    ENTITLED = "entitled"
    SUSPENDED = "suspended"  # a grant exists but a condition lapsed; returns when cured
    ENDED = "ended"  # the grant ended for good (separation, disable request)
    NONE = "none"  # never granted (no valid add request in force)


@dataclass(frozen=True, slots=True)
class Reason:
    """One failing condition (or, in ``Decision.flags``, one item for human review).

    ``code`` is stable and machine-readable (``contract_ended``); ``clause`` cites
    Policy 1021 (``3.e.vii``); ``message`` is for people and names the evidence.
    ``evidenced`` is True when a feed row positively shows the loss (a separation, a
    contract end date, a disable request) and False when the loss is inferred from
    an absence (no training row, not on the roster): the mass-disable guard may hold
    back only the latter. ``relies_on`` names every feed the conclusion rests on (the
    evidence feed and, for example for a requester check, the roster and the
    designations): a reason is sound only while all of them are usable.
    """

    code: str
    clause: str
    message: str
    feed: FeedName | None = None
    source: SourceRef | None = None
    evidenced: bool = False
    since: datetime | None = None  # when the condition started failing, if known
    deadline: datetime | None = None  # when an enabled account becomes a breach
    relies_on: frozenset[FeedName] = frozenset()

    @property
    def feeds(self) -> frozenset[FeedName]:
        """Every feed this reason depends on (``feed`` included)."""
        return self.relies_on | {self.feed} if self.feed is not None else self.relies_on


@dataclass(frozen=True, slots=True)
class Grant:
    """The grant in force: started by the first valid add request of this episode."""

    request_id: str
    started_at: datetime
    source: SourceRef


@dataclass(frozen=True, slots=True)
class Decision:
    person_id: str
    as_of: datetime
    status: Status
    reasons: tuple[Reason, ...] = ()  # every failing condition (empty when entitled)
    flags: tuple[Reason, ...] = ()  # review items that do not change the outcome
    grant: Grant | None = None
    profile: str = ""
    offices: tuple[str, ...] = ()

    @property
    def entitled(self) -> bool:
        return self.status is Status.ENTITLED

    @property
    def deadline(self) -> datetime | None:
        """The earliest deadline among the failing reasons (None when none is known)."""
        deadlines = [r.deadline for r in self.reasons if r.deadline is not None]
        return min(deadlines) if deadlines else None

    @property
    def evidenced(self) -> bool:
        return any(r.evidenced for r in self.reasons)
