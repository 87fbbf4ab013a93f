"""The executor: carry out a plan through a target, journaling every change before and after
(``connector.runs`` opens and records the run around it)."""

from connector.executor.engine import ActionOutcome, ApplyReport, Executor

__all__ = ["ActionOutcome", "ApplyReport", "Executor"]
