"""Targeted runs: disable the people who lost access, reading and writing only their
own accounts (``Target.find``), never the whole directory.

The daemon's separation fast path (a feed changed) and its timed actions (a dated
change reached its instant) are runs (``connector.runs.run.Run``) of a
``TargetedPeople`` source; ``run_targeted`` builds one. Everything but the plan is the
run's, as for any other: the state lock, the audit check, feed health (an unusable feed
drives nothing), quarantine, the mass-disable guard (over the enabled-account count of
the last full read), breaches opened before the directory is touched, journal and audit
for every operation, held actions alerted. Only disables are carried out: creates,
enables and updates need the whole directory (logon IDs in use, drift) and wait for the
next full reconcile, which plans them anyway.

Cost: the daemon's fast path, given its baseline (``deltas``,
connector.runs.incremental), reads only the changed rows of the separations and roster
files and re-evaluates only their people; otherwise (and for timed runs) one feed read
and one evaluation (they grow with the feeds, not the directory). Then one indexed
search per person in scope.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from connector.alerts import AlertSink, kinds
from connector.app import Runtime
from connector.model.accounts import Account
from connector.model.plan import Op, Plan
from connector.reconcile import build_plan, seal
from connector.records import decision_digest
from connector.runs.incremental import FeedDeltas
from connector.runs.planning import Evaluation, RejectionLog, evaluate, plan_inputs
from connector.runs.run import ApplyResult, Planned, Run, RunContext, RunObserver, enabled_total
from connector.state import Store
from connector.targets.base import PermanentTargetError


def changed_and_not_entitled(
    store: Store, ev: Evaluation, among: Collection[str] | None = None
) -> set[str]:
    """People (``among`` them, or everyone) whose decision changed since it was last
    recorded and who are not entitled now: the ones a changed feed may have just taken
    access from."""
    people = ev.decisions.keys() if among is None else [p for p in among if p in ev.decisions]
    old = store.decision_digests(None if among is None else people)
    return {
        pid
        for pid in people
        if not (d := ev.decisions[pid]).entitled and old.get(pid) != decision_digest(d)
    }


@dataclass(frozen=True)
class TargetedPeople:
    """Disable, among ``person_ids`` (None: everyone whose decision changed and who is
    not entitled now) and ``also`` (people an earlier run left undone: their decision
    is recorded already), those who lost access, reading only their own accounts.
    Plans nothing (None) when there is nobody to look at.

    ``rejections`` logs the rejected rows (see ``evaluate``). With ``deltas`` (the
    daemon's fast path, ``person_ids`` None) the feeds are evaluated again only for the
    people whose separation or roster rows changed since the last run's evaluation
    (connector.runs.incremental), when it can vouch for that; they are then the only
    candidates (everyone else's decision is the one the store has seen)."""

    person_ids: Collection[str] | None
    kind: str = "targeted"
    also: Collection[str] = ()
    rejections: RejectionLog | None = None
    deltas: FeedDeltas | None = None

    def plan(self, ctx: RunContext) -> Planned | None:
        rt, store, log = ctx.rt, ctx.store, ctx.log
        as_of = rt.clock()
        among: Collection[str] | None = None
        inc = None
        if self.deltas is not None and self.person_ids is None:
            inc = self.deltas.evaluate(rt, store, as_of, rejections=self.rejections)
        if inc is not None:
            ev, among = inc.evaluation, inc.touched
        else:
            ev = evaluate(rt, store, as_of, rejections=self.rejections)
        ctx.evaluated(ev)
        wanted = (
            changed_and_not_entitled(store, ev, among)
            if self.person_ids is None
            else set(self.person_ids)
        )
        wanted |= {p for p in self.also if not (p in ev.decisions and ev.decisions[p].entitled)}
        people = sorted(p for p in wanted if p in ev.decisions)
        if not people:
            log.debug("targeted.nobody", kind=self.kind)
            return None
        accounts, ambiguous, description = _find(rt, people, log)
        if ctx.alerts is not None and ambiguous:  # one alert for the cause, as the full run's
            ctx.alerts.send(kinds.ambiguous_held(ambiguous, ctx.run_id))
        scoped = Evaluation(as_of, ev.feeds, {p: ev.decisions[p] for p in people})
        # the planner looks rows up by person: given only theirs when they are indexed
        planned_from = (
            scoped if inc is None else Evaluation(as_of, inc.feeds_about(people), scoped.decisions)
        )
        total = enabled_total(store)
        plan = _disables_only(
            build_plan(
                plan_inputs(
                    rt,
                    store,
                    as_of=as_of,
                    evaluation=planned_from,
                    people=people,
                    accounts=accounts,
                    target=description,
                    enabled_total=total,
                )
            )
        )
        log.info(
            "targeted.planned",
            kind=self.kind,
            people=len(people),
            accounts=len(accounts),
            disables=len(plan.actions),
            held=len(plan.held),
        )
        return Planned(seal(plan), scoped, frozenset(a.account_id for a in accounts), total)


def _find(rt: Runtime, people: list[str], log: Any) -> tuple[list[Account], dict[str, str], str]:
    """Each person's account (one indexed search each), the people with more than one,
    and the target's description."""
    accounts: list[Account] = []
    ambiguous: dict[str, str] = {}
    target = rt.target()
    try:
        for pid in people:
            try:
                found = target.find(pid)
            except PermanentTargetError as exc:  # two accounts for one person
                log.warning("targeted.ambiguous", person_id=pid, error=str(exc))
                ambiguous[pid] = str(exc)
                continue
            if found is not None:
                accounts.append(found)
        return accounts, ambiguous, target.description
    finally:
        target.close()


def run_targeted(  # noqa: PLR0913 -- keyword-only options of one run, each named
    rt: Runtime,
    person_ids: Collection[str] | None,
    *,
    kind: str = "targeted",
    run_id: str | None = None,
    alerts: AlertSink | None = None,
    observer: RunObserver | None = None,
    should_stop: Callable[[], bool] | None = None,
    rejections: RejectionLog | None = None,
    evaluated: Callable[[Evaluation], None] | None = None,
    also: Collection[str] = (),
) -> ApplyResult | None:
    """A run of ``TargetedPeople(person_ids, kind, also, rejections)``; None when there
    was nobody to look at. Raises like any run (``Run.execute``). ``evaluated`` is told
    the run's whole evaluation as soon as it is made (the daemon reuses it and takes
    its feed stamps as the watcher's baseline)."""
    source = TargetedPeople(person_ids, kind=kind, also=tuple(also), rejections=rejections)
    return Run(
        rt,
        source,
        run_id=run_id,
        alerts=alerts,
        observer=observer,
        should_stop=should_stop,
        evaluated=evaluated,
    ).execute()


def _disables_only(plan: Plan) -> Plan:
    actions = tuple(a for a in plan.actions if a.op is Op.DISABLE)
    keys = {a.key for a in actions}
    return dataclasses.replace(
        plan,
        actions=actions,
        held=tuple(h for h in plan.held if h.action.op is Op.DISABLE),
        accepted=tuple(h for h in plan.accepted if h.action.op is Op.DISABLE),
        approved=tuple(k for k in plan.approved if k.partition(":")[2] in keys),
    )
