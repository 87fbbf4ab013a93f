"""The SQLite state store's held actions and decisions (``connector.state.ports.HeldStore``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from connector.state.rows import (
    HeldDecisionRow,
    HeldRow,
)
from connector.state.sqlite.base import SqliteBase, dt, ts

_HELD_SELECT = (
    "select key, code, op, object, person_id, account_id, logon_id, message, digest, "
    "first_seen, last_seen, run_id, accepted from held "
)


_DECISION_SELECT = (
    "select id, key, verdict, digest, reason, by, at, until, closed_at, closed_by, resolution "
    "from held_decisions "
)


def _decision_row(r: tuple[Any, ...]) -> HeldDecisionRow:
    return HeldDecisionRow(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        datetime.fromisoformat(r[6]),
        dt(r[7]),
        dt(r[8]),
        r[9],
        r[10],
    )


class SqliteHeld(SqliteBase):
    """Held actions as the last runs recorded them, and operators' decisions on them
    (``misync held``): at most one open decision per held key."""

    def record_held(
        self, run_id: str, at: datetime, rows: Sequence[HeldRow], *, full: bool
    ) -> None:
        """Record what a run held. A full run replaces the list (what it no longer holds
        is gone); a targeted run adds and refreshes only what it saw. ``first_seen``
        stays from the first run that held it."""
        with self._tx() as db:
            if full:
                keys = [r.key for r in rows]
                db.execute("create temp table if not exists held_now (key text primary key)")
                db.execute("delete from held_now")
                db.executemany(
                    "insert or ignore into held_now(key) values (?)", [(k,) for k in keys]
                )
                db.execute("delete from held where key not in (select key from held_now)")
                db.execute("delete from held_now")
            db.executemany(
                "insert into held(key, code, op, object, person_id, account_id, logon_id, "
                "message, digest, first_seen, last_seen, run_id, accepted) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict(key) do update set "
                "op = excluded.op, person_id = excluded.person_id, "
                "account_id = excluded.account_id, logon_id = excluded.logon_id, "
                "message = excluded.message, digest = excluded.digest, "
                "last_seen = excluded.last_seen, run_id = excluded.run_id, "
                "accepted = excluded.accepted",
                [
                    (
                        r.key,
                        r.code,
                        r.op,
                        r.object,
                        r.person_id,
                        r.account_id,
                        r.logon_id,
                        r.message,
                        r.digest,
                        ts(at),
                        ts(at),
                        run_id,
                        int(r.accepted),
                    )
                    for r in rows
                ],
            )

    def held(self) -> list[HeldRow]:
        rows = self._query(_HELD_SELECT + "order by code, object")
        return [
            HeldRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                datetime.fromisoformat(r[9]),
                datetime.fromisoformat(r[10]),
                r[11],
                bool(r[12]),
            )
            for r in rows
        ]

    def held_decisions(self, *, closed: bool = False) -> list[HeldDecisionRow]:
        """The open decisions (or, with ``closed``, every decision ever made), oldest first."""
        where = "" if closed else "where closed_at is null "
        return [_decision_row(r) for r in self._query(_DECISION_SELECT + where + "order by id")]

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
    ) -> tuple[HeldDecisionRow, HeldDecisionRow | None]:
        """Record a decision on ``key``; an open one on the same key is closed as
        superseded. Returns (the new decision, the superseded one or None)."""
        with self._tx() as db:
            old = db.execute(
                _DECISION_SELECT + "where key = ? and closed_at is null", (key,)
            ).fetchone()
            if old is not None:
                db.execute(
                    "update held_decisions set closed_at = ?, closed_by = ?, resolution = ? "
                    "where id = ?",
                    (ts(at), by, "superseded", old[0]),
                )
            cur = db.execute(
                "insert into held_decisions(key, verdict, digest, reason, by, at, until) "
                "values (?, ?, ?, ?, ?, ?, ?)",
                (key, verdict, digest, reason, by, ts(at), ts(until) if until else None),
            )
            new = db.execute(_DECISION_SELECT + "where id = ?", (cur.lastrowid,)).fetchone()
        return _decision_row(new), _decision_row(old) if old is not None else None

    def close_held_decision(
        self, key: str, *, at: datetime, by: str, resolution: str
    ) -> HeldDecisionRow | None:
        """Close the open decision on ``key`` (revoked, carried out, reopened, resolved);
        returns it as it was, or None if there was none."""
        with self._tx() as db:
            row = db.execute(
                _DECISION_SELECT + "where key = ? and closed_at is null", (key,)
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "update held_decisions set closed_at = ?, closed_by = ?, resolution = ? "
                "where id = ?",
                (ts(at), by, resolution, row[0]),
            )
        return _decision_row(row)
