"""Timely-deactivation breaches (SPEC "Deadlines"): opened before the directory is
touched, closed when fixed, each in the state store and the audit trail, each alerted."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from connector.alerts import AlertSink, kinds
from connector.audit import AuditLog
from connector.executor import ApplyReport
from connector.model.plan import Breach, Op, OutcomeStatus, Plan
from connector.state import Store
from connector.timefmt import when


def open_breaches(
    store: Store,
    audit: AuditLog,
    plan: Plan,
    run_id: str,
    log: Any,
    at: datetime,
    *,
    alerts: AlertSink | None = None,
    tz: tzinfo | None = None,
) -> None:
    """Record every timely-deactivation breach *before* the directory is touched, so a
    crash in the middle of the run cannot lose the evidence that a deadline was missed.
    ``tz`` (policy.timezone): the zone deadlines are written in (connector.timefmt)."""
    open_now = store.open_breaches()
    # a warning about an account this very run is about to disable would be noise (a
    # timed disable carried out at its instant is "near its deadline" by definition):
    # ``warn_unfixed`` raises it after the run if the disable did not go through
    disabling = {a.account_id for a in plan.actions if a.op is Op.DISABLE}
    for b in plan.breaches:
        if b.severity == "warning":
            if b.account_id not in disabling:
                _warn(b, log, alerts, tz=tz)
            continue
        codes, fields = _fields(b, tz)
        if b.account_id not in open_now:
            store.open_breach(b.account_id, b.person_id or "", b.deadline, b.severity, codes, at)
            audit.append("breach", {**fields, "state": "open"}, run_id=run_id)
        log.error("breach.open", **fields)
        if alerts is not None:
            alerts.send(kinds.breach_open(b.account_id, when(b.deadline, tz), codes, fields))


def close_breaches(  # noqa: PLR0913 -- the run's context; what varies is keyword-only
    store: Store,
    audit: AuditLog,
    plan: Plan,
    report: ApplyReport,
    run_id: str,
    log: Any,
    *,
    at: datetime,
    alerts: AlertSink | None = None,
    scope: frozenset[str] | None = None,
    tz: tzinfo | None = None,
) -> None:
    """Close the breaches this run fixed, and those no longer enabled past a deadline.

    ``scope``: a targeted run saw only these accounts, so only their breaches can be
    judged (None: the run read the whole directory)."""
    disabled = {
        o.account_id
        for o in report.outcomes
        if o.status is OutcomeStatus.OK and o.action.op is Op.DISABLE
    }
    still = {b.account_id for b in plan.breaches if b.severity == "breach"} - disabled
    for account_id, row in store.open_breaches().items():
        if account_id in still or (scope is not None and account_id not in scope):
            continue
        if account_id in disabled:
            resolution = f"disabled by run {run_id}, past its deadline"
        else:
            resolution = f"no longer enabled past a deadline (run {run_id})"
        store.close_breach(account_id, at, resolution)
        fields = {
            "account_id": account_id,
            "person_id": row.person_id,
            "deadline": when(row.deadline, tz),
            "state": "closed",
            "resolution": resolution,
        }
        audit.append("breach", fields, run_id=run_id)
        log.info("breach.closed", account_id=account_id, person_id=row.person_id, late=True)
        if alerts is not None:
            alerts.send(kinds.breach_closed(account_id, resolution, fields))


def warn_unfixed(
    plan: Plan,
    report: ApplyReport,
    log: Any,
    alerts: AlertSink | None,
    *,
    tz: tzinfo | None = None,
) -> None:
    """The warnings ``open_breaches`` left to after the run: a near deadline whose
    disable did not go through (failed, or not attempted because misync was stopping)."""
    done = {
        o.account_id
        for o in report.outcomes
        if o.status is OutcomeStatus.OK and o.action.op is Op.DISABLE
    }
    planned = {a.account_id for a in plan.actions if a.op is Op.DISABLE}
    for b in plan.breaches:
        if b.severity != "warning" or b.account_id not in planned or b.account_id in done:
            continue
        _warn(b, log, alerts, "; the disable did not go through", tz=tz)


def _fields(b: Breach, tz: tzinfo | None) -> tuple[str, dict[str, Any]]:
    codes = ",".join(r.code for r in b.reasons)
    return codes, {
        "account_id": b.account_id,
        "person_id": b.person_id,
        "deadline": when(b.deadline, tz),
        "reasons": codes,
    }


def _warn(
    b: Breach, log: Any, alerts: AlertSink | None, why: str = "", *, tz: tzinfo | None = None
) -> None:
    """A deadline is near (SPEC "Deadlines"): log and alert ``deadline.warning``."""
    codes, fields = _fields(b, tz)
    log.warning("deadline.warning", **fields)
    if alerts is not None:
        alerts.send(kinds.deadline_warning(b.account_id, when(b.deadline, tz), codes, why, fields))
