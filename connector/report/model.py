"""What a report shows: a plan (or a run's record of one), scoped to a WDA if asked.

Pure: no I/O. The app gathers a plan and the feeds (or a run's audit records) and
calls these; :mod:`connector.report.html` turns the result into a page.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from connector.errors import MisyncError
from connector.model.accounts import Change, ChangeKind
from connector.model.decisions import Decision, Reason
from connector.model.feeds import (
    ORG_KEYED_FEEDS,
    FeedHealth,
    FeedName,
    FeedSet,
    FeedState,
    Rejection,
)
from connector.model.plan import Action, Breach, HeldAction, Op, Plan


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


def _reasons(items: Iterable[Mapping[str, Any]]) -> tuple[Reason, ...]:
    return tuple(
        Reason(code=r.get("code", ""), clause=r.get("clause", ""), message=r.get("message", ""))
        for r in items
    )


def _action(d: Mapping[str, Any]) -> Action:
    return Action(
        op=Op(d["op"]),
        person_id=d.get("person_id"),
        account_id=d.get("account_id"),
        logon_id=d.get("logon_id"),
        changes=tuple(
            Change(
                ChangeKind.GROUPS if c.get("name") == "groups" else ChangeKind.ATTRIBUTE,
                c.get("name", ""),
                tuple(c.get("old", ())),
                tuple(c.get("new", ())),
            )
            for c in d.get("changes", ())
        ),
        reasons=_reasons(d.get("reasons", ())),
        before=None,
        deadline=datetime.fromisoformat(d["deadline"]) if d.get("deadline") else None,
    )


def _feed(d: Mapping[str, Any]) -> FeedHealth:
    return FeedHealth(
        feed=FeedName(d["feed"]),
        file=d.get("file", ""),
        state=FeedState(d.get("state", "ok")),
        rows=int(d.get("rows", 0)),
        rejected=int(d.get("rejected", 0)),
        detail=d.get("detail", ""),
        modified_at=datetime.fromisoformat(d["modified_at"]) if d.get("modified_at") else None,
        digest=d.get("digest", ""),
    )


class RunNotFoundError(MisyncError):
    """No audit record carries this run id (exit 2)."""


def report_from_audit(
    records: Iterable[tuple[str, str, str]],
    run_id: str,
    *,
    tz: tzinfo,
    generated_at: datetime,
) -> Report:
    """Re-render a run's report from its audit records ``(kind, at, data_json)``.

    The audit trail holds what the run did: its plan's checksum, ``as_of``, summary,
    target and feed digests (and, from this version on, the held actions, deadlines,
    rejected rows and feed health), one ``operation`` record per action with its
    reasons, changes and outcome, and the ``breach`` and ``run`` records."""
    plan_rec: dict[str, Any] | None = None
    actions: list[Action] = []
    outcomes: dict[str, Outcome] = {}
    opened: list[Breach] = []
    status: str | None = None
    n = 0
    for kind, _at, data in records:
        n += 1
        body = json.loads(data)
        if kind == "plan":
            plan_rec = body
        elif kind == "operation" and body.get("outcome") != "interrupted":
            a = _action(body)
            actions.append(a)
            outcomes[a.key] = Outcome(
                "ok" if body.get("outcome") == "ok" else str(body.get("outcome")),
                str(body.get("detail") or ""),
                int(body.get("attempts") or 0),
            )
        elif kind == "breach" and body.get("state") == "open":
            opened.append(
                Breach(
                    body.get("person_id"),
                    body["account_id"],
                    datetime.fromisoformat(body["deadline"]),
                    "breach",
                    tuple(Reason(c, "", "") for c in str(body.get("reasons", "")).split(",") if c),
                )
            )
        elif kind == "run" and "status" in body and "interrupted_run" not in body:
            status = str(body["status"])
    if n == 0:
        raise RunNotFoundError(f"run {run_id}: no audit record carries this run id")
    if plan_rec is None:
        raise RunNotFoundError(f"run {run_id}: the audit trail holds no plan record for it")
    held = tuple(
        HeldAction(_action(h["action"]), h["code"], h["message"]) for h in plan_rec.get("held", ())
    )
    for h in held:
        outcomes.setdefault(h.action.key, Outcome("held", h.message))
    from connector.reconcile.serialize import held_from_dict

    # held, left as they are by an operator's decision (``misync held``)
    accepted = tuple(held_from_dict(h) for h in plan_rec.get("accepted", ()))
    for h in accepted:
        outcomes.setdefault(h.action.key, Outcome("accepted", h.message))
    if "deadlines" in plan_rec:
        breaches = tuple(
            Breach(
                b.get("person_id"),
                b["account_id"],
                datetime.fromisoformat(b["deadline"]),
                b["severity"],
                _reasons(b.get("reasons", ())),
                b.get("logon_id"),
            )
            for b in plan_rec["deadlines"]
        )
    else:
        breaches = tuple(opened)
    notes: list[str] = [f"re-rendered from the audit trail (run {run_id})"]
    if "rejected" not in plan_rec:
        notes.append("this run's audit records predate rejected rows and held actions in the trail")
    plan = Plan(
        as_of=datetime.fromisoformat(plan_rec["as_of"]),
        target=str(plan_rec.get("target", "")),
        actions=tuple(actions),
        held=held,
        accepted=accepted,
        breaches=breaches,
        rejected=tuple(Rejection(**r) for r in plan_rec.get("rejected", ())),
        feeds=tuple(_feed(f) for f in plan_rec.get("feed_health", ())),
        decisions=dict(plan_rec.get("decisions", {})),
        checksum=str(plan_rec.get("checksum", "")),
    )
    return Report(
        plan=plan,
        tz=tz,
        generated_at=generated_at,
        title=f"misync run {run_id}",
        run_id=run_id,
        run_status=status or "unfinished",
        outcomes=outcomes,
        notes=tuple(notes),
    )


def plan_audit_extras(plan: Plan) -> dict[str, Any]:
    """What a run's ``plan`` audit record adds so that its report can be re-rendered:
    held actions, deadlines (breaches and warnings), rejected rows, feed health and the
    decision counts."""
    from connector.reconcile.serialize import plan_to_dict

    body = plan_to_dict(plan)
    decided: dict[str, Any] = {
        k: body[k] for k in ("accepted", "approved", "reopened") if k in body
    }
    return {
        **decided,  # operators' decisions on held actions (``misync held``), when any
        "held": body["held"],
        "deadlines": [*body["breaches"], *body.get("warnings", [])],
        "rejected": body["rejected"],
        "feed_health": body["feeds"],
        "decisions": body["decisions"],
    }
