"""State: what misync must remember between runs (SQLite). An adapter: only I/O here."""

from connector.state.store import JournalRow, LogonIdConflictError, RunRow, StateStore

__all__ = ["JournalRow", "LogonIdConflictError", "RunRow", "StateStore"]
