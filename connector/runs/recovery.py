"""Crash recovery: close what a stopped run left open, with an audit record for each."""

from __future__ import annotations

from typing import Any

from connector.audit import AuditTrail
from connector.state import StateStore


def recover_interrupted(store: StateStore, audit: AuditTrail, run_id: str, log: Any) -> None:
    """Close what a crashed run left open (call with the state lock held).

    An open journal entry means the run stopped between "about to touch the directory"
    and "here is what happened": whether the change landed is unknown. This run plans
    from a fresh read of the directory, so it converges either way; the entry is closed
    as ``interrupted`` and the audit trail records it, so no begun operation is left
    without an outcome.
    """
    entries = store.open_journal_entries()
    details = {
        e.id: (
            f"run {e.run_id} ended before the outcome was recorded; whether it landed is "
            f"unknown; run {run_id} re-read the directory and re-planned"
        )
        for e in entries
    }
    # audit first, in one append: a crash in between leaves entries open, never unaudited
    audit.append_many(
        [
            (
                "operation",
                {
                    "op": e.op,
                    "person_id": e.person_id,
                    "account_id": e.account_id,
                    "logon_id": e.payload.get("logon_id"),
                    "outcome": "interrupted",
                    "detail": details[e.id],
                    "plan": e.payload.get("plan", ""),
                    "interrupted_run": e.run_id,
                },
            )
            for e in entries
        ],
        run_id=run_id,
    )
    for e in entries:
        store.journal_end(e.id, "interrupted", e.account_id, details[e.id])
        log.warning("journal.interrupted", entry=e.id, key=e.key, op=e.op, interrupted_run=e.run_id)
    for r in store.unfinished_runs():
        store.finish_run(r.run_id, "interrupted", {})
        audit.append("run", {"status": "interrupted", "interrupted_run": r.run_id}, run_id=run_id)
        log.warning("run.interrupted", interrupted_run=r.run_id)
