"""The state store's concerns, one narrow Protocol each (as APScheduler's ``abc.py``
names its data stores): what a caller needs, not the whole store.

``connector.state.StateStore`` (SQLite, the default) implements them all, one module of
``connector.state.sqlite`` per Protocol, and so does
``connector.state.postgres.PgStateStore`` (PostgreSQL, ``[state] url``); both pass the
same contract tests (tests/contract/test_state_contract.py). ``Store`` is all of them
together: what ``Runtime.store()`` returns. A caller that takes ``BreachStore`` can be
handed either, or a small fake in a unit test. The executor's own
``connector.executor.engine.Journal`` is the subset of ``JournalStore`` it writes through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from connector.state.rows import (
    AlertRow,
    BreachRow,
    FeedHealthRow,
    HeldDecisionRow,
    HeldRow,
    JournalClose,
    JournalRow,
    LeaderRow,
    RunRow,
)

__all__ = [
    "AlertStore",
    "BreachStore",
    "FailureStore",
    "FeedStateStore",
    "HeldStore",
    "JournalStore",
    "LogonIdStore",
    "MetaStore",
    "RunStore",
    "ScheduleStore",
    "SnapshotStore",
    "Store",
]


@runtime_checkable
class MetaStore(Protocol):
    """Small named values (the enabled-account count of the last full read, ...)."""

    def meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...


@runtime_checkable
class LogonIdStore(Protocol):
    """Logon IDs (3.j.ii): assigned once, kept for life, never given to anyone else."""

    def logon_ids(self, among: Iterable[str] | None = None) -> dict[str, str]:
        """person_id -> logon ID, for everyone or only ``among``."""
        ...

    def taken_logon_ids(self) -> set[str]: ...

    def reserve_logon_id(self, person_id: str, logon_id: str) -> None:
        """Raises ``LogonIdConflictError`` if the ID is someone else's or the person has
        another one."""
        ...


@runtime_checkable
class RunStore(Protocol):
    """Runs: started, finished with a status and a summary."""

    def start_run(
        self, run_id: str, kind: str, as_of: datetime, plan_checksum: str | None
    ) -> None: ...

    def finish_run(self, run_id: str, status: str, summary: Mapping[str, int]) -> None: ...

    def runs(self, limit: int = 20, *, unfinished: bool = False) -> list[RunRow]: ...

    def unfinished_runs(self) -> list[RunRow]: ...

    def last_run(self, status: str | None = None) -> RunRow | None: ...

    def run_counts(self) -> dict[str, int]: ...

    def full_run_finished(self) -> bool:
        """Whether a full run (``apply``) has finished (only those record every breach)."""
        ...


@runtime_checkable
class JournalStore(Protocol):
    """The journal: an entry committed before the directory is touched, closed only with
    the seq of its audit record; and the accounts misync disabled itself."""

    def journal_begin_many(
        self,
        run_id: str,
        items: Sequence[tuple[str, str, str | None, str | None, Mapping[str, Any]]],
    ) -> list[int]: ...

    def journal_record(self, items: Sequence[tuple[int, str, str | None, str]]) -> None: ...

    def journal_close(self, items: Sequence[JournalClose], at: datetime | None = None) -> None: ...

    def open_journal_entries(self) -> list[JournalRow]: ...

    def journal(self, run_id: str | None = None) -> list[JournalRow]: ...

    def last_journal_audit_seq(self) -> int: ...

    def misync_disabled(self) -> frozenset[str]: ...

    def forget_misync_disables(self, enabled: Iterable[str]) -> None: ...

    def action_counts(self) -> dict[tuple[str, str], int]: ...


@runtime_checkable
class FeedStateStore(Protocol):
    """What the last runs saw of the feeds: row counts of the last good run (the shrink
    check), decision digests (what changed), feed health (``misync status``)."""

    def last_good_feed_rows(self) -> dict[str, int]: ...

    def record_feed_rows(self, run_id: str, rows: Mapping[str, int]) -> None: ...

    def decision_digests(self, among: Iterable[str] | None = None) -> dict[str, str]:
        """person_id -> digest of the decision last recorded, for everyone or only
        ``among`` (a targeted run asks for its few people, not the whole table)."""
        ...

    def record_decision_digests(self, changed: Mapping[str, str]) -> None: ...

    def record_feed_health(self, run_id: str, at: datetime, rows: list[FeedHealthRow]) -> None: ...

    def feed_health(self) -> list[FeedHealthRow]: ...

    def feed_stamps(self) -> dict[str, tuple[str, int, int, str]]:
        """Per feed, the file the last evaluation read: (path, size, mtime_ns, sha256)."""
        ...

    def record_feed_stamps(self, stamps: Mapping[str, tuple[str, int, int, str]]) -> None: ...


@runtime_checkable
class BreachStore(Protocol):
    """Timely-deactivation breaches: at most one open per account."""

    def open_breaches(self) -> dict[str, BreachRow]: ...

    def open_breach(
        self,
        account_id: str,
        person_id: str,
        deadline: datetime,
        severity: str,
        reasons: str,
        at: datetime,
    ) -> None: ...

    def mark_alerted(self, account_id: str, at: datetime) -> None: ...

    def close_breach(self, account_id: str, at: datetime, resolution: str) -> None: ...


@runtime_checkable
class FailureStore(Protocol):
    """Consecutive failures per object, and the quarantine they lead to."""

    def record_failure(self, key: str, at: datetime, detail: str) -> int: ...

    def clear_failure(self, key: str) -> None: ...

    def failure_count(self, key: str) -> int: ...

    def quarantined(self, threshold: int) -> dict[str, str]: ...

    def release(self, key: str) -> None: ...

    def failures(self) -> dict[str, tuple[int, datetime, str]]: ...


@runtime_checkable
class SnapshotStore(Protocol):
    """The target as last read (the daemon's incremental cycles)."""

    def snapshot_meta(self) -> dict[str, str]: ...

    def load_snapshot(self) -> dict[str, str]: ...

    def save_snapshot(
        self,
        meta: Mapping[str, str],
        upserts: Mapping[str, str],
        deletes: Iterable[str],
        *,
        replace: bool,
        expect: str | None = None,
    ) -> bool: ...


@runtime_checkable
class PlanMemoStore(Protocol):
    """What the last whole plan found (connector.runs.memo): a meta and rows by kind,
    replaced whole by each ``save_memo`` (an empty meta: no memo)."""

    def memo_meta(self) -> dict[str, str]: ...

    def memo_rows(self, kind: str, keys: Iterable[str] | None = None) -> dict[str, str]: ...

    def save_memo(self, meta: Mapping[str, str], rows: Iterable[tuple[str, str, str]]) -> None: ...


@runtime_checkable
class AlertStore(Protocol):
    """Alerts raised, sent, reminded and closed (the alert manager's memory)."""

    def open_alerts(self) -> list[AlertRow]: ...

    def open_alert(self, kind: str, key: str) -> AlertRow | None: ...

    def alerts(self, limit: int = 100) -> list[AlertRow]: ...

    def raise_alert(
        self,
        kind: str,
        key: str,
        severity: str,
        summary: str,
        fields: Mapping[str, Any],
        at: datetime,
        *,
        run_id: str | None,
    ) -> tuple[AlertRow, bool]: ...

    def alert_sent(
        self, alert_id: int, at: datetime, undelivered: tuple[str, ...], *, reminder: bool
    ) -> None: ...

    def alert_delivered(self, alert_id: int, undelivered: tuple[str, ...]) -> None: ...

    def close_alert(self, alert_id: int, at: datetime, resolution: str) -> None: ...


@runtime_checkable
class HeldStore(Protocol):
    """Held actions as the last runs recorded them, and operators' decisions on them
    (``misync held``): at most one open decision per held key."""

    def record_held(
        self, run_id: str, at: datetime, rows: Sequence[HeldRow], *, full: bool
    ) -> None: ...

    def held(self) -> list[HeldRow]: ...

    def held_decisions(self, *, closed: bool = False) -> list[HeldDecisionRow]: ...

    def decide_held(
        self,
        key: str,
        verdict: str,
        *,
        digest: str | None,
        reason: str,
        by: str,
        at: datetime,
        until: datetime | None = None,
    ) -> tuple[HeldDecisionRow, HeldDecisionRow | None]: ...

    def close_held_decision(
        self, key: str, *, at: datetime, by: str, resolution: str
    ) -> HeldDecisionRow | None: ...


@runtime_checkable
class ScheduleStore(Protocol):
    """When each daemon job runs next (written by the daemon, read by ``misync status``)."""

    def set_schedule(self, job: str, next_at: datetime | None) -> None: ...

    def schedule(self) -> dict[str, datetime | None]: ...


@runtime_checkable
class LeaderStore(Protocol):
    """Who leads the daemons sharing this store (``misync status``, the metrics): None
    where there is no leadership (SQLite: one host, the file lock)."""

    def leader(self) -> LeaderRow | None: ...


if TYPE_CHECKING:  # mypy (strict, in deploy/test.sh) fails here if the store drifts
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
    from connector.state.store import StateStore

    def _each_sqlite_module_implements_its_port(  # noqa: PLR0913 -- one per port, for mypy
        *,
        meta: SqliteBase,
        logon: SqliteLogonIds,
        runs: SqliteRuns,
        journal: SqliteJournal,
        feeds: SqliteFeedState,
        breaches: SqliteBreaches,
        failures: SqliteFailures,
        snapshot: SqliteSnapshot,
        memo: SqliteMemo,
        alerts: SqliteAlerts,
        schedule: SqliteSchedule,
        held: SqliteHeld,
    ) -> None:
        _meta: MetaStore = meta
        _logon: LogonIdStore = logon
        _runs: RunStore = runs
        _journal: JournalStore = journal
        _feeds: FeedStateStore = feeds
        _breaches: BreachStore = breaches
        _failures: FailureStore = failures
        _snapshot: SnapshotStore = snapshot
        _memo: PlanMemoStore = memo
        _alerts: AlertStore = alerts
        _schedule: ScheduleStore = schedule
        _held: HeldStore = held

    def _sqlite_implements_every_port(store: StateStore) -> None:
        _meta: MetaStore = store
        _logon: LogonIdStore = store
        _runs: RunStore = store
        _journal: JournalStore = store
        _feeds: FeedStateStore = store
        _breaches: BreachStore = store
        _failures: FailureStore = store
        _snapshot: SnapshotStore = store
        _memo: PlanMemoStore = store
        _alerts: AlertStore = store
        _schedule: ScheduleStore = store
        _held: HeldStore = store


@runtime_checkable
class Store(
    MetaStore,
    LogonIdStore,
    RunStore,
    JournalStore,
    FeedStateStore,
    BreachStore,
    FailureStore,
    SnapshotStore,
    PlanMemoStore,
    AlertStore,
    ScheduleStore,
    HeldStore,
    LeaderStore,
    Protocol,
):
    """The whole state store, as ``Runtime.store()`` hands it out: every port, and a
    context manager that closes it. SQLite (``StateStore``) and PostgreSQL
    (``connector.state.postgres.PgStateStore``) implement it."""

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


if TYPE_CHECKING:

    def _sqlite_is_a_store(store: StateStore) -> None:
        _store: Store = store

    from connector.state.postgres import PgStateStore

    def _postgresql_is_a_store(store: PgStateStore) -> None:
        _store: Store = store
