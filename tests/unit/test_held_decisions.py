"""Operators' decisions on held actions (issue 13 item 7): the planner's part (pure), the
state store's part, and the rules ``misync held`` enforces. End to end on slapd:
tests/integration/test_held_decisions.py."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from connector.audit import AuditError, AuditTrail
from connector.executor import ActionOutcome
from connector.model import FeedSet, FeedState
from connector.model.plan import HeldDecision, Plan, Reopened
from connector.reconcile import build_plan, plan_from_json, plan_to_json
from connector.reconcile.serialize import held_digest
from connector.runs.held import (
    HeldEntry,
    HeldError,
    decide,
    list_held,
    record_run,
    resolve,
    revoke,
)
from connector.state import HeldRow, StateStore
from tests.unit.test_planner import NOW, ORG, account, entitled, health, inputs, worker

GKIM = "uid=alee,ou=people,dc=x"
KEY = f"disabled_outside_misync:{GKIM}"


def _locked_plan(**kw: Any) -> Plan:
    """P1 is entitled; someone else locked P1's account: its enable is held."""
    acc = account("P1", enabled=False)
    return build_plan(inputs({"P1": entitled("P1")}, [acc], disabled_by_misync=frozenset(), **kw))


def _digest() -> str:
    (h,) = _locked_plan().held
    return held_digest(h)


def _decision(verdict: str, digest: str | None = "", **kw: Any) -> dict[str, HeldDecision]:
    d = HeldDecision(verdict, _digest() if digest == "" else digest, "alice", "why", NOW, **kw)
    return {KEY: d}


@pytest.mark.parametrize(
    ("decisions", "held", "accepted", "approved", "reopened", "ops"),
    [
        pytest.param({}, [KEY], [], [], [], [], id="no-decision-held"),
        pytest.param(_decision("accept"), [], [KEY], [], [], [], id="accepted-not-held"),
        pytest.param(
            _decision("accept", until=NOW + timedelta(days=1)),
            [], [KEY], [], [], [], id="accepted-until-later",
        ),
        pytest.param(
            _decision("accept", until=NOW), [KEY], [], [], [KEY], [], id="accept-until-passed"
        ),
        pytest.param(
            _decision("accept", "sha256:other"), [KEY], [], [], [KEY], [], id="accept-changed"
        ),
        pytest.param(_decision("approve"), [], [], [KEY], [], ["enable"], id="approved-enables"),
        pytest.param(
            _decision("approve", "sha256:other"), [KEY], [], [], [KEY], [],
            id="approval-of-another-action-lapses",
        ),
        pytest.param(
            {f"feed_unhealthy:{GKIM}": HeldDecision("approve", None, "a", "r", NOW)},
            [KEY], [], [], [], [], id="decision-on-another-code-ignored",
        ),
    ],
)  # fmt: skip
def test_the_planner_applies_decisions(
    decisions: dict[str, HeldDecision],
    held: list[str],
    accepted: list[str],
    approved: list[str],
    reopened: list[str],
    ops: list[str],
) -> None:
    plan = _locked_plan(held_decisions=decisions)
    assert [h.key for h in plan.held] == held
    assert [h.key for h in plan.accepted] == accepted
    assert list(plan.approved) == approved
    assert [r.key for r in plan.reopened] == reopened
    assert [a.op.value for a in plan.actions] == ops
    if accepted:
        assert plan.accepted[0].decision == decisions[KEY]
        assert "accepted" in plan.summary and plan.summary["held"] == 0


def test_an_approval_never_passes_the_feed_guard() -> None:
    """Approving waives only the hold decided on: with a feed down the enable is held as
    feed_unhealthy, and the approval waits (neither carried out nor lapsed)."""
    feeds = FeedSet(
        organizations=(ORG,), workers=(worker("P1"),), health=health(training=FeedState.STALE)
    )
    plan = _locked_plan(held_decisions=_decision("approve"), feeds=feeds)
    assert [h.code for h in plan.held] == ["feed_unhealthy"]
    assert (plan.actions, plan.approved, plan.reopened) == ((), (), ())
    # a decision on the feed guard's hold itself (written into the state store behind
    # the CLI's back) is ignored: that code is never decided
    (guard,) = plan.held
    for verdict in ("approve", "accept"):
        forged = _decision("approve") | {
            guard.key: HeldDecision(verdict, held_digest(guard), "mallory", "x", NOW)
        }
        again = _locked_plan(held_decisions=forged, feeds=feeds)
        assert [h.code for h in again.held] == ["feed_unhealthy"], verdict
        assert (again.actions, again.accepted, again.approved) == ((), (), ())


@pytest.mark.parametrize(
    ("code", "kw", "decided"),
    [
        ("quarantined", {"quarantined": frozenset({GKIM})}, "quarantined"),
        ("orphan_report_only", {"orphans": "report", "max_share": 1.0}, "orphan_report_only"),
        # a code no decision lifts (the mass-disable guard) stays held
        ("mass_disable_guard", {"max_unexplained": 0}, None),
    ],
)
def test_other_codes(code: str, kw: dict[str, Any], decided: str | None) -> None:
    if code == "quarantined":
        decisions, accs = {"P1": entitled("P1")}, [account("P1", mail=("old@x.org",))]
    else:
        decisions, accs = {}, [account("P9", uid="alee")]
    plan = build_plan(inputs(decisions, accs, **kw))
    (h,) = plan.held
    assert h.code == code
    approve = {h.key: HeldDecision("approve", held_digest(h), "a", "r", NOW)}
    again = build_plan(inputs(decisions, accs, held_decisions=approve, **kw))
    if decided is None:
        assert [x.code for x in again.held] == [code] and again.approved == ()
    else:
        assert again.held == () and again.approved == (h.key,)
        assert [a.key for a in again.actions] == [GKIM]


def test_decisions_survive_the_plan_file() -> None:
    plan = _locked_plan(held_decisions=_decision("accept", until=NOW + timedelta(days=2)))
    back = plan_from_json(plan_to_json(plan))
    assert back.accepted == plan.accepted and back.held == ()
    reopened = _locked_plan(held_decisions=_decision("approve", "sha256:x"))
    assert plan_from_json(plan_to_json(reopened)).reopened == reopened.reopened
    # a plan without decisions keeps its old shape (and checksum)
    assert "accepted" not in plan_to_json(_locked_plan())


# -- the state store ----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state" / "state.sqlite3")


@pytest.fixture
def audit(tmp_path: Path) -> AuditTrail:
    return AuditTrail(tmp_path / "state" / "audit.sqlite3")


def _row(key: str, digest: str = "d1", accepted: bool = False) -> HeldRow:
    code, _, obj = key.partition(":")
    return HeldRow(key, code, "enable", obj, "P1", obj, "alee", "m", digest, NOW, NOW, "", accepted)


def test_store_keeps_since_and_a_full_run_replaces_the_list(store: StateStore) -> None:
    store.record_held("r1", NOW, [_row(KEY), _row("quarantined:uid=b")], full=True)
    later = NOW + timedelta(hours=1)
    store.record_held("r2", later, [_row(KEY, "d2")], full=False)  # a targeted run adds
    assert {r.key: (r.first_seen, r.last_seen, r.digest) for r in store.held()} == {
        KEY: (NOW, later, "d2"),
        "quarantined:uid=b": (NOW, NOW, "d1"),
    }
    store.record_held("r3", later, [_row(KEY, "d2", accepted=True)], full=True)
    assert [(r.key, r.accepted, r.run_id) for r in store.held()] == [(KEY, True, "r3")]


def test_store_decisions_supersede_and_close(store: StateStore) -> None:
    first, old = store.decide_held(KEY, "accept", digest="d", reason="r1", by="a", at=NOW)
    assert old is None and first.closed_at is None
    until = NOW + timedelta(days=1)
    second, old = store.decide_held(
        KEY, "accept", digest="d", reason="r2", by="b", at=NOW, until=until
    )
    assert old == first
    assert [(d.reason, d.until) for d in store.held_decisions()] == [("r2", until)]
    closed = store.close_held_decision(KEY, at=NOW, by="misync", resolution="reopened: x")
    assert closed == second
    assert store.held_decisions() == []
    assert store.close_held_decision(KEY, at=NOW, by="x", resolution="y") is None
    every = store.held_decisions(closed=True)
    assert [(d.reason, d.resolution, d.closed_by) for d in every] == [
        ("r1", "superseded", "b"),
        ("r2", "reopened: x", "misync"),
    ]


# -- the rules of `misync held` -----------------------------------------------------------


def _events(audit: AuditTrail) -> list[dict[str, Any]]:
    db = sqlite3.connect(audit.path)
    try:
        rows = db.execute("select data from records where kind = 'held' order by seq")
        return [json.loads(r[0]) for r in rows]
    finally:
        db.close()


def _entry(store: StateStore, code: str = "disabled_outside_misync") -> HeldEntry:
    store.record_held("r1", NOW, [_row(f"{code}:{GKIM}")], full=True)
    return resolve(list_held(store, 3), f"{code}:{GKIM}")


@pytest.mark.parametrize(
    ("code", "verdict", "kw", "message"),
    [
        ("feed_unhealthy", "approve", {}, "a feed_unhealthy hold cannot be approved"),
        ("mass_disable_guard", "accept", {}, "--override-guard"),
        ("rejected_row", "approve", {}, "cannot be approved"),
        ("ambiguous_correlation", "accept", {}, "cannot be accepted"),
        ("disabled_outside_misync", "accept", {"until": NOW}, "is not in the future"),
        ("disabled_outside_misync", "approve", {"until": NOW + timedelta(1)}, "goes with accept"),
        ("disabled_outside_misync", "accept", {"reason": " "}, "--reason must say why"),
    ],
)
def test_what_cannot_be_decided(
    store: StateStore, audit: AuditTrail, code: str, verdict: str, kw: dict[str, Any], message: str
) -> None:
    entry = _entry(store, code)
    args: dict[str, Any] = {"reason": "because", "by": "alice", "at": NOW} | kw
    with pytest.raises(HeldError, match=message.replace("-", r"\-")):
        decide(store, audit, entry, verdict, **args)
    assert store.held_decisions() == []
    assert _events(audit) == []


def test_decide_and_revoke_are_audited(store: StateStore, audit: AuditTrail) -> None:
    entry = _entry(store)
    decide(store, audit, entry, "accept", reason="INC-1", by="alice", at=NOW)
    entry = resolve(list_held(store, 3), "alee")  # by logon ID
    assert entry.decision is not None and entry.decision.by == "alice"
    decide(store, audit, entry, "approve", reason="INC-1 over", by="bob", at=NOW)
    with pytest.raises(HeldError, match="already approved"):
        decide(
            store, audit, resolve(list_held(store, 3), "P1"), "approve", reason="x", by="c", at=NOW
        )
    revoke(store, audit, resolve(list_held(store, 3), GKIM), reason="wait", by="carol", at=NOW)
    assert store.held_decisions() == []
    with pytest.raises(HeldError, match="no open decision"):
        revoke(store, audit, resolve(list_held(store, 3), GKIM), reason="x", by="c", at=NOW)
    assert [(d["event"], d["by"], d["reason"]) for d in _events(audit)] == [
        ("accept", "alice", "INC-1"),
        ("superseded", "bob", "INC-1"),
        ("approve", "bob", "INC-1 over"),
        ("revoked", "carol", "wait"),
    ]


def test_unknown_and_ambiguous_keys(store: StateStore) -> None:
    store.record_held("r1", NOW, [_row(KEY), _row(f"rejected_row:{GKIM}")], full=True)
    entries = list_held(store, 3)
    with pytest.raises(HeldError, match="no held action 'nobody'"):
        resolve(entries, "nobody")
    with pytest.raises(HeldError, match="names 2 held actions"):
        resolve(entries, "P1")
    assert resolve(entries, KEY.upper()).key == KEY


def test_a_quarantine_is_listed_before_any_run_saw_it(store: StateStore) -> None:
    for _ in range(3):
        store.record_failure("person:P7", NOW, "objectClassViolation")
    (e,) = list_held(store, 3)
    assert (e.key, e.code, e.person_id, e.digest) == (
        "quarantined:person:P7",
        "quarantined",
        "P7",
        None,
    )
    assert e.decision is None and "objectClassViolation" in e.message
    assert list_held(store, 4) == []  # below apply.quarantine_after: not held


# -- what a run does with the decisions (connector.runs.held.record_run) -----------------


def _run_plan(kind: str) -> Plan:
    """A plan as a run would make it, for one open decision on KEY."""
    (h,) = _locked_plan().held
    if kind == "approved":
        return dataclasses.replace(_locked_plan(), held=(), actions=(h.action,), approved=(KEY,))
    if kind == "reopened":
        return dataclasses.replace(_locked_plan(), reopened=(Reopened(KEY, "accept", "x"),))
    if kind == "held-otherwise":  # a feed down holds the same object under another code
        return dataclasses.replace(
            _locked_plan(), held=(dataclasses.replace(h, code="feed_unhealthy"),)
        )
    if kind == "accepted":
        return dataclasses.replace(_locked_plan(), held=(), accepted=(h,))
    return dataclasses.replace(_locked_plan(), held=())  # nothing held any more


@pytest.mark.parametrize(
    ("kind", "full", "event", "resolution"),
    [
        ("approved", True, "carried_out", "carried out at run r9: ok"),
        ("approved", False, "carried_out", "carried out at run r9: ok"),
        ("reopened", True, "reopened", "reopened: x"),
        ("gone", True, "resolved", "resolved: misync no longer holds it"),
        ("gone", False, None, None),  # a targeted run did not look at everything
        ("held-otherwise", True, None, None),  # the decision waits for the feed
        ("accepted", True, None, None),
    ],
)
def test_a_run_settles_decisions(
    store: StateStore, audit: AuditTrail, kind: str, full: bool, event: str | None,
    resolution: str | None,
) -> None:  # fmt: skip
    store.decide_held(KEY, "approve", digest="d", reason="r", by="alice", at=NOW)
    plan = _run_plan(kind)
    outcomes = [ActionOutcome(a, "ok", a.account_id, 1) for a in plan.actions]
    record_run(store, audit, plan, outcomes, "r9", NOW, log=structlog.get_logger(), full=full)
    if event is None:
        assert [d.key for d in store.held_decisions()] == [KEY]
        assert _events(audit) == []
        return
    assert store.held_decisions() == []
    (closed,) = store.held_decisions(closed=True)
    assert (closed.resolution, closed.closed_by) == (resolution, "misync")
    (record,) = _events(audit)
    assert (record["event"], record["by"], record["decided_by"]) == (event, "misync", "alice")


def test_a_decision_the_trail_refuses_is_not_taken(store: StateStore, tmp_path: Path) -> None:
    entry = _entry(store)
    broken = AuditTrail(tmp_path / "nowhere" / "audit.sqlite3", read_only=True)
    with pytest.raises(AuditError):
        decide(store, broken, entry, "accept", reason="x", by="alice", at=NOW)
    assert store.held_decisions() == []
