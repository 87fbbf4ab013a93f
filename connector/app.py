"""Wiring: settings -> adapters -> core. The CLI and (later) the daemon call these
functions; nothing here is global, so one process can hold several ``Runtime``s."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from connector.apply import ApplyReport, Executor, Outcome
from connector.audit import AuditTrail
from connector.feeds import read_feeds
from connector.mapping import Mapping as AccountMapping
from connector.mapping import load_mapping
from connector.model.accounts import Account
from connector.model.decisions import Decision
from connector.model.feeds import FeedName, FeedSet
from connector.model.plan import Op, Plan
from connector.policy import PolicyRules, evaluate_all
from connector.reconcile import PlanInputs, build_plan, seal
from connector.reconcile.diff import account_digest
from connector.settings import ConfigError, Settings
from connector.state import StateStore, state_lock
from connector.targets.base import Target


class DriftError(RuntimeError):
    """``apply --plan``: the target changed since the plan was made; nothing was applied."""

    def __init__(self, message: str, drifted: list[str]) -> None:
        super().__init__(message)
        self.drifted = drifted


def policy_rules(settings: Settings) -> PolicyRules:
    p = settings.policy
    return PolicyRules(
        tz=p.tz,
        approved_courses=frozenset(p.approved_courses),
        nda_grace=timedelta(days=p.nda_grace_days),
        separation_deadline=timedelta(hours=p.separation_deadline_hours),
        contract_grace=timedelta(hours=p.contract_grace_hours),
        lapse_deadline=timedelta(hours=p.lapse_deadline_hours),
        late_notice=timedelta(hours=p.late_notice_hours),
        restore_on_cure=p.restore_on_cure,
    )


@dataclass
class Runtime:
    """Everything one process needs, built from settings."""

    settings: Settings
    mapping: AccountMapping = field(init=False)
    rules: PolicyRules = field(init=False)
    target_factory: Callable[[], Target] | None = None

    def __post_init__(self) -> None:
        self.mapping = load_mapping(self.settings.target.mapping)
        self.rules = policy_rules(self.settings)
        t = self.settings.target
        if self.mapping.kind != t.kind:
            raise ConfigError(
                f"target.mapping: {t.mapping} is a {self.mapping.kind} mapping"
                f" but target.kind is {t.kind!r}"
            )
        if t.kind == "ldap" and self.mapping.groups and not t.ldap.group_base_dn:
            raise ConfigError(
                f"target.ldap.group_base_dn: required because the mapping {t.mapping}"
                " declares groups"
            )
        if t.kind == "scim":
            from connector.targets.scim import check_scope_filter

            try:
                check_scope_filter(t.scim.filter)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc

    def target(self) -> Target:
        if self.target_factory is not None:
            return self.target_factory()
        kind = self.settings.target.kind
        if kind == "ldap":
            from connector.targets.ldap import LdapTarget

            return LdapTarget(self.settings.target.ldap, self.mapping)
        from connector.targets.scim import ScimTarget

        return ScimTarget(self.settings.target.scim, self.mapping)

    def store(self) -> StateStore:
        return StateStore(self.settings.state.db)

    def audit(self) -> AuditTrail:
        return AuditTrail(self.settings.state.audit_db, key=self.settings.audit.key())


@dataclass(frozen=True)
class Evaluation:
    as_of: datetime
    feeds: FeedSet
    decisions: Mapping[str, Decision]


def now() -> datetime:
    return datetime.now(UTC)


def evaluate(rt: Runtime, store: StateStore, as_of: datetime) -> Evaluation:
    previous = {FeedName(k): v for k, v in store.last_good_feed_rows().items()}
    feeds = read_feeds(rt.settings.feeds, now=now(), tz=rt.rules.tz, previous_rows=previous)
    log = structlog.get_logger("misync.feeds")
    for h in feeds.health.values():
        if not h.healthy:
            log.warning("feed.unusable", feed=h.feed.value, state=h.state.value, detail=h.detail)
    for r in feeds.rejected:
        log.warning(
            "feed.row_rejected",
            feed=r.feed,
            file=r.file,
            line=r.line,
            column=r.column,
            reason=r.reason,
        )
    return Evaluation(as_of, feeds, evaluate_all(feeds, as_of, rt.rules))


def make_plan(
    rt: Runtime,
    store: StateStore,
    as_of: datetime,
    *,
    override_guard: bool = False,
    evaluation: Evaluation | None = None,
    observe: Callable[[Account], None] | None = None,
) -> tuple[Plan, Evaluation]:
    """Evaluate the feeds, read the target (paged, streamed), and build a sealed plan.

    ``observe`` sees every account as it streams past (no second read)."""
    ev = evaluation or evaluate(rt, store, as_of)
    s = rt.settings
    target = rt.target()
    try:
        plan = build_plan(
            PlanInputs(
                as_of=as_of,
                feeds=ev.feeds,
                decisions=ev.decisions,
                accounts=_observed(target.snapshot(), observe),
                mapping=rt.mapping,
                target=target.description,
                known_logon_ids=store.logon_ids(),
                taken_logon_ids=frozenset(store.taken_logon_ids()),
                quarantined=frozenset(store.quarantined(s.apply.quarantine_after)),
                orphans=s.target.orphans,
                max_unexplained=s.guard.max_unexplained_disables,
                max_share=s.guard.max_unexplained_share,
                override_guard=override_guard,
                warning=timedelta(hours=s.policy.warning_hours),
            )
        )
    finally:
        target.close()
    return seal(plan), ev


def _observed(
    accounts: Iterator[Account], observe: Callable[[Account], None] | None
) -> Iterator[Account]:
    for account in accounts:
        if observe is not None:
            observe(account)
        yield account


def confirm_plan(rt: Runtime, store: StateStore, plan: Plan) -> Evaluation:
    """Refuse a reviewed plan if the target drifted since it was made, or if any action
    in it is not what Policy 1021 gives now.

    One fresh plan answers both, from one paged read of the directory (with the
    mass-disable guard overridden, so that it hides nothing):

    - drift: every account the plan touches must still read with the digest the plan
      recorded, and no account may have appeared for a planned create;
    - policy: the checksum proves only that a file was not altered after it was sealed,
      and anyone who can write the file can seal it again, so every reviewed action
      must appear in the fresh plan with the same op, desired account and changes. An
      edited plan can never grant access, a profile or a group that the policy does
      not, nor disable someone the policy keeps.

    Actions of the fresh plan that the reviewed one lacks are not applied.
    """
    read: dict[str, str] = {}  # account id (lower case) -> digest as read now
    owners: dict[str, str] = {}  # person_id -> account id, as correlated now

    def observe(account: Account) -> None:
        read[account.account_id.lower()] = account_digest(account)
        if account.correlation:
            owners[account.correlation] = account.account_id

    fresh, ev = make_plan(rt, store, now(), override_guard=True, observe=observe)
    if fresh.target != plan.target:
        raise DriftError(
            f"the plan was made for {plan.target}, this configuration targets {fresh.target}",
            [],
        )
    drifted: list[str] = []
    for a in plan.actions:
        if a.op is Op.CREATE:
            if a.person_id in owners:
                drifted.append(f"{a.person_id}: an account now exists ({owners[a.person_id]})")
        elif a.account_id is None or a.account_id.lower() not in read:
            drifted.append(f"{a.account_id}: no longer exists")
        elif read[a.account_id.lower()] != a.before:
            drifted.append(f"{a.account_id}: changed since the plan was made")
    if drifted:
        raise DriftError(
            f"the target drifted since the plan was made ({len(drifted)} objects)", drifted
        )

    current = {(a.op, a.key): a for a in fresh.actions}
    refused: list[str] = []
    for a in plan.actions:
        who = a.person_id or a.account_id or "?"
        now_a = current.get((a.op, a.key))
        if now_a is None:
            held = next((h for h in fresh.held if h.action.key == a.key), None)
            why = f"held now: {held.message}" if held else "not in a plan made now"
            refused.append(f"{who}: {a.op.value} {a.key} is {why}")
        elif now_a.desired != a.desired or now_a.changes != a.changes:
            refused.append(f"{who}: {a.op.value} {a.key} differs from what the policy gives now")
    if refused:
        raise DriftError(
            f"the plan is not what Policy 1021 gives now ({len(refused)} actions)", refused
        )
    return ev


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


@dataclass(frozen=True)
class ApplyResult:
    run_id: str
    plan: Plan
    report: ApplyReport


def run_apply(
    rt: Runtime,
    *,
    plan: Plan | None = None,
    override_guard: bool = False,
    run_id: str | None = None,
) -> ApplyResult:
    """Plan now (or take a reviewed plan), then apply it, journaling and auditing it all."""
    run_id = run_id or uuid.uuid4().hex[:12]
    # every event of this run carries its run_id; the caller's own binding is restored after
    with (
        structlog.contextvars.bound_contextvars(run_id=run_id),
        state_lock(rt.settings.state.dir),  # StateBusyError if another run holds it
    ):
        return _run_apply(rt, run_id, plan, override_guard)


def recover_interrupted(store: StateStore, audit: AuditTrail, run_id: str, log: Any) -> None:
    """Close what a crashed run left open (call with the state lock held).

    An open journal entry means the run stopped between "about to touch the directory"
    and "here is what happened": whether the change landed is unknown. This run plans
    from a fresh read of the directory, so it converges either way; the entry is closed
    as ``interrupted`` and the audit trail records it, so no begun operation is left
    without an outcome.
    """
    entries = store.open_journal_entries()
    details = {
        e.id: (
            f"run {e.run_id} ended before the outcome was recorded; whether it landed is "
            f"unknown; run {run_id} re-read the directory and re-planned"
        )
        for e in entries
    }
    # audit first, in one append: a crash in between leaves entries open, never unaudited
    audit.append_many(
        [
            (
                "operation",
                {
                    "op": e.op,
                    "person_id": e.person_id,
                    "account_id": e.account_id,
                    "logon_id": e.payload.get("logon_id"),
                    "outcome": "interrupted",
                    "detail": details[e.id],
                    "plan": e.payload.get("plan", ""),
                    "interrupted_run": e.run_id,
                },
            )
            for e in entries
        ],
        run_id=run_id,
    )
    for e in entries:
        store.journal_end(e.id, "interrupted", e.account_id, details[e.id])
        log.warning("journal.interrupted", entry=e.id, key=e.key, op=e.op, interrupted_run=e.run_id)
    for r in store.unfinished_runs():
        store.finish_run(r.run_id, "interrupted", {})
        audit.append("run", {"status": "interrupted", "interrupted_run": r.run_id}, run_id=run_id)
        log.warning("run.interrupted", interrupted_run=r.run_id)


def _run_apply(rt: Runtime, run_id: str, plan: Plan | None, override_guard: bool) -> ApplyResult:
    log = structlog.get_logger("misync.run")
    s = rt.settings
    with rt.store() as store, rt.audit() as audit:
        audit.check()  # a trail that does not match its anchor stops the run before anything
        ev: Evaluation | None = None
        if plan is None:
            plan, ev = make_plan(rt, store, now(), override_guard=override_guard)
        else:
            ev = confirm_plan(rt, store, plan)
        recover_interrupted(store, audit, run_id, log)
        store.start_run(run_id, "apply", plan.as_of, plan.checksum)
        audit.append(
            "plan",
            {
                "checksum": plan.checksum,
                "as_of": plan.as_of.isoformat(),
                "summary": plan.summary,
                "target": plan.target,
                "feeds": {f.feed.value: f.digest for f in plan.feeds},
            },
            run_id=run_id,
        )
        if ev is not None:
            _record_decisions(store, audit, ev, run_id, log)

        def on_outcome(o: Outcome) -> None:
            a = o.action
            audit.append(
                "operation",
                {
                    "op": a.op.value,
                    "person_id": a.person_id,
                    "account_id": o.account_id,
                    "logon_id": a.logon_id,
                    "outcome": o.status,
                    "attempts": o.attempts,
                    "detail": o.detail,
                    "plan": plan.checksum if plan else "",
                    "reasons": [
                        {"code": r.code, "clause": r.clause, "message": r.message}
                        for r in a.reasons
                    ],
                    "changes": [
                        {"name": c.name, "old": list(c.old), "new": list(c.new)} for c in a.changes
                    ],
                },
                run_id=run_id,
            )
            if o.status == "ok":
                store.clear_failure(a.key)
            else:
                store.record_failure(a.key, now(), o.detail)

        executor = Executor(
            target_factory=rt.target,
            journal=store,
            workers=s.apply.workers,
            max_attempts=s.apply.max_attempts,
            backoff=s.apply.backoff_seconds,
            backoff_max=s.apply.backoff_max_seconds,
            on_outcome=on_outcome,
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
        _open_breaches(store, audit, plan, run_id, log)
        report = executor.apply(plan, run_id)
        _close_breaches(store, audit, plan, report, run_id, log)
        if ev is not None and not ev.feeds.unhealthy():
            store.record_feed_rows(run_id, {h.feed.value: h.rows for h in ev.feeds.health.values()})
        summary = {**plan.summary, **report.counts, "failed": len(report.failed)}
        status = "ok" if not report.failed and not plan.held else "incomplete"
        store.finish_run(run_id, status, summary)
        head = audit.append("run", {"status": status, "summary": summary}, run_id=run_id)
        log.info(
            "run.finished", status=status, summary=summary, audit_seq=head.seq, audit_head=head.hash
        )
    return ApplyResult(run_id, plan, report)


def _record_decisions(
    store: StateStore, audit: AuditTrail, ev: Evaluation, run_id: str, log: Any
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


def _open_breaches(store: StateStore, audit: AuditTrail, plan: Plan, run_id: str, log: Any) -> None:
    """Record every timely-deactivation breach *before* the directory is touched, so a
    crash in the middle of the run cannot lose the evidence that a deadline was missed."""
    open_now = store.open_breaches()
    at = now()
    for b in plan.breaches:
        codes = ",".join(r.code for r in b.reasons)
        fields = {
            "account_id": b.account_id,
            "person_id": b.person_id,
            "deadline": b.deadline.isoformat(),
            "reasons": codes,
        }
        if b.severity == "warning":
            log.warning("deadline.warning", **fields)
            continue
        if b.account_id not in open_now:
            store.open_breach(b.account_id, b.person_id or "", b.deadline, b.severity, codes, at)
            audit.append("breach", {**fields, "state": "open"}, run_id=run_id)
        log.error("breach.open", **fields)


def _close_breaches(
    store: StateStore, audit: AuditTrail, plan: Plan, report: ApplyReport, run_id: str, log: Any
) -> None:
    """Close the breaches this run fixed, and those no longer enabled past a deadline."""
    disabled = {
        o.account_id for o in report.outcomes if o.status == "ok" and o.action.op is Op.DISABLE
    }
    still = {b.account_id for b in plan.breaches if b.severity == "breach"} - disabled
    at = now()
    for account_id, row in store.open_breaches().items():
        if account_id in still:
            continue
        if account_id in disabled:
            resolution = f"disabled by run {run_id}, past its deadline"
        else:
            resolution = f"no longer enabled past a deadline (run {run_id})"
        store.close_breach(account_id, at, resolution)
        audit.append(
            "breach",
            {
                "account_id": account_id,
                "person_id": row.person_id,
                "deadline": row.deadline.isoformat(),
                "state": "closed",
                "resolution": resolution,
            },
            run_id=run_id,
        )
        log.info("breach.closed", account_id=account_id, person_id=row.person_id, late=True)
