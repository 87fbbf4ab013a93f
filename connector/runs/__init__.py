"""Runs: the orchestration of one plan or apply, shared by the CLI and the daemon.

``connector.app`` wires adapters from settings (a ``Runtime``); this package drives the
core with them: evaluate the feeds, plan against a snapshot of the target, confirm a
reviewed plan, apply it with journal and audit, open and close breaches, recover what a
crashed run left open, and raise alerts through the ``connector.alerts`` port. Nothing
here schedules anything; the daemon (connector.daemon) decides *when* to call it.
"""

from connector.runs.apply import ApplyResult, Observers, RunObserver, decision_digest, run_apply
from connector.runs.planning import (
    DriftError,
    Evaluation,
    RejectionLog,
    confirm_plan,
    evaluate,
    make_plan,
    still_current,
)
from connector.runs.recovery import recover_interrupted

__all__ = [
    "ApplyResult",
    "DriftError",
    "Evaluation",
    "Observers",
    "RejectionLog",
    "RunObserver",
    "confirm_plan",
    "decision_digest",
    "evaluate",
    "make_plan",
    "recover_interrupted",
    "run_apply",
    "still_current",
]
