"""State: what misync must remember between runs (SQLite). An adapter: only I/O here."""

from connector.state.lock import StateBusyError, state_lock
from connector.state.store import (
    AlertRow,
    FeedHealthRow,
    HeldDecisionRow,
    HeldRow,
    JournalClose,
    JournalRow,
    LogonIdConflictError,
    RunRow,
    StateStore,
)

__all__ = [
    "AlertRow",
    "FeedHealthRow",
    "HeldDecisionRow",
    "HeldRow",
    "JournalClose",
    "JournalRow",
    "LogonIdConflictError",
    "RunRow",
    "StateBusyError",
    "StateStore",
    "state_lock",
]
