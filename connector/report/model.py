"""What a report shows: a plan (or a run's record of one), scoped to a WDA if asked.

Pure: no I/O. The app gathers a plan and the feeds (or a run's audit records) and
calls these; :mod:`connector.report.html` turns the result into a page.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from connector.model.decisions import Decision
from connector.model.feeds import ORG_KEYED_FEEDS, FeedSet, Rejection
from connector.model.plan import Plan
from connector.records import read_run


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a run did with one action: ok | failed | held | accepted | not attempted
    (+ detail)."""

    status: str
    detail: str = ""
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    plan: Plan
    tz: tzinfo  # policy.timezone: every instant is shown in it
    generated_at: datetime
    title: str = "misync plan"
    wda: str | None = None  # the Workforce Development Area this report is scoped to
    run_id: str | None = None
    run_status: str | None = None
    outcomes: Mapping[str, Outcome] = field(default_factory=dict)  # by Action.key
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Areas:
    """Which WDA each person and each organization belongs to (from the feeds)."""

    people: Mapping[str, str]
    orgs: Mapping[str, str]

    def of_rejection(self, r: Rejection) -> str | None:
        if not r.key:
            return None
        if r.feed in ORG_KEYED_FEEDS:
            return self.orgs.get(r.key)
        return self.people.get(r.key)


def areas_of(feeds: FeedSet) -> Areas:
    """A person's WDA is their organization's: the roster row's, else the newest
    separation row's (the same rule the policy engine uses for the requester check)."""
    orgs = {o.org_id: o.wda for o in feeds.organizations}
    people: dict[str, str] = {}
    for s in sorted(feeds.separations, key=lambda s: s.separated_at):
        if s.org_id in orgs:
            people[s.person_id] = orgs[s.org_id]
    for w in feeds.workers:
        if w.org_id in orgs:
            people[w.person_id] = orgs[w.org_id]
    return Areas(people, orgs)


def scope_to_wda(
    plan: Plan,
    wda: str,
    areas: Areas,
    decisions: Mapping[str, Decision] | None = None,
) -> Plan:
    """The part of ``plan`` about one WDA's people and organizations, and nothing else.

    An action, hold or deadline about a person in no WDA (an orphan account, a person in
    no feed that names an organization) is left out; so is a rejected row whose subject
    cannot be placed in a WDA. Both stay in the unscoped report. Feed health is about
    files, not people, and is kept."""

    def mine(person_id: str | None) -> bool:
        return person_id is not None and areas.people.get(person_id) == wda

    counts: dict[str, int] = {}
    if decisions is not None:
        counts = dict(
            Counter(d.status.value for pid, d in decisions.items() if mine(pid)).most_common()
        )
    return dataclasses.replace(
        plan,
        actions=tuple(a for a in plan.actions if mine(a.person_id)),
        held=tuple(h for h in plan.held if mine(h.action.person_id)),
        accepted=tuple(h for h in plan.accepted if mine(h.action.person_id)),
        breaches=tuple(b for b in plan.breaches if mine(b.person_id)),
        rejected=tuple(r for r in plan.rejected if areas.of_rejection(r) == wda),
        decisions=counts,
    )


# --- a run, re-read from the audit trail ------------------------------------------


def report_from_audit(
    records: Iterable[tuple[str, str, str]],
    run_id: str,
    *,
    tz: tzinfo,
    generated_at: datetime,
) -> Report:
    """Re-render a run's report from its audit records ``(kind, at, data_json)``
    (read by ``connector.records.read_run``; ``RunNotFoundError`` for an unknown run).

    The audit trail holds what the run did: its plan's checksum, ``as_of``, summary,
    target and feed digests (and, from this version on, the held actions, deadlines,
    rejected rows and feed health), one ``operation`` record per action with its
    reasons, changes and outcome, and the ``breach`` and ``run`` records."""
    run = read_run(records, run_id)
    outcomes = {k: Outcome(o.status, o.detail, o.attempts) for k, o in run.outcomes.items()}
    for h in run.plan.held:
        outcomes.setdefault(h.action.key, Outcome("held", h.message))
    for h in run.plan.accepted:
        outcomes.setdefault(h.action.key, Outcome("accepted", h.message))
    notes: list[str] = [f"re-rendered from the audit trail (run {run_id})"]
    if not run.complete:
        notes.append("this run's audit records predate rejected rows and held actions in the trail")
    return Report(
        plan=run.plan,
        tz=tz,
        generated_at=generated_at,
        title=f"misync run {run_id}",
        run_id=run_id,
        run_status=run.status or "unfinished",
        outcomes=outcomes,
        notes=tuple(notes),
    )
