"""Which accounts a whole plan left alone (connector.reconcile.settled): ``settle`` keeps
only accounts nothing in the plan names, ``residual`` puts back every account and person
that changed since. Each rule is conservative: a doubt plans the account again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.model.decisions import Decision, Status
from connector.model.plan import Action, Breach, HeldAction, Op, Plan
from connector.reconcile.settled import Seen, Settled, named_in, residual, settle

AT = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)


def key(pid: str) -> str:
    return pid.lower()  # caseIgnoreMatch, as the LDAP mappings say


def decision(pid: str, entitled: bool = True) -> Decision:
    return Decision(pid, AT, Status.ENTITLED if entitled else Status.ENDED)


def seen(aid: str, corr: str | None, logon: str | None = None, digest: str = "d") -> Seen:
    return Seen(aid, corr, logon if logon is not None else aid, digest)


def action(op: Op, pid: str | None, aid: str | None) -> Action:
    return Action(op, pid, aid, aid, (), (), "x" if aid else None)


def plan(
    actions: tuple[Action, ...] = (),
    held: tuple[HeldAction, ...] = (),
    accepted: tuple[HeldAction, ...] = (),
    breaches: tuple[Breach, ...] = (),
) -> Plan:
    return Plan(AT, "t", actions, held=held, accepted=accepted, breaches=breaches)


#: the directory of every case: a, b, c are P1, P2, P3's; x correlates to nobody
VIEW = [seen("a", "P1"), seen("b", "P2"), seen("c", "P3"), seen("x", "X9")]
DECISIONS = {p: decision(p) for p in ("P1", "P2", "P3")}


@pytest.mark.parametrize(
    ("case", "the_plan", "view", "decisions", "known", "settled", "open_keys"),
    [
        ("nothing named", plan(), VIEW, DECISIONS, {}, {"a", "b", "c", "x"}, set()),
        (
            "an account an action names",
            plan((action(Op.UPDATE, "P1", "a"),)),
            VIEW, DECISIONS, {}, {"b", "c", "x"}, {"p1"},
        ),
        (
            "a person a create names: their other accounts too",
            plan((action(Op.CREATE, "P2", None),)),
            VIEW, DECISIONS, {}, {"a", "c", "x"}, {"p2"},
        ),
        (
            "an orphan's disable names the account only",
            plan((action(Op.DISABLE, None, "x"),)),
            VIEW, DECISIONS, {}, {"a", "b", "c"}, set(),
        ),
        (
            "a held action",
            plan(held=(HeldAction(action(Op.ENABLE, "P3", "c"), "disabled_outside_misync", "m"),)),
            VIEW, DECISIONS, {}, {"a", "b", "x"}, {"p3"},
        ),
        (
            "an accepted hold",
            plan(accepted=(HeldAction(action(Op.ENABLE, "P3", "c"), "quarantined", "m"),)),
            VIEW, DECISIONS, {}, {"a", "b", "x"}, {"p3"},
        ),
        (
            "a breach",
            plan(breaches=(Breach("P1", "a", AT, "warning", ()),)),
            VIEW, DECISIONS, {}, {"b", "c", "x"}, {"p1"},
        ),
        (
            "two accounts of one person (a duplicate): neither",
            plan(),
            [*VIEW, seen("a2", "p1")],
            DECISIONS, {}, {"b", "c", "x"}, set(),
        ),
        (
            "two person ids one under the match: neither's account",
            plan(),
            VIEW,
            {**DECISIONS, "p2": decision("p2")},
            {}, {"a", "c", "x"}, set(),
        ),
        (
            "entitled, no logon ID known nor on the account: a proposal, not settled",
            plan(),
            [seen("a", "P1", logon=""), seen("b", "P2", logon="")],
            {"P1": decision("P1"), "P2": decision("P2", entitled=False)},
            {}, {"b"}, set(),
        ),
        (
            "entitled, the logon ID known in the store: settled",
            plan(),
            [seen("a", "P1", logon="")],
            {"P1": decision("P1")},
            {"P1": "aone"}, {"a"}, set(),
        ),
    ],
)  # fmt: skip
def test_settle(
    *,
    case: str,
    the_plan: Plan,
    view: list[Seen],
    decisions: dict[str, Decision],
    known: dict[str, str],
    settled: set[str],
    open_keys: set[str],
) -> None:
    got, opened = settle(the_plan, view, decisions, known, key)
    assert set(got) == settled, case
    assert opened == open_keys, case


def test_settled_records_the_person_and_their_logon() -> None:
    got, _ = settle(plan(), VIEW, DECISIONS, {"P1": "aone"}, key)
    assert got["a"] == Settled("d", "P1", "aone")
    assert got["b"] == Settled("d", "P2", "")
    assert got["x"] == Settled("d", "", "")  # an account of nobody in the feeds
    assert Settled.from_row(got["a"].row()) == got["a"]


def test_named_in() -> None:
    p = plan(
        (action(Op.DISABLE, None, "X"), action(Op.CREATE, "P9", None)),
        held=(HeldAction(action(Op.UPDATE, "P1", "A"), "ambiguous_correlation", "m"),),
        breaches=(Breach("P2", "B", AT, "breach", ()),),
    )
    assert named_in(p) == ({"x", "a", "b"}, {"P9", "P1", "P2"})


SETTLED = {
    "a": Settled("d", "P1", "aone"),
    "b": Settled("d", "P2", ""),
    "x": Settled("d", "", ""),
}
NOW_VIEW = {"a": ("P1", "d"), "b": ("P2", "d"), "x": ("X9", "d"), "c": ("P3", "d")}


@pytest.mark.parametrize(
    ("case", "view", "known", "open_keys", "keys", "changed", "missing"),
    [
        ("as settled; c was named", NOW_VIEW, {"P1": "aone"}, {"p3"}, {"p3"}, ["c"], []),
        (
            "a digest changed: the account and its person",
            {**NOW_VIEW, "a": ("P1", "e")},
            {"P1": "aone"}, {"p3"}, {"p1", "p3"}, ["a", "c"], [],
        ),
        (
            "a new account for a settled person (a duplicate): that person",
            {**NOW_VIEW, "a2": ("p2", "d")},
            {"P1": "aone"}, {"p3"}, {"p2", "p3"}, ["c", "a2"], [],
        ),
        (
            "a settled account missing puts its person back",
            {k: v for k, v in NOW_VIEW.items() if k != "b"},
            {"P1": "aone"}, {"p3"}, {"p2", "p3"}, ["c"], ["b"],
        ),
        (
            "a missing account of nobody: nobody to plan again",
            {k: v for k, v in NOW_VIEW.items() if k != "x"},
            {"P1": "aone"}, {"p3"}, {"p3"}, ["c"], ["x"],
        ),
        (
            "a changed logon ID in the store puts the account back",
            NOW_VIEW, {"P1": "other"}, {"p3"}, {"p1", "p3"}, ["a", "c"], [],
        ),
        (
            "a logon ID given to a settled person with none",
            NOW_VIEW, {"P1": "aone", "P2": "btwo"}, {"p3"}, {"p2", "p3"}, ["b", "c"], [],
        ),
        (
            "a logon ID dropped from the store",
            NOW_VIEW, {}, {"p3"}, {"p1", "p3"}, ["a", "c"], [],
        ),
        (
            "an account's correlation changed: both people",
            {**NOW_VIEW, "a": ("P2", "e")},
            {"P1": "aone"}, set(), {"p1", "p2"}, ["a", "c"], [],
        ),
    ],
)  # fmt: skip
def test_residual(
    *,
    case: str,
    view: dict[str, tuple[str | None, str]],
    known: dict[str, str],
    open_keys: set[str],
    keys: set[str],
    changed: list[str],
    missing: list[str],
) -> None:
    res = residual(view, SETTLED, open_keys, known, key)
    assert set(res.changed) == set(changed), case
    assert list(res.missing) == missing, case
    assert res.keys >= keys, case
    assert res.reused == len(view) - len(res.changed)
