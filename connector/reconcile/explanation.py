"""The explanation of one person's decision, or one account's fate, with every rejected
feed row that bears on it cited *as rejected*: built and rendered (text and JSON) from
values. Pure: no I/O; ``connector.runs.explain`` gathers the values for ``misync
explain``.

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
from datetime import datetime, tzinfo
from typing import Any

from connector.model.accounts import Account
from connector.model.decisions import Decision, Reason
from connector.model.feeds import ORG_KEYED_FEEDS, REQUESTER_FEEDS, FeedName, FeedSet, Rejection
from connector.model.plan import Action, Breach, HeldAction, Plan
from connector.reconcile.render import account_label, decision_head, human_duration, reason_line
from connector.reconcile.serialize import reason_to_json
from connector.timefmt import when


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
        if feed in ORG_KEYED_FEEDS:
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


@dataclass(frozen=True, slots=True)
class PersonFate:
    """What the plan does for one person: its actions, its held actions and the
    person's deadline as the plan judged it (a breach past it, a warning near it)."""

    as_of: datetime
    actions: tuple[Action, ...] = ()
    held: tuple[HeldAction, ...] = ()
    breaches: tuple[Breach, ...] = ()
    accepted: tuple[HeldAction, ...] = ()  # held, left as they are by an operator


def person_fate(person_id: str, plan: Plan, key: Callable[[str], str] = str) -> PersonFate:
    """The plan's actions, held actions and deadlines for ``person_id`` (ids compared
    as the target compares them)."""
    me = key(person_id)

    def mine(pid: str | None) -> bool:
        return pid is not None and key(pid) == me

    return PersonFate(
        plan.as_of,
        tuple(a for a in plan.actions if mine(a.person_id)),
        tuple(h for h in plan.held if mine(h.action.person_id)),
        tuple(b for b in plan.breaches if mine(b.person_id)),
        tuple(h for h in plan.accepted if mine(h.action.person_id)),
    )


def deadline_state(
    deadline: datetime, fate: PersonFate, account_id: str | None = None
) -> tuple[str, str]:
    """(state, words) of one deadline as of the plan: ``breach`` (an account is still
    enabled past it: "overdue by 12 d 11 h"), ``warning`` (due within the warning
    window), ``due`` (later) or ``passed`` (no enabled account is left past it)."""
    gap = fate.as_of - deadline
    for b in fate.breaches:
        if b.deadline == deadline and (account_id is None or b.account_id == account_id):
            if b.severity == "breach":
                return "breach", f"overdue by {human_duration(gap)}"
            return "warning", f"due in {human_duration(gap)}"
    if deadline > fate.as_of:
        return "due", f"due in {human_duration(gap)}"
    return "passed", f"passed {human_duration(gap)} ago; no enabled account is left past it"


def _deadline_line(deadline: datetime, fate: PersonFate | None, tz: tzinfo | None) -> str:
    at = when(deadline, tz)
    if fate is None:
        return f"deadline {at}"
    state, words = deadline_state(deadline, fate)
    flag = " (BREACH: the account is still enabled)" if state == "breach" else ""
    return f"deadline {at}: {words}{flag}"


def _fate_lines(fate: PersonFate, account: Account | None) -> list[str]:
    out: list[str] = []
    for a in fate.actions:
        out.append(f"  plan: {a.op.value.upper()} {account_label(a.account_id, a.logon_id)}")
        out += [f"      because {reason_line(r)}" for r in a.reasons]
        for c in a.changes:
            out.append(f"      {c.name}: {', '.join(c.old) or '-'} -> {', '.join(c.new) or '-'}")
    for h in fate.held:
        a = h.action
        out.append(
            f"  plan: {a.op.value.upper()} {account_label(a.account_id, a.logon_id)} is HELD "
            f"({h.code}), not carried out: {h.message}"
        )
    for h in fate.accepted:
        a, d = h.action, h.decision
        by = f" by {d.by}: {d.reason}" if d is not None else ""
        out.append(
            f"  plan: {a.op.value.upper()} {account_label(a.account_id, a.logon_id)} is held "
            f"({h.code}) and ACCEPTED{by}: left as it is (`misync held list`)"
        )
    if not fate.actions and not fate.held and not fate.accepted:
        if account is None:
            out.append("  plan: nothing to do (no account, and none to create)")
        else:
            out.append("  plan: nothing to do (the account is as the decision wants it)")
    return out


def render_person(
    person_id: str,
    decision: Decision | None,
    rows: tuple[RejectedRow, ...],
    account: Account | None,
    fate: PersonFate | None = None,
    *,
    tz: tzinfo | None = None,
) -> str:
    """The text of ``misync explain PERSON``: the decision with the rejected rows each
    reason rests on under it, each deadline's state, the account, and what the plan
    does (``fate``: its action, or why it is held). Instants in ``tz``."""
    if decision is None:
        out = [f"person {person_id}: appears only in rejected rows; no decision can be made"]
    else:
        out = _decision_lines(decision, rows, fate, tz)
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
    if fate is not None:
        out += _fate_lines(fate, account)
    return "\n".join(out) + "\n"


def _decision_lines(
    d: Decision, rows: tuple[RejectedRow, ...], fate: PersonFate | None, tz: tzinfo | None
) -> list[str]:
    """The decision part of ``person_text``: status, grant, profile, the failing
    conditions (each with its deadline and the rejected rows bearing on it), the flags."""
    out = decision_head(d, tz)
    if d.reasons:
        out.append("  failing conditions:")
        for r in d.reasons:
            out.append(f"    {reason_line(r)}")
            if r.deadline is not None:
                out.append(f"        {_deadline_line(r.deadline, fate, tz)}")
            out += [f"        but {row.cite()}" for row in bearing_on(r, rows)]
    else:
        out.append("  every condition of Policy 1021 holds")
    if d.flags:
        out.append("  for review:")
        for r in d.flags:
            out.append(f"    {reason_line(r)}")
            out += [f"        but {row.cite()}" for row in bearing_on(r, rows)]
    return out


def person_json(
    person_id: str,
    decision: Decision | None,
    rows: tuple[RejectedRow, ...],
    account: Account | None,
    fate: PersonFate | None = None,
    *,
    tz: tzinfo | None = None,
) -> dict[str, Any]:
    def reasons(rs: tuple[Reason, ...]) -> list[dict[str, Any]]:
        out = []
        for r in rs:
            item = {
                **reason_to_json(r),
                "rejected_rows": [row.cite() for row in bearing_on(r, rows)],
            }
            if r.since is not None:
                item["since"] = when(r.since, tz)
            if r.deadline is not None:
                item["deadline"] = when(r.deadline, tz)
                if fate is not None:
                    state, words = deadline_state(r.deadline, fate)
                    item["deadline_state"] = {"state": state, "words": words}
            out.append(item)
        return out

    body: dict[str, Any] = {
        "person_id": person_id,
        "as_of": when(decision.as_of, tz) if decision else None,
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
    if fate is not None:
        body["plan"] = {
            "actions": [_action_json(a) for a in fate.actions],
            "held": [
                {**_action_json(h.action), "code": h.code, "message": h.message} for h in fate.held
            ],
            "accepted": [
                {
                    **_action_json(h.action),
                    "code": h.code,
                    "by": h.decision.by if h.decision else None,
                    "reason": h.decision.reason if h.decision else None,
                }
                for h in fate.accepted
            ],
        }
    return body


def _action_json(a: Action) -> dict[str, Any]:
    return {
        "op": a.op.value,
        "account_id": a.account_id,
        "logon_id": a.logon_id,
        "reasons": [{"code": r.code, "clause": r.clause} for r in a.reasons],
        "changes": [{"name": c.name, "old": list(c.old), "new": list(c.new)} for c in a.changes],
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
    out += [f"    {reason_line(r)}" for r in (action.reasons if action else ())]
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
        "reasons": [reason_to_json(r) for r in action.reasons] if action else [],
    }
