"""The SQLite state store's record of the daemon's schedule (``ports.ScheduleStore``)."""

from __future__ import annotations

from datetime import datetime

from connector.state.rows import LeaderRow
from connector.state.sqlite.base import SqliteBase, dt, ts


class SqliteSchedule(SqliteBase):
    """When each daemon job runs next (written by ``connector.daemon``, read by
    ``misync status``)."""

    def set_schedule(self, job: str, next_at: datetime | None) -> None:
        """Record when ``job`` runs next (None: not scheduled)."""
        with self._tx() as db:
            db.execute(
                "insert into schedule(job, next_at, updated_at) values (?, ?, ?) "
                "on conflict(job) do update set next_at = excluded.next_at, "
                "updated_at = excluded.updated_at",
                (job, ts(next_at) if next_at else None, ts()),
            )

    def schedule(self) -> dict[str, datetime | None]:
        return {r[0]: dt(r[1]) for r in self._query("select job, next_at from schedule")}

    def leader(self) -> LeaderRow | None:
        """No leadership on SQLite: one host, the state folder's file lock."""
        return None
