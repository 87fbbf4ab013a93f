"""``misync explain SUBJECT``: a person (by person id), or an account (by account id,
logon ID or the value of its correlation attribute, read from the target), explained
with every rejected row that bears on it and with what the plan does about it.

It makes the plan ``misync plan`` makes (one paged read of the managed scope), so what
it says will happen is what the plan does: the action, or why it is held, and the state
of each deadline as of the plan. This module reads (feeds, state, target) and plans;
``connector.reconcile.explanation`` builds and renders the explanation, purely."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from connector.app import Runtime
from connector.errors import MisyncError
from connector.model.accounts import Account
from connector.model.decisions import Decision
from connector.model.feeds import ORG_KEYED_FEEDS, FeedName
from connector.reconcile.explanation import (
    AccountFate,
    PersonFate,
    RejectedRow,
    account_fate,
    person_fate,
    rejected_rows_about,
)
from connector.runs.planning import Evaluation, evaluate, make_plan
from connector.state import Store


@dataclass(frozen=True)
class PersonExplanation:
    person_id: str
    decision: Decision | None  # None: the person appears only in rejected rows
    rejected: tuple[RejectedRow, ...]
    account: Account | None
    fate: PersonFate | None = None  # what the plan does for this person


class NothingToExplain(MisyncError):
    """The subject names no person in the feeds and no account in the managed scope."""


def explain(
    rt: Runtime, store: Store, subject: str, as_of: datetime
) -> PersonExplanation | AccountFate:
    ev = evaluate(rt, store, as_of)
    key = rt.mapping.correlation_key
    person = _person_named(rt, ev, subject)
    me = key(person) if person is not None else None
    wanted = subject.strip().lower()
    wanted_key = key(subject.strip())
    mine: list[Account] = []  # the person's accounts
    found: list[Account] = []  # accounts the subject names: id, logon ID, correlation

    def observe(account: Account) -> None:
        correlation = key(account.correlation) if account.correlation else None
        if me is not None:
            if correlation == me:
                mine.append(account)
        elif wanted in (account.account_id.lower(), (account.logon_id or "").lower()) or (
            correlation is not None and correlation == wanted_key
        ):
            found.append(account)

    # the plan `misync plan` makes, from the same read: its fate of the subject is the plan's
    plan, _ = make_plan(rt, store, as_of, evaluation=ev, observe=observe)
    if person is not None:
        return _person(rt, ev, person, mine[0] if mine else None, person_fate(person, plan, key))
    if not found:
        # a logon ID the plan gives a new account ("CREATE P1001 new aortiz")
        planned = [*plan.actions, *(h.action for h in plan.held)]
        for a in planned:
            if a.person_id and a.account_id is None and (a.logon_id or "").lower() == wanted:
                pid = _person_named(rt, ev, a.person_id) or a.person_id
                return _person(rt, ev, pid, None, person_fate(pid, plan, key))
        raise NothingToExplain(
            f"{subject!r} is no person in the feeds (accepted or rejected rows) and no "
            "account in the target's managed scope (by account id, logon ID or "
            f"{rt.mapping.correlation_attribute})"
        )
    account = found[0]
    if account.correlation:
        person = _person_named(rt, ev, account.correlation)
        if person is not None:
            return _person(rt, ev, person, account, person_fate(person, plan, key))
    # an orphan: named by its id, its logon ID, or its correlation value (e.g. P9999, the
    # id the plan's orphan reason prints although no feed has it)
    return account_fate(account, plan, rt.mapping.correlation_attribute)


def _person_named(rt: Runtime, ev: Evaluation, subject: str) -> str | None:
    """The person id ``subject`` names, compared as the target compares them: a person
    with a decision, or one who appears only in rejected rows."""
    key = rt.mapping.correlation_key
    wanted = key(subject.strip())
    if subject in ev.decisions:
        return subject
    for pid in ev.decisions:
        if key(pid) == wanted:
            return pid
    for r in ev.feeds.rejected:
        if r.key and FeedName(r.feed) not in ORG_KEYED_FEEDS and key(r.key) == wanted:
            return r.key
    return None


def _person(
    rt: Runtime, ev: Evaluation, person: str, account: Account | None, fate: PersonFate
) -> PersonExplanation:
    rows = rejected_rows_about(person, ev.feeds, rt.mapping.correlation_key)
    return PersonExplanation(person, ev.decisions.get(person), rows, account, fate)
