"""The audit records of one run, written and read back in one place.

Written, in this order, under the run's id (connector.runs.run):

- ``plan``: the plan's checksum, ``as_of``, summary, target and feed digests, and what
  re-renders the run's report (held and accepted actions, deadlines, rejected rows, feed
  health, decision counts);
- ``decision``: one per decision that changed since it was last recorded;
- ``operation``: one per action carried out (or not), with its reasons, its changes
  (``connector.reconcile.serialize.change_to_dict``, the one serialisation of a
  ``Change``) and its outcome; crash recovery writes one for each entry a stopped run
  left open (``interrupted``, or the outcome it had, ``audited_late``);
- ``run``: the run's status and summary (recovery writes one per interrupted run).

``breach``, ``held`` and ``alert`` records are written beside them by their concerns
(connector.runs.breaches, connector.runs.held, connector.alerts.manager).

Old trails stay readable: an ``operation`` record written before changes carried their
``kind`` is read with the kind guessed from the name (``change_from_dict``); a ``plan``
record without the report extras is re-rendered from what it has.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Protocol

from connector.errors import MisyncError
from connector.model.decisions import Decision, Reason
from connector.model.feeds import FeedHealth, FeedName, FeedState, Rejection
from connector.model.plan import Action, Breach, HeldAction, Op, OutcomeStatus, Plan
from connector.model.records import SourceRef
from connector.reconcile.serialize import (
    change_from_dict,
    change_to_dict,
    held_from_dict,
    plan_to_dict,
    read_from_json,
)
from connector.timefmt import when


class OutcomeLike(Protocol):
    """What an operation record is made of (the executor's ``Outcome``)."""

    @property
    def action(self) -> Action: ...
    @property
    def status(self) -> str: ...
    @property
    def account_id(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def detail(self) -> str: ...
    @property
    def code(self) -> str: ...


# --- writing ---------------------------------------------------------------------------


def _reasons_out(reasons: Iterable[Reason]) -> list[dict[str, str]]:
    return [{"code": r.code, "clause": r.clause, "message": r.message} for r in reasons]


def plan_record(plan: Plan, tz: tzinfo, inputs: str | None = None) -> dict[str, Any]:
    """The run's ``plan`` record: what it planned, and everything its report shows
    besides the outcomes (held actions, deadlines, rejected rows, feed health);
    ``inputs``: the digest of the run's archived inputs (connector.archive), which the
    trail thereby vouches for."""
    body = plan_to_dict(plan)
    decided: dict[str, Any] = {
        k: body[k] for k in ("accepted", "approved", "reopened") if k in body
    }
    return {
        "checksum": plan.checksum,
        "as_of": when(plan.as_of, tz),
        "summary": plan.summary,
        "target": plan.target,
        "feeds": {f.feed.value: f.digest for f in plan.feeds},
        **decided,  # operators' decisions on held actions (``misync held``), when any
        "held": body["held"],
        "deadlines": [*body["breaches"], *body.get("warnings", [])],
        "rejected": body["rejected"],
        "feed_health": body["feeds"],
        "decisions": body["decisions"],
        **({"inputs": inputs} if inputs else {}),
        # how the directory was read: warm (the stored snapshot and what changed since
        # its mark) or a full scan, and why (connector.runs.directory)
        **({"read": body["read"]} if "read" in body else {}),
    }


def operation_record(entry: int, o: OutcomeLike, checksum: str) -> dict[str, Any]:
    """One action's ``operation`` record (``entry``: its journal entry)."""
    a = o.action
    record: dict[str, Any] = {
        "journal": entry,
        "op": a.op.value,
        "person_id": a.person_id,
        "account_id": o.account_id,
        "logon_id": a.logon_id,
        "outcome": o.status,
        "attempts": o.attempts,
        "detail": o.detail,
        "plan": checksum,
        "reasons": _reasons_out(a.reasons),
        "changes": [change_to_dict(c) for c in a.changes],
    }
    if o.code:
        record["code"] = o.code
    return record


def recovered_operation_record(  # noqa: PLR0913 -- keyword-only: the record's fields
    *,
    entry: int,
    op: str,
    person_id: str | None,
    account_id: str | None,
    logon_id: str | None,
    outcome: str | None,
    detail: str,
    plan: str,
    interrupted_run: str,
) -> dict[str, Any]:
    """The ``operation`` record of a journal entry a stopped run left open: its outcome
    if it was written on the entry (``audited_late``), else ``interrupted``."""
    record: dict[str, Any] = {
        "journal": entry,
        "op": op,
        "person_id": person_id,
        "account_id": account_id,
        "logon_id": logon_id,
        "outcome": outcome or OutcomeStatus.INTERRUPTED,
        "detail": detail,
        "plan": plan,
        "interrupted_run": interrupted_run,
    }
    if outcome:
        record["audited_late"] = True
    return record


def decision_digest(d: Decision) -> str:
    """What a ``decision`` record is written for: it is written when this changes."""
    body = {
        "status": d.status.value,
        "reasons": sorted(f"{r.code}|{r.clause}|{r.message}" for r in d.reasons),
        "grant": d.grant.request_id if d.grant else None,
        "profile": d.profile,
        "offices": list(d.offices),
    }
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def decision_record(d: Decision) -> dict[str, Any]:
    return {
        "person_id": d.person_id,
        "status": d.status.value,
        "reasons": _reasons_out(d.reasons),
        "flags": [{"code": r.code, "clause": r.clause} for r in d.flags],
        "grant": d.grant.request_id if d.grant else None,
    }


def run_record(status: str, summary: Mapping[str, int], stopped: str = "") -> dict[str, Any]:
    """The closing ``run`` record (``stopped``: why the run stopped early, if it did)."""
    record: dict[str, Any] = {"status": status, "summary": dict(summary)}
    if stopped:
        record["stopped"] = stopped
    return record


def interrupted_run_record(interrupted_run: str) -> dict[str, Any]:
    """The ``run`` record recovery writes for a run that never finished."""
    return {"status": "interrupted", "interrupted_run": interrupted_run}


# --- reading back ----------------------------------------------------------------------


class RunNotFoundError(MisyncError):
    """No audit record carries this run id (exit 2)."""


@dataclass(frozen=True, slots=True)
class RecordedOutcome:
    """What the trail says became of one action: its status, detail and attempts."""

    status: str
    detail: str = ""
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class RunRecords:
    """A run as its audit records tell it."""

    run_id: str
    plan: Plan  # actions: those with an operation record; held, deadlines... from the plan record
    outcomes: Mapping[str, RecordedOutcome]  # by Action.key
    status: str | None  # the run record's; None for a run that never finished
    complete: bool  # False: the plan record predates held actions and rejected rows


def _reasons_in(items: Iterable[Mapping[str, Any]]) -> tuple[Reason, ...]:
    """Reasons as a record holds them: code, clause, message, and the evidence row
    (``source``) where the record has it (held actions and deadlines do; an
    ``operation`` record does not)."""
    out = []
    for r in items:
        src = r.get("source")
        out.append(
            Reason(
                code=r.get("code", ""),
                clause=r.get("clause", ""),
                message=r.get("message", ""),
                source=SourceRef(src["feed"], src["file"], int(src["line"])) if src else None,
            )
        )
    return tuple(out)


def _action(d: Mapping[str, Any]) -> Action:
    return Action(
        op=Op(d["op"]),
        person_id=d.get("person_id"),
        account_id=d.get("account_id"),
        logon_id=d.get("logon_id"),
        changes=tuple(change_from_dict(c) for c in d.get("changes", ())),
        reasons=_reasons_in(d.get("reasons", ())),
        before=None,
        deadline=datetime.fromisoformat(d["deadline"]) if d.get("deadline") else None,
    )


def _feed(d: Mapping[str, Any]) -> FeedHealth:
    return FeedHealth(
        feed=FeedName(d["feed"]),
        file=d.get("file", ""),
        state=FeedState(d.get("state", "ok")),
        rows=int(d.get("rows", 0)),
        rejected=int(d.get("rejected", 0)),
        detail=d.get("detail", ""),
        modified_at=datetime.fromisoformat(d["modified_at"]) if d.get("modified_at") else None,
        digest=d.get("digest", ""),
    )


def _breaches(plan_rec: Mapping[str, Any], opened: list[Breach]) -> tuple[Breach, ...]:
    if "deadlines" not in plan_rec:  # an old plan record: the breaches it opened
        return tuple(opened)
    return tuple(
        Breach(
            b.get("person_id"),
            b["account_id"],
            datetime.fromisoformat(b["deadline"]),
            b["severity"],
            _reasons_in(b.get("reasons", ())),
            b.get("logon_id"),
        )
        for b in plan_rec["deadlines"]
    )


def read_run(records: Iterable[tuple[str, str, str]], run_id: str) -> RunRecords:
    """Read run ``run_id`` back from its audit records ``(kind, at, data_json)``, in
    trail order. Raises ``RunNotFoundError`` when there are none, or no plan record."""
    plan_rec: dict[str, Any] | None = None
    actions: list[Action] = []
    outcomes: dict[str, RecordedOutcome] = {}
    opened: list[Breach] = []
    status: str | None = None
    n = 0
    for kind, _at, data in records:
        n += 1
        body = json.loads(data)
        if kind == "plan":
            plan_rec = body
        elif kind == "operation" and body.get("outcome") != OutcomeStatus.INTERRUPTED:
            a = _action(body)
            actions.append(a)
            outcomes[a.key] = RecordedOutcome(
                str(body.get("outcome")),
                str(body.get("detail") or ""),
                int(body.get("attempts") or 0),
            )
        elif kind == "breach" and body.get("state") == "open":
            opened.append(
                Breach(
                    body.get("person_id"),
                    body["account_id"],
                    datetime.fromisoformat(body["deadline"]),
                    "breach",
                    tuple(Reason(c, "", "") for c in str(body.get("reasons", "")).split(",") if c),
                )
            )
        elif kind == "run" and "status" in body and "interrupted_run" not in body:
            status = str(body["status"])
    if n == 0:
        raise RunNotFoundError(f"run {run_id}: no audit record carries this run id")
    if plan_rec is None:
        raise RunNotFoundError(f"run {run_id}: the audit trail holds no plan record for it")
    held = tuple(
        HeldAction(_action(h["action"]), h["code"], h["message"]) for h in plan_rec.get("held", ())
    )
    # held, left as they are by an operator's decision (``misync held``)
    accepted = tuple(held_from_dict(h) for h in plan_rec.get("accepted", ()))
    plan = Plan(
        as_of=datetime.fromisoformat(plan_rec["as_of"]),
        target=str(plan_rec.get("target", "")),
        actions=tuple(actions),
        held=held,
        accepted=accepted,
        breaches=_breaches(plan_rec, opened),
        rejected=tuple(Rejection(**r) for r in plan_rec.get("rejected", ())),
        feeds=tuple(_feed(f) for f in plan_rec.get("feed_health", ())),
        decisions=dict(plan_rec.get("decisions", {})),
        checksum=str(plan_rec.get("checksum", "")),
        read=read_from_json(plan_rec["read"]) if plan_rec.get("read") else None,
    )
    return RunRecords(run_id, plan, outcomes, status, complete="rejected" in plan_rec)
