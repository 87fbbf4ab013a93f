"""The SQLite state store's runs (``connector.state.ports.RunStore``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from connector.state.rows import (
    RunRow,
)
from connector.state.sqlite.base import SqliteBase, dt, ts


class SqliteRuns(SqliteBase):
    """Runs: started, finished with a status and a summary; counted for the metrics."""

    def start_run(self, run_id: str, kind: str, as_of: datetime, plan_checksum: str | None) -> None:
        with self._tx() as db:
            db.execute(
                "insert into runs(run_id, kind, as_of, plan, started_at) values (?, ?, ?, ?, ?)",
                (run_id, kind, ts(as_of), plan_checksum, ts()),
            )

    def finish_run(self, run_id: str, status: str, summary: Mapping[str, int]) -> None:
        with self._tx() as db:
            db.execute(
                "update runs set finished_at = ?, status = ?, summary = ? where run_id = ?",
                (ts(), status, json.dumps(dict(summary), sort_keys=True), run_id),
            )

    def runs(self, limit: int = 20, *, unfinished: bool = False) -> list[RunRow]:
        where = "where finished_at is null" if unfinished else ""
        rows = self._query(
            f"select run_id, kind, as_of, plan, started_at, finished_at, status, summary "  # noqa: S608
            f"from runs {where} order by started_at desc limit ?",
            (limit,),
        )
        return [
            RunRow(
                r[0],
                r[1],
                datetime.fromisoformat(r[2]),
                r[3],
                datetime.fromisoformat(r[4]),
                dt(r[5]),
                r[6],
                json.loads(r[7]) if r[7] else {},
            )
            for r in rows
        ]

    def full_run_finished(self) -> bool:
        """Whether a full run (``apply``: the CLI's, the daemon's reconcile) has finished:
        only such a run has recorded every breach it found (targeted runs see few
        accounts)."""
        return bool(
            self._query(
                "select 1 from runs where kind = 'apply' and finished_at is not null limit 1",
                (),
            )
        )

    def unfinished_runs(self) -> list[RunRow]:
        return self.runs(limit=1000, unfinished=True)

    def run_counts(self) -> dict[str, int]:
        rows = self._query(
            "select status, count(*) from runs where finished_at is not null group by status"
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def last_run(self, status: str | None = None) -> RunRow | None:
        """The run that finished last (with that status, if given)."""
        where = "where finished_at is not null" + (" and status = ?" if status else "")
        rows = self._query(
            "select run_id, kind, as_of, plan, started_at, finished_at, status, summary "
            "from runs " + where + " order by finished_at desc limit 1",
            (status,) if status else (),
        )
        for r in rows:
            return RunRow(
                r[0],
                r[1],
                datetime.fromisoformat(r[2]),
                r[3],
                datetime.fromisoformat(r[4]),
                dt(r[5]),
                r[6],
                json.loads(r[7]) if r[7] else {},
            )
        return None
