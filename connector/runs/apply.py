"""Apply runs: plan (or confirm a reviewed plan), then carry it out, journaling and
auditing every step. The CLI's ``apply`` and the daemon's jobs both call ``run_apply``.

Order inside a run (each step survives a crash of the next):

1. the audit trail is checked against its anchor (a tampered trail stops the run);
2. a plan is made from a fresh read (or a reviewed plan is confirmed against one);
3. what a crashed run left open is closed as ``interrupted`` and audited;
4. the run, the plan and every changed decision are recorded;
5. breaches are opened *before* the directory is touched;
6. the executor carries out the actions: each one journaled before the directory is
   touched; outcomes committed in groups (written on their entries, audited in one
   append, then closed with their audit seq); a failed audit write stops the run
   (``AuditWriteError``), a stalled target or the run deadline stops it early
   (``report.stopped``; the rest is journaled and audited as ``not_attempted``);
7. fixed breaches are closed, the run is finished and its audit head logged.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from connector.alerts import Alert, AlertSink, RunAwareSink, Severity
from connector.app import Runtime
from connector.audit import UNKEYED_WARNING, AuditLog, AuditWriteError
from connector.executor import ActionOutcome as Outcome
from connector.executor import ApplyReport, Executor
from connector.model.accounts import Account
from connector.model.decisions import Decision
from connector.model.feeds import FeedSet
from connector.model.plan import HeldAction, Op, Plan
from connector.policy.review import separated_requesters
from connector.report import plan_audit_extras
from connector.runs.breaches import close_breaches, open_breaches, warn_unfixed
from connector.runs.held import record_run as record_held
from connector.runs.planning import Evaluation, confirm_plan, make_plan
from connector.runs.recovery import recover_interrupted
from connector.state import FeedHealthRow, Store, state_lock
from connector.timefmt import when

ENABLED_ACCOUNTS = "enabled_accounts"  # state meta: enabled accounts after the last full run

#: makes a fresh plan under the state lock: (plan, evaluation, enabled accounts or None)
Planner = Callable[[Store], tuple[Plan, Evaluation, int | None]]


class RunObserver(Protocol):
    """Sees a run as it goes (the CLI prints progress; the daemon reports status)."""

    def planned(self, plan: Plan) -> None:
        """The plan is final and nothing has been carried out yet."""

    def outcome(self, outcome: Outcome) -> None:
        """One action finished (journaled and audited)."""


class Observers:
    """Several observers as one (progress printing, notifications, daemon status...), each
    told in turn. Each handles its own failures (the notifier logs and goes on); what one
    raises reaches the run as it would without the others (a closed pipe, say)."""

    def __init__(self, *observers: RunObserver | None) -> None:
        self._observers = [o for o in observers if o is not None]

    def evaluated(self, feeds: FeedSet, decisions: Mapping[str, Decision], as_of: datetime) -> None:
        for o in self._observers:
            hook = getattr(o, "evaluated", None)
            if callable(hook):
                hook(feeds, decisions, as_of)

    def planned(self, plan: Plan) -> None:
        for o in self._observers:
            o.planned(plan)

    def outcome(self, outcome: Outcome) -> None:
        for o in self._observers:
            o.outcome(outcome)


HELD_KEYS = 10  # keys named in a grouped held alert (the report lists them all)


@dataclass(frozen=True)
class ApplyResult:
    run_id: str
    plan: Plan
    report: ApplyReport

    @property
    def status(self) -> str:
        """``ok`` only when every action was done, nothing was held and every feed was
        usable (with a feed down, what it drives was not even planned); a hold an
        operator accepted (``plan.accepted``) is not held; ``stopped``
        when the run stopped early (circuit breaker, run deadline)."""
        if self.report.stopped:
            return "stopped"
        if self.report.failed or self.plan.held or any(not f.healthy for f in self.plan.feeds):
            return "incomplete"
        return "ok"


def run_apply(
    rt: Runtime,
    *,
    plan: Plan | None = None,
    override_guard: bool = False,
    run_id: str | None = None,
    alerts: AlertSink | None = None,
    observer: RunObserver | None = None,
    should_stop: Callable[[], bool] | None = None,
    planner: Planner | None = None,
) -> ApplyResult:
    """Plan now (or take a reviewed plan), then apply it, journaling and auditing it all.

    ``should_stop`` is checked between actions (the daemon's SIGTERM): the actions in
    flight finish and are journaled, the rest are recorded as not attempted.
    ``planner`` makes the fresh plan instead of ``make_plan``, under the state lock (the
    daemon's ``Reconciler``: an incremental read of the directory); it returns the plan,
    its evaluation and the enabled-account count of the directory it planned against.

    Raises ``StateBusyError`` when another run holds the state folder,
    ``AuditIntegrityError`` when the trail does not match its anchor, ``DriftError``
    when a reviewed plan no longer holds, and ``TargetError`` when the target cannot be
    read; in each case nothing was changed.
    """
    run_id = run_id or uuid.uuid4().hex[:12]
    # every event of this run carries its run_id; the caller's own binding is restored after
    with (
        structlog.contextvars.bound_contextvars(run_id=run_id),
        state_lock(rt.settings.state.dir),  # StateBusyError if another run holds it
    ):
        aware = alerts if isinstance(alerts, RunAwareSink) else None
        if aware is not None:
            aware.run_started(run_id)
        full = False
        try:
            result = _run_apply(
                rt, run_id, plan, override_guard, alerts, observer, should_stop, planner
            )
            full = True
        finally:
            if aware is not None:  # only a run that finished may close what it no longer saw
                aware.run_finished(run_id, full=full)
        return result


def _run_apply(
    rt: Runtime,
    run_id: str,
    plan: Plan | None,
    override_guard: bool,
    alerts: AlertSink | None,
    observer: RunObserver | None,
    should_stop: Callable[[], bool] | None = None,
    planner: Planner | None = None,
) -> ApplyResult:
    log = structlog.get_logger("misync.run")
    s = rt.settings
    with rt.store() as store, rt.audit() as audit:
        audit.check()  # a trail that does not match its anchor stops the run before anything
        if s.audit.key_file is None:
            log.warning("audit.unkeyed", detail=UNKEYED_WARNING)
        ev: Evaluation | None = None
        marked = store.misync_disabled()  # accounts misync disabled itself
        seen_enabled: list[str] = []

        def watch(account: Account) -> None:  # someone enabled one: misync's mark goes
            if account.enabled and account.account_id.lower() in marked:
                seen_enabled.append(account.account_id)

        enabled_read: int | None = None  # enabled accounts in the fresh read
        enabled = 0

        def count(account: Account) -> None:
            nonlocal enabled
            enabled += account.enabled
            watch(account)

        if plan is None and planner is not None:
            plan, ev, enabled_read = planner(store)
        elif plan is None:
            plan, ev = make_plan(
                rt, store, rt.clock(), override_guard=override_guard, observe=count
            )
            enabled_read = enabled
        else:  # a reviewed plan (apply --plan, or the plan a person said yes to)
            ev = confirm_plan(rt, store, plan, observe=count)  # one full read too
            enabled_read = enabled
        store.forget_misync_disables(seen_enabled)
        result = carry_out(
            rt, store, audit, run_id, "apply", plan, ev, alerts, observer, should_stop
        )
        if enabled_read is not None:
            # the denominator of the mass-disable guard for targeted runs (fast path): the
            # enabled accounts as read, plus what this run enabled, minus what it disabled
            delta = sum(
                (1 if o.action.op is Op.ENABLE else -1 if o.action.op is Op.DISABLE else 0)
                + (
                    1
                    if o.action.op is Op.CREATE
                    and o.action.desired is not None
                    and o.action.desired.enabled
                    else 0
                )
                for o in result.report.outcomes
                if o.status == "ok"
            )
            store.set_meta(ENABLED_ACCOUNTS, str(max(enabled_read + delta, 0)))
        return result


def held_alerts(held: Sequence[HeldAction], run_id: str, reports: Path) -> list[Alert]:
    """One ``operation.held`` alert per cause (held code), not one per account: the
    count, the first few keys and people, and the run's report page that lists them
    all (the daemon keeps it at ``reports/run-<id>.html``; ``misync report --run ID``
    renders it for any run). Key: the code, so the alert stays open while that cause
    holds anything and a full run that no longer holds any closes it."""
    by_code: dict[str, list[HeldAction]] = {}
    for h in held:
        by_code.setdefault(h.code, []).append(h)
    out: list[Alert] = []
    for code, items in sorted(by_code.items()):
        ops = Counter(h.action.op.value for h in items)
        first = items[0]
        what = ", ".join(f"{op} x{n}" for op, n in sorted(ops.items()))
        out.append(
            Alert(
                "operation.held",
                Severity.WARNING,
                code,
                f"{len(items)} action{'s' if len(items) != 1 else ''} held ({code}: {what}); "
                f"e.g. {first.action.op.value} {first.action.key}: {first.message}",
                {
                    "code": code,
                    "count": len(items),
                    "ops": dict(ops),
                    "keys": [h.action.key for h in items[:HELD_KEYS]],
                    "person_ids": sorted({h.action.person_id for h in items if h.action.person_id})[
                        :HELD_KEYS
                    ],
                    "run_id": run_id,
                    "report": str(reports / f"run-{run_id}.html"),
                    "see": f"misync report --run {run_id}",
                },
            )
        )
    return out


def carry_out(
    rt: Runtime,
    store: Store,
    audit: AuditLog,
    run_id: str,
    kind: str,
    plan: Plan,
    ev: Evaluation,
    alerts: AlertSink | None,
    observer: RunObserver | None,
    should_stop: Callable[[], bool] | None,
    *,
    scope: frozenset[str] | None = None,
) -> ApplyResult:
    """Steps 3-7 of a run, for a full apply and a targeted run alike (state lock held,
    trail checked, plan made). ``scope``: the account ids a targeted run looked at (only
    their breaches may be closed); None for a run that read the whole directory."""
    log = structlog.get_logger("misync.run")
    s = rt.settings
    recover_interrupted(store, audit, run_id, log)
    store.start_run(run_id, kind, plan.as_of, plan.checksum)
    audit.append(
        "plan",
        {
            "checksum": plan.checksum,
            "as_of": when(plan.as_of, rt.rules.tz),
            "summary": plan.summary,
            "target": plan.target,
            "feeds": {f.feed.value: f.digest for f in plan.feeds},
            # held actions, deadlines, rejected rows, feed health: the run's report
            # is re-rendered from the trail (connector.report)
            **plan_audit_extras(plan),
        },
        run_id=run_id,
    )
    _record_decisions(store, audit, ev, run_id, log)
    if observer is not None:
        # an observer that needs what the run read (the notifier: requesters, emails)
        evaluated = getattr(observer, "evaluated", None)
        if callable(evaluated):
            evaluated(ev.feeds, ev.decisions, plan.as_of)
        observer.planned(plan)
    checksum = plan.checksum

    def audit_batch(batch: Sequence[tuple[int, Outcome]]) -> list[int]:
        """One append for a group of outcomes; the seq of each record, in order."""
        last = audit.append_many(
            [("operation", _operation_record(entry, o, checksum)) for entry, o in batch],
            run_id=run_id,
        )
        assert last is not None
        first = last.seq - len(batch) + 1
        return list(range(first, last.seq + 1))

    def on_outcome(o: Outcome) -> None:  # journaled and audited by now
        a = o.action
        if alerts is not None and o.status == "failed" and o.code != "stopped":
            failures = store.failure_count(a.key)
            if failures == s.apply.quarantine_after:
                alerts.send(_quarantined(a.key, a.op.value, a.person_id, o.detail, failures))
        if alerts is not None and o.status != "ok":
            if o.code == "not_effective":
                kind, severity = "operation.not_effective", Severity.CRITICAL
            elif o.status == "not_attempted":
                kind, severity = "operation.not_attempted", Severity.WARNING
            else:
                kind, severity = "operation.failed", Severity.WARNING
            alerts.send(
                Alert(
                    kind,
                    severity,
                    a.key,
                    f"{a.op.value} {a.key} {o.status}: {o.detail}",
                    {"op": a.op.value, "person_id": a.person_id, "run_id": run_id},
                )
            )
        if observer is not None:
            observer.outcome(o)

    executor = Executor(
        target_factory=rt.target,
        journal=store,
        workers=s.apply.workers,
        max_attempts=s.apply.max_attempts,
        backoff=s.apply.backoff_seconds,
        backoff_max=s.apply.backoff_max_seconds,
        on_outcome=on_outcome,
        audit=audit_batch,
        commit_batch=s.apply.commit_batch,
        commit_interval=s.apply.commit_interval_ms / 1000,
        circuit_breaker_after=s.apply.circuit_breaker_after,
        deadline_seconds=s.apply.run_deadline_seconds,
        should_stop=should_stop,
    )
    for h in plan.held:
        log.warning(
            "operation.held",
            code=h.code,
            op=h.action.op.value,
            person_id=h.action.person_id,
            account_id=h.action.account_id,
            message=h.message,
        )
        if alerts is not None and h.code == "quarantined":
            alerts.send(
                _quarantined(h.action.key, h.action.op.value, h.action.person_id, h.message)
            )
    if alerts is not None:
        for alert in held_alerts(
            [h for h in plan.held if h.code != "quarantined"], run_id, s.state.reports
        ):
            alerts.send(alert)
    if alerts is not None:
        _alert_guard_and_feeds(rt, plan, ev, alerts)
    tz = rt.rules.tz  # instants in alerts and audit records: policy.timezone (timefmt)
    open_breaches(store, audit, plan, run_id, log, rt.clock(), alerts, tz=tz)
    try:
        report = executor.apply(plan, run_id)
    except AuditWriteError as exc:
        store.finish_run(run_id, "stopped", {"audit_write_failed": 1})
        log.error("run.stopped", reason=str(exc))
        if alerts is not None:
            alerts.send(
                Alert(
                    "audit.write_failed",
                    Severity.CRITICAL,
                    str(rt.settings.state.audit_db),
                    f"apply stopped: {exc}",
                    {"run_id": run_id},
                )
            )
        raise
    if report.stopped and alerts is not None:
        alerts.send(
            Alert(
                "run.stopped",
                Severity.CRITICAL,
                run_id,
                f"apply stopped early: {report.stopped}",
                {
                    "run_id": run_id,
                    "not_attempted": sum(o.status == "not_attempted" for o in report.outcomes),
                },
            )
        )
    close_breaches(store, audit, plan, report, run_id, log, rt.clock(), alerts, scope=scope, tz=tz)
    # what this run held, and the operators' decisions it settled (``misync held``)
    record_held(store, audit, plan, report.outcomes, run_id, rt.clock(), log, full=scope is None)
    warn_unfixed(plan, report, log, alerts, tz=tz)
    if scope is None and not ev.feeds.unhealthy():
        store.record_feed_rows(run_id, {h.feed.value: h.rows for h in ev.feeds.health.values()})
    store.record_feed_health(
        run_id,
        rt.clock(),
        [
            FeedHealthRow(
                h.feed.value,
                h.state.value,
                h.rows,
                h.rejected,
                h.detail,
                h.modified_at,
                run_id,
                rt.clock(),
            )
            for h in ev.feeds.health.values()
        ],
    )
    result = ApplyResult(run_id, plan, report)
    summary = {**plan.summary, **report.counts, "failed": len(report.failed)}
    if report.stopped:
        summary["stopped"] = 1
    store.finish_run(run_id, result.status, summary)
    record: dict[str, Any] = {"status": result.status, "summary": summary}
    if report.stopped:
        record["stopped"] = report.stopped
    head = audit.append("run", record, run_id=run_id)
    log.info(
        "run.finished",
        status=result.status,
        stopped=report.stopped or None,
        summary=summary,
        audit_seq=head.seq,
        audit_head=head.hash,
    )
    return result


def _operation_record(entry: int, o: Outcome, checksum: str) -> dict[str, Any]:
    a = o.action
    record: dict[str, Any] = {
        "journal": entry,
        "op": a.op.value,
        "person_id": a.person_id,
        "account_id": o.account_id,
        "logon_id": a.logon_id,
        "outcome": o.status,
        "attempts": o.attempts,
        "detail": o.detail,
        "plan": checksum,
        "reasons": [{"code": r.code, "clause": r.clause, "message": r.message} for r in a.reasons],
        "changes": [{"name": c.name, "old": list(c.old), "new": list(c.new)} for c in a.changes],
    }
    if o.code:
        record["code"] = o.code
    return record


def _quarantined(
    key: str, op: str, person_id: str | None, detail: str, failures: int | None = None
) -> Alert:
    fields: dict[str, Any] = {"op": op, "person_id": person_id}
    if failures is not None:
        fields["failures"] = failures
    return Alert(
        "object.quarantined",
        Severity.CRITICAL,
        key,
        f"{op} {key} is quarantined (kept failing; `misync held approve quarantined:{key}` "
        f"retries it once): {detail}",
        fields,
    )


def _alert_guard_and_feeds(rt: Runtime, plan: Plan, ev: Evaluation, alerts: AlertSink) -> None:
    """Alerts about the run as a whole: a guard trip, unusable feeds, separated requesters."""
    guarded = [h for h in plan.held if h.code == "mass_disable_guard"]
    if guarded:
        alerts.send(
            Alert(
                "guard.tripped",
                Severity.CRITICAL,
                "mass_disable_guard",
                f"the mass-disable guard held {len(guarded)} unexplained disables; review the "
                "plan and apply with --override-guard if they are right",
                {"held": len(guarded), "accounts": [h.action.key for h in guarded[:20]]},
            )
        )
    for h in sorted(ev.feeds.health.values(), key=lambda h: h.feed.value):
        if not h.healthy:
            alerts.send(
                Alert(
                    "feed.unhealthy",
                    Severity.CRITICAL,
                    h.feed.value,
                    f"feed {h.feed.value} ({h.file}) is {h.state.value}: {h.detail}; "
                    "the actions it drives are held",
                    {"feed": h.feed.value, "state": h.state.value, "rows": h.rows},
                )
            )
    for r in separated_requesters(ev.feeds, plan.as_of, rt.rules.tz):
        alerts.send(
            Alert(
                "requester.separated",
                Severity.WARNING,
                r.person_id,
                r.message,
                {
                    "person_id": r.person_id,
                    "wda": r.wda,
                    "separated_at": when(r.separated_at, rt.rules.tz),
                    "clause": r.clause,
                },
            )
        )


def decision_digest(d: Decision) -> str:
    body = {
        "status": d.status.value,
        "reasons": sorted(f"{r.code}|{r.clause}|{r.message}" for r in d.reasons),
        "grant": d.grant.request_id if d.grant else None,
        "profile": d.profile,
        "offices": list(d.offices),
    }
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _decision_record(d: Decision) -> dict[str, Any]:
    return {
        "person_id": d.person_id,
        "status": d.status.value,
        "reasons": [{"code": r.code, "clause": r.clause, "message": r.message} for r in d.reasons],
        "flags": [{"code": r.code, "clause": r.clause} for r in d.flags],
        "grant": d.grant.request_id if d.grant else None,
    }


def _record_decisions(
    store: Store, audit: AuditLog, ev: Evaluation, run_id: str, log: Any
) -> None:
    """Audit and log one event per decision *change* (not per person per run)."""
    old = store.decision_digests()
    changed: dict[str, str] = {}
    records: list[tuple[str, dict[str, Any]]] = []
    for pid, d in ev.decisions.items():
        digest = decision_digest(d)
        if old.get(pid) != digest:
            changed[pid] = digest
            records.append(("decision", _decision_record(d)))
            log.info(
                "decision.changed",
                person_id=pid,
                status=d.status.value,
                reasons=[r.code for r in d.reasons],
            )
    if records:
        audit.append_many(records, run_id=run_id)
        store.record_decision_digests(changed)
