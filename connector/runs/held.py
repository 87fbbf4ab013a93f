"""Operators' decisions on held actions (``misync held``), and what runs do with them.

A held action is named by its key, ``code:object`` (``disabled_outside_misync:uid=gkim,...``,
``quarantined:person:P1001``), as the ``operation.held`` alert names it. Decisions:

- **accept** (``ACCEPTABLE`` codes): leave it as it is. The plan puts it in
  ``accepted``, so it no longer makes a run incomplete nor alerts; it reopens by itself
  when what misync would do changes (the held action's digest, ``held_digest``) or at
  its ``until``.
- **approve** (``APPROVABLE`` codes): carry it out once, at the next run that plans the
  very same action (every other guard still applies); then the approval is closed with
  the outcome, whatever it is. An approval whose action changed lapses.
- **revoke**: close an open decision.

Every decision, and every way one ends (revoked, superseded, carried out, reopened,
resolved: misync no longer holds it), is an audit record of kind ``held`` naming who,
why and when. Who is the operating-system user who ran the command (``SUDO_USER`` when
run through sudo); decisions a run closes are by ``misync``.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from connector.audit import AuditLog
from connector.errors import MisyncError
from connector.executor import ActionOutcome
from connector.model.plan import (
    ACCEPTABLE,
    APPROVABLE,
    PAST,
    HeldAction,
    HeldCode,
    HeldDecision,
    OutcomeStatus,
    Plan,
)
from connector.reconcile.serialize import held_digest
from connector.state import HeldDecisionRow, HeldRow, Store

VERDICTS = {"accept": ACCEPTABLE, "approve": APPROVABLE}
RUN = "misync"  # who closes a decision when a run does


class HeldError(MisyncError):
    """A ``misync held`` command that cannot be done (unknown key, a code that may not be
    decided, no reason...): exit 2, with the message."""


def operator() -> str:
    """The person behind the command: the user who ran sudo, else the current user."""
    sudo = os.environ.get("SUDO_USER", "").strip()
    if sudo:
        return sudo
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return f"uid {os.getuid()}"


def plan_decisions(store: Store) -> dict[str, HeldDecision]:
    """The open decisions, for the planner."""
    return {
        d.key: HeldDecision(d.verdict, d.digest, d.by, d.reason, d.at, d.until)
        for d in store.held_decisions()
    }


@dataclass(frozen=True, slots=True)
class HeldEntry:
    """One line of ``misync held list``."""

    key: str
    code: str
    op: str | None
    object: str
    person_id: str | None
    account_id: str | None
    logon_id: str | None
    message: str
    since: datetime | None
    last_seen: datetime | None
    run_id: str | None
    accepted: bool
    digest: str | None
    decision: HeldDecisionRow | None

    @property
    def state(self) -> str:
        """``approved`` (the next run carries it out), ``accepted`` (left as it is) or
        ``held``: by the open decision, else as the last run left it."""
        if self.decision is not None:
            return "approved" if self.decision.verdict == "approve" else "accepted"
        return "accepted" if self.accepted else "held"

    def as_json(self) -> dict[str, Any]:
        d = self.decision
        return {
            "key": self.key,
            "code": self.code,
            "op": self.op,
            "object": self.object,
            "person_id": self.person_id,
            "account_id": self.account_id,
            "logon_id": self.logon_id,
            "reason": self.message,
            "since": _iso(self.since),
            "last_seen": _iso(self.last_seen),
            "run_id": self.run_id,
            "state": self.state,
            "decision": None if d is None else decision_json(d),
        }


def decision_json(d: HeldDecisionRow) -> dict[str, Any]:
    return {
        "verdict": d.verdict,
        "by": d.by,
        "reason": d.reason,
        "at": d.at.isoformat(),
        "until": _iso(d.until),
        "closed_at": _iso(d.closed_at),
        "closed_by": d.closed_by,
        "resolution": d.resolution,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def list_held(store: Store, quarantine_after: int) -> list[HeldEntry]:
    """Every held action the last runs recorded, every quarantined object (also before a
    run saw it), and every open decision on something no run has recorded (yet)."""
    decisions = {d.key: d for d in store.held_decisions()}
    entries: dict[str, HeldEntry] = {}
    for r in store.held():
        entries[r.key] = HeldEntry(
            r.key,
            r.code,
            r.op,
            r.object,
            r.person_id,
            r.account_id,
            r.logon_id,
            r.message,
            r.first_seen,
            r.last_seen,
            r.run_id,
            r.accepted,
            r.digest,
            decisions.get(r.key),
        )
    for obj, (count, at, detail) in store.failures().items():
        key = f"quarantined:{obj}"
        if count >= quarantine_after and key not in entries:
            person = obj.removeprefix("person:") if obj.startswith("person:") else None
            entries[key] = HeldEntry(
                key,
                HeldCode.QUARANTINED,
                None,
                obj,
                person,
                None if person else obj,
                None,
                f"{obj} failed {count} times in a row and is quarantined; last error: {detail}",
                at,
                at,
                None,
                False,
                None,
                decisions.get(key),
            )
    for key, d in decisions.items():
        if key not in entries:
            code, _, obj = key.partition(":")
            entries[key] = HeldEntry(
                key, code, None, obj, None, None, None, "", None, None, None, False, None, d
            )
    return sorted(entries.values(), key=lambda e: (e.code, e.object))


def resolve(entries: Sequence[HeldEntry], text: str) -> HeldEntry:
    """The entry ``text`` names: its key, or (when only one entry matches) its object,
    account id, person id or logon ID. Raises ``HeldError`` otherwise."""
    wanted = text.strip()
    exact = [e for e in entries if e.key.lower() == wanted.lower()]
    if exact:
        return exact[0]
    low = wanted.lower()
    matches = [
        e
        for e in entries
        if low
        in {
            e.object.lower(),
            (e.account_id or "").lower(),
            (e.person_id or "").lower(),
            (e.logon_id or "").lower(),
        }
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        keys = ", ".join(e.key for e in matches)
        raise HeldError(f"{wanted!r} names {len(matches)} held actions ({keys}): give the key")
    raise HeldError(
        f"no held action {wanted!r}; `misync held list` shows the keys (a hold is recorded "
        "by the run that holds it: run `misync apply` first if none has)"
    )


def decide(
    store: Store,
    audit: AuditLog,
    entry: HeldEntry,
    verdict: str,
    *,
    reason: str,
    by: str,
    at: datetime,
    until: datetime | None = None,
) -> HeldDecisionRow:
    """Record and audit an accept or an approval of ``entry``."""
    allowed = VERDICTS[verdict]
    if not reason.strip():
        raise HeldError("--reason must say why (it goes to the audit trail)")
    if entry.code not in allowed:
        raise HeldError(
            f"{entry.key}: a {entry.code} hold cannot be {PAST[verdict]}. It guards against a "
            "breach of Policy 1021 and is lifted by fixing its cause (the feed, the row, "
            "the directory), or for the mass-disable guard by `apply --override-guard` after "
            f"review; only {', '.join(sorted(allowed))} holds can be (docs/DECISIONS.md)"
        )
    if until is not None and verdict != "accept":
        raise HeldError("--until goes with accept")
    if until is not None and until <= at:
        raise HeldError(f"--until {until.isoformat()} is not in the future")
    if entry.decision is not None and entry.decision.verdict == verdict == "approve":
        d = entry.decision
        raise HeldError(
            f"{entry.key} is already approved (by {d.by} at {d.at.isoformat()}): the next "
            "run carries it out; `misync held revoke` withdraws it"
        )
    if entry.digest is None and entry.code != HeldCode.QUARANTINED:
        raise HeldError(
            f"{entry.key} is not held by the last run (it holds {entry.object} for another "
            "reason now, or no run has seen it): `misync held list` shows what is held"
        )
    digest = entry.digest  # None: a quarantine seen only in the failure counts, any retry
    why = reason.strip()
    # audited first: a decision the trail does not hold never takes effect (if the store
    # then fails, the trail holds a decision that was not recorded, and the command fails)
    records: list[tuple[str, Mapping[str, Any]]] = []
    if entry.decision is not None:
        records.append(
            ("held", _record(entry.key, "superseded", entry.decision, by=by, entry=entry))
        )
    planned = HeldDecisionRow(0, entry.key, verdict, digest, why, by, at, until)
    records.append(("held", _record(entry.key, verdict, planned, by=by, entry=entry)))
    audit.append_many(records)
    new, _ = store.decide_held(
        entry.key, verdict, digest=digest, reason=why, by=by, at=at, until=until
    )
    return new


def revoke(
    store: Store,
    audit: AuditLog,
    entry: HeldEntry,
    *,
    reason: str,
    by: str,
    at: datetime,
) -> HeldDecisionRow:
    if not reason.strip():
        raise HeldError("--reason must say why (it goes to the audit trail)")
    if entry.decision is None:
        raise HeldError(f"{entry.key} has no open decision to revoke")
    # audited first, as a decision is
    audit.append(
        "held",
        _record(entry.key, "revoked", entry.decision, by=by, entry=entry, why=reason.strip()),
    )
    closed = store.close_held_decision(entry.key, at=at, by=by, resolution="revoked")
    return closed or entry.decision  # None: a run closed it in between (audited as such)


def _record(
    key: str,
    event: str,
    d: HeldDecisionRow,
    *,
    by: str,
    entry: HeldEntry | None = None,
    why: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    code, _, obj = key.partition(":")
    body: dict[str, Any] = {
        "event": event,
        "key": key,
        "code": code,
        "object": obj,
        "verdict": d.verdict,
        "by": by,
        "reason": why if why is not None else d.reason,
        "decided_by": d.by,
        "decided_at": d.at.isoformat(),
        "until": _iso(d.until),
        "digest": d.digest,
    }
    if entry is not None:
        body |= {"op": entry.op, "person_id": entry.person_id, "account_id": entry.account_id}
    return body | extra


def record_run(
    store: Store,
    audit: AuditLog,
    plan: Plan,
    outcomes: Collection[ActionOutcome],
    run_id: str,
    at: datetime,
    *,
    log: Any,
    full: bool,
) -> None:
    """After a run: record what it held (``misync held list``) and close the decisions it
    settled, each audited: approvals it carried out (with the outcome), decisions that
    reopened, and (a full run only) decisions on what misync no longer holds."""
    rows = [_held_row(h, accepted=False) for h in plan.held]
    rows += [_held_row(h, accepted=True) for h in plan.accepted]
    store.record_held(run_id, at, rows, full=full)
    for h in plan.accepted:
        log.info(
            "operation.accepted",
            key=h.key,
            code=h.code,
            op=h.action.op.value,
            person_id=h.action.person_id,
            account_id=h.action.account_id,
        )
    open_ = {d.key: d for d in store.held_decisions()}
    records: list[tuple[str, Mapping[str, Any]]] = []

    def close(key: str, event: str, resolution: str, **extra: Any) -> None:
        d = store.close_held_decision(key, at=at, by=RUN, resolution=resolution)
        if d is not None:
            records.append(("held", _record(key, event, d, by=RUN, why=resolution, **extra)))
            log.warning(
                "held.decision_closed",
                key=key,
                verdict=d.verdict,
                closed_as=event,
                resolution=resolution,
            )

    by_object = {o.action.key: o for o in outcomes}
    for key in plan.approved:
        o = by_object.get(key.partition(":")[2])
        outcome = o.status if o is not None else OutcomeStatus.NOT_ATTEMPTED
        detail = f": {o.detail}" if o is not None and o.detail else ""
        close(
            key, "carried_out", f"carried out at run {run_id}: {outcome}{detail}", outcome=outcome
        )
    for r in plan.reopened:
        close(r.key, "reopened", f"reopened: {r.why}")
    if full:
        held_objects = {h.action.key for h in plan.held}
        seen = {h.key for h in (*plan.held, *plan.accepted)} | set(plan.approved)
        seen |= {r.key for r in plan.reopened}
        for key in open_:
            if key not in seen and key.partition(":")[2] not in held_objects:
                close(key, "resolved", "resolved: misync no longer holds it")
    if records:
        audit.append_many(records, run_id=run_id)


def _held_row(h: HeldAction, *, accepted: bool) -> HeldRow:
    a = h.action
    now = datetime.min  # placeholders: the store sets first_seen/last_seen to the run's time
    return HeldRow(
        h.key,
        h.code,
        a.op.value,
        a.key,
        a.person_id,
        a.account_id,
        a.logon_id,
        h.message,
        held_digest(h),
        now,
        now,
        "",
        accepted,
    )


def _when(value: datetime | None, tz: tzinfo) -> str:
    return value.astimezone(tz).replace(microsecond=0).isoformat() if value else "?"


def render_list(entries: Sequence[HeldEntry], tz: tzinfo) -> str:
    """``misync held list`` for people: one block per held action."""
    out: list[str] = []
    for e in entries:
        who = " ".join(
            x
            for x in (
                e.op or "",
                e.person_id or "",
                e.account_id or "",
                f"({e.logon_id})" if e.logon_id else "",
            )
            if x
        )
        state = {"accepted": "accepted (left as it is)", "approved": "approved, held"}
        out.append(e.key)
        out.append(f"  {who}: {state.get(e.state, 'held')} since {_when(e.since, tz)}")
        if e.message:
            out.append(f"  why: {e.message}")
        d = e.decision
        if d is not None:
            until = f" until {_when(d.until, tz)}" if d.until else ""
            pending = " (the next run carries it out)" if d.verdict == "approve" else ""
            out.append(
                f"  decision: {PAST[d.verdict]} by {d.by} at {_when(d.at, tz)}{until}{pending}: "
                f"{d.reason}"
            )
    states = [e.state for e in entries]
    out.append(
        f"{states.count('held')} held, {states.count('accepted')} accepted, "
        f"{states.count('approved')} approved"
        + ("" if entries else " (a hold is recorded by the run that holds it)")
    )
    return "\n".join(out) + "\n"
