"""Apply: carry out a plan through a target, journaling every change before and after."""

from connector.apply.executor import ApplyReport, Executor, Outcome

__all__ = ["ApplyReport", "Executor", "Outcome"]
