"""Targeted runs: disable the people who lost access, reading and writing only their
own accounts (``Target.find``), never the whole directory.

The daemon's separation fast path (a feed changed) and its timed actions (a dated
change reached its instant) call ``run_targeted``. Everything else is as in
``run_apply``: the state lock, the audit check, feed health (an unusable feed drives
nothing), quarantine, the mass-disable guard (over the enabled-account count of the last
full read), breaches opened before the directory is touched, journal and audit for every
operation, held actions alerted. Only disables are carried out: creates, enables and
updates need the whole directory (logon IDs in use, drift) and wait for the next full
reconcile, which plans them anyway.

Cost: one feed read and one evaluation (they grow with the feeds, not the directory),
then one indexed search per person in scope.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Collection
from typing import Any

import structlog

from connector.alerts import Alert, AlertSink, RunAwareSink, Severity
from connector.app import Runtime
from connector.audit import AuditLog
from connector.model.accounts import Account
from connector.model.plan import Op, Plan
from connector.reconcile import build_plan, seal
from connector.runs.apply import ENABLED_ACCOUNTS, ApplyResult, RunObserver, decision_digest
from connector.runs.apply import carry_out as _carry_out
from connector.runs.planning import Evaluation, RejectionLog, evaluate, plan_inputs
from connector.state import Store, state_lock
from connector.targets.base import PermanentTargetError


def changed_and_not_entitled(store: Store, ev: Evaluation) -> set[str]:
    """People whose decision changed since it was last recorded and who are not
    entitled now: the ones a changed feed may have just taken access from."""
    old = store.decision_digests()
    return {
        pid
        for pid, d in ev.decisions.items()
        if not d.entitled and old.get(pid) != decision_digest(d)
    }


def run_targeted(
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
    """Disable, among ``person_ids`` (None: everyone whose decision changed and who is
    not entitled now) and ``also`` (people an earlier run left undone: their decision
    is recorded already), those who lost access. None when there was nobody to look at
    (nothing is recorded then). Raises like ``run_apply``.

    ``rejections`` logs the rejected rows (see ``evaluate``); ``evaluated`` is told the
    run's whole evaluation as soon as it is made (the daemon reuses it and takes its
    feed stamps as the watcher's baseline)."""
    run_id = run_id or uuid.uuid4().hex[:12]
    log = structlog.get_logger("misync.run")
    with (
        structlog.contextvars.bound_contextvars(run_id=run_id),
        state_lock(rt.settings.state.dir),
        rt.store() as store,
        rt.audit() as audit,
    ):
        audit.check()
        aware = alerts if isinstance(alerts, RunAwareSink) else None
        if aware is not None:
            aware.run_started(run_id)
        try:
            return _targeted(
                rt,
                store,
                audit,
                run_id,
                kind,
                person_ids,
                also,
                alerts,
                observer,
                should_stop,
                log,
                rejections,
                evaluated,
            )
        finally:
            if aware is not None:  # a partial run never closes what it did not look at
                aware.run_finished(run_id, full=False)


def _targeted(
    rt: Runtime,
    store: Store,
    audit: AuditLog,
    run_id: str,
    kind: str,
    person_ids: Collection[str] | None,
    also: Collection[str],
    alerts: AlertSink | None,
    observer: RunObserver | None,
    should_stop: Callable[[], bool] | None,
    log: Any,
    rejections: RejectionLog | None = None,
    evaluated: Callable[[Evaluation], None] | None = None,
) -> ApplyResult | None:
    as_of = rt.clock()
    ev = evaluate(rt, store, as_of, rejections=rejections)
    if evaluated is not None:
        evaluated(ev)
    wanted = changed_and_not_entitled(store, ev) if person_ids is None else set(person_ids)
    wanted |= {p for p in also if not (p in ev.decisions and ev.decisions[p].entitled)}
    people = sorted(p for p in wanted if p in ev.decisions)
    if not people:
        log.debug("targeted.nobody", kind=kind)
        return None
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
        description = target.description
    finally:
        target.close()
    if alerts is not None and ambiguous:  # one alert for the cause, as the full run's
        first = min(ambiguous)
        alerts.send(
            Alert(
                "operation.held",
                Severity.WARNING,
                "ambiguous_correlation",
                f"{len(ambiguous)} people with more than one account "
                f"(ambiguous_correlation); e.g. {first}: {ambiguous[first]}; the full "
                "reconcile holds them for review",
                {
                    "code": "ambiguous_correlation",
                    "count": len(ambiguous),
                    "person_ids": sorted(ambiguous)[:10],
                    "run_id": run_id,
                },
            )
        )
    plan = _disables_only(
        build_plan(
            plan_inputs(
                rt,
                store,
                as_of=as_of,
                evaluation=Evaluation(as_of, ev.feeds, {p: ev.decisions[p] for p in people}),
                accounts=accounts,
                target=description,
                enabled_total=_enabled_total(store),
            )
        )
    )
    log.info(
        "targeted.planned",
        kind=kind,
        people=len(people),
        accounts=len(accounts),
        disables=len(plan.actions),
        held=len(plan.held),
    )
    scoped = Evaluation(as_of, ev.feeds, {p: ev.decisions[p] for p in people})
    result = _carry_out(
        rt,
        store,
        audit,
        run_id,
        kind,
        seal(plan),
        scoped,
        alerts,
        observer,
        should_stop,
        scope=frozenset(a.account_id for a in accounts),
    )
    total = _enabled_total(store)
    if total is not None:  # keep the guard's denominator in step with what it disabled
        done = sum(1 for o in result.report.outcomes if o.status == "ok")
        store.set_meta(ENABLED_ACCOUNTS, str(max(total - done, 0)))
    return result


def _enabled_total(store: Store) -> int | None:
    value = store.meta(ENABLED_ACCOUNTS)
    return int(value) if value is not None and value.isdigit() else None


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
