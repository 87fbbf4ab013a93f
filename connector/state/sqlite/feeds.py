"""The SQLite state store's feed state (``connector.state.ports.FeedStateStore``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from connector.state.rows import (
    FeedHealthRow,
    FeedStamps,
)
from connector.state.sqlite.base import SqliteBase, dt, ts


class SqliteFeedState(SqliteBase, FeedStamps):
    """What the last runs saw of the feeds: row counts of the last good run, decision
    digests, feed health, and the stamps of the files read (``FeedStamps``)."""

    def last_good_feed_rows(self) -> dict[str, int]:
        return dict(self._query("select feed, rows from feed_rows"))

    def record_feed_rows(self, run_id: str, rows: Mapping[str, int]) -> None:
        with self._tx() as db:
            db.executemany(
                "insert into feed_rows(feed, rows, run_id) values (?, ?, ?) "
                "on conflict(feed) do update set rows = excluded.rows, run_id = excluded.run_id",
                [(k, v, run_id) for k, v in rows.items()],
            )

    def decision_digests(self, among: Iterable[str] | None = None) -> dict[str, str]:
        return self._pairs("select person_id, digest from decisions", among)

    def record_decision_digests(self, changed: Mapping[str, str]) -> None:
        with self._tx() as db:
            db.executemany(
                "insert into decisions(person_id, digest) values (?, ?) "
                "on conflict(person_id) do update set digest = excluded.digest",
                list(changed.items()),
            )

    def record_feed_health(self, run_id: str, at: datetime, rows: list[FeedHealthRow]) -> None:
        with self._tx() as db:
            db.executemany(
                "insert into feed_health(feed, state, rows, rejected, detail, modified_at,"
                " run_id, checked_at) values (?, ?, ?, ?, ?, ?, ?, ?) on conflict(feed) do update"
                " set state = excluded.state, rows = excluded.rows, rejected = excluded.rejected,"
                " detail = excluded.detail, modified_at = excluded.modified_at,"
                " run_id = excluded.run_id, checked_at = excluded.checked_at",
                [
                    (
                        r.feed,
                        r.state,
                        r.rows,
                        r.rejected,
                        r.detail,
                        ts(r.modified_at) if r.modified_at else None,
                        run_id,
                        ts(at),
                    )
                    for r in rows
                ],
            )

    def feed_health(self) -> list[FeedHealthRow]:
        rows = self._query(
            "select feed, state, rows, rejected, detail, modified_at, run_id, checked_at "
            "from feed_health order by feed"
        )
        return [
            FeedHealthRow(
                r[0], r[1], r[2], r[3], r[4], dt(r[5]), r[6], datetime.fromisoformat(r[7])
            )
            for r in rows
        ]
