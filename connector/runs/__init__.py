"""Runs: the orchestration of one plan or apply, shared by the CLI and the daemon.

``connector.app`` wires adapters from settings (a ``Runtime``); this package drives the
core with them. A run is one ``Run`` (connector.runs.run) around a ``PlanSource``: a
fresh plan, a reviewed plan, the daemon's incremental cycle (connector.runs.sources) or
targeted people (connector.runs.targeted). The run does the rest, once: lock, audit
check, recovery, records (connector.records), breaches, the executor, held actions,
alerts (through the ``connector.alerts`` port). Nothing here schedules anything; the
daemon (connector.daemon) decides *when* to run.
"""

from connector.records import decision_digest
from connector.runs.apply import run_apply
from connector.runs.fence import LeaderBusyError, command_fence
from connector.runs.planning import (
    DriftError,
    Evaluation,
    RejectionLog,
    confirm_plan,
    dry_plan,
    evaluate,
    make_plan,
    still_current,
)
from connector.runs.recovery import recover_interrupted
from connector.runs.run import (
    ApplyResult,
    Observers,
    Planned,
    PlanSource,
    Run,
    RunContext,
    RunObserver,
)
from connector.runs.sources import FreshPlan, IncrementalCycle, ReviewedPlan
from connector.runs.targeted import TargetedPeople, run_targeted

__all__ = [
    "ApplyResult",
    "DriftError",
    "Evaluation",
    "FreshPlan",
    "IncrementalCycle",
    "LeaderBusyError",
    "Observers",
    "PlanSource",
    "Planned",
    "RejectionLog",
    "ReviewedPlan",
    "Run",
    "RunContext",
    "RunObserver",
    "TargetedPeople",
    "command_fence",
    "confirm_plan",
    "decision_digest",
    "dry_plan",
    "evaluate",
    "make_plan",
    "recover_interrupted",
    "run_apply",
    "run_targeted",
    "still_current",
]
