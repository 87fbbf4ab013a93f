"""The plan: a value, computed without side effects, that ``apply`` carries out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from connector.model.accounts import Change, DesiredAccount
from connector.model.decisions import Reason
from connector.model.feeds import FeedHealth, FeedName, Rejection


class Op(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DISABLE = "disable"
    ENABLE = "enable"


@dataclass(frozen=True, slots=True)
class Action:
    op: Op
    person_id: str | None  # None for an orphan that correlates to nobody
    account_id: str | None  # None for a create (the target assigns it)
    logon_id: str | None
    changes: tuple[Change, ...]
    reasons: tuple[Reason, ...]
    before: str | None  # digest of the account as snapshotted; None for a create
    desired: DesiredAccount | None = None  # create/enable/update: the target state
    drivers: frozenset[FeedName] = frozenset()  # feeds whose data led to this action
    evidenced: bool = False  # disable backed by positive evidence (never held by count)
    deadline: datetime | None = None

    @property
    def key(self) -> str:
        """Stable identity of the object this action touches (for journal, retries, quarantine)."""
        return self.account_id or f"person:{self.person_id}"


@dataclass(frozen=True, slots=True)
class HeldAction:
    """An action the plan will not carry out, and why (feed guard, mass-disable guard)."""

    action: Action
    code: str  # feed_unhealthy | mass_disable_guard | quarantined
    message: str


@dataclass(frozen=True, slots=True)
class Breach:
    """An enabled account of a person who lost entitlement: past (breach) or near (warning)."""

    person_id: str | None
    account_id: str
    deadline: datetime
    severity: str  # "breach" (deadline passed) | "warning" (deadline within the warning window)
    reasons: tuple[Reason, ...]
    logon_id: str | None = None  # shown beside the account id (a SCIM id is opaque)


@dataclass(frozen=True, slots=True)
class Plan:
    as_of: datetime
    target: str  # describes the target and managed scope, e.g. "ldap://h:389 ou=people,dc=x"
    actions: tuple[Action, ...]
    held: tuple[HeldAction, ...] = ()
    breaches: tuple[Breach, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    feeds: tuple[FeedHealth, ...] = ()
    decisions: dict[str, int] = field(default_factory=dict)  # count per decision status
    checksum: str = ""

    @property
    def summary(self) -> dict[str, int]:
        counts = {op.value: 0 for op in Op}
        for a in self.actions:
            counts[a.op.value] += 1
        counts["held"] = len(self.held)
        counts["breaches"] = sum(1 for b in self.breaches if b.severity == "breach")
        counts["warnings"] = sum(1 for b in self.breaches if b.severity == "warning")
        counts["rejected"] = len(self.rejected)
        return counts
