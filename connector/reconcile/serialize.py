"""The plan as JSON, and its checksum.

The checksum is the sha256 of the canonical JSON of the plan without its
``checksum`` field (keys sorted, no insignificant white space, UTF-8). It names the
plan: ``apply --plan FILE`` recomputes it and refuses a file whose content does not
match, so a reviewed plan cannot be edited on its way to apply.

Beside the checksum, and outside it, a plan file made by ``misync plan -o`` names the
archived inputs it was made from (``inputs``: the plan's ``id`` and the ``manifest``
digest, connector.archive). It is a pointer, not part of the plan: the run that
carries the plan out records it only if those inputs are archived and rebuild this
very plan (``audit replay`` checks it again).

The ``read`` field (how the directory was read: warm from the stored snapshot or a full
scan, and as of when) is outside the checksum too: it says how the plan was made, not
what it does, so a warm plan and a full-scan plan of the same directory at the same
instant carry the same checksum. Nothing ``apply --plan`` does depends on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

from connector.errors import MisyncError
from connector.model.accounts import Change, ChangeKind, DesiredAccount
from connector.model.decisions import Reason
from connector.model.feeds import FeedHealth, FeedName, FeedState, Rejection
from connector.model.plan import (
    Action,
    Breach,
    DirectoryRead,
    HeldAction,
    HeldDecision,
    Op,
    Plan,
    Reopened,
)
from connector.model.records import SourceRef
from connector.timefmt import when

FORMAT_VERSION = 1


class PlanFormatError(MisyncError):
    """A plan file that is not a plan, or whose checksum does not match its content."""


def _dt(value: datetime | None) -> str | None:
    """ISO 8601 with its offset, to the second (``connector.timefmt``)."""
    return when(value, None) if value is not None else None


def reason_to_json(r: Reason) -> dict[str, Any]:
    out: dict[str, Any] = {"code": r.code, "clause": r.clause, "message": r.message}
    if r.feed is not None:
        out["feed"] = r.feed.value
    if r.source is not None:
        out["source"] = {"feed": r.source.feed, "file": r.source.file, "line": r.source.line}
    if r.evidenced:
        out["evidenced"] = True
    if r.relies_on:
        out["relies_on"] = sorted(f.value for f in r.relies_on)
    if r.since is not None:
        out["since"] = _dt(r.since)
    if r.deadline is not None:
        out["deadline"] = _dt(r.deadline)
    return out


def change_to_dict(c: Change) -> dict[str, Any]:
    """The one serialisation of a ``Change`` (plan files, the journal, audit records)."""
    return {"kind": c.kind.value, "name": c.name, "old": list(c.old), "new": list(c.new)}


def change_from_dict(c: Mapping[str, Any]) -> Change:
    """A ``Change`` read back. Audit records written before 0.x (``operation`` records)
    carry no ``kind``: a change named ``groups`` is the group membership, any other an
    attribute (the only two kinds there are)."""
    kind = c.get("kind") or (
        ChangeKind.GROUPS.value if c.get("name") == "groups" else ChangeKind.ATTRIBUTE.value
    )
    return Change(
        ChangeKind(kind), c.get("name", ""), tuple(c.get("old", ())), tuple(c.get("new", ()))
    )


def _desired(d: DesiredAccount) -> dict[str, Any]:
    return {
        "person_id": d.person_id,
        "logon_id": d.logon_id,
        "enabled": d.enabled,
        "attributes": {k: list(v) for k, v in d.attributes.items()},
        "create_only": {k: list(v) for k, v in d.create_only.items()},
        "groups": sorted(d.groups),
    }


def _action(a: Action) -> dict[str, Any]:
    out: dict[str, Any] = {
        "op": a.op.value,
        "person_id": a.person_id,
        "account_id": a.account_id,
        "logon_id": a.logon_id,
        "changes": [change_to_dict(c) for c in a.changes],
        "reasons": [reason_to_json(r) for r in a.reasons],
        "before": a.before,
        "drivers": sorted(a.drivers),
        "evidenced": a.evidenced,
        "deadline": _dt(a.deadline),
    }
    if a.desired is not None:
        out["desired"] = _desired(a.desired)
    return out


def held_digest(h: HeldAction) -> str:
    """What an operator's decision on a held action is bound to: the code, the object,
    the account as read, and what misync would do to it (op, changes, desired account,
    reason codes). When any of it changes, an accept reopens and an approval lapses."""
    a = h.action
    body = {
        "code": h.code,
        "op": a.op.value,
        "key": a.key.lower(),
        "before": a.before,
        "changes": [change_to_dict(c) for c in a.changes],
        "desired": _desired(a.desired) if a.desired is not None else None,
        "reasons": sorted(r.code for r in a.reasons),
    }
    return "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()[:32]


def _decision(d: HeldDecision) -> dict[str, Any]:
    return {
        "verdict": d.verdict,
        "digest": d.digest,
        "by": d.by,
        "reason": d.reason,
        "at": _dt(d.at),
        "until": _dt(d.until),
    }


def _held(h: HeldAction) -> dict[str, Any]:
    out = {"key": h.key, "code": h.code, "message": h.message, "action": _action(h.action)}
    if h.decision is not None:
        out["decision"] = _decision(h.decision)
    return out


def _breach(b: Breach) -> dict[str, Any]:
    return {
        "person_id": b.person_id,
        "account_id": b.account_id,
        "deadline": _dt(b.deadline),
        "logon_id": b.logon_id,
        "severity": b.severity,
        "reasons": [reason_to_json(r) for r in b.reasons],
    }


def _rejection(r: Rejection) -> dict[str, Any]:
    """A rejected row as plan files have always written it: its area columns (``org``,
    ``wda``) stay out, so a plan's checksum and a replayed run's are what they were."""
    return {
        "feed": r.feed,
        "file": r.file,
        "line": r.line,
        "column": r.column,
        "value": r.value,
        "reason": r.reason,
        "key": r.key,
    }


def _feed(h: FeedHealth) -> dict[str, Any]:
    return {
        "feed": h.feed.value,
        "file": h.file,
        "state": h.state.value,
        "rows": h.rows,
        "rejected": h.rejected,
        "detail": h.detail,
        "modified_at": _dt(h.modified_at),
        "digest": h.digest,
    }


def _sections(plan: Plan) -> list[tuple[str, Any, bool]]:
    """(key, value, is_list) in file order, without the checksum. List sections are
    generators: each item becomes a dict only while it is written or hashed."""
    decided: list[tuple[str, Any, bool]] = []  # only in plans with operators' decisions
    if plan.accepted:
        decided.append(("accepted", (_held(h) for h in plan.accepted), True))
    if plan.approved:
        decided.append(("approved", list(plan.approved), False))
    if plan.reopened:
        decided.append(("reopened", [dataclasses.asdict(r) for r in plan.reopened], False))
    return [
        ("format", FORMAT_VERSION, False),
        ("as_of", _dt(plan.as_of), False),
        ("target", plan.target, False),
        ("summary", plan.summary, False),
        ("decisions", dict(plan.decisions), False),
        ("actions", (_action(a) for a in plan.actions), True),
        ("held", (_held(h) for h in plan.held), True),
        *decided,
        # past deadlines only (summary "breaches"); pre-breach warnings apart ("warnings")
        ("breaches", (_breach(b) for b in plan.breaches if b.severity == "breach"), True),
        ("warnings", (_breach(b) for b in plan.breaches if b.severity != "breach"), True),
        ("rejected", (_rejection(r) for r in plan.rejected), True),
        ("feeds", (_feed(h) for h in plan.feeds), True),
    ]


def read_to_json(r: DirectoryRead) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mode": "warm" if r.warm else "full_scan",
        "reason": r.reason,
        "read_at": _dt(r.read_at),
        "full_scan_at": _dt(r.full_scan_at),
        "entries_read": r.entries,
        "accounts": r.accounts,
    }
    if r.memo_at is not None:
        out["memo"] = {
            "whole_plan_at": _dt(r.memo_at),
            "people_planned": r.replanned,
            "accounts_reused": r.reused,
        }
    elif r.memo_unused:
        out["memo"] = {"unused": r.memo_unused}
    return out


def read_from_json(d: Mapping[str, Any]) -> DirectoryRead:
    memo: Mapping[str, Any] = d.get("memo") or {}
    return DirectoryRead(
        warm=d["mode"] == "warm",
        reason=str(d.get("reason", "")),
        read_at=datetime.fromisoformat(d["read_at"]),
        full_scan_at=datetime.fromisoformat(d["full_scan_at"]),
        entries=int(d["entries_read"]),
        accounts=int(d["accounts"]),
        memo_at=datetime.fromisoformat(memo["whole_plan_at"]) if "whole_plan_at" in memo else None,
        replanned=int(memo.get("people_planned", 0)),
        reused=int(memo.get("accounts_reused", 0)),
        memo_unused=str(memo.get("unused", "")),
    )


#: Fields of a plan file outside its checksum (see the module's docstring).
UNSEALED = frozenset({"checksum", "read", "inputs"})


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    body = {k: list(v) if is_list else v for k, v, is_list in _sections(plan)}
    if plan.read is not None:
        body["read"] = read_to_json(plan.read)
    body["checksum"] = plan.checksum
    return body


# The C encoder (no ``indent``): the pure-Python one was most of a large plan's cost.
_canon = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_line = json.JSONEncoder(ensure_ascii=False).encode


def _canonical(body: Mapping[str, Any]) -> bytes:
    content = {k: v for k, v in body.items() if k not in UNSEALED}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def checksum_of(body: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()


def plan_checksum(plan: Plan) -> str:
    """``checksum_of(plan_to_dict(plan))``, hashed piece by piece: the canonical JSON of
    a large plan is never held whole, nor the plan as one tree of dicts."""
    h = hashlib.sha256()
    h.update(b"{")
    for i, (key, value, is_list) in enumerate(sorted(_sections(plan), key=lambda x: x[0])):
        h.update(f"{',' if i else ''}{_canon(key)}:".encode())
        if not is_list:
            h.update(_canon(value).encode())
            continue
        h.update(b"[")
        for j, item in enumerate(value):
            if j:
                h.update(b",")
            h.update(_canon(item).encode())
        h.update(b"]")
    h.update(b"}")
    return "sha256:" + h.hexdigest()


def seal(plan: Plan) -> Plan:
    """The same plan with its checksum set."""
    return dataclasses.replace(plan, checksum=plan_checksum(plan))


def write_plan(plan: Plan, out: TextIO, inputs: Mapping[str, str] | None = None) -> None:
    """Write the JSON plan to ``out`` as it goes, one action (or held action, breach,
    rejection, feed) per line. A sealed plan keeps its checksum (it is frozen, so the
    seal still holds); an unsealed one is sealed here. ``inputs``: the archived inputs
    it was made from (``id``, ``manifest``), written beside the checksum."""
    checksum = plan.checksum or plan_checksum(plan)
    out.write("{\n")
    for key, value, is_list in _sections(plan):
        if not is_list:
            out.write(f"  {_line(key)}: {_line(value)},\n")
            continue
        out.write(f"  {_line(key)}: [")
        sep = "\n    "
        for item in value:
            out.write(sep)
            out.write(_line(item))
            sep = ",\n    "
        out.write("\n  ],\n" if sep != "\n    " else "],\n")
    if plan.read is not None:
        out.write(f"  {_line('read')}: {_line(read_to_json(plan.read))},\n")
    if inputs:
        out.write(f"  {_line('inputs')}: {_line(dict(inputs))},\n")
    out.write(f"  {_line('checksum')}: {_line(checksum)}\n}}")


def plan_to_json(plan: Plan) -> str:
    buf = io.StringIO()
    write_plan(plan, buf)
    return buf.getvalue()


# --- reading back ---------------------------------------------------------------------


def _pdt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _preason(d: dict[str, Any]) -> Reason:
    src = d.get("source")
    return Reason(
        code=d["code"],
        clause=d["clause"],
        message=d["message"],
        feed=FeedName(d["feed"]) if d.get("feed") else None,
        source=SourceRef(src["feed"], src["file"], int(src["line"])) if src else None,
        evidenced=bool(d.get("evidenced", False)),
        since=_pdt(d.get("since")),
        deadline=_pdt(d.get("deadline")),
        relies_on=frozenset(FeedName(f) for f in d.get("relies_on", ())),
    )


def _pdesired(d: dict[str, Any]) -> DesiredAccount:
    return DesiredAccount(
        person_id=d["person_id"],
        logon_id=d["logon_id"],
        enabled=bool(d["enabled"]),
        attributes={k: tuple(v) for k, v in d["attributes"].items()},
        create_only={k: tuple(v) for k, v in d.get("create_only", {}).items()},
        groups=frozenset(d.get("groups", ())),
    )


def _paction(d: dict[str, Any]) -> Action:
    return Action(
        op=Op(d["op"]),
        person_id=d.get("person_id"),
        account_id=d.get("account_id"),
        logon_id=d.get("logon_id"),
        changes=tuple(change_from_dict(c) for c in d.get("changes", ())),
        reasons=tuple(_preason(r) for r in d.get("reasons", ())),
        before=d.get("before"),
        desired=_pdesired(d["desired"]) if d.get("desired") else None,
        drivers=frozenset(FeedName(x) for x in d.get("drivers", ())),
        evidenced=bool(d.get("evidenced", False)),
        deadline=_pdt(d.get("deadline")),
    )


def held_from_dict(h: dict[str, Any]) -> HeldAction:
    d = h.get("decision")
    decision = None
    if d:
        decision = HeldDecision(
            d["verdict"],
            d.get("digest"),
            d["by"],
            d["reason"],
            datetime.fromisoformat(d["at"]),
            _pdt(d.get("until")),
        )
    return HeldAction(_paction(h["action"]), h["code"], h["message"], decision)


def plan_from_json(text: str, *, source: str = "plan") -> Plan:
    """Parse and verify a plan file. Raises ``PlanFormatError`` naming what is wrong."""
    return read_plan_file(text, source=source)[0]


def read_plan_file(text: str, *, source: str = "plan") -> tuple[Plan, dict[str, str] | None]:
    """``plan_from_json``, and the archived inputs the file names (None: none)."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFormatError(f"{source}: not JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT_VERSION:
        raise PlanFormatError(f"{source}: not a misync plan (format {FORMAT_VERSION} expected)")
    stated = body.get("checksum", "")
    actual = checksum_of(body)
    if stated != actual:
        raise PlanFormatError(
            f"{source}: checksum mismatch: the file says {stated or '(none)'} but its content "
            f"hashes to {actual}; the plan was altered after it was made"
        )
    try:
        plan = Plan(
            as_of=datetime.fromisoformat(body["as_of"]),
            target=body["target"],
            actions=tuple(_paction(a) for a in body["actions"]),
            held=tuple(held_from_dict(h) for h in body["held"]),
            accepted=tuple(held_from_dict(h) for h in body.get("accepted", ())),
            approved=tuple(str(k) for k in body.get("approved", ())),
            reopened=tuple(Reopened(**r) for r in body.get("reopened", ())),
            breaches=tuple(
                Breach(
                    b.get("person_id"),
                    b["account_id"],
                    datetime.fromisoformat(b["deadline"]),
                    b["severity"],
                    tuple(_preason(r) for r in b["reasons"]),
                    b.get("logon_id"),
                )
                for b in (*body["breaches"], *body.get("warnings", ()))
            ),
            rejected=tuple(Rejection(**r) for r in body["rejected"]),
            feeds=tuple(
                FeedHealth(
                    feed=FeedName(f["feed"]),
                    file=f["file"],
                    state=FeedState(f["state"]),
                    rows=f["rows"],
                    rejected=f["rejected"],
                    detail=f["detail"],
                    modified_at=_pdt(f.get("modified_at")),
                    digest=f.get("digest", ""),
                )
                for f in body["feeds"]
            ),
            decisions=dict(body.get("decisions", {})),
            checksum=stated,
            read=read_from_json(body["read"]) if body.get("read") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFormatError(f"{source}: malformed plan: {exc!r}") from exc
    inputs = body.get("inputs")
    if inputs is None:
        return plan, None
    if (
        not isinstance(inputs, dict)
        or set(inputs) != {"id", "manifest"}
        or not isinstance(inputs["id"], str)
        or not isinstance(inputs["manifest"], str)
        or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", inputs["id"])
        or not re.fullmatch(r"[0-9a-f]{64}", inputs["manifest"])
    ):
        raise PlanFormatError(
            f'{source}: field inputs: expected {{"id": ..., "manifest": ...}}'
            f" (the archived inputs the plan was made from), got {json.dumps(inputs)[:80]}"
        )
    return plan, {"id": inputs["id"], "manifest": inputs["manifest"]}
