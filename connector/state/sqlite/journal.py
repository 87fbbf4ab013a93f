"""The SQLite state store's journal (``connector.state.ports.JournalStore``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from connector.state.rows import (
    JournalClose,
    JournalRow,
)
from connector.state.sqlite.base import SqliteBase, dt, ts

_JOURNAL_SELECT = (
    "select id, run_id, key, op, person_id, account_id, payload, begun_at, ended_at, "
    "outcome, detail, audit_seq from journal WHERE order by id"
)


class SqliteJournal(SqliteBase):
    """The journal: an entry committed before the directory is touched, closed only with
    the seq of its audit record; and the accounts misync disabled itself."""

    def journal_begin(
        self,
        run_id: str,
        key: str,
        op: str,
        person_id: str | None,
        account_id: str | None,
        payload: Mapping[str, Any],
    ) -> int:
        with self._tx() as db:
            cur = db.execute(
                "insert into journal(run_id, key, op, person_id, account_id, payload, begun_at) "
                "values (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    key,
                    op,
                    person_id,
                    account_id,
                    json.dumps(dict(payload), sort_keys=True, ensure_ascii=False),
                    ts(),
                ),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def journal_begin_many(
        self,
        run_id: str,
        items: Sequence[tuple[str, str, str | None, str | None, Mapping[str, Any]]],
    ) -> list[int]:
        """Begin several entries (key, op, person_id, account_id, payload) in one commit."""
        ids: list[int] = []
        now = ts()
        with self._tx() as db:
            for key, op, person_id, account_id, payload in items:
                cur = db.execute(
                    "insert into journal(run_id, key, op, person_id, account_id, payload, "
                    "begun_at) values (?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        key,
                        op,
                        person_id,
                        account_id,
                        json.dumps(dict(payload), sort_keys=True, ensure_ascii=False),
                        now,
                    ),
                )
                assert cur.lastrowid is not None
                ids.append(cur.lastrowid)
        return ids

    def journal_end(
        self,
        entry_id: int,
        outcome: str,
        account_id: str | None,
        detail: str,
        audit_seq: int | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "update journal set ended_at = ?, outcome = ?, detail = ?, "
                "account_id = coalesce(?, account_id), audit_seq = ? where id = ?",
                (ts(), outcome, detail, account_id, audit_seq, entry_id),
            )

    def journal_record(self, items: Sequence[tuple[int, str, str | None, str]]) -> None:
        """Write known outcomes (entry id, outcome, account id, detail) on entries that
        stay open until their audit record exists: if the audit write fails, the next
        run audits these outcomes (not "unknown") before it closes them."""
        with self._tx() as db:
            db.executemany(
                "update journal set outcome = ?, detail = ?, account_id = coalesce(?, "
                "account_id) where id = ? and ended_at is null",
                [(outcome, detail, account_id, eid) for eid, outcome, account_id, detail in items],
            )

    def journal_close(self, items: Sequence[JournalClose], at: datetime | None = None) -> None:
        """Close audited entries with their audit seq and update the failure counts, in
        one commit (the group commit of a batch of outcomes)."""
        now = ts(at)
        with self._tx() as db:
            db.executemany(
                "update journal set ended_at = ?, audit_seq = ? where id = ?",
                [(now, c.audit_seq, c.entry_id) for c in items],
            )
            db.executemany(
                "delete from failures where key = ?",
                [(c.key,) for c in items if c.failure is None and c.count_failure],
            )
            db.executemany(
                "insert into failures(key, count, last_at, detail) values (?, 1, ?, ?) "
                "on conflict(key) do update set count = count + 1, last_at = excluded.last_at, "
                "detail = excluded.detail",
                [
                    (c.key, now, c.failure)
                    for c in items
                    if c.failure is not None and c.count_failure
                ],
            )
            ok = [c for c in items if c.failure is None and c.count_failure]
            run = (
                db.execute(
                    "select run_id from journal where id = ?", (items[0].entry_id,)
                ).fetchone()
                if items
                else None
            )
            db.executemany(
                "insert or replace into misync_disabled(account_id, disabled_at, run_id) "
                "values (?, ?, ?)",
                [(c.key, now, run[0] if run else "") for c in ok if c.op == "disable"],
            )
            db.executemany(
                "delete from misync_disabled where account_id = ?",
                [(c.key,) for c in ok if c.op == "enable"],
            )

    def misync_disabled(self) -> frozenset[str]:
        """Accounts (ids, lower-cased) misync disabled and nobody was seen enabling since."""
        return frozenset(
            r[0].lower() for r in self._query("select account_id from misync_disabled")
        )

    def forget_misync_disables(self, enabled: Iterable[str]) -> None:
        """These accounts were seen enabled: whoever disables one of them next, it was not
        (yet) misync, so the mark goes."""
        ids = [(a,) for a in enabled]
        if ids:
            with self._tx() as db:
                db.executemany("delete from misync_disabled where account_id = ?", ids)

    def last_journal_audit_seq(self) -> int:
        row = self._query("select max(audit_seq) from journal")
        return int(row[0][0] or 0)

    def _journal_rows(self, where: str, args: tuple[Any, ...]) -> list[JournalRow]:
        sql = _JOURNAL_SELECT.replace("WHERE", where)  # `where`: one of two constants below
        rows = self._query(
            sql,
            args,
        )
        return [
            JournalRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                json.loads(r[6]),
                datetime.fromisoformat(r[7]),
                dt(r[8]),
                r[9],
                r[10],
                r[11],
            )
            for r in rows
        ]

    def open_journal_entries(self) -> list[JournalRow]:
        return self._journal_rows("where ended_at is null", ())

    def journal(self, run_id: str | None = None) -> list[JournalRow]:
        if run_id is None:
            return self._journal_rows("", ())
        return self._journal_rows("where run_id = ?", (run_id,))

    def action_counts(self) -> dict[tuple[str, str], int]:
        rows = self._query(
            "select op, outcome, count(*) from journal where outcome is not null "
            "group by op, outcome"
        )
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}
