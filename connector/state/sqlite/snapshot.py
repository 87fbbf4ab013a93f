"""The SQLite state store's snapshot of the target (``connector.state.ports.SnapshotStore``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from connector.state.sqlite.base import SqliteBase


class SqliteSnapshot(SqliteBase):
    """The target as last read (the daemon's incremental cycles, ``connector.runs.cycle``)."""

    def snapshot_meta(self) -> dict[str, str]:
        return dict(self._query("select key, value from target_snapshot_meta"))

    def load_snapshot(self) -> dict[str, str]:
        """account key -> the account as JSON (the cycle module's format)."""
        return dict(self._query("select account_id, body from target_snapshot"))

    def save_snapshot(
        self,
        meta: Mapping[str, str],
        upserts: Mapping[str, str],
        deletes: Iterable[str],
        *,
        replace: bool,
        expect: str | None = None,
    ) -> bool:
        """One transaction: the snapshot rows that changed and the meta (mark, time of the
        last full scan) that goes with them; ``replace`` drops every other row first.

        ``expect``: write only if the stored snapshot is still the one with this
        ``generation`` in its meta ("" for none) and return False otherwise, writing
        nothing (another process saved its own view since: rows changed relative to a
        view that is no longer there must not be written onto another one). Writers are
        serialised by the immediate transaction."""
        with self._tx() as db:
            if expect is not None:
                row = db.execute(
                    "select value from target_snapshot_meta where key = 'generation'"
                ).fetchone()
                if (row[0] if row else "") != expect:
                    return False
            if replace:
                db.execute("delete from target_snapshot")
            db.executemany(
                "delete from target_snapshot where account_id = ?", ((k,) for k in deletes)
            )
            db.executemany(
                "insert or replace into target_snapshot(account_id, body) values (?, ?)",
                upserts.items(),
            )
            db.execute("delete from target_snapshot_meta")
            db.executemany(
                "insert into target_snapshot_meta(key, value) values (?, ?)", meta.items()
            )
        return True
