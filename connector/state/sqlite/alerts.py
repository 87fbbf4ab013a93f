"""The SQLite state store's alerts (``connector.state.ports.AlertStore``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connector.state.rows import (
    AlertRow,
)
from connector.state.sqlite.base import SqliteBase, dt, ts

_ALERT_SELECT = (
    "select id, kind, key, severity, summary, fields, opened_at, sent_at, reminders, seen_run, "
    "undelivered, closed_at, resolution from alerts "
)


def _alert_row(r: tuple[Any, ...]) -> AlertRow:
    return AlertRow(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        json.loads(r[5]),
        datetime.fromisoformat(r[6]),
        dt(r[7]),
        int(r[8]),
        r[9],
        tuple(x for x in r[10].split(",") if x),
        dt(r[11]),
        r[12],
    )


class SqliteAlerts(SqliteBase):
    """Alerts raised, sent, reminded and closed (the alert manager's memory)."""

    def open_alerts(self) -> list[AlertRow]:
        rows = self._query(_ALERT_SELECT + "where closed_at is null order by id")
        return [_alert_row(r) for r in rows]

    def open_alert(self, kind: str, key: str) -> AlertRow | None:
        rows = self._query(
            _ALERT_SELECT + "where closed_at is null and kind = ? and key = ?", (kind, key)
        )
        return _alert_row(rows[0]) if rows else None

    def alerts(self, limit: int = 100) -> list[AlertRow]:
        """The most recent alerts, open or closed, newest first."""
        rows = self._query(_ALERT_SELECT + "order by id desc limit ?", (limit,))
        return [_alert_row(r) for r in rows]

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
    ) -> tuple[AlertRow, bool]:
        """Record an alert: (the open row, True if it was opened now). A repeat of an open
        alert only refreshes its text and the run that last saw it."""
        body = json.dumps(dict(fields), sort_keys=True, default=str)
        with self._tx() as db:
            cur = db.execute(
                "insert into alerts(kind, key, severity, summary, fields, opened_at, seen_run) "
                "values (?, ?, ?, ?, ?, ?, ?) on conflict do nothing",
                (kind, key, severity, summary, body, ts(at), run_id),
            )
            created = cur.rowcount == 1
            if not created:
                db.execute(
                    "update alerts set summary = ?, fields = ?, severity = ?, "
                    "seen_run = coalesce(?, seen_run) "
                    "where kind = ? and key = ? and closed_at is null",
                    (summary, body, severity, run_id, kind, key),
                )
            row = db.execute(
                _ALERT_SELECT + "where kind = ? and key = ? and closed_at is null", (kind, key)
            ).fetchone()
        return _alert_row(row), created

    def alert_sent(
        self, alert_id: int, at: datetime, undelivered: tuple[str, ...], *, reminder: bool
    ) -> None:
        with self._tx() as db:
            db.execute(
                "update alerts set sent_at = ?, undelivered = ?, "
                "reminders = reminders + ? where id = ?",
                (ts(at), ",".join(undelivered), int(reminder), alert_id),
            )

    def alert_delivered(self, alert_id: int, undelivered: tuple[str, ...]) -> None:
        with self._tx() as db:
            db.execute(
                "update alerts set undelivered = ? where id = ?", (",".join(undelivered), alert_id)
            )

    def close_alert(self, alert_id: int, at: datetime, resolution: str) -> None:
        with self._tx() as db:
            db.execute(
                "update alerts set closed_at = ?, resolution = ? "
                "where id = ? and closed_at is null",
                (ts(at), resolution, alert_id),
            )
