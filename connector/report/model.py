"""What a report shows: a plan (or a run's record of one), scoped to a WDA if asked.

Pure: no I/O. The app gathers a plan and the feeds (or a run's audit records) and
calls these; :mod:`connector.report.html` turns the result into a page. Which area an
item belongs to is :mod:`connector.reconcile.areas` (re-exported here: ``areas_of``,
``Areas``, ``scope_to_wda``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from connector.model.plan import Plan
from connector.reconcile.areas import Areas, Person, areas_of, known_areas, scope_to_wda
from connector.records import read_run

__all__ = [
    "Areas",
    "Outcome",
    "Person",
    "Report",
    "areas_of",
    "known_areas",
    "report_from_audit",
    "scope_to_wda",
]


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
    #: where people and rows are (names and organizations on the page; with ``wda``,
    #: what the area's reader is told); None: ids only
    areas: Areas | None = None


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
