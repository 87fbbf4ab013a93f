"""The planner: decisions + snapshot -> actions, held actions and breaches (pure, no I/O)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.mapping import load_mapping
from connector.model import (
    Account,
    ChangeKind,
    Decision,
    FeedHealth,
    FeedName,
    FeedSet,
    FeedState,
    Grant,
    Op,
    Organization,
    OrgKind,
    Plan,
    Reason,
    Rejection,
    SourceRef,
    Status,
    Worker,
    WorkerStatus,
)
from connector.reconcile import (
    PlanFormatError,
    PlanInputs,
    build_plan,
    plan_from_json,
    plan_to_json,
)
from connector.reconcile.diff import account_digest

MAPPING = load_mapping(Path(__file__).parents[2] / "mappings" / "openldap-ppolicy.toml")
NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
SRC = SourceRef("workers", "workers.csv", 2)
ORG = Organization(
    "ORG1",
    "Goodwill",
    OrgKind.WIOA_CONTRACTOR,
    "WDA-04",
    SourceRef("organizations", "organizations.csv", 2),
)


def worker(pid: str, given: str = "Ann", family: str = "Lee") -> Worker:
    return Worker(
        pid, "ORG1", given, family, f"{pid}@x.org", "Renton", "S1", WorkerStatus.ACTIVE, None, SRC
    )


def entitled(pid: str) -> Decision:
    grant = Grant("REQ-1", NOW - timedelta(days=30), SourceRef("requests", "requests.csv", 2))
    return Decision(
        pid, NOW, Status.ENTITLED, grant=grant, profile="case-manager", offices=("Renton",)
    )


def separated(pid: str, *, deadline: datetime) -> Decision:
    r = Reason("separated", "3.h.viii", "separated", FeedName.SEPARATIONS, SRC, True, NOW, deadline)
    return Decision(pid, NOW, Status.ENDED, reasons=(r,))


def lapsed(pid: str, feed: FeedName = FeedName.TRAINING) -> Decision:
    r = Reason("training_missing", "3.a.iii", "no training", feed, None, False)
    return Decision(pid, NOW, Status.SUSPENDED, reasons=(r,))


def account(
    pid: str | None, uid: str = "alee", *, enabled: bool = True, **attrs: tuple[str, ...]
) -> Account:
    base = {
        "employeeNumber": (pid,) if pid else (),
        "uid": (uid,),
        "cn": ("Ann Lee",),
        "sn": ("Lee",),
        "givenName": ("Ann",),
        "mail": (f"{pid}@x.org",),
        "displayName": ("Ann Lee",),
        "o": ("Goodwill",),
        "departmentNumber": ("ORG1",),
        "employeeType": ("case-manager",),
        "physicalDeliveryOfficeName": ("Renton",),
    }
    base.update(attrs)
    return Account(
        f"uid={uid},ou=people,dc=x", pid, uid, enabled, base, frozenset({"mis-case-manager"})
    )


def health(**states: FeedState) -> dict[FeedName, FeedHealth]:
    return {n: FeedHealth(n, f"{n}.csv", states.get(n.value, FeedState.OK), 1, 0) for n in FeedName}


def inputs(decisions, accounts, *, feeds: FeedSet | None = None, **kw) -> PlanInputs:  # type: ignore[no-untyped-def]
    pids = list(decisions)
    accounts = list(accounts)
    # unless a test says otherwise, misync disabled every disabled account itself
    kw.setdefault("disabled_by_misync", frozenset(a.account_id.lower() for a in accounts))
    fs = feeds or FeedSet(
        organizations=(ORG,), workers=tuple(worker(p) for p in pids), health=health()
    )
    return PlanInputs(
        as_of=NOW,
        feeds=fs,
        decisions={d.person_id: d for d in decisions.values()},
        accounts=accounts,
        mapping=MAPPING,
        target="ldap://t ou=people,dc=x",
        **kw,
    )


def ops(plan) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    return [(a.op.value, a.person_id) for a in plan.actions]


@pytest.mark.parametrize(
    ("decision", "acct", "expected"),
    [
        pytest.param(entitled("P1"), None, [("create", "P1")], id="entitled-no-account-creates"),
        pytest.param(
            entitled("P1"),
            account("P1", enabled=False),
            [("enable", "P1")],
            id="entitled-disabled-enables",
        ),
        pytest.param(entitled("P1"), account("P1"), [], id="entitled-in-line-nothing"),
        pytest.param(
            entitled("P1"),
            account("P1", employeeType=("viewer",)),
            [("update", "P1")],
            id="entitled-drifted-updates",
        ),
        pytest.param(
            separated("P1", deadline=NOW),
            account("P1"),
            [("disable", "P1")],
            id="separated-enabled-disables",
        ),
        pytest.param(
            separated("P1", deadline=NOW),
            account("P1", enabled=False),
            [],
            id="separated-disabled-nothing",
        ),
        pytest.param(separated("P1", deadline=NOW), None, [], id="separated-no-account-nothing"),
        pytest.param(lapsed("P1"), account("P1"), [("disable", "P1")], id="lapse-disables"),
    ],
)
def test_one_person_table(
    decision: Decision, acct: Account | None, expected: list[tuple[str, str]]
) -> None:
    # max_share=1.0: a one-account directory would otherwise trip the mass-disable guard
    plan = build_plan(inputs({"P1": decision}, [acct] if acct else [], max_share=1.0))
    assert ops(plan) == expected
    assert plan.held == ()


def test_create_proposes_logon_and_shows_every_attribute() -> None:
    plan = build_plan(inputs({"P1": entitled("P1")}, [], taken_logon_ids=frozenset({"alee"})))
    (create,) = plan.actions
    assert create.logon_id == "alee2"
    assert create.desired is not None
    assert create.desired.attributes["uid"] == ("alee2",)
    assert create.desired.attributes["employeeNumber"] == ("P1",)
    assert create.desired.create_only == {"description": ("Provisioned by misync",)}
    assert create.desired.groups == frozenset({"mis-case-manager"})
    names = {c.name for c in create.changes}
    assert {"cn", "mail", "employeeType", "description", "groups"} <= names


def test_known_logon_id_is_reused_for_life() -> None:
    plan = build_plan(inputs({"P1": entitled("P1")}, [], known_logon_ids={"P1": "annlee7"}))
    assert plan.actions[0].logon_id == "annlee7"


def test_update_lists_exact_changes() -> None:
    acct = account("P1", employeeType=("viewer",), physicalDeliveryOfficeName=("Kent", "Renton"))
    (upd,) = build_plan(inputs({"P1": entitled("P1")}, [acct])).actions
    got = {(c.kind, c.name, c.old, c.new) for c in upd.changes}
    assert got == {
        (ChangeKind.ATTRIBUTE, "employeeType", ("viewer",), ("case-manager",)),
        (ChangeKind.ATTRIBUTE, "physicalDeliveryOfficeName", ("Kent", "Renton"), ("Renton",)),
    }
    assert upd.before == account_digest(acct)


def test_orphans_disabled_or_reported() -> None:
    stray = account("P404", uid="ghost")
    plan = build_plan(inputs({}, [stray], max_share=1.0))
    assert [(a.op, a.account_id, a.reasons[0].code) for a in plan.actions] == [
        (Op.DISABLE, stray.account_id, "orphan")
    ]
    reported = build_plan(inputs({}, [stray], orphans="report"))
    assert reported.actions == ()
    assert [h.code for h in reported.held] == ["orphan_report_only"]


def test_disabled_orphan_is_left_alone() -> None:
    assert build_plan(inputs({}, [account("P404", enabled=False)])).actions == ()


@pytest.mark.parametrize(
    ("bad_feed", "decision", "acct", "kept", "held_code"),
    [
        pytest.param(
            "contracts", entitled("P1"), None, [], "feed_unhealthy", id="create-needs-every-feed"
        ),
        pytest.param(
            "ndas",
            entitled("P1"),
            account("P1", enabled=False),
            [],
            "feed_unhealthy",
            id="enable-needs-every-feed",
        ),
        pytest.param(
            "workers",
            entitled("P1"),
            account("P1", sn=("X",)),
            [],
            "feed_unhealthy",
            id="update-needs-roster",
        ),
        pytest.param(
            "training",
            entitled("P1"),
            account("P1", sn=("X",)),
            [("update", "P1")],
            None,
            id="update-ignores-training",
        ),
        pytest.param(
            "contracts",
            separated("P1", deadline=NOW),
            account("P1"),
            [("disable", "P1")],
            None,
            id="disable-by-other-feed-goes-ahead",
        ),
        pytest.param(
            "training",
            lapsed("P1"),
            account("P1"),
            [],
            "feed_unhealthy",
            id="disable-only-by-bad-feed-held",
        ),
    ],
)
def test_feed_guard(
    bad_feed: str,
    decision: Decision,
    acct: Account | None,
    kept: list[tuple[str, str]],
    held_code: str | None,
) -> None:
    fs = FeedSet(
        organizations=(ORG,),
        workers=(worker("P1"),),
        health=health(**{bad_feed: FeedState.MISSING}),
    )
    plan = build_plan(inputs({"P1": decision}, [acct] if acct else [], feeds=fs, max_share=1.0))
    assert ops(plan) == kept
    assert [h.code for h in plan.held] == ([held_code] if held_code else [])


def test_rejected_row_is_not_read_as_no_row() -> None:
    rej = Rejection(
        "training", "training.csv", 7, "completed_on", "2025-13-01", "not a date", key="P1"
    )
    fs = FeedSet(organizations=(ORG,), workers=(worker("P1"),), rejected=(rej,), health=health())
    plan = build_plan(inputs({"P1": lapsed("P1")}, [account("P1")], feeds=fs, max_share=1.0))
    assert plan.actions == ()
    assert [h.code for h in plan.held] == ["feed_unhealthy"]
    assert plan.rejected == (rej,)


@pytest.mark.parametrize(
    ("n", "override", "expect_held"),
    [(3, False, 0), (30, False, 30), (30, True, 0)],
)
def test_mass_disable_guard_holds_unexplained(n: int, override: bool, expect_held: int) -> None:
    orphans = [account(f"X{i}", uid=f"u{i}") for i in range(n)]
    keep = [account(f"P{i}", uid=f"k{i}") for i in range(100)]
    decisions = {f"P{i}": entitled(f"P{i}") for i in range(100)}
    fs = FeedSet(organizations=(ORG,), workers=tuple(worker(p) for p in decisions), health=health())
    plan = build_plan(
        inputs(decisions, orphans + keep, feeds=fs, override_guard=override, max_share=1.0)
    )
    assert sum(h.code == "mass_disable_guard" for h in plan.held) == expect_held
    assert sum(a.op is Op.DISABLE for a in plan.actions) == n - expect_held


def test_mass_disable_guard_never_holds_evidenced_disables() -> None:
    decisions = {f"P{i}": separated(f"P{i}", deadline=NOW + timedelta(days=1)) for i in range(40)}
    accts = [account(f"P{i}", uid=f"u{i}") for i in range(40)]
    plan = build_plan(inputs(decisions, accts, max_unexplained=1, max_share=0.01))
    assert len(plan.actions) == 40
    assert plan.held == ()


@pytest.mark.parametrize(
    ("deadline", "severity"),
    [
        (NOW - timedelta(seconds=1), "breach"),
        (NOW, "breach"),
        (NOW + timedelta(hours=3), "warning"),
        (NOW + timedelta(hours=5), None),
    ],
)
def test_breaches_and_warnings(deadline: datetime, severity: str | None) -> None:
    plan = build_plan(inputs({"P1": separated("P1", deadline=deadline)}, [account("P1")]))
    assert [b.severity for b in plan.breaches] == ([severity] if severity else [])


def test_quarantined_and_ambiguous_are_held() -> None:
    acct = account("P1", sn=("X",))
    q = build_plan(inputs({"P1": entitled("P1")}, [acct], quarantined=frozenset({acct.account_id})))
    assert [h.code for h in q.held] == ["quarantined"]
    twins = [account("P1", uid="a"), account("P1", uid="b")]
    amb = build_plan(inputs({"P1": entitled("P1")}, twins))
    assert amb.actions == ()
    assert [h.code for h in amb.held] == ["ambiguous_correlation", "ambiguous_correlation"]


def test_disables_come_first() -> None:
    decisions = {"P1": entitled("P1"), "P2": separated("P2", deadline=NOW)}
    fs = FeedSet(organizations=(ORG,), workers=(worker("P1"), worker("P2")), health=health())
    plan = build_plan(inputs(decisions, [account("P2", uid="b")], feeds=fs))
    assert ops(plan) == [("disable", "P2"), ("create", "P1")]


def test_plan_json_round_trip_and_tamper_detection() -> None:
    decisions = {"P1": entitled("P1"), "P2": separated("P2", deadline=NOW)}
    fs = FeedSet(organizations=(ORG,), workers=(worker("P1"), worker("P2")), health=health())
    plan = build_plan(inputs(decisions, [account("P2", uid="b")], feeds=fs))
    text = plan_to_json(plan)
    again = plan_from_json(text)
    assert dataclasses.replace(again, checksum="") == dataclasses.replace(plan, checksum="")
    assert again.checksum.startswith("sha256:")
    body = json.loads(text)
    body["actions"][0]["op"] = "enable"
    with pytest.raises(PlanFormatError, match="checksum mismatch"):
        plan_from_json(json.dumps(body))
    with pytest.raises(PlanFormatError, match="not JSON"):
        plan_from_json("{")


@pytest.mark.parametrize("held", [False, True], ids=["plain", "held-rejected-breaches"])
def test_streamed_checksum_and_file_match_the_canonical_form(held: bool) -> None:
    """The checksum hashed piece by piece is the sha256 of the canonical JSON of the
    whole plan, with empty and non-empty sections and non-ASCII text; the streamed file
    is one item per line, parses to the same plan and verifies."""
    from connector.reconcile.serialize import checksum_of, plan_checksum, plan_to_dict

    decisions = {"P1": entitled("P1"), "P2": separated("P2", deadline=NOW)}
    workers = (worker("P1", given="Zoë", family="Ødegård"), worker("P2"))
    rejected = (
        (Rejection("training", "training.csv", 3, "completed_on", "«x»", "bad date", "P9"),)
        if held
        else ()
    )
    fs = FeedSet(organizations=(ORG,), workers=workers, health=health(), rejected=rejected)
    accounts = [account("P2", uid="b"), account("X1", uid="orphan")]
    orphans = "report" if held else "disable"
    plan = build_plan(inputs(decisions, accounts, feeds=fs, orphans=orphans, override_guard=True))
    assert plan.actions and bool(plan.held) is held and bool(plan.rejected) is held
    sealed = plan_checksum(plan)
    assert sealed == checksum_of(plan_to_dict(plan))
    text = plan_to_json(plan)
    assert len(text.splitlines()) >= len(plan.actions) + len(plan.held) + 10
    again = plan_from_json(text)
    assert again.checksum == sealed
    assert dataclasses.replace(again, checksum="") == dataclasses.replace(plan, checksum="")


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "full-scan"])
def test_how_the_directory_was_read_is_in_the_file_and_outside_the_checksum(warm: bool) -> None:
    """A warm plan and a full-scan plan of the same world carry the same checksum: the
    ``read`` field round-trips, is outside the checksum, and editing it breaks nothing."""
    from connector.model.plan import DirectoryRead
    from connector.reconcile import seal

    decisions = {"P1": entitled("P1"), "P2": separated("P2", deadline=NOW)}
    fs = FeedSet(organizations=(ORG,), workers=(worker("P1"), worker("P2")), health=health())
    plan = seal(build_plan(inputs(decisions, [account("P2", uid="b")], feeds=fs)))
    read = DirectoryRead(
        warm=warm,
        reason="" if warm else "requested (--full-scan)",
        read_at=NOW,
        full_scan_at=NOW - timedelta(minutes=20) if warm else NOW,
        entries=3 if warm else 1,
        accounts=1,
    )
    with_read = dataclasses.replace(plan, read=read)
    text = plan_to_json(with_read)
    again = plan_from_json(text)
    assert again.read == read
    assert again.checksum == plan.checksum == plan_from_json(plan_to_json(plan)).checksum
    body = json.loads(text)
    body["read"]["mode"] = "full_scan" if warm else "warm"
    assert plan_from_json(json.dumps(body)).checksum == plan.checksum


def test_a_warm_plan_cache_gives_the_plan_a_cold_one_gives() -> None:
    """PlanCache reuses results only for the very same (frozen) inputs: a changed
    account or decision is rendered and compared again."""
    from connector.reconcile.planner import PlanCache

    decisions = {"P1": entitled("P1"), "P2": entitled("P2")}
    fs = FeedSet(organizations=(ORG,), workers=(worker("P1"), worker("P2")), health=health())
    acc1 = account("P1", uid="alee")
    acc2 = account("P2", uid="blee", enabled=False)
    cache = PlanCache()
    first = build_plan(inputs(decisions, [acc1, acc2], feeds=fs, cache=cache))
    assert first == build_plan(inputs(decisions, [acc1, acc2], feeds=fs))
    assert first == build_plan(inputs(decisions, [acc1, acc2], feeds=fs, cache=cache))
    changed = dataclasses.replace(acc1, attributes={**acc1.attributes, "mail": ("x@y.org",)})
    ended = {"P1": decisions["P1"], "P2": separated("P2", deadline=NOW)}
    for accs, ds in (([changed, acc2], decisions), ([acc1, acc2], ended)):
        warm = build_plan(inputs(ds, accs, feeds=fs, cache=cache))
        assert warm == build_plan(inputs(ds, accs, feeds=fs))


def test_accounts_in_line_are_planned_as_they_stream_and_keep_their_digest() -> None:
    """An account already in line is reduced to a stub while the read streams past;
    whatever the plan later says about it (a duplicate, an unreadable row) carries the
    digest of the account as read, which ``apply --plan`` compares."""
    decisions = {"P1": entitled("P1")}
    fs = FeedSet(organizations=(ORG,), workers=(worker("P1"),), health=health())
    create = build_plan(inputs(decisions, [], feeds=fs)).actions[0]
    assert create.desired is not None
    d = create.desired
    attrs = {**d.create_only, **d.attributes}
    in_line = Account(f"uid={d.logon_id},ou=people,dc=x", "P1", d.logon_id, True, attrs, d.groups)
    twin = dataclasses.replace(in_line, account_id="uid=twin,ou=people,dc=x")
    assert build_plan(inputs(decisions, [in_line], feeds=fs)).actions == ()
    dup = build_plan(inputs(decisions, [in_line, twin], feeds=fs))
    assert {h.action.before for h in dup.held} == {account_digest(in_line), account_digest(twin)}
    bad = (Rejection("separations", "separations.csv", 2, "separated_at", "x", "bad", "P1"),)
    held = build_plan(
        inputs(decisions, [in_line], feeds=dataclasses.replace(fs, rejected=bad))
    ).held
    assert [(h.code, h.action.before) for h in held] == [("rejected_row", account_digest(in_line))]


def _world(n: int) -> FeedSet:
    """``n`` entitled people, PSEP separated last week and PDIS disabled by request
    yesterday, all with accounts."""
    from tests.unit import test_policy as tp

    everyone = [*[f"P{i:03}" for i in range(n)], "PSEP", "PDIS"]
    base = tp.base()
    sep_at = datetime(2026, 11, 18, 17, 0, tzinfo=tp.LA)
    disable = tp.request("REQ-D", tp.RequestAction.DISABLE, effective=date(2026, 11, 24))
    return dataclasses.replace(
        base,
        workers=(*[tp.worker(p) for p in everyone], tp.worker("R1")),
        training=tuple(dataclasses.replace(base.training[0], person_id=p) for p in everyone),
        ndas=tuple(dataclasses.replace(base.ndas[0], person_id=p) for p in everyone),
        requests=(
            *[dataclasses.replace(tp.request(f"REQ-{p}"), person_id=p) for p in everyone],
            dataclasses.replace(disable, person_id="PDIS"),
        ),
        separations=(tp.Separation("PSEP", "CBO1", sep_at, "quit", tp.src("separations", 2)),),
    )


def _plan_world(feeds: FeedSet, **guard: Any) -> Plan:
    """Policy and planner together over ``feeds``, everyone but R1 with an enabled account."""
    from connector.policy import evaluate_all
    from tests.unit import test_policy as tp

    decisions = evaluate_all(feeds, tp.AT, tp.RULES)
    accounts = [account(p, f"u{p.lower()}") for p in decisions if p != "R1"]
    return build_plan(
        PlanInputs(
            as_of=tp.AT,
            feeds=feeds,
            decisions=decisions,
            accounts=accounts,
            mapping=MAPPING,
            target="t",
            **guard,
        )
    )


@pytest.mark.parametrize(
    "missing",
    [
        FeedName.REQUESTERS,
        FeedName.WORKERS,
        FeedName.ORGANIZATIONS,
        FeedName.CONTRACTS,
        FeedName.TRAINING,
        FeedName.NDAS,
        FeedName.REQUESTS,
    ],
)
def test_a_missing_feed_is_never_read_as_everyone_lost_access(missing: FeedName) -> None:
    """Policy and planner together: a missing feed contributes no rows, so every reason
    that rests on it (a requester check needs the designations, the roster and the
    organizations) is unsound: no disable, no breach. A separation from another feed is
    still carried out (SPEC: "except disables driven by other feeds")."""
    world = _world(60)
    feeds = dataclasses.replace(
        world,
        **{missing.value: ()},
        health={missing: FeedHealth(missing, f"{missing}.csv", FeedState.MISSING, 0, 0)},
    )
    # the mass-disable guard is opened wide: the feed guard alone must hold them
    plan = _plan_world(feeds, max_unexplained=1000, max_share=1.0)
    # evidence from the feeds still whole: the separation, and the disable request
    evidenced = ["PDIS", "PSEP"] if missing is not FeedName.REQUESTS else ["PSEP"]
    disabled = sorted(a.person_id or "" for a in plan.actions if a.op is Op.DISABLE)
    assert disabled == evidenced
    assert sorted(b.person_id or "" for b in plan.breaches) == evidenced
    held = {h.action.person_id for h in plan.held if h.code == "feed_unhealthy"}
    assert len(held) >= 60


def test_the_same_world_with_every_feed_whole_disables_only_the_separated() -> None:
    """The control for the test above: nothing is held, only PSEP and PDIS lose access."""
    plan = _plan_world(_world(60))
    assert plan.decisions["entitled"] == 60  # not PSEP, PDIS, R1 (no request)
    assert sorted(a.person_id or "" for a in plan.actions if a.op is Op.DISABLE) == [
        "PDIS",
        "PSEP",
    ]
    assert plan.held == ()


def _rejected(feed: str, key: str) -> Rejection:
    return Rejection(feed, f"{feed}.csv", 7, "x", "?", "unreadable", key=key)


@pytest.mark.parametrize(
    ("decisions", "acct", "rejected", "ops_", "held"),
    [
        pytest.param(
            [entitled("P1")],
            account("P1"),
            _rejected("separations", "P1"),
            [],
            [("rejected_row", "P1")],
            id="entitled-with-an-unreadable-separation-is-held-for-review",
        ),
        pytest.param(
            [entitled("P1")],
            account("P1"),
            _rejected("requests", "P1"),
            [],
            [("rejected_row", "P1")],
            id="entitled-with-an-unreadable-request-is-held-for-review",
        ),
        pytest.param(
            [entitled("P1")],
            account("P1"),
            _rejected("contracts", "ORG1"),
            [],
            [("rejected_row", "P1")],
            id="an-unreadable-contract-of-the-organization-is-held-for-review",
        ),
        pytest.param(
            [entitled("P1")],
            account("P1"),
            _rejected("training", "P1"),
            [],
            [],
            id="a-training-row-only-grants-so-nothing-to-review",
        ),
        pytest.param(
            [entitled("P1")],
            account("P9", "xstray"),
            _rejected("workers", "P9"),
            [("create", "P1")],
            [("feed_unhealthy", None)],
            id="an-account-named-by-rejected-rows-is-no-orphan",
        ),
        pytest.param(
            [entitled("P1")],
            account("P9", "xstray"),
            _rejected("training", "P5"),
            [("create", "P1"), ("disable", None)],
            [],
            id="control-a-true-orphan-is-disabled",
        ),
    ],
)
def test_a_rejected_row_is_never_read_as_no_row(
    decisions: list[Decision],
    acct: Account,
    rejected: Rejection,
    ops_: list[tuple[str, str | None]],
    held: list[tuple[str, str | None]],
) -> None:
    feeds = FeedSet(
        organizations=(ORG,),
        workers=tuple(worker(d.person_id) for d in decisions),
        rejected=(rejected,),
        health=health(),
    )
    plan = build_plan(
        inputs({d.person_id: d for d in decisions}, [acct], feeds=feeds, max_share=1.0)
    )
    assert sorted(ops(plan), key=str) == sorted(ops_, key=str)
    assert [(h.code, h.action.person_id) for h in plan.held] == held


@pytest.mark.parametrize(
    ("disabled_by_misync", "reenable_external", "expected"),
    [
        pytest.param(True, False, ("enable", None), id="misync-disabled-it-enables"),
        pytest.param(False, False, (None, "disabled_outside_misync"), id="someone-else-held"),
        pytest.param(False, True, ("enable", None), id="configured-to-reenable"),
    ],
)
def test_only_accounts_misync_disabled_are_enabled(
    disabled_by_misync: bool, reenable_external: bool, expected: tuple[str | None, str | None]
) -> None:
    acc = account("P1", enabled=False)
    plan = build_plan(
        inputs(
            {"P1": entitled("P1")},
            [acc],
            disabled_by_misync=frozenset({acc.account_id.upper().lower()})
            if disabled_by_misync
            else frozenset(),
            reenable_external=reenable_external,
        )
    )
    op = plan.actions[0].op.value if plan.actions else None
    held = plan.held[0].code if plan.held else None
    assert (op, held) == expected
    if held:
        assert "reenable_external_disables" in plan.held[0].message
