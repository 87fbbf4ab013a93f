"""The state store on SQLite: journal, logon IDs, runs, feed state, breaches, failures,
held actions, alerts, the target's snapshot, the plan memo and the daemon's schedule, in one SQLite
file (WAL). ``StateStore`` composes one module of ``connector.state.sqlite`` per
concern, each implementing one Protocol of ``connector.state.ports``, over
``connector.state.sqlite.base`` (the connection, the schema and its migration, the
transactions); the row types are in ``connector.state.rows``.

Guarantees:

- ``journal_begin``/``journal_begin_many`` commit before they return, so an entry
  exists before the directory is touched; a crash before the entry is closed leaves
  it *open* (``open_journal_entries``), with its outcome if ``journal_record`` wrote
  one. ``journal_close`` closes entries only with the seq of their audit record (the
  caller audits first), so no entry is ever closed unaudited.
- A transaction that SQLite ended itself (disk full) is not rolled back a second time:
  the caller sees the real cause, not "no transaction is active".
- ``misync_disabled``: the accounts misync disabled itself and nobody was seen enabling
  since (kept with each closed disable/enable; learnt from the journal when missing).
- Logon IDs are never deleted: an ID once assigned stays with its person for life
  and is never given to anyone else (3.j.ii). Comparison is case-insensitive.
- One connection per store, guarded by a lock, so apply's worker threads may share it.
"""

from __future__ import annotations

from connector.state.sqlite.alerts import SqliteAlerts
from connector.state.sqlite.base import SqliteBase
from connector.state.sqlite.breaches import SqliteBreaches
from connector.state.sqlite.failures import SqliteFailures
from connector.state.sqlite.feeds import SqliteFeedState
from connector.state.sqlite.held import SqliteHeld
from connector.state.sqlite.journal import SqliteJournal
from connector.state.sqlite.logon_ids import SqliteLogonIds
from connector.state.sqlite.memo import SqliteMemo
from connector.state.sqlite.runs import SqliteRuns
from connector.state.sqlite.schedule import SqliteSchedule
from connector.state.sqlite.snapshot import SqliteSnapshot


class StateStore(
    SqliteJournal,
    SqliteLogonIds,
    SqliteRuns,
    SqliteBreaches,
    SqliteFailures,
    SqliteAlerts,
    SqliteSnapshot,
    SqliteMemo,
    SqliteHeld,
    SqliteFeedState,
    SqliteSchedule,
    SqliteBase,
):
    """The SQLite state store: one module of ``connector.state.sqlite`` per concern (each
    implements one Protocol of ``connector.state.ports``) over ``SqliteBase``'s
    connection, schema and transactions."""
