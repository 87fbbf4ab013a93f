"""``run_apply``: a full run of a fresh plan or a reviewed one, as ``misync apply`` does
it (connector.runs.run has the run itself and the order of its steps)."""

from __future__ import annotations

from collections.abc import Callable

from connector.alerts import AlertSink
from connector.app import Runtime
from connector.runs.run import ApplyResult, PlanSource, Run, RunObserver
from connector.runs.sources import FreshPlan


def run_apply(
    rt: Runtime,
    source: PlanSource | None = None,
    *,
    run_id: str | None = None,
    alerts: AlertSink | None = None,
    observer: RunObserver | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ApplyResult:
    """Plan now (``source`` None: a ``FreshPlan()``) or take a reviewed plan
    (``ReviewedPlan``), then carry it out, journaling and auditing it all. The
    directory is read warm unless the source says ``full_scan`` or there is a doubt
    (connector.runs.directory). Raises like any run (``Run.execute``)."""
    result = Run(
        rt,
        source or FreshPlan(),
        run_id=run_id,
        alerts=alerts,
        observer=observer,
        should_stop=should_stop,
    ).execute()
    assert result is not None  # a full run always plans
    return result
