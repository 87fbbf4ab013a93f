"""Crash recovery: close what a stopped run left open, with an audit record for each."""

from __future__ import annotations

from typing import Any

from connector.audit import AuditLog
from connector.model.plan import OutcomeStatus
from connector.records import interrupted_run_record, recovered_operation_record
from connector.state import JournalClose, JournalRow, Store


def recover_interrupted(store: Store, audit: AuditLog, run_id: str, log: Any) -> None:
    """Close what a stopped run left open (call with the state lock held).

    An open journal entry is one of three things, told apart here:

    - its audit record exists (the run stopped between the audit append and closing the
      entry; the record names the entry in ``data.journal``): the entry is closed with
      that record's seq, and nothing is audited twice;
    - its outcome is written on it but was never audited (the audit write failed, e.g.
      disk full, or the run stopped before it): that outcome is audited now, as it was;
    - no outcome (the run stopped between "about to touch the directory" and "here is
      what happened"): whether the change landed is unknown. This run plans from a
      fresh read of the directory, so it converges either way; the entry is audited and
      closed as ``interrupted``.

    Audit first, in one append, then the entries are closed with their seqs in one
    transaction: a crash in between leaves entries open, never closed-but-unaudited.
    """
    entries = store.open_journal_entries()
    if entries:
        audited = audit.audited_journal_entries(store.last_journal_audit_seq())
        todo = [e for e in entries if e.id not in audited]
        records = [("operation", _record(e, run_id)) for e in todo]
        last = audit.append_many(records, run_id=run_id)
        seqs = dict(audited)
        if last is not None:
            first = last.seq - len(todo) + 1
            seqs.update({e.id: first + n for n, e in enumerate(todo)})
        store.journal_record(
            [
                (e.id, e.outcome or OutcomeStatus.INTERRUPTED, e.account_id, _detail(e, run_id))
                for e in todo
            ]
        )
        store.journal_close([JournalClose(e.id, seqs[e.id], e.key, None, False) for e in entries])
        for e in entries:
            if e.id in audited:
                log.warning("journal.closed", entry=e.id, key=e.key, audit_seq=audited[e.id])
            elif e.outcome:
                log.warning(
                    "journal.audited_late",
                    entry=e.id,
                    key=e.key,
                    op=e.op,
                    outcome=e.outcome,
                    interrupted_run=e.run_id,
                )
            else:
                log.warning(
                    "journal.interrupted", entry=e.id, key=e.key, op=e.op, interrupted_run=e.run_id
                )
    for r in store.unfinished_runs():
        store.finish_run(r.run_id, "interrupted", {})
        audit.append("run", interrupted_run_record(r.run_id), run_id=run_id)
        log.warning("run.interrupted", interrupted_run=r.run_id)


def _detail(e: JournalRow, run_id: str) -> str:
    if e.outcome:
        return (
            f"{e.detail or ''}; audited by run {run_id}: run {e.run_id} stopped before "
            "its audit record was written"
        ).lstrip("; ")
    return (
        f"run {e.run_id} ended before the outcome was recorded; whether it landed is "
        f"unknown; run {run_id} re-read the directory and re-planned"
    )


def _record(e: JournalRow, run_id: str) -> dict[str, Any]:
    return recovered_operation_record(
        entry=e.id,
        op=e.op,
        person_id=e.person_id,
        account_id=e.account_id,
        logon_id=e.payload.get("logon_id"),
        outcome=e.outcome,
        detail=_detail(e, run_id),
        plan=e.payload.get("plan", ""),
        interrupted_run=e.run_id,
    )
