"""The SQLite state store's breaches (``connector.state.ports.BreachStore``)."""

from __future__ import annotations

from datetime import datetime

from connector.state.rows import (
    BreachRow,
)
from connector.state.sqlite.base import SqliteBase, dt, ts


class SqliteBreaches(SqliteBase):
    """Timely-deactivation breaches: at most one open per account."""

    def open_breaches(self) -> dict[str, BreachRow]:
        rows = self._query(
            "select account_id, person_id, deadline, severity, reasons, opened_at, alerted_at "
            "from breaches where closed_at is null"
        )
        return {
            r[0]: BreachRow(
                r[0],
                r[1],
                datetime.fromisoformat(r[2]),
                r[3],
                r[4],
                datetime.fromisoformat(r[5]),
                dt(r[6]),
            )
            for r in rows
        }

    def open_breach(
        self,
        account_id: str,
        person_id: str,
        deadline: datetime,
        severity: str,
        reasons: str,
        at: datetime,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "insert into breaches(account_id, person_id, deadline, severity, reasons,"
                " opened_at, alerted_at) values (?, ?, ?, ?, ?, ?, ?) on conflict do nothing",
                (account_id, person_id, ts(deadline), severity, reasons, ts(at), ts(at)),
            )

    def mark_alerted(self, account_id: str, at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "update breaches set alerted_at = ? where account_id = ? and closed_at is null",
                (ts(at), account_id),
            )

    def close_breach(self, account_id: str, at: datetime, resolution: str) -> None:
        with self._tx() as db:
            db.execute(
                "update breaches set closed_at = ?, resolution = ? "
                "where account_id = ? and closed_at is null",
                (ts(at), resolution, account_id),
            )
