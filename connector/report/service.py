"""Wiring for reports: make one from a fresh plan, a reviewed plan file or a run's audit
records, and keep one file per daemon run in ``state.dir/reports`` with retention.

The daemon calls :func:`write_run_report` after each run; ``misync report --run RUN_ID``
renders the same page on demand.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from connector.errors import MisyncError
from connector.model.decisions import Decision
from connector.model.feeds import FeedSet
from connector.model.plan import Plan
from connector.report.html import render_html
from connector.report.model import (
    Areas,
    Report,
    areas_of,
    known_areas,
    report_from_audit,
    scope_to_wda,
)
from connector.runs import evaluate, make_plan

if TYPE_CHECKING:
    from connector.app import Runtime


def plan_report(
    rt: Runtime,
    *,
    as_of: datetime | None = None,
    plan: Plan | None = None,
    wda: str | None = None,
    override_guard: bool = False,
    title: str = "misync plan",
    full_scan: bool = False,
) -> Report:
    """A report of ``plan``, or of a plan made now (reading the feeds and the target).

    With ``wda``, only that Workforce Development Area's part, placed by the feeds read
    now (connector.reconcile.areas): a reviewed plan file keeps no feeds, so its page
    places its items by the feeds as they are when the page is made."""
    with rt.store() as store:
        ev = evaluate(rt, store, as_of or (plan.as_of if plan else rt.clock()))
        if plan is None:
            plan, ev = make_plan(
                rt,
                store,
                ev.as_of,
                override_guard=override_guard,
                evaluation=ev,
                full_scan=full_scan,
            )
    areas = areas_of(ev.feeds)
    if wda is not None:
        _check_area(areas, wda)
        plan = scope_to_wda(plan, wda, areas, ev.decisions)
    return Report(
        plan=plan, tz=rt.rules.tz, generated_at=rt.clock(), title=title, wda=wda, areas=areas
    )


def run_report(rt: Runtime, run_id: str, *, wda: str | None = None) -> Report:
    """Re-render a run's report from the audit trail (``RunNotFoundError`` if unknown).

    With ``wda``, people and rows are placed (and named) by the feeds the run read, from
    its archived inputs, so the page shows the run as it was however the feeds changed
    since; a run with no archived inputs (before the archive, or pruned) is placed by
    today's feeds, and its page says so."""
    with rt.audit() as trail:
        records = [(r.kind, r.at, r.data) for r in trail.run_records(run_id)]
    report = report_from_audit(records, run_id, tz=rt.rules.tz, generated_at=rt.clock())
    if wda is None:  # the statewide page (the daemon writes one per run): ids, no replay
        return report
    archived = _archived_inputs(rt, run_id, records)
    notes = report.notes
    if archived is None:  # a run before the archive, or pruned: today's feeds place people
        with rt.store() as store:
            ev = evaluate(rt, store, report.plan.as_of)
        feeds, decisions = ev.feeds, None
        notes += (
            f"run {run_id}'s inputs are not archived (before the archive, or pruned): "
            "people are placed and named by the feeds as they are today",
        )
        plan = report.plan
    else:
        feeds, decisions, replayed = archived
        plan = _with_evidence(report.plan, replayed)
    areas = areas_of(feeds)
    _check_area(areas, wda)
    scoped = scope_to_wda(plan, wda, areas, decisions)
    keep = {a.key for a in (*scoped.actions, *(h.action for h in (*scoped.held, *scoped.accepted)))}
    return dataclasses.replace(
        report,
        plan=scoped,
        wda=wda,
        outcomes={k: v for k, v in report.outcomes.items() if k in keep},
        notes=notes,
        areas=areas,
    )


def _with_evidence(recorded: Plan, replayed: Plan) -> Plan:
    """The run's recorded plan, each action's reasons with the evidence rows (file and
    line) the replayed plan gives them: an ``operation`` record keeps a reason's code,
    clause and message but not its evidence, which places a mover's separation-driven
    disable in the area they left. The replay gave the very plan the trail recorded
    (its checksum is checked first), so these are the run's own reasons."""
    by_key = {a.key: a for a in replayed.actions}
    actions = []
    for a in recorded.actions:
        r = by_key.get(a.key)
        same = r is not None and [x.code for x in r.reasons] == [x.code for x in a.reasons]
        actions.append(dataclasses.replace(a, reasons=r.reasons) if same and r else a)
    return dataclasses.replace(recorded, actions=tuple(actions))


def _archived_inputs(
    rt: Runtime, run_id: str, records: list[tuple[str, str, str]]
) -> tuple[FeedSet, Mapping[str, Decision], Plan] | None:
    """The feeds the run read and the decisions they gave, from its archived inputs
    (connector.archive), so that its page places people in the areas they were in that
    day; None when the run has none archived (before the archive, or pruned).
    ``ArchiveError`` (exit 6) when they are altered or missing, or do not give the plan
    the trail recorded."""
    import json

    from connector.archive import ArchiveError, ArchiveStore
    from connector.archive.replay import replay

    plan_rec = next((json.loads(data) for kind, _, data in records if kind == "plan"), None)
    archive = ArchiveStore(rt.settings.state.dir / "archive")
    if plan_rec is None or not plan_rec.get("inputs") or archive.run_manifest(run_id) is None:
        return None
    r = replay(archive, run_id, plan_rec["inputs"])
    if not r.manifest.get("reviewed") and r.plan.checksum != plan_rec["checksum"]:
        raise ArchiveError(
            f"run {run_id}: its archived inputs do not give the plan the trail recorded"
            f" (misync audit replay {run_id})"
        )
    return r.feeds, r.decisions, r.plan


class UnknownAreaError(MisyncError):
    """``--wda`` names no area of the organizations feed (exit 2, listing the known ones)."""


def _check_area(areas: Areas, wda: str) -> None:
    known = known_areas(areas)
    if wda not in known:
        raise UnknownAreaError(
            f"--wda {wda}: no organization in the organizations feed is in that WDA "
            f"(known: {', '.join(known) or 'none'})"
        )


def write_html(path: Path, report: Report) -> Path:
    """Write the page atomically (a reader never sees half a report), mode 0640: it names
    people and accounts."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render_html(report))
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).chmod(0o640)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_run_report(rt: Runtime, run_id: str) -> Path | None:
    """Render run ``run_id`` from the audit trail into ``state.dir/reports/run-<id>.html``
    and keep only the newest ``report.keep_runs`` run reports. None when retention is 0."""
    keep = rt.settings.report.keep_runs
    folder = rt.settings.state.reports
    if keep == 0:
        prune_reports(folder, 0)
        return None
    report = run_report(rt, run_id)
    path = write_html(folder / f"run-{run_id}.html", report)
    prune_reports(folder, keep)
    return path


def prune_reports(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` run reports (by modification time)."""
    if not folder.is_dir():
        return []
    reports = sorted(folder.glob("run-*.html"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    doomed = reports[: max(0, len(reports) - keep)]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed
