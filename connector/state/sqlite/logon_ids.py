"""The SQLite state store's logon IDs (``connector.state.ports.LogonIdStore``)."""

from __future__ import annotations

from collections.abc import Iterable

from connector.state.rows import (
    LogonIdConflictError,
)
from connector.state.sqlite.base import SqliteBase, ts


class SqliteLogonIds(SqliteBase):
    """Logon IDs (3.j.ii): assigned once, kept for life, never given to anyone else;
    compared case-insensitively."""

    def logon_ids(self, among: Iterable[str] | None = None) -> dict[str, str]:
        return self._pairs("select person_id, logon_id from logon_ids", among)

    def taken_logon_ids(self) -> set[str]:
        return {row[0].lower() for row in self._query("select logon_id from logon_ids")}

    def reserve_logon_id(self, person_id: str, logon_id: str) -> None:
        with self._tx() as db:
            mine = db.execute(
                "select logon_id from logon_ids where person_id = ?", (person_id,)
            ).fetchone()
            if mine is not None:
                if mine[0].lower() == logon_id.lower():
                    return
                raise LogonIdConflictError(f"{person_id} already holds logon ID {mine[0]}")
            other = db.execute(
                "select person_id from logon_ids where logon_id = ? collate nocase", (logon_id,)
            ).fetchone()
            if other is not None:
                raise LogonIdConflictError(f"logon ID {logon_id} belongs to {other[0]}")
            db.execute(
                "insert into logon_ids(person_id, logon_id, assigned_at) values (?, ?, ?)",
                (person_id, logon_id, ts()),
            )
