"""The executor: carry out a plan through a target, journaling every change before and after
(``connector.runs`` opens and records the run around it)."""

from connector.executor.engine import ApplyReport, Executor, Outcome

__all__ = ["ApplyReport", "Executor", "Outcome"]
