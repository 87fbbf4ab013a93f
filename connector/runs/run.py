"""One run: the single way a plan is carried out, whoever started it.

The CLI's ``apply``, the daemon's reconcile, its fast path and its timed actions all
build a ``Run`` around a ``PlanSource`` (connector.runs.sources, connector.runs.targeted)
and call ``execute``. The source only says how the plan is obtained; everything else
is done here, once, in this order (each step survives a crash of the next):

1. the run id is bound to every log event; the state folder is locked
   (``StateBusyError`` if another run holds it);
2. the audit trail is checked against its anchor (a tampered trail stops the run before
   anything, and before an alert sink hears of a run: ``AuditIntegrityError``); an
   unkeyed trail is warned about (``audit.unkeyed``);
3. the alert sink hears that the run started (the alert manager: its digest window);
4. the source makes the plan (a fresh read, a reviewed plan confirmed against one, an
   incremental cycle, or the people a targeted run looks at), with its evaluation and
   scope; a source with nobody to look at ends the run here, recording nothing;
5. what a crashed run left open is closed as ``interrupted`` and audited;
6. the run, the plan and every changed decision are recorded (connector.records);
7. held actions, guard trips, unusable feeds and separated requesters are alerted;
   breaches are opened *before* the directory is touched;
8. the executor carries out the actions: each one journaled before the directory is
   touched; outcomes committed in groups (written on their entries, audited in one
   append, then closed with their audit seq); a failed audit write stops the run
   (``AuditWriteError``), a stalled target or the run deadline stops it early
   (``report.stopped``; the rest is journaled and audited as ``not_attempted``);
9. fixed breaches are closed, held records settled, feed health recorded, the run is
   finished and its audit head logged; the enabled-account count (the mass-disable
   guard's denominator for targeted runs) is brought up to date;
10. the alert sink hears that the run finished (``full`` only for a run that read the
    whole directory and got to its end: only such a run may close what it no longer
    saw).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from connector import archive
from connector.alerts import AlertSink, FeedAwareSink, RunAwareSink, kinds
from connector.app import Runtime
from connector.archive.inputs import archive_run
from connector.audit import UNKEYED_WARNING, AuditLog, AuditWriteError
from connector.executor import ActionOutcome, ApplyReport, Executor
from connector.model.decisions import Decision
from connector.model.feeds import FeedSet
from connector.model.plan import FailureCode, HeldCode, Op, OutcomeStatus, Plan
from connector.policy.review import separated_requesters
from connector.records import (
    decision_digest,
    decision_record,
    operation_record,
    plan_record,
    run_record,
)
from connector.runs.breaches import close_breaches, open_breaches, warn_unfixed
from connector.runs.held import record_run as record_held
from connector.runs.planning import Evaluation, collector_paused
from connector.runs.recovery import recover_interrupted
from connector.state import FeedHealthRow, Store, state_lock
from connector.timefmt import when

SEPARATED = "separated"  # the reason code of a separation (policy 3.g.ix, 3.h.viii)
ENABLED_ACCOUNTS = "enabled_accounts"  # state meta: enabled accounts after the last run
FEW_DECISIONS = 2000  # up to this many, a run reads only its people's recorded digests


class RunObserver(Protocol):
    """Sees a run as it goes (the CLI prints progress; the notifier emails 3.k notices;
    the daemon reports status). Each method is called from the run's thread."""

    def evaluated(self, feeds: FeedSet, decisions: Mapping[str, Decision], as_of: datetime) -> None:
        """What the run read and decided about the people in its scope (before
        ``planned``)."""

    def planned(self, plan: Plan) -> None:
        """The plan is final and nothing has been carried out yet."""

    def outcome(self, outcome: ActionOutcome) -> None:
        """One action finished (journaled and audited)."""


class Observers:
    """Several observers as one (progress printing, notifications, daemon status...), each
    told in turn. Each handles its own failures (the notifier logs and goes on); what one
    raises reaches the run as it would without the others (a closed pipe, say)."""

    def __init__(self, *observers: RunObserver | None) -> None:
        self._observers = [o for o in observers if o is not None]

    def evaluated(self, feeds: FeedSet, decisions: Mapping[str, Decision], as_of: datetime) -> None:
        for o in self._observers:
            o.evaluated(feeds, decisions, as_of)

    def planned(self, plan: Plan) -> None:
        for o in self._observers:
            o.planned(plan)

    def outcome(self, outcome: ActionOutcome) -> None:
        for o in self._observers:
            o.outcome(outcome)


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


@dataclass(frozen=True)
class Planned:
    """What a ``PlanSource`` gives a run."""

    plan: Plan  # sealed
    evaluation: Evaluation  # what the run records and alerts on (the people in scope)
    #: the account ids a targeted run looked at (only their breaches may be closed);
    #: None for a run that read the whole directory
    scope: frozenset[str] | None = None
    #: enabled accounts in the directory the plan was made against (None: unknown)
    enabled: int | None = None
    #: accounts misync had disabled that the read found enabled (misync's mark goes)
    reenabled: Sequence[str] = ()
    #: a reviewed plan (``apply --plan``): what the run noted is the fresh read that
    #: confirmed it, which its replay checks it against (connector.archive)
    reviewed: bool = False
    #: the account buckets the source's last run archived (the daemon's reconciles keep
    #: one across cycles: an unchanged bucket is not serialised and hashed again)
    archive_cache: archive.BucketCache | None = field(default=None, repr=False)
    #: a reviewed plan's run: the archived inputs the saved plan was made from
    #: (``misync plan -o``: ``id``, ``manifest``), named in the run's archived inputs
    planned_from: Mapping[str, str] | None = None


@dataclass
class RunContext:
    """What a ``PlanSource`` may use while it plans (the state lock is held, the trail
    checked)."""

    rt: Runtime
    store: Store
    run_id: str
    alerts: AlertSink | None
    log: Any
    on_evaluation: Callable[[Evaluation], None] | None = field(default=None, repr=False)

    def evaluated(self, ev: Evaluation) -> None:
        """The source read the feeds and decided: ``ev`` is the whole evaluation (the
        daemon reuses it to plan its timed job and as its feed watcher's baseline)."""
        if self.on_evaluation is not None:
            self.on_evaluation(ev)


class PlanSource(Protocol):
    """One way a run obtains its plan: fresh (``FreshPlan``), a reviewed file
    (``ReviewedPlan``), an incremental cycle (``IncrementalCycle``), targeted people
    (``TargetedPeople``)."""

    @property
    def kind(self) -> str:
        """The run's kind in the state store (``apply``, ``fastpath``, ``timed``...)."""

    def plan(self, ctx: RunContext) -> Planned | None:
        """The plan, its evaluation and scope; None when there is nobody to look at
        (nothing is recorded then). Raises ``DriftError`` (a reviewed plan no longer
        holds) or ``TargetError``; nothing has been changed then."""


class Run:
    """One run of ``source`` (see the module's docstring for the order of its steps).

    ``should_stop`` is checked between actions (the daemon's SIGTERM): the actions in
    flight finish and are journaled, the rest are recorded as not attempted.
    ``evaluated`` is told the source's whole evaluation as soon as it is made."""

    def __init__(
        self,
        rt: Runtime,
        source: PlanSource,
        *,
        run_id: str | None = None,
        alerts: AlertSink | None = None,
        observer: RunObserver | None = None,
        should_stop: Callable[[], bool] | None = None,
        evaluated: Callable[[Evaluation], None] | None = None,
    ) -> None:
        self.rt = rt
        self.source = source
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.alerts = alerts
        self.observer = observer
        self.should_stop = should_stop
        self.evaluated = evaluated
        self.log = structlog.get_logger("misync.run")

    def execute(self) -> ApplyResult | None:
        """Carry the run out; the result, or None when the source had nobody to look at.

        Raises ``StateBusyError`` when another run holds the state folder,
        ``AuditIntegrityError`` when the trail does not match its anchor, ``DriftError``
        when a reviewed plan no longer holds, and ``TargetError`` when the target cannot
        be read; in each case nothing was changed."""
        rt = self.rt
        # every event of this run carries its run_id; the caller's own binding is restored after
        with (
            structlog.contextvars.bound_contextvars(run_id=self.run_id),
            state_lock(rt.settings.state.dir),  # StateBusyError if another run holds it
            rt.store() as store,
            rt.audit() as audit,
        ):
            audit.check()  # a trail that does not match its anchor stops the run before anything
            if rt.settings.audit.key_file is None:
                self.log.warning("audit.unkeyed", detail=UNKEYED_WARNING)
            aware = self.alerts if isinstance(self.alerts, RunAwareSink) else None
            if aware is not None:
                aware.run_started(self.run_id)
            full = False
            try:
                ctx = RunContext(rt, store, self.run_id, self.alerts, self.log, self.evaluated)
                with archive.recording() as rec:
                    planned = self.source.plan(ctx)
                if planned is None:
                    return None
                inputs = self._archive(rec, planned)
                store.forget_misync_disables(planned.reenabled)
                result = self._carry_out(store, audit, planned, inputs)
                self._count_enabled(store, planned, result)
                full = planned.scope is None
                return result
            finally:
                if (
                    aware is not None
                ):  # only a full run that finished may close what it no longer saw
                    aware.run_finished(self.run_id, full=full)

    def _archive(self, rec: archive.Recorder, planned: Planned) -> str | None:
        """Step 4b: the inputs the plan was made from, into ``state.dir/archive/``
        (connector.archive); their digest goes into the run's ``plan`` record."""
        rt = self.rt
        folder = rt.settings.state.dir / "archive"
        try:  # thousands of small objects over a large live heap: no cyclic GC passes
            with collector_paused():
                digest = archive_run(
                    archive.ArchiveStore(folder),
                    rec,
                    run_id=self.run_id,
                    kind=self.source.kind,
                    settings=rt.settings,
                    rules=rt.rules,
                    checksum=planned.plan.checksum,
                    scoped=planned.scope is not None,
                    reviewed=planned.reviewed,
                    at=rt.clock(),
                    cache=planned.archive_cache,
                    planned_from=planned.planned_from,
                )
        except OSError as exc:  # nothing recorded or changed yet: the run stops here
            raise archive.ArchiveWriteError(
                f"{folder}: the run's inputs could not be archived: {exc}"
            ) from exc
        self.log.info("run.archived", inputs=digest)
        return digest

    # -- steps 5-9 ----------------------------------------------------------------------

    def _carry_out(
        self, store: Store, audit: AuditLog, planned: Planned, inputs: str | None = None
    ) -> ApplyResult:
        rt, run_id, log, alerts = self.rt, self.run_id, self.log, self.alerts
        s = rt.settings
        plan, ev, scope = planned.plan, planned.evaluation, planned.scope
        tz = rt.rules.tz  # instants in alerts and audit records: policy.timezone (timefmt)
        recover_interrupted(store, audit, run_id, log)
        store.start_run(run_id, self.source.kind, plan.as_of, plan.checksum)
        # held actions, deadlines, rejected rows, feed health: the run's report is
        # re-rendered from the trail (connector.records.read_run)
        audit.append("plan", plan_record(plan, tz, inputs), run_id=run_id)
        _record_decisions(store, audit, ev, run_id, log)
        if alerts is not None and isinstance(alerts, FeedAwareSink):
            alerts.observe(ev.feeds)  # the areas its people's alerts go to (issue 16)
        if self.observer is not None:
            # what the run read (the notifier: requesters, emails), then the plan
            self.observer.evaluated(ev.feeds, ev.decisions, plan.as_of)
            self.observer.planned(plan)
        executor = self._executor(store, audit, plan.checksum)
        self._alert_held(plan)
        if alerts is not None:
            self._alert_guard_and_feeds(plan, ev, alerts)
        open_breaches(store, audit, plan, run_id, log, rt.clock(), alerts=alerts, tz=tz)
        try:
            report = executor.apply(plan, run_id)
        except AuditWriteError as exc:
            store.finish_run(run_id, "stopped", {"audit_write_failed": 1})
            log.error("run.stopped", reason=str(exc))
            if alerts is not None:
                alerts.send(kinds.audit_write_failed(str(s.state.audit_db), run_id, str(exc)))
            raise
        if report.stopped and alerts is not None:
            not_attempted = sum(o.status == OutcomeStatus.NOT_ATTEMPTED for o in report.outcomes)
            alerts.send(kinds.run_stopped(run_id, report.stopped, not_attempted))
        close_breaches(
            store,
            audit,
            plan,
            report,
            run_id,
            log,
            at=rt.clock(),
            alerts=alerts,
            scope=scope,
            tz=tz,
        )
        # what this run held, and the operators' decisions it settled (``misync held``)
        record_held(
            store, audit, plan, report.outcomes, run_id, rt.clock(), log=log, full=scope is None
        )
        warn_unfixed(plan, report, log, alerts, tz=tz)
        self._record_feeds(store, ev, full=scope is None)
        result = ApplyResult(run_id, plan, report)
        summary = {**plan.summary, **report.counts, "failed": len(report.failed)}
        if report.stopped:
            summary["stopped"] = 1
        store.finish_run(run_id, result.status, summary)
        head = audit.append(
            "run", run_record(result.status, summary, report.stopped), run_id=run_id
        )
        log.info(
            "run.finished",
            status=result.status,
            stopped=report.stopped or None,
            summary=summary,
            audit_seq=head.seq,
            audit_head=head.hash,
        )
        return result

    def _executor(self, store: Store, audit: AuditLog, checksum: str) -> Executor:
        s, run_id, alerts, observer = self.rt.settings, self.run_id, self.alerts, self.observer

        def audit_batch(batch: Sequence[tuple[int, ActionOutcome]]) -> list[int]:
            """One append for a group of outcomes; the seq of each record, in order."""
            last = audit.append_many(
                [("operation", operation_record(entry, o, checksum)) for entry, o in batch],
                run_id=run_id,
            )
            assert last is not None
            first = last.seq - len(batch) + 1
            return list(range(first, last.seq + 1))

        def on_outcome(o: ActionOutcome) -> None:  # journaled and audited by now
            a = o.action
            if alerts is not None:
                if o.status == OutcomeStatus.FAILED and o.code != FailureCode.STOPPED:
                    failures = store.failure_count(a.key)
                    if failures == s.apply.quarantine_after:
                        alerts.send(
                            kinds.object_quarantined(
                                a.key, a.op.value, a.person_id, o.detail, failures
                            )
                        )
                alert = kinds.operation_outcome(
                    a.op.value, a.key, a.person_id, o.status, o.code, o.detail, run_id=run_id
                )
                if alert is not None:
                    alerts.send(alert)
                codes = [r.code for r in a.reasons]
                if o.status == OutcomeStatus.OK and a.op is Op.DISABLE and SEPARATED in codes:
                    done = when(self.rt.clock(), self.rt.rules.tz)
                    alerts.send(
                        kinds.separation_disabled(
                            a.account_id or a.key, a.person_id, ",".join(codes), run_id, done
                        )
                    )
            if observer is not None:
                observer.outcome(o)

        return Executor(
            target_factory=self.rt.target,
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
            should_stop=self.should_stop,
        )

    def _alert_held(self, plan: Plan) -> None:
        """Log every held action; alert each quarantine, and the rest once per cause."""
        alerts = self.alerts
        for h in plan.held:
            self.log.warning(
                "operation.held",
                code=h.code,
                op=h.action.op.value,
                person_id=h.action.person_id,
                account_id=h.action.account_id,
                message=h.message,
            )
            if alerts is not None and h.code == HeldCode.QUARANTINED:
                alerts.send(
                    kinds.object_quarantined(
                        h.action.key, h.action.op.value, h.action.person_id, h.message
                    )
                )
        if alerts is not None:
            others = [h for h in plan.held if h.code != HeldCode.QUARANTINED]
            for alert in kinds.operation_held(others, self.run_id, self.rt.settings.state.reports):
                alerts.send(alert)

    def _alert_guard_and_feeds(self, plan: Plan, ev: Evaluation, alerts: AlertSink) -> None:
        """Alerts about the run as a whole: a guard trip, unusable feeds, separated
        requesters."""
        tz = self.rt.rules.tz
        guarded = [h for h in plan.held if h.code == HeldCode.MASS_DISABLE_GUARD]
        if guarded:
            alerts.send(kinds.guard_tripped(guarded))
        for h in sorted(ev.feeds.health.values(), key=lambda h: h.feed.value):
            if not h.healthy:
                alerts.send(
                    kinds.feed_unhealthy(h.feed.value, h.file, h.state.value, h.detail, h.rows)
                )
        for r in separated_requesters(ev.feeds, plan.as_of, tz):
            alerts.send(
                kinds.requester_separated(
                    r.person_id, r.message, r.wda, when(r.separated_at, tz), r.clause
                )
            )

    def _record_feeds(self, store: Store, ev: Evaluation, *, full: bool) -> None:
        """Feed health of this run; the row counts of a full run with every feed usable
        (the next run judges a shrunk feed against them)."""
        rt, run_id = self.rt, self.run_id
        if full and not ev.feeds.unhealthy():
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

    @staticmethod
    def _count_enabled(store: Store, planned: Planned, result: ApplyResult) -> None:
        """The denominator of the mass-disable guard for targeted runs: the enabled
        accounts the plan was made against, plus what this run enabled, minus what it
        disabled."""
        if planned.enabled is None:
            return
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
            if o.status == OutcomeStatus.OK
        )
        store.set_meta(ENABLED_ACCOUNTS, str(max(planned.enabled + delta, 0)))


def enabled_total(store: Store) -> int | None:
    """The enabled-account count the last run left (``ENABLED_ACCOUNTS``), if any."""
    value = store.meta(ENABLED_ACCOUNTS)
    return int(value) if value is not None and value.isdigit() else None


def _record_decisions(store: Store, audit: AuditLog, ev: Evaluation, run_id: str, log: Any) -> None:
    """Audit and log one event per decision *change* (not per person per run)."""
    # a targeted run's few people are looked up one by one, a full run's read in one go
    few = len(ev.decisions) <= FEW_DECISIONS
    old = store.decision_digests(ev.decisions.keys() if few else None)
    changed: dict[str, str] = {}
    records: list[tuple[str, dict[str, Any]]] = []
    for pid, d in ev.decisions.items():
        digest = decision_digest(d)
        if old.get(pid) != digest:
            changed[pid] = digest
            records.append(("decision", decision_record(d)))
            log.info(
                "decision.changed",
                person_id=pid,
                status=d.status.value,
                reasons=[r.code for r in d.reasons],
            )
    if records:
        audit.append_many(records, run_id=run_id)
        store.record_decision_digests(changed)
