"""``run_apply``: a full run of a fresh plan or a reviewed one, as ``misync apply`` does
it (connector.runs.run has the run itself and the order of its steps)."""

from __future__ import annotations

from collections.abc import Callable

from connector.alerts import AlertSink
from connector.app import Runtime
from connector.model.plan import Plan
from connector.runs.run import ApplyResult, Run, RunObserver
from connector.runs.sources import FreshPlan, ReviewedPlan


def run_apply(
    rt: Runtime,
    *,
    plan: Plan | None = None,
    override_guard: bool = False,
    full_scan: bool = False,
    run_id: str | None = None,
    alerts: AlertSink | None = None,
    observer: RunObserver | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ApplyResult:
    """Plan now (``FreshPlan``) or take a reviewed plan (``ReviewedPlan``), then carry
    it out, journaling and auditing it all. The directory is read warm unless
    ``full_scan`` or a doubt (connector.runs.directory). Raises like any run
    (``Run.execute``)."""
    source: FreshPlan | ReviewedPlan = (
        FreshPlan(override_guard, full_scan=full_scan)
        if plan is None
        else ReviewedPlan(plan, full_scan=full_scan)
    )
    result = Run(
        rt, source, run_id=run_id, alerts=alerts, observer=observer, should_stop=should_stop
    ).execute()
    assert result is not None  # a full run always plans
    return result
