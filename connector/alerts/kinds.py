"""Every alert misync raises: its kind, its key and its fields, built in one place.

The alert manager opens, dedups, reminds and closes by ``(kind, key)``: a misspelt kind
or a key built two ways would silently keep an alert open forever. So the runs and the
daemon never build an ``Alert`` themselves; they call the constructor of its kind here.
``AlertKind`` values are stored (the state's alert rows, ``alert`` audit records, log
event names, webhook bodies): never rename one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from connector.alerts.port import Alert, Severity
from connector.model.plan import FailureCode, HeldAction, HeldCode, OutcomeStatus


class AlertKind(StrEnum):
    BREACH_OPEN = "breach.open"  # an enabled account past its deactivation deadline
    BREACH_CLOSED = "breach.closed"  # closes breach.open and deadline.warning
    DEADLINE_WARNING = "deadline.warning"  # a deadline within the warning window
    #: a disable driven by a separation was carried out: mailed to the monitors of the
    #: person's areas only (issue 16), the operation record is its audit
    SEPARATION_DISABLED = "separation.disabled"
    OPERATION_HELD = "operation.held"  # key: the held code (one alert per cause)
    OPERATION_FAILED = "operation.failed"
    OPERATION_NOT_EFFECTIVE = "operation.not_effective"  # the target said yes, it was not done
    OPERATION_NOT_ATTEMPTED = "operation.not_attempted"
    OBJECT_QUARANTINED = "object.quarantined"
    GUARD_TRIPPED = "guard.tripped"  # key: the guard's held code
    FEED_UNHEALTHY = "feed.unhealthy"  # key: the feed
    REQUESTER_SEPARATED = "requester.separated"  # key: the requester's person id
    RUN_FAILED = "run.failed"  # key: run:<job>
    RUN_REFUSED = "run.refused"  # key: run:<job>
    RUN_SUCCEEDED = "run.succeeded"  # key: run:<job>; closes run.failed and run.refused
    RUN_STOPPED = "run.stopped"  # key: the run id
    AUDIT_ALTERED = "audit.altered"  # key: audit
    AUDIT_VERIFIED = "audit.verified"  # key: audit; closes audit.altered
    AUDIT_WRITE_FAILED = "audit.write_failed"  # key: the audit database
    CONFIG_RELOAD_REFUSED = "config.reload_refused"  # key: the configuration file
    LEADER_TAKEOVER = "leader.takeover"  # key: epoch:<n>; a daemon took over (PostgreSQL)
    LEADER_STEPPED_DOWN = "leader.stepped_down"  # key: epoch:<n>; fenced or lost its session
    ALERT_DIGEST = "alert.digest"  # the manager's: many alerts of one kind in one message
    ALERT_CLOSED = "alert.closed"  # the manager's: a swept alert is resolved


HELD_KEYS = 10  # keys named in a grouped held alert (the run's report lists them all)
AUDIT_KEY = "audit"


def run_key(job: str) -> str:
    """The key of a daemon job's run alerts (opened by a failure, closed by a success)."""
    return f"run:{job}"


# -- accounts and deadlines -----------------------------------------------------------


def breach_open(account_id: str, deadline: str, codes: str, fields: Mapping[str, Any]) -> Alert:
    return Alert(
        AlertKind.BREACH_OPEN,
        Severity.CRITICAL,
        account_id,
        f"{account_id} is still enabled past its deadline {deadline} ({codes})",
        fields,
    )


def breach_closed(account_id: str, resolution: str, fields: Mapping[str, Any]) -> Alert:
    return Alert(AlertKind.BREACH_CLOSED, Severity.INFO, account_id, resolution, fields)


def deadline_warning(
    account_id: str, deadline: str, codes: str, why: str, fields: Mapping[str, Any]
) -> Alert:
    return Alert(
        AlertKind.DEADLINE_WARNING,
        Severity.WARNING,
        account_id,
        f"{account_id} must be disabled by {deadline} ({codes}){why}",
        fields,
    )


def separation_disabled(
    account_id: str, person_id: str | None, codes: str, run_id: str, done_at: str
) -> Alert:
    """A separated person's account was disabled (3.h.viii: the area's local separated
    user); one message to the monitors of the person's areas."""
    return Alert(
        AlertKind.SEPARATION_DISABLED,
        Severity.INFO,
        account_id,
        f"{account_id} was disabled at {done_at}: the person separated ({codes})",
        {
            "account_id": account_id,
            "person_id": person_id,
            "reasons": codes,
            "run_id": run_id,
            "done_at": done_at,
        },
    )


# -- operations -----------------------------------------------------------------------


def operation_outcome(
    op: str, key: str, person_id: str | None, status: str, code: str, detail: str, *, run_id: str
) -> Alert | None:
    """The alert of an action that did not end ``ok`` (None for one that did)."""
    if status == OutcomeStatus.OK:
        return None
    if code == FailureCode.NOT_EFFECTIVE:
        kind, severity = AlertKind.OPERATION_NOT_EFFECTIVE, Severity.CRITICAL
    elif status == OutcomeStatus.NOT_ATTEMPTED:
        kind, severity = AlertKind.OPERATION_NOT_ATTEMPTED, Severity.WARNING
    else:
        kind, severity = AlertKind.OPERATION_FAILED, Severity.WARNING
    return Alert(
        kind,
        severity,
        key,
        f"{op} {key} {status}: {detail}",
        {"op": op, "person_id": person_id, "run_id": run_id},
    )


def object_quarantined(
    key: str, op: str, person_id: str | None, detail: str, failures: int | None = None
) -> Alert:
    fields: dict[str, Any] = {"op": op, "person_id": person_id}
    if failures is not None:
        fields["failures"] = failures
    return Alert(
        AlertKind.OBJECT_QUARANTINED,
        Severity.CRITICAL,
        key,
        f"{op} {key} is quarantined (kept failing; `misync held approve quarantined:{key}` "
        f"retries it once): {detail}",
        fields,
    )


def operation_held(held: Sequence[HeldAction], run_id: str, reports: Path) -> list[Alert]:
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
                AlertKind.OPERATION_HELD,
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


def ambiguous_held(ambiguous: Mapping[str, str], run_id: str) -> Alert:
    """A targeted run's people with more than one account: one alert for the cause, under
    the same key as the full run's ``ambiguous_correlation`` holds."""
    code = HeldCode.AMBIGUOUS_CORRELATION
    first = min(ambiguous)
    return Alert(
        AlertKind.OPERATION_HELD,
        Severity.WARNING,
        code,
        f"{len(ambiguous)} people with more than one account "
        f"({code}); e.g. {first}: {ambiguous[first]}; the full "
        "reconcile holds them for review",
        {
            "code": code,
            "count": len(ambiguous),
            "person_ids": sorted(ambiguous)[:HELD_KEYS],
            "run_id": run_id,
        },
    )


def guard_tripped(guarded: Sequence[HeldAction]) -> Alert:
    return Alert(
        AlertKind.GUARD_TRIPPED,
        Severity.CRITICAL,
        HeldCode.MASS_DISABLE_GUARD,
        f"the mass-disable guard held {len(guarded)} unexplained disables; review the "
        "plan and apply with --override-guard if they are right",
        {"held": len(guarded), "accounts": [h.action.key for h in guarded[:20]]},
    )


# -- feeds and requesters -------------------------------------------------------------


def feed_unhealthy(feed: str, file: str, state: str, detail: str, rows: int) -> Alert:
    return Alert(
        AlertKind.FEED_UNHEALTHY,
        Severity.CRITICAL,
        feed,
        f"feed {feed} ({file}) is {state}: {detail}; the actions it drives are held",
        {"feed": feed, "state": state, "rows": rows},
    )


def requester_separated(
    person_id: str, message: str, wda: str | None, separated_at: str, clause: str
) -> Alert:
    return Alert(
        AlertKind.REQUESTER_SEPARATED,
        Severity.WARNING,
        person_id,
        message,
        {"person_id": person_id, "wda": wda, "separated_at": separated_at, "clause": clause},
    )


# -- runs -----------------------------------------------------------------------------


def run_failed(job: str, run_id: str, error: str, *, bug: bool = False) -> Alert:
    """A daemon job's run failed (``bug``: not an operating condition but misync's own
    error; ``error`` is then its repr)."""
    return Alert(
        AlertKind.RUN_FAILED,
        Severity.CRITICAL,
        run_key(job),
        f"{job} run {run_id} failed{' (a bug)' if bug else ''}: {error}",
        {"job": job, "run_id": run_id, "error": error},
    )


def run_refused(job: str, run_id: str, reason: str) -> Alert:
    return Alert(
        AlertKind.RUN_REFUSED,
        Severity.CRITICAL,
        run_key(job),
        f"{job} run {run_id} refused to start: {reason}",
        {"job": job, "run_id": run_id, "reason": reason},
    )


def run_succeeded(job: str, run_id: str, *, covered_by: str | None = None) -> Alert:
    """A job runs again: closes its ``run.failed``/``run.refused``. ``covered_by``: a
    reconcile did what the job would have (the fast path's and timed job's alerts)."""
    if covered_by is None:
        return Alert(
            AlertKind.RUN_SUCCEEDED,
            Severity.INFO,
            run_key(job),
            f"{job} runs again (run {run_id})",
            {"job": job, "run_id": run_id},
        )
    return Alert(
        AlertKind.RUN_SUCCEEDED,
        Severity.INFO,
        run_key(job),
        f"{covered_by} run {run_id} succeeded: the directory answers and the "
        f"feeds read, and it planned every disable the {job} run would have",
        {"job": job, "run_id": run_id, "covered_by": covered_by},
    )


def run_stopped(run_id: str, stopped: str, not_attempted: int) -> Alert:
    return Alert(
        AlertKind.RUN_STOPPED,
        Severity.CRITICAL,
        run_id,
        f"apply stopped early: {stopped}",
        {"run_id": run_id, "not_attempted": not_attempted},
    )


# -- the audit trail and the configuration --------------------------------------------


def audit_write_failed(audit_db: str, run_id: str, error: str) -> Alert:
    return Alert(
        AlertKind.AUDIT_WRITE_FAILED,
        Severity.CRITICAL,
        audit_db,
        f"apply stopped: {error}",
        {"run_id": run_id},
    )


def audit_altered(problems: Iterable[str], path: str = AUDIT_KEY) -> Alert:
    found = list(problems)
    return Alert(
        AlertKind.AUDIT_ALTERED,
        Severity.CRITICAL,
        path,
        f"the audit trail does not verify: {found[0] if found else 'altered'}"
        + (f" (+{len(found) - 1} more)" if len(found) > 1 else ""),
        {"problems": found[:20]},
    )


def audit_verified(records: int, path: str = AUDIT_KEY) -> Alert:
    return Alert(
        AlertKind.AUDIT_VERIFIED,
        Severity.INFO,
        path,
        f"the audit trail verifies ({records} records)",
        {"records": records},
    )


def config_reload_refused(config: str, error: str) -> Alert:
    return Alert(
        AlertKind.CONFIG_RELOAD_REFUSED,
        Severity.CRITICAL,
        config,
        f"the new configuration was refused, the old one is kept: {error}",
        {"config": config},
    )


# -- leadership (two daemons on one PostgreSQL database, issue 17) ---------------------


def leader_takeover(epoch: int, host: str, pid: int, previous: str) -> Alert:
    """A daemon became the leader under a new epoch (``previous``: who led before)."""
    return Alert(
        AlertKind.LEADER_TAKEOVER,
        Severity.WARNING,
        f"epoch:{epoch}",
        f"{host} (pid {pid}) took over as leader, epoch {epoch}; before: {previous}",
        {"epoch": epoch, "host": host, "pid": pid, "previous": previous},
    )


def leader_stepped_down(epoch: int | None, host: str, pid: int, reason: str) -> Alert:
    """The leader stopped leading: fenced (another host took over) or its session ended;
    it stopped its jobs and waits as a standby."""
    return Alert(
        AlertKind.LEADER_STEPPED_DOWN,
        Severity.CRITICAL,
        f"epoch:{epoch}",
        f"{host} (pid {pid}) stepped down from epoch {epoch} to standby: {reason}",
        {"epoch": epoch, "host": host, "pid": pid, "reason": reason},
    )
