"""``misync explain``: one person's decision, or one account's fate, with every rejected
feed row that bears on it cited *as rejected*. Pure: no I/O.

A rejected row is never a missing one. A person whose training row could not be read
is not "without training"; a person whose roster row could not be read has a requester
check that could not be made, not a requester who "is not designated". So every reason
lists the rejected rows of the feeds it relies on (``Reason.feeds``): the person's own
rows, their organization's (contracts and organizations are keyed by org), and, for a
reason that judges a requester, that requester's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from connector.model.accounts import Account
from connector.model.decisions import Decision, Reason
from connector.model.feeds import FeedName, FeedSet, Rejection
from connector.model.plan import Action, HeldAction, Plan
from connector.reconcile.render import _reason_line, account_label
from connector.reconcile.serialize import _reason

ORG_KEYED = frozenset({FeedName.ORGANIZATIONS, FeedName.CONTRACTS})
REQUESTER_FEEDS = frozenset({FeedName.REQUESTERS, FeedName.WORKERS, FeedName.SEPARATIONS})


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A rejected feed row about a person: their own, their organization's, or the
    row of a requester of theirs."""

    rejection: Rejection
    about: str  # "P1010", "organization CBO1", "requester R900"
    requester: bool = False

    @property
    def feed(self) -> FeedName:
        return FeedName(self.rejection.feed)

    def cite(self) -> str:
        r = self.rejection
        column = f", column {r.column}" if r.column else ""
        return f"{r.file} line {r.line}{column} (about {self.about}) was rejected: {r.reason}"

    def as_json(self) -> dict[str, Any]:
        r = self.rejection
        return {
            "file": r.file,
            "line": r.line,
            "column": r.column,
            "value": r.value,
            "reason": r.reason,
            "about": self.about,
        }


def rejected_rows_about(
    person_id: str, feeds: FeedSet, key: Callable[[str], str] = str
) -> tuple[RejectedRow, ...]:
    """Every rejected row that bears on ``person_id``'s decision; ``key`` compares person
    ids as the target does (the mapping's ``correlation_key``)."""
    me = key(person_id)
    worker = next((w for w in feeds.workers if key(w.person_id) == me), None)
    requesters = {key(q.requester_id) for q in feeds.requests if key(q.person_id) == me}
    out: list[RejectedRow] = []
    for r in feeds.rejected:
        if not r.key:
            continue
        feed = FeedName(r.feed)
        if feed in ORG_KEYED:
            if worker is not None and r.key == worker.org_id:
                out.append(RejectedRow(r, f"organization {r.key}"))
        elif key(r.key) == me:
            out.append(RejectedRow(r, person_id))
        elif feed in REQUESTER_FEEDS and key(r.key) in requesters:
            out.append(RejectedRow(r, f"requester {r.key}", requester=True))
    return tuple(out)


def bearing_on(reason: Reason, rows: Iterable[RejectedRow]) -> tuple[RejectedRow, ...]:
    """The rows a reason rests on: those of the feeds it relies on; a requester's rows
    only for a reason that judges the requester (it relies on the designations)."""
    feeds = reason.feeds
    return tuple(
        row
        for row in rows
        if row.feed in feeds and (not row.requester or FeedName.REQUESTERS in feeds)
    )


def render_person(
    person_id: str,
    decision: Decision | None,
    rows: tuple[RejectedRow, ...],
    account: Account | None,
) -> str:
    """The text of ``misync explain PERSON``: ``render_decision``'s, with the rejected
    rows each reason rests on under it."""
    if decision is None:
        out = [f"person {person_id}: appears only in rejected rows; no decision can be made"]
    else:
        d = decision
        out = [f"person {d.person_id}: {d.status.value.upper()} as of {d.as_of.isoformat()}"]
        if d.grant is not None:
            out.append(
                f"  grant {d.grant.request_id} from {d.grant.started_at.isoformat()} "
                f"({d.grant.source})"
            )
        if d.profile or d.offices:
            out.append(f"  profile {d.profile or '-'}; offices {', '.join(d.offices) or '-'}")
        if d.reasons:
            out.append("  failing conditions:")
            for r in d.reasons:
                out.append(f"    {_reason_line(r)}")
                if r.deadline is not None:
                    out.append(f"        deadline {r.deadline.isoformat()}")
                out += [f"        but {row.cite()}" for row in bearing_on(r, rows)]
        else:
            out.append("  every condition of Policy 1021 holds")
        if d.flags:
            out.append("  for review:")
            for r in d.flags:
                out.append(f"    {_reason_line(r)}")
                out += [f"        but {row.cite()}" for row in bearing_on(r, rows)]
    if rows:
        out.append(
            f"  rejected rows about {person_id} (unreadable, not missing: the decision "
            "cannot be confirmed until they are corrected):"
        )
        out += [f"    {row.cite()}" for row in rows]
    if account is None:
        out.append("  account: none in the target")
    else:
        state = "enabled" if account.enabled else "disabled"
        out.append(f"  account: {account_label(account.account_id, account.logon_id)}, {state}")
    return "\n".join(out) + "\n"


def person_json(
    person_id: str,
    decision: Decision | None,
    rows: tuple[RejectedRow, ...],
    account: Account | None,
) -> dict[str, Any]:
    def reasons(rs: tuple[Reason, ...]) -> list[dict[str, Any]]:
        return [
            {**_reason(r), "rejected_rows": [row.cite() for row in bearing_on(r, rows)]} for r in rs
        ]

    return {
        "person_id": person_id,
        "as_of": decision.as_of.isoformat() if decision else None,
        "status": decision.status.value if decision else None,
        "entitled": decision.entitled if decision else False,
        "reasons": reasons(decision.reasons) if decision else [],
        "flags": reasons(decision.flags) if decision else [],
        "grant": decision.grant.request_id if decision and decision.grant else None,
        "rejected": [row.as_json() for row in rows],
        "account": {
            "id": account.account_id,
            "enabled": account.enabled,
            "logon_id": account.logon_id,
        }
        if account
        else None,
    }


@dataclass(frozen=True, slots=True)
class AccountFate:
    """What the plan does with one account that correlates to nobody in the feeds."""

    account: Account
    correlation_attribute: str
    action: Action | None
    held: HeldAction | None

    @property
    def verdict(self) -> str:
        if self.held is not None:
            return f"held ({self.held.code}): {self.held.message}"
        if self.action is not None:
            return f"{self.action.op.value} in the plan"
        if not self.account.enabled:
            return "nothing to do: the account is already disabled"
        return "nothing to do"


def account_fate(account: Account, plan: Plan, correlation_attribute: str) -> AccountFate:
    aid = account.account_id.lower()
    action = next((a for a in plan.actions if (a.account_id or "").lower() == aid), None)
    held = next((h for h in plan.held if (h.action.account_id or "").lower() == aid), None)
    return AccountFate(account, correlation_attribute, action, held)


def render_account(fate: AccountFate) -> str:
    acc = fate.account
    state = "enabled" if acc.enabled else "disabled"
    corr = (
        f"{fate.correlation_attribute}={acc.correlation}"
        if acc.correlation
        else f"no {fate.correlation_attribute}"
    )
    out = [
        f"account {acc.account_id} ({state}), logon ID {acc.logon_id or '-'}, {corr}",
        "  correlates to no person in the feeds (roster, requests, separations): an orphan",
        f"  plan: {fate.verdict}",
    ]
    action = fate.action or (fate.held.action if fate.held else None)
    out += [f"    {_reason_line(r)}" for r in (action.reasons if action else ())]
    return "\n".join(out) + "\n"


def account_json(fate: AccountFate) -> dict[str, Any]:
    acc = fate.account
    action = fate.action or (fate.held.action if fate.held else None)
    return {
        "account": {
            "id": acc.account_id,
            "enabled": acc.enabled,
            "logon_id": acc.logon_id,
            "correlation": acc.correlation,
        },
        "orphan": True,
        "op": action.op.value if action else None,
        "held": {"code": fate.held.code, "message": fate.held.message} if fate.held else None,
        "verdict": fate.verdict,
        "reasons": [_reason(r) for r in action.reasons] if action else [],
    }
