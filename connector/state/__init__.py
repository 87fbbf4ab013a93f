"""State: what misync must remember between runs. An adapter: only I/O here.

Two backends behind the Protocols in ``connector.state.ports``: SQLite in the state
folder (the default) and PostgreSQL (``[state] url``, ``connector.state.postgres``,
the only module that imports psycopg besides ``connector.audit.postgres``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector.state.errors import FencedError, StateUnavailableError
from connector.state.lock import (
    StateBusyError,
    clear_leader_mark,
    leader_mark,
    mark_leader,
    state_lock,
)
from connector.state.ports import Store
from connector.state.rows import (
    AlertRow,
    FeedHealthRow,
    HeldDecisionRow,
    HeldRow,
    JournalClose,
    JournalRow,
    LogonIdConflictError,
    RunRow,
)
from connector.state.store import StateStore

if TYPE_CHECKING:
    from connector.settings import StateSettings

__all__ = [
    "AlertRow",
    "FeedHealthRow",
    "FencedError",
    "HeldDecisionRow",
    "HeldRow",
    "JournalClose",
    "JournalRow",
    "LogonIdConflictError",
    "RunRow",
    "StateBusyError",
    "StateStore",
    "StateUnavailableError",
    "Store",
    "clear_leader_mark",
    "leader_mark",
    "mark_leader",
    "open_store",
    "require_postgresql",
    "state_lock",
]


def require_postgresql() -> None:
    """Raise ``StateUnavailableError`` saying what to install if psycopg is missing (it
    is the optional ``postgresql`` extra)."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is None:
        raise StateUnavailableError(
            "state.url is a PostgreSQL database, but psycopg is not installed: "
            "pip install 'misync[postgresql]'"
        )


def open_store(state: StateSettings, *, epoch: int | None = None) -> Store:
    """The configured store: PostgreSQL if ``state.url`` is set, else SQLite in
    ``state.dir``. ``epoch``: the leader epoch a daemon journals under (PostgreSQL;
    a journal write under an epoch that is no longer current raises ``FencedError``)."""
    if state.url:
        require_postgresql()
        from connector.state.postgres import PgStateStore

        return PgStateStore.from_settings(state, epoch=epoch)
    return StateStore(state.db)
