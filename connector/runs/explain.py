"""``misync explain SUBJECT``: a person (by person id), or an account (by account id or
logon ID, read from the target), explained with every rejected row that bears on it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from connector.app import Runtime
from connector.model.accounts import Account
from connector.model.decisions import Decision
from connector.model.feeds import FeedName
from connector.reconcile.explain import (
    ORG_KEYED,
    AccountFate,
    RejectedRow,
    account_fate,
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


class NothingToExplain(LookupError):
    """The subject names no person in the feeds and no account in the managed scope."""


def explain(
    rt: Runtime, store: Store, subject: str, as_of: datetime
) -> PersonExplanation | AccountFate:
    ev = evaluate(rt, store, as_of)
    person = _person_named(rt, ev, subject)
    if person is not None:
        target = rt.target()
        try:
            account = target.find(person)
        finally:
            target.close()
        return _person(rt, ev, person, account)
    # An account, by account id or logon ID: one read of the managed scope, the same
    # read that plans, so the account's fate is the plan's.
    wanted = subject.strip().lower()
    found: list[Account] = []

    def observe(account: Account) -> None:
        if wanted in (account.account_id.lower(), (account.logon_id or "").lower()):
            found.append(account)

    plan, _ = make_plan(rt, store, as_of, evaluation=ev, observe=observe)
    if not found:
        raise NothingToExplain(
            f"{subject!r} is no person in the feeds (accepted or rejected rows) and no "
            "account in the target's managed scope (by account id or logon ID)"
        )
    account = found[0]
    if account.correlation:
        person = _person_named(rt, ev, account.correlation)
        if person is not None:
            return _person(rt, ev, person, account)
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
        if r.key and FeedName(r.feed) not in ORG_KEYED and key(r.key) == wanted:
            return r.key
    return None


def _person(
    rt: Runtime, ev: Evaluation, person: str, account: Account | None
) -> PersonExplanation:
    rows = rejected_rows_about(person, ev.feeds, rt.mapping.correlation_key)
    return PersonExplanation(person, ev.decisions.get(person), rows, account)
