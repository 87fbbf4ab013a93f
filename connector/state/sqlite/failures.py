"""The SQLite state store's failures and quarantine (``connector.state.ports.FailureStore``)."""

from __future__ import annotations

from datetime import datetime

from connector.state.sqlite.base import SqliteBase, ts


class SqliteFailures(SqliteBase):
    """Consecutive failures per object, and the quarantine they lead to."""

    def record_failure(self, key: str, at: datetime, detail: str) -> int:
        with self._tx() as db:
            db.execute(
                "insert into failures(key, count, last_at, detail) values (?, 1, ?, ?) "
                "on conflict(key) do update set count = count + 1, last_at = excluded.last_at, "
                "detail = excluded.detail",
                (key, ts(at), detail),
            )
            row = db.execute("select count from failures where key = ?", (key,)).fetchone()
            return int(row[0])

    def clear_failure(self, key: str) -> None:
        with self._tx() as db:
            db.execute("delete from failures where key = ?", (key,))

    def failure_count(self, key: str) -> int:
        rows = self._query("select count from failures where key = ?", (key,))
        return int(rows[0][0]) if rows else 0

    def quarantined(self, threshold: int) -> dict[str, str]:
        rows = self._query("select key, detail from failures where count >= ?", (threshold,))
        return dict(rows)

    def release(self, key: str) -> None:
        self.clear_failure(key)

    def failures(self) -> dict[str, tuple[int, datetime, str]]:
        """Every object whose last attempts failed: key -> (count, last failure, detail)."""
        rows = self._query("select key, count, last_at, detail from failures")
        return {r[0]: (int(r[1]), datetime.fromisoformat(r[2]), r[3]) for r in rows}
