"""``misync explain SUBJECT``: a person (by person id), or an account (by account id,
logon ID or the value of its correlation attribute, read from the target), explained
with every rejected row that bears on it and with what the plan does about it.

It makes the plan ``misync plan`` makes (one paged read of the managed scope), so what
it says will happen is what the plan does: the action, or why it is held, and the state
of each deadline as of the plan. This module reads (feeds, state, target) and plans;
``connector.reconcile.explanation`` builds and renders the explanation, purely."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


@dataclass(frozen=True)
class ExplainedAt:
    """``explain --at``: the explanation as the run ``run_id`` made it (at ``as_of``,
    the last run at or before the instant asked about that decided about the subject),
    rebuilt from its archived inputs."""

    run_id: str
    as_of: datetime
    kind: str
    found: PersonExplanation | AccountFate


def explain_at(rt: Runtime, subject: str, instant: datetime) -> ExplainedAt:
    """The decision on ``subject`` as misync made it at ``instant``: from the inputs of
    the last run planned at or before it that decided about the subject (a targeted run
    decides only about its people), as archived (connector.archive; see
    ``replayed_at``)."""
    wanted = subject.strip().lower()

    def decided(m: Mapping[str, Any], people: Callable[[], list[str]]) -> bool:
        return not m["scoped"] or wanted in {p.lower() for p in people()}

    at = replayed_at(rt, instant, decided)
    if at is None:
        raise NothingToExplain(
            f"no run archived at or before {instant.isoformat()} decided about {subject!r}"
            " (runs before the archive, or pruned after archive.keep_days, cannot be"
            " explained)"
        )
    run_id, as_of, kind, r = at
    return ExplainedAt(run_id, as_of, kind, _from_replay(subject, r))


def replayed_at(
    rt: Runtime,
    instant: datetime,
    wants: Callable[[Mapping[str, Any], Callable[[], list[str]]], bool],
) -> tuple[str, datetime, str, Any] | None:
    """The last run planned at or before ``instant`` that ``wants`` (given its manifest
    and a way to read the people it decided about), rebuilt from its archived inputs
    (``connector.archive.replay.Replayed``): its id, ``as_of`` and kind; None if none.

    The trail must vouch for it: the run's ``plan`` record names the manifest and the
    plan rebuilt from it has the recorded checksum (``ArchiveError``, exit 6,
    otherwise)."""
    import json

    from connector.archive import ArchiveError, ArchiveStore
    from connector.archive.replay import load_manifest, replay

    archive = ArchiveStore(rt.settings.state.dir / "archive")
    with rt.audit(read_only=True) as trail:
        trail.check()
        for _, run_id, digest in sorted(
            ((at, run_id, d) for run_id, d, at in archive.runs() if at <= instant), reverse=True
        ):
            m = load_manifest(archive, digest)
            as_of = datetime.fromisoformat(m["as_of"])
            blob: str = m["blobs"]["decisions"]

            def people(b: str = blob) -> list[str]:
                return list(json.loads(archive.get(b)))

            if as_of > instant or not wants(m, people):
                continue
            plan_rec = next(
                (json.loads(r.data) for r in trail.run_records(run_id) if r.kind == "plan"), None
            )
            if plan_rec is None or plan_rec.get("inputs") != digest:
                raise ArchiveError(
                    f"run {run_id}: the audit trail does not name its archived inputs {digest}"
                )
            r = replay(archive, run_id, digest)
            if not m.get("reviewed") and r.plan.checksum != plan_rec["checksum"]:
                raise ArchiveError(
                    f"run {run_id}: its archived inputs give {r.plan.checksum}, the trail"
                    f" recorded {plan_rec['checksum']} (misync audit replay {run_id})"
                )
            return run_id, as_of, str(m["kind"]), r
    return None


def _from_replay(subject: str, r: Any) -> PersonExplanation | AccountFate:
    """``explain``'s answer from a replayed run (``connector.archive.replay.Replayed``)."""
    key = r.mapping.correlation_key
    ev = Evaluation(r.plan.as_of, r.feeds, r.decisions)
    person = _named(key, ev, subject)
    wanted = subject.strip().lower()
    if person is None:
        for account in r.accounts:
            if wanted in (account.account_id.lower(), (account.logon_id or "").lower()):
                if account.correlation:
                    person = _named(key, ev, account.correlation)
                if person is None:
                    return account_fate(account, r.plan, r.mapping.correlation_attribute)
                break
    if person is None:
        raise NothingToExplain(f"{subject!r} is no person in the feeds and no account the run read")
    me = key(person)
    account = next((a for a in r.accounts if a.correlation and key(a.correlation) == me), None)
    rows = rejected_rows_about(person, r.feeds, key)
    return PersonExplanation(
        person, r.decisions.get(person), rows, account, person_fate(person, r.plan, key)
    )


def _named(key: Any, ev: Evaluation, subject: str) -> str | None:
    wanted = key(subject.strip())
    for pid in ev.decisions:
        if key(pid) == wanted:
            return pid
    for rej in ev.feeds.rejected:
        if rej.key and FeedName(rej.feed) not in ORG_KEYED_FEEDS and key(rej.key) == wanted:
            return rej.key
    return None
