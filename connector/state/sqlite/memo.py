"""The SQLite state store's plan memo (``connector.state.ports.PlanMemoStore``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from connector.state.sqlite.base import SqliteBase


class SqliteMemo(SqliteBase):
    """What the last whole plan found (connector.runs.memo): its meta and its rows by
    kind, replaced whole by each writer."""

    def memo_meta(self) -> dict[str, str]:
        return dict(self._query("select key, value from plan_memo_meta"))

    def memo_rows(self, kind: str, keys: Iterable[str] | None = None) -> dict[str, str]:
        """key -> body of the rows of ``kind``; with ``keys``, only those (in chunks under
        SQLite's limit of bound parameters)."""
        sql = "select key, body from plan_memo where kind = ?"
        if keys is None:
            return dict(self._query(sql, (kind,)))
        wanted = list(dict.fromkeys(keys))
        out: dict[str, str] = {}
        for i in range(0, len(wanted), 500):
            chunk = tuple(wanted[i : i + 500])
            marks = ",".join("?" * len(chunk))
            out.update(self._query(f"{sql} and key in ({marks})", (kind, *chunk)))
        return out

    def save_memo(self, meta: Mapping[str, str], rows: Iterable[tuple[str, str, str]]) -> None:
        """One transaction: every row of the memo (kind, key, body) and its meta, in place
        of the ones before (empty ``meta``: no memo)."""
        with self._tx() as db:
            db.execute("delete from plan_memo")
            db.execute("delete from plan_memo_meta")
            db.executemany("insert into plan_memo(kind, key, body) values (?, ?, ?)", rows)
            db.executemany("insert into plan_memo_meta(key, value) values (?, ?)", meta.items())
