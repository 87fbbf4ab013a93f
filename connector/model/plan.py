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


class OutcomeStatus(StrEnum):
    """What became of one planned action (the executor's ``Outcome.status``; the
    ``outcome`` of its ``operation`` audit record and the journal entry)."""

    OK = "ok"
    FAILED = "failed"
    NOT_ATTEMPTED = "not_attempted"  # the run stopped before it (breaker, deadline, SIGTERM)
    INTERRUPTED = "interrupted"  # a crashed run left it open (written by recovery only)


class FailureCode(StrEnum):
    """Why an action did not end ``ok`` (the executor's ``Outcome.code``)."""

    NOT_EFFECTIVE = "not_effective"  # the target said yes, the read-back says no
    STOPPED = "stopped"  # the run stopped while it was being tried
    NOT_ATTEMPTED = "not_attempted"
    INTERNAL = "internal"  # a bug in misync


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


class HeldCode(StrEnum):
    """Why the planner held an action back (``HeldAction.code``; the first part of a held
    key ``code:object`` and the key of its ``operation.held`` alert). The values are
    stored (state, audit records, plan files): never rename one."""

    FEED_UNHEALTHY = "feed_unhealthy"  # a feed it relies on is unusable
    REJECTED_ROW = "rejected_row"  # a rejected feed row may be about this person
    QUARANTINED = "quarantined"  # the object failed repeatedly
    AMBIGUOUS_CORRELATION = "ambiguous_correlation"  # more than one account for a person
    DISABLED_OUTSIDE_MISYNC = "disabled_outside_misync"  # an enable of a lock misync did not make
    ORPHAN_REPORT_ONLY = "orphan_report_only"  # ``target.orphans = "report"``
    MASS_DISABLE_GUARD = "mass_disable_guard"  # too many unexplained disables at once


#: Held codes an operator may accept (leave the object as it is: the hold no longer makes
#: runs incomplete nor alerts). A hold that guards against a breach of Policy 1021 (an
#: unusable feed, a rejected row that may end access, the mass-disable guard, an
#: ambiguous correlation) is lifted by fixing its cause, never by a decision.
ACCEPTABLE = frozenset(
    {HeldCode.DISABLED_OUTSIDE_MISYNC, HeldCode.QUARANTINED, HeldCode.ORPHAN_REPORT_ONLY}
)
#: Held codes an operator may approve (carry the held action out once, at the next run,
#: if that run plans the very same action: an enable of an entitled person, a retry of
#: a quarantined object, the disable of an orphan). Nothing else is ever approved.
APPROVABLE = frozenset(
    {HeldCode.DISABLED_OUTSIDE_MISYNC, HeldCode.QUARANTINED, HeldCode.ORPHAN_REPORT_ONLY}
)
PAST = {"accept": "accepted", "approve": "approved"}  # for messages


@dataclass(frozen=True, slots=True)
class HeldDecision:
    """An operator's decision on one held action (``misync held accept|approve``)."""

    verdict: str  # "accept" (leave it as it is) | "approve" (carry it out once)
    digest: str | None  # the held action decided on (None: any, a quarantine release)
    by: str
    reason: str
    at: datetime
    until: datetime | None = None  # an accept lapses then


@dataclass(frozen=True, slots=True)
class HeldAction:
    """An action the plan will not carry out, and why (feed guard, mass-disable guard)."""

    action: Action
    code: str  # a HeldCode (a string that is not one raises ValueError here)
    message: str
    decision: HeldDecision | None = None  # set on an accepted hold (``Plan.accepted``)

    def __post_init__(self) -> None:
        # a misspelt code would silently escape ACCEPTABLE/APPROVABLE and alert dedup
        object.__setattr__(self, "code", HeldCode(self.code))

    @property
    def key(self) -> str:
        """What operators name it by (``misync held``) and the ``operation.held`` alert key."""
        return f"{self.code}:{self.action.key}"


@dataclass(frozen=True, slots=True)
class Reopened:
    """A decision on a held action that no longer holds: what misync would do changed
    since it was decided, or an accept's ``until`` has passed."""

    key: str
    verdict: str
    why: str


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
class DirectoryRead:
    """How a plan saw the directory: ``warm`` (the state store's snapshot with only what
    changed since its mark read; connector.runs.directory) or a full scan, and why.

    Not part of the plan's checksum: a warm plan and a full-scan plan of the same
    directory at the same instant are the same plan (same actions, same checksum)."""

    warm: bool
    reason: str  # why a full scan ("" when warm)
    read_at: datetime  # when the directory was read
    full_scan_at: datetime  # the last full scan the view rests on (read_at for a full scan)
    entries: int  # entries read from the directory (warm: those changed since the mark)
    accounts: int  # accounts in the view
    #: the plan memo (a dry run, connector.runs.memo): when the whole plan it reused was
    #: made (None: not reused), the people evaluated and planned again, and the accounts
    #: left as that plan found them; or why it was not used ("" when not tried)
    memo_at: datetime | None = None
    replanned: int = 0
    reused: int = 0
    memo_unused: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    as_of: datetime
    target: str  # describes the target and managed scope, e.g. "ldap://h:389 ou=people,dc=x"
    actions: tuple[Action, ...]
    held: tuple[HeldAction, ...] = ()
    # held actions an operator accepted (left as they are): not carried out, yet they
    # neither make a run incomplete nor alert; ``approved``: keys of held actions an
    # operator approved, carried out by this plan (they are in ``actions``)
    accepted: tuple[HeldAction, ...] = ()
    approved: tuple[str, ...] = ()
    reopened: tuple[Reopened, ...] = ()
    breaches: tuple[Breach, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    feeds: tuple[FeedHealth, ...] = ()
    decisions: dict[str, int] = field(default_factory=dict)  # count per decision status
    checksum: str = ""
    read: DirectoryRead | None = None  # how the directory was read (not in the checksum)

    @property
    def summary(self) -> dict[str, int]:
        counts = {op.value: 0 for op in Op}
        for a in self.actions:
            counts[a.op.value] += 1
        counts["held"] = len(self.held)
        if self.accepted:
            counts["accepted"] = len(self.accepted)
        counts["breaches"] = sum(1 for b in self.breaches if b.severity == "breach")
        counts["warnings"] = sum(1 for b in self.breaches if b.severity == "warning")
        counts["rejected"] = len(self.rejected)
        return counts
