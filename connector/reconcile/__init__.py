"""Reconcile: decisions + target snapshot -> desired accounts -> diff -> guards -> plan.

Pure: no I/O. The plan is a value; ``apply`` (connector.executor) carries it out.
"""

from connector.reconcile.planner import PlanInputs, build_plan
from connector.reconcile.serialize import PlanFormatError, plan_from_json, plan_to_json, seal

__all__ = ["PlanFormatError", "PlanInputs", "build_plan", "plan_from_json", "plan_to_json", "seal"]
