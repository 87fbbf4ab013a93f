"""Policy 1021, table-driven: one row per clause and per edge.

Each case starts from one entitled LWDB-contractor person (``base()``) and changes one
thing; the expected result is the status, the failing codes and clauses, and where it
matters the evidence, flags and deadlines.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connector.model import (
    AccessRequest,
    Contract,
    ContractType,
    FeedName,
    FeedSet,
    Nda,
    Organization,
    OrgKind,
    RequestAction,
    RequesterDesignation,
    RequestStatus,
    Separation,
    SourceRef,
    Status,
    Training,
    Worker,
    WorkerStatus,
)
from connector.policy import PolicyRules, evaluate_all

LA = ZoneInfo("America/Los_Angeles")
RULES = PolicyRules(tz=LA)
AT = datetime(2026, 11, 25, 12, 0, tzinfo=LA)


def src(feed: str, line: int) -> SourceRef:
    return SourceRef(feed, f"{feed}.csv", line)


def org(
    kind: OrgKind = OrgKind.WIOA_CONTRACTOR, org_id: str = "CBO1", wda: str = "WDA-04"
) -> Organization:
    return Organization(org_id, "Goodwill", kind, wda, src("organizations", 2))


def contract(
    cid: str,
    ctype: ContractType,
    *,
    starts: date = date(2025, 7, 1),
    ends: date | None = None,
    terminated: date | None = None,
    signed: date | None = date(2025, 6, 1),
    case: str = "case mgmt",
    approvals: tuple[date | None, ...] = (date(2025, 6, 2),) * 3,
    line: int = 2,
) -> Contract:
    return Contract(
        cid,
        "CBO1",
        ctype,
        "lwdb",
        case if ctype is ContractType.DATA_SHARING else "",
        signed,
        starts,
        ends,
        terminated,
        *approvals,
        src("contracts", line),
    )


def worker(
    pid: str = "P1",
    *,
    status: WorkerStatus = WorkerStatus.ACTIVE,
    separated_on: date | None = None,
    org_id: str = "CBO1",
) -> Worker:
    return Worker(
        pid,
        org_id,
        "Ann",
        "Lee",
        "a@x.org",
        "Renton",
        "S1",
        status,
        separated_on,
        src("workers", 2),
    )


def request(
    rid: str,
    action: RequestAction = RequestAction.ADD,
    *,
    effective: date = date(2025, 9, 1),
    submitted: datetime | None = None,
    requester: str = "R1",
    certs: bool = True,
    status: RequestStatus = RequestStatus.APPROVED,
    profile: str = "case-manager",
    offices: tuple[str, ...] = ("Renton",),
    line: int = 2,
) -> AccessRequest:
    sub = submitted or datetime(
        effective.year, effective.month, effective.day, tzinfo=LA
    ) - timedelta(days=2)
    return AccessRequest(
        rid,
        action,
        "P1",
        requester,
        sub,
        effective,
        status,
        profile,
        offices,
        certs,
        certs,
        certs,
        "S1",
        src("requests", line),
    )


def base() -> FeedSet:
    return FeedSet(
        organizations=(org(),),
        contracts=(
            contract("W-1", ContractType.WIOA_SERVICES),
            contract("DS-1", ContractType.DATA_SHARING, line=3),
        ),
        workers=(worker(), worker("R1", org_id="CBO1")),
        training=(Training("P1", "MIS Basic", date(2025, 8, 1), src("training", 2)),),
        ndas=(Nda("P1", date(2025, 8, 2), src("ndas", 2)),),
        requesters=(
            RequesterDesignation(
                "R1", "WDA-04", "LWDB director", date(2025, 1, 1), None, src("requesters", 2)
            ),
        ),
        requests=(request("REQ-1"),),
    )


def with_(**changes: object) -> Callable[[], FeedSet]:
    return lambda: dataclasses.replace(base(), **changes)  # type: ignore[arg-type]


def decide(feeds: FeedSet, at: datetime = AT, rules: PolicyRules = RULES):  # type: ignore[no-untyped-def]
    return evaluate_all(feeds, at, rules)["P1"]


def codes(d) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return sorted((r.code, r.clause) for r in d.reasons)


DS = ContractType.DATA_SHARING
WIOA = ContractType.WIOA_SERVICES
W1 = contract("W-1", WIOA)

CASES = [
    ("entitled", base, Status.ENTITLED, []),
    # 3.i, 3.k: requests
    ("no request", with_(requests=()), Status.NONE, [("no_add_request", "3.i, 3.k")]),
    (
        "pending request does not act",
        with_(requests=(request("REQ-1", status=RequestStatus.NOT_APPROVED),)),
        Status.NONE,
        [("no_add_request", "3.i, 3.k")],
    ),
    (
        "future request does not act yet",
        with_(requests=(request("REQ-1", effective=date(2026, 11, 26)),)),
        Status.NONE,
        [("no_add_request", "3.i, 3.k")],
    ),
    (
        "add uncertified",
        with_(requests=(request("REQ-1", certs=False),)),
        Status.NONE,
        [("add_request_uncertified", "3.i.i–iii")],
    ),
    (
        "requester not designated",
        with_(requests=(request("REQ-1", requester="X9"),)),
        Status.NONE,
        [("add_request_invalid_requester", "3.i, 3.e.v, 3.g.i, 3.h.i")],
    ),
    (
        "requester for another WDA",
        with_(
            requesters=(
                RequesterDesignation(
                    "R1", "WDA-09", "d", date(2025, 1, 1), None, src("requesters", 2)
                ),
            )
        ),
        Status.NONE,
        [("add_request_invalid_requester", "3.i, 3.e.v, 3.g.i, 3.h.i")],
    ),
    (
        "central office * covers every WDA",
        with_(
            requesters=(
                RequesterDesignation("R1", "*", "EC", date(2025, 1, 1), None, src("requesters", 2)),
            )
        ),
        Status.ENTITLED,
        [],
    ),
    (
        "designation expired before submission",
        with_(
            requesters=(
                RequesterDesignation(
                    "R1", "WDA-04", "d", date(2024, 1, 1), date(2025, 8, 29), src("requesters", 2)
                ),
            )
        ),
        Status.NONE,
        [("add_request_invalid_requester", "3.i, 3.e.v, 3.g.i, 3.h.i")],
    ),
    (
        "designation ends on submission day (inclusive)",
        with_(
            requesters=(
                RequesterDesignation(
                    "R1", "WDA-04", "d", date(2024, 1, 1), date(2025, 8, 30), src("requesters", 2)
                ),
            )
        ),
        Status.ENTITLED,
        [],
    ),
    (
        "requester separated before submission",
        with_(
            separations=(
                Separation(
                    "R1", "CBO1", datetime(2025, 8, 1, tzinfo=LA), "quit", src("separations", 2)
                ),
            )
        ),
        Status.NONE,
        [("add_request_invalid_requester", "3.i, 3.e.v, 3.g.i, 3.h.i")],
    ),
    (
        "requester separated later keeps grants",
        with_(
            separations=(
                Separation(
                    "R1", "CBO1", datetime(2026, 1, 1, tzinfo=LA), "quit", src("separations", 2)
                ),
            )
        ),
        Status.ENTITLED,
        [],
    ),
    # 3.e.viii: organization
    # unknown org -> unknown WDA: no requester can be shown to cover the person either
    (
        "org unknown",
        with_(organizations=()),
        Status.NONE,
        [
            ("org_unknown", "3.e.viii"),
            ("add_request_invalid_requester", "3.i, 3.e.v, 3.g.i, 3.h.i"),
        ],
    ),
    (
        "org kind other",
        with_(organizations=(org(OrgKind.OTHER),)),
        Status.SUSPENDED,
        [("org_ineligible", "3.e.viii")],
    ),
    (
        "worksource partner eligible",
        with_(organizations=(org(OrgKind.WORKSOURCE_PARTNER),)),
        Status.ENTITLED,
        [],
    ),
    (
        "ESD staff exempt from contracts",
        with_(organizations=(org(OrgKind.ESD),), contracts=()),
        Status.ENTITLED,
        [],
    ),
    # 3.a.i: WIOA services contract
    (
        "no wioa contract",
        with_(contracts=(contract("DS-1", DS),)),
        Status.SUSPENDED,
        [("no_wioa_contract", "3.a.i")],
    ),
    (
        "wioa contract unsigned",
        with_(contracts=(contract("W-1", WIOA, signed=None), contract("DS-1", DS))),
        Status.SUSPENDED,
        [("wioa_contract_unsigned", "3.a.i")],
    ),
    (
        "wioa contract ended",
        with_(contracts=(contract("W-1", WIOA, ends=date(2026, 6, 30)), contract("DS-1", DS))),
        Status.SUSPENDED,
        [("wioa_contract_ended", "3.a.i")],
    ),
    # 3.a.ii, 3.b, 3.c, 3.e.vii: data sharing
    (
        "no data-sharing contract",
        with_(contracts=(W1,)),
        Status.SUSPENDED,
        [("no_data_sharing_contract", "3.a.ii")],
    ),
    (
        "data sharing ended",
        with_(contracts=(W1, contract("DS-1", DS, ends=date(2026, 6, 30)))),
        Status.SUSPENDED,
        [("data_sharing_ended", "3.e.vii")],
    ),
    (
        "data sharing terminated",
        with_(contracts=(W1, contract("DS-1", DS, terminated=date(2026, 11, 25)))),
        Status.SUSPENDED,
        [("data_sharing_ended", "3.e.vii")],
    ),
    (
        "data sharing without business case",
        with_(contracts=(W1, contract("DS-1", DS, case=" "))),
        Status.SUSPENDED,
        [("data_sharing_no_business_case", "3.b")],
    ),
    (
        "data sharing missing an approval",
        with_(
            contracts=(
                W1,
                contract("DS-1", DS, approvals=(date(2025, 6, 2), None, date(2025, 6, 2))),
            )
        ),
        Status.SUSPENDED,
        [("data_sharing_unapproved", "3.c")],
    ),
    (
        "data sharing unsigned",
        with_(contracts=(W1, contract("DS-1", DS, signed=None))),
        Status.SUSPENDED,
        [("data_sharing_unsigned", "3.a.ii")],
    ),
    (
        "renewal in the future does not count yet",
        with_(
            contracts=(
                W1,
                contract("DS-1", DS, ends=date(2026, 6, 30)),
                contract("DS-2", DS, starts=date(2027, 1, 1), line=4),
            )
        ),
        Status.SUSPENDED,
        [("data_sharing_ended", "3.e.vii"), ("data_sharing_not_started", "3.a.ii")],
    ),
    (
        "one expired and one valid contract",
        with_(
            contracts=(
                W1,
                contract("DS-1", DS, ends=date(2026, 6, 30)),
                contract("DS-2", DS, starts=date(2026, 7, 1), line=4),
            )
        ),
        Status.ENTITLED,
        [],
    ),
    # 3.a.iii: training
    ("no training", with_(training=()), Status.SUSPENDED, [("training_missing", "3.a.iii")]),
    (
        "program training does not count",
        with_(training=(Training("P1", "WIOA Title I-B", date(2025, 8, 1), src("training", 2)),)),
        Status.SUSPENDED,
        [("training_missing", "3.a.iii")],
    ),
    (
        "approved course case-insensitive",
        with_(training=(Training("P1", " mis basic ", date(2025, 8, 1), src("training", 2)),)),
        Status.ENTITLED,
        [],
    ),
    (
        "training completed in the future",
        with_(training=(Training("P1", "MIS Basic", date(2026, 11, 26), src("training", 2)),)),
        Status.SUSPENDED,
        [("training_missing", "3.a.iii")],
    ),
    # 3.g.iv / 3.h.v / 3.i.iii: NDA
    ("no NDA after grace", with_(ndas=()), Status.SUSPENDED, [("nda_missing", "3.h.v, 3.i.iii")]),
    (
        "ESD staff NDA clause",
        with_(ndas=(), organizations=(org(OrgKind.ESD),)),
        Status.SUSPENDED,
        [("nda_missing", "3.g.iv, 3.i.iii")],
    ),
    (
        "late NDA cures",
        with_(ndas=(Nda("P1", date(2026, 11, 20), src("ndas", 2)),)),
        Status.ENTITLED,
        [],
    ),
    # separation (3.g.ix, 3.h.viii) and roster
    (
        "separated via feed",
        with_(
            separations=(
                Separation(
                    "P1",
                    "CBO1",
                    datetime(2026, 11, 20, 17, tzinfo=LA),
                    "quit",
                    src("separations", 2),
                ),
            )
        ),
        Status.ENDED,
        [("separated", "3.h.viii")],
    ),
    (
        "separated via roster",
        with_(
            workers=(
                worker(status=WorkerStatus.SEPARATED, separated_on=date(2026, 11, 20)),
                worker("R1"),
            )
        ),
        Status.ENDED,
        [("separated", "3.h.viii")],
    ),
    (
        "roster separation effective at end of day",
        with_(
            workers=(
                worker(status=WorkerStatus.SEPARATED, separated_on=date(2026, 11, 25)),
                worker("R1"),
            )
        ),
        Status.ENTITLED,
        [],
    ),
    (
        "ESD separation clause",
        with_(
            organizations=(org(OrgKind.ESD),),
            separations=(
                Separation(
                    "P1", "CBO1", datetime(2026, 11, 20, tzinfo=LA), "quit", src("separations", 2)
                ),
            ),
        ),
        Status.ENDED,
        [("separated", "3.g.ix")],
    ),
    (
        "not on roster",
        with_(workers=(worker("R1"),)),
        Status.NONE,
        [
            ("not_on_roster", "3.g.vi"),
            ("org_unknown", "3.e.viii"),
            ("add_request_invalid_requester", "3.i, 3.e.v, 3.g.i, 3.h.i"),
        ],
    ),
    (
        "leave is still employed",
        with_(workers=(worker(status=WorkerStatus.LEAVE), worker("R1"))),
        Status.ENTITLED,
        [],
    ),
    # disable requests (3.i)
    (
        "disable effective today",
        with_(
            requests=(
                request("REQ-1"),
                request("REQ-2", RequestAction.DISABLE, effective=date(2026, 11, 25), line=3),
            )
        ),
        Status.ENDED,
        [("disabled_by_request", "3.i, 3.k")],
    ),
    (
        "disable effective tomorrow not yet",
        with_(
            requests=(
                request("REQ-1"),
                request("REQ-2", RequestAction.DISABLE, effective=date(2026, 11, 26), line=3),
            )
        ),
        Status.ENTITLED,
        [],
    ),
    (
        "rehire after disable",
        with_(
            requests=(
                request("REQ-1"),
                request("REQ-2", RequestAction.DISABLE, effective=date(2026, 1, 1), line=3),
                request("REQ-3", effective=date(2026, 3, 1), line=4),
            )
        ),
        Status.ENTITLED,
        [],
    ),
    # a request acts only on what was submitted before it
    (
        "disable submitted after an add cancels it before it takes effect",
        with_(
            requests=(
                request(
                    "REQ-1", effective=date(2026, 3, 1), submitted=datetime(2026, 1, 1, tzinfo=LA)
                ),
                request(
                    "REQ-2",
                    RequestAction.DISABLE,
                    effective=date(2026, 2, 1),
                    submitted=datetime(2026, 1, 15, tzinfo=LA),
                    line=3,
                ),
            )
        ),
        Status.ENDED,
        [("disabled_by_request", "3.i, 3.k")],
    ),
    (
        "add submitted after a disable is not ended by it",
        with_(
            requests=(
                request("REQ-1"),
                request(
                    "REQ-2", effective=date(2026, 1, 20), submitted=datetime(2026, 2, 10, tzinfo=LA)
                ),
                request(
                    "REQ-3",
                    RequestAction.DISABLE,
                    effective=date(2026, 2, 5),
                    submitted=datetime(2026, 2, 1, tzinfo=LA),
                    line=4,
                ),
            )
        ),
        Status.ENTITLED,
        [],
    ),
    (
        "request submitted after the as-of instant does not count yet",
        with_(
            requests=(
                request(
                    "REQ-1", effective=date(2025, 9, 1), submitted=datetime(2026, 12, 1, tzinfo=LA)
                ),
            )
        ),
        Status.NONE,
        [("no_add_request", "3.i, 3.k")],
    ),
    (
        "a disable in effect is evidence even when the add cannot be checked",
        with_(
            requesters=(),
            requests=(
                request("REQ-1"),
                request("REQ-2", RequestAction.DISABLE, effective=date(2026, 11, 24), line=3),
            ),
        ),
        Status.NONE,
        [
            ("add_request_invalid_requester", "3.i, 3.e.v, 3.g.i, 3.h.i"),
            ("disabled_by_request", "3.i, 3.k"),
        ],
    ),
    # separations (3.g.ix, 3.h.viii): roster and feed together, newest in effect wins
    (
        "add submitted before a separation but effective after it",
        with_(
            requests=(
                request(
                    "REQ-1", effective=date(2026, 11, 1), submitted=datetime(2026, 10, 1, tzinfo=LA)
                ),
            ),
            separations=(
                Separation(
                    "P1", "CBO1", datetime(2026, 10, 15, tzinfo=LA), "quit", src("separations", 2)
                ),
            ),
        ),
        Status.ENDED,
        [("separated", "3.h.viii")],
    ),
    (
        "roster separation newer than the feed's ends a rehire grant",
        with_(
            workers=(
                worker(status=WorkerStatus.SEPARATED, separated_on=date(2026, 11, 20)),
                worker("R1"),
            ),
            separations=(
                Separation(
                    "P1", "CBO1", datetime(2025, 10, 1, tzinfo=LA), "quit", src("separations", 2)
                ),
            ),
            requests=(
                request(
                    "REQ-9", effective=date(2026, 1, 5), submitted=datetime(2026, 1, 2, tzinfo=LA)
                ),
            ),
        ),
        Status.ENDED,
        [("separated", "3.h.viii")],
    ),
    (
        "a future separation row does not hide one already in effect",
        with_(
            separations=(
                Separation(
                    "P1", "CBO1", datetime(2026, 11, 10, tzinfo=LA), "quit", src("separations", 2)
                ),
                Separation(
                    "P1", "CBO1", datetime(2026, 12, 1, tzinfo=LA), "move", src("separations", 3)
                ),
            )
        ),
        Status.ENDED,
        [("separated", "3.h.viii")],
    ),
    (
        "rehire add while the roster still says separated",
        with_(
            workers=(
                worker(status=WorkerStatus.SEPARATED, separated_on=date(2026, 1, 10)),
                worker("R1"),
            ),
            requests=(
                request("REQ-1"),
                request(
                    "REQ-9", effective=date(2026, 3, 1), submitted=datetime(2026, 2, 20, tzinfo=LA)
                ),
            ),
        ),
        Status.SUSPENDED,
        [("separated", "3.h.viii")],
    ),
    (
        "requester separated, then rehired and designated again",
        with_(
            separations=(
                Separation(
                    "R1", "CBO1", datetime(2024, 6, 1, tzinfo=LA), "quit", src("separations", 2)
                ),
            ),
            requesters=(
                RequesterDesignation(
                    "R1", "WDA-04", "d", date(2025, 1, 1), None, src("requesters", 2)
                ),
            ),
        ),
        Status.ENTITLED,
        [],
    ),
    # every failing reason at once
    (
        "all reasons listed",
        with_(
            training=(),
            separations=(
                Separation(
                    "P1", "CBO1", datetime(2026, 11, 20, tzinfo=LA), "quit", src("separations", 2)
                ),
            ),
            contracts=(W1, contract("DS-1", DS, ends=date(2026, 6, 30))),
        ),
        Status.ENDED,
        [
            ("data_sharing_ended", "3.e.vii"),
            ("separated", "3.h.viii"),
            ("training_missing", "3.a.iii"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("feeds", "status", "expected"), [pytest.param(f, s, e, id=n) for n, f, s, e in CASES]
)
def test_policy_table(
    feeds: Callable[[], FeedSet], status: Status, expected: list[tuple[str, str]]
) -> None:
    d = decide(feeds())
    assert d.status is status, d.reasons
    assert codes(d) == sorted(expected)
    assert d.entitled is (status is Status.ENTITLED)


@pytest.mark.parametrize(
    ("at", "entitled"),
    [
        pytest.param(datetime(2026, 6, 30, 23, 59, tzinfo=LA), True, id="last-minute-of-ends_on"),
        pytest.param(datetime(2026, 7, 1, 0, 0, tzinfo=LA), False, id="first-instant-after"),
        pytest.param(
            datetime(2026, 7, 1, 6, 59, tzinfo=UTC), True, id="utc-instant-still-june-30-in-LA"
        ),
        pytest.param(datetime(2026, 7, 1, 7, 0, tzinfo=UTC), False, id="utc-instant-july-1-in-LA"),
    ],
)
def test_ends_on_is_inclusive_in_local_time(at: datetime, entitled: bool) -> None:
    feeds = with_(contracts=(W1, contract("DS-1", DS, ends=date(2026, 6, 30))))()
    assert decide(feeds, at).entitled is entitled


def test_dst_day_boundary() -> None:
    # 2026-03-08 is the spring-forward day in Los Angeles: the day is 23 hours long
    feeds = with_(contracts=(W1, contract("DS-1", DS, ends=date(2026, 3, 8))))()
    assert decide(feeds, datetime(2026, 3, 8, 23, 30, tzinfo=LA)).entitled
    assert not decide(feeds, datetime(2026, 3, 9, 0, 0, tzinfo=LA)).entitled
    assert not decide(feeds, datetime(2026, 3, 9, 8, 0, tzinfo=UTC)).entitled  # 01:00 PDT


def test_deadlines_and_evidence() -> None:
    sep_at = datetime(2026, 11, 20, 17, tzinfo=LA)
    feeds = with_(
        separations=(Separation("P1", "CBO1", sep_at, "quit", src("separations", 2)),),
        contracts=(W1, contract("DS-1", DS, ends=date(2026, 6, 30), line=7)),
    )()
    d = decide(feeds)
    by = {r.code: r for r in d.reasons}
    assert by["separated"].deadline == sep_at + timedelta(hours=24)
    assert by["separated"].evidenced
    ended = by["data_sharing_ended"]
    assert ended.since == datetime(2026, 7, 1, tzinfo=LA)
    assert ended.deadline == datetime(2026, 7, 1, 1, tzinfo=LA)
    assert ended.message == "data-sharing contract DS-1 ended 2026-06-30 (contracts.csv line 7)"
    assert d.deadline == ended.deadline  # the earliest


@pytest.mark.parametrize(
    ("days", "entitled", "flag"),
    [(13, True, "nda_within_grace"), (14, False, None), (15, False, None)],
)
def test_nda_grace(days: int, entitled: bool, flag: str | None) -> None:
    start = date(2026, 11, 1)
    feeds = with_(ndas=(), requests=(request("REQ-1", effective=start),))()
    at = datetime(2026, 11, 1, tzinfo=LA) + timedelta(days=days)
    d = decide(feeds, at)
    assert d.entitled is entitled
    assert [f.code for f in d.flags] == ([flag] if flag else [])
    if not entitled:
        (r,) = d.reasons
        assert r.code == "nda_missing"
        assert not r.evidenced  # inferred from an absent ndas.csv row: the guard may hold it
        assert r.relies_on == {FeedName.NDAS, FeedName.REQUESTS}
        assert r.deadline == datetime(2026, 11, 15, tzinfo=LA) + timedelta(hours=24)


def test_separation_feed_newest_wins_over_roster() -> None:
    feeds = with_(
        workers=(
            worker(status=WorkerStatus.SEPARATED, separated_on=date(2026, 11, 1)),
            worker("R1"),
        ),
        separations=(
            Separation(
                "P1", "CBO1", datetime(2026, 11, 10, tzinfo=LA), "quit", src("separations", 2)
            ),
            Separation(
                "P1", "CBO1", datetime(2026, 11, 20, tzinfo=LA), "quit", src("separations", 3)
            ),
        ),
    )()
    (r,) = decide(feeds).reasons
    assert r.since == datetime(2026, 11, 20, tzinfo=LA)
    assert r.source == src("separations", 3)


def test_rehire_after_separation_needs_a_new_add() -> None:
    sep = (
        Separation("P1", "CBO1", datetime(2026, 1, 15, tzinfo=LA), "quit", src("separations", 2)),
    )
    assert decide(with_(separations=sep)()).status is Status.ENDED
    rehired = with_(
        separations=sep,
        requests=(request("REQ-1"), request("REQ-9", effective=date(2026, 3, 1), line=3)),
    )()
    d = decide(rehired)
    assert d.entitled
    assert d.grant is not None and d.grant.request_id == "REQ-9"


@pytest.mark.parametrize(
    ("submitted", "late"),
    [
        (datetime(2026, 11, 23, 23, 0, tzinfo=LA), False),
        (datetime(2026, 11, 24, 1, 0, tzinfo=LA), True),
    ],
)
def test_late_notice_disable_is_flagged_and_carried_out(submitted: datetime, late: bool) -> None:
    feeds = with_(
        requests=(
            request("REQ-1"),
            request(
                "REQ-2",
                RequestAction.DISABLE,
                effective=date(2026, 11, 25),
                submitted=submitted,
                line=3,
            ),
        )
    )()
    d = decide(feeds)
    assert d.status is Status.ENDED
    assert ("late_notice_disable" in [f.code for f in d.flags]) is late


def test_disable_from_invalid_requester_still_disables() -> None:
    feeds = with_(
        requests=(
            request("REQ-1"),
            request(
                "REQ-2", RequestAction.DISABLE, effective=date(2026, 11, 1), requester="X9", line=3
            ),
        )
    )()
    d = decide(feeds)
    assert d.status is Status.ENDED
    assert "disable_invalid_requester" in [f.code for f in d.flags]


def test_change_updates_profile_and_invalid_change_is_ignored() -> None:
    feeds = with_(
        requests=(
            request("REQ-1"),
            request(
                "REQ-2",
                RequestAction.CHANGE,
                effective=date(2026, 10, 1),
                profile="supervisor",
                offices=("Kent",),
                certs=False,
                line=3,
            ),
            request(
                "REQ-3",
                RequestAction.CHANGE,
                effective=date(2026, 11, 1),
                profile="admin",
                requester="X9",
                line=4,
            ),
        )
    )()
    d = decide(feeds)
    assert (d.profile, d.offices) == ("supervisor", ("Kent",))
    assert [f.code for f in d.flags] == ["change_invalid_requester"]


def test_restore_on_cure_off_keeps_a_lapse() -> None:
    late_nda = with_(ndas=(Nda("P1", date(2026, 11, 20), src("ndas", 2)),))()
    assert decide(late_nda).entitled
    strict = dataclasses.replace(RULES, restore_on_cure=False)
    d = decide(late_nda, rules=strict)
    assert [r.code for r in d.reasons] == ["lapse_not_restored"]


@pytest.mark.parametrize(
    ("renewal", "expected"),
    [
        pytest.param({}, [], id="contiguous-renewal-keeps-access"),
        pytest.param({"starts": date(2026, 3, 1)}, ["lapse_not_restored"], id="gap"),
        pytest.param(
            {"approvals": (date(2026, 2, 1),) * 3},
            ["lapse_not_restored"],
            id="renewal-approved-a-month-late",
        ),
        pytest.param(
            {"approvals": (None, date(2026, 1, 1), date(2026, 1, 1))},
            ["data_sharing_ended", "data_sharing_unapproved"],
            id="unapproved-renewal-fails-outright",
        ),
    ],
)
def test_restore_on_cure_off_needs_unbroken_valid_contracts(
    renewal: dict[str, object], expected: list[str]
) -> None:
    """DS-1 ends 2025-12-31; DS-2 takes over from 2026-01-01. With restore_on_cure off,
    any span not covered by a *valid* data-sharing contract suspends access for good."""
    ds2: dict[str, object] = {"starts": date(2026, 1, 1), "line": 4} | renewal
    feeds = with_(
        contracts=(
            W1,
            contract("DS-1", DS, ends=date(2025, 12, 31), line=3),
            contract("DS-2", DS, **ds2),  # type: ignore[arg-type]
        )
    )()
    d = decide(feeds, rules=dataclasses.replace(RULES, restore_on_cure=False))
    assert sorted(r.code for r in d.reasons) == expected
    assert d.entitled is (expected == [])


def test_many_people_evaluate_in_one_pass() -> None:
    fs = base()
    people = tuple(dataclasses.replace(worker(), person_id=f"P{i}") for i in range(20000))
    reqs = tuple(
        dataclasses.replace(request("REQ-1"), request_id=f"R{i}", person_id=f"P{i}")
        for i in range(20000)
    )
    decisions = evaluate_all(dataclasses.replace(fs, workers=people, requests=reqs), AT, RULES)
    assert len(decisions) == 20000


def test_a_renewed_contract_sets_no_deadline_only_the_last_one_does() -> None:
    """DS-0 ended long ago and was renewed by DS-1, terminated today: the deadline is
    today's, not 2020's (an old contract would make every renewal an instant breach)."""
    feeds = with_(
        contracts=(
            W1,
            contract("DS-0", DS, starts=date(2019, 7, 1), ends=date(2020, 6, 30), line=3),
            contract("DS-1", DS, terminated=date(2026, 11, 25), line=4),
        )
    )()
    d = decide(feeds, datetime(2026, 11, 25, 0, 30, tzinfo=LA))
    by = {r.message.split()[2]: r for r in d.reasons}
    assert set(by) == {"DS-0", "DS-1"}  # both listed as evidence
    assert by["DS-0"].deadline is None
    assert d.deadline == datetime(2026, 11, 25, 1, 0, tzinfo=LA)


def test_separation_deadline_is_24_elapsed_hours_across_dst() -> None:
    """Last day worked 2026-10-31 (PDT); the clocks fall back on 2026-11-01."""
    feeds = with_(
        workers=(
            worker(status=WorkerStatus.SEPARATED, separated_on=date(2026, 10, 31)),
            worker("R1"),
        )
    )()
    (r,) = decide(feeds).reasons
    assert r.since == datetime(2026, 11, 1, 0, 0, tzinfo=LA)
    assert r.deadline is not None
    elapsed = r.deadline.astimezone(UTC) - r.since.astimezone(UTC)
    assert elapsed == timedelta(hours=24)  # adding in local wall time gives 25 h
    assert r.deadline == datetime(2026, 11, 1, 23, 0, tzinfo=LA)


def test_disable_superseded_by_a_later_add_is_flagged_for_review() -> None:
    feeds = with_(
        requests=(
            request("REQ-1"),
            request(
                "REQ-2", effective=date(2026, 1, 20), submitted=datetime(2026, 2, 10, tzinfo=LA)
            ),
            request(
                "REQ-3",
                RequestAction.DISABLE,
                effective=date(2026, 2, 5),
                submitted=datetime(2026, 2, 1, tzinfo=LA),
                line=4,
            ),
        )
    )()
    d = decide(feeds)
    assert d.entitled
    assert [f.code for f in d.flags] == ["disable_superseded"]


def test_an_invalid_requester_rests_on_the_designations_and_the_roster() -> None:
    """Not positive evidence: a designation that is absent may be a missing row."""
    (r,) = decide(with_(requests=(request("REQ-1", requester="X9"),))()).reasons
    assert r.code == "add_request_invalid_requester"
    assert not r.evidenced
    assert {FeedName.REQUESTERS, FeedName.WORKERS, FeedName.ORGANIZATIONS} <= r.feeds


def test_a_deadline_across_the_dst_change_reads_in_the_zone_offset_of_its_instant() -> None:
    """A separation stamped -07:00 (PDT) before the 1 November change: 24 h later is
    19:00 PST, printed -08:00 (it read 20:00-07:00, an hour off to a reader)."""
    sep_at = datetime.fromisoformat("2026-10-31T20:00:00-07:00")
    feeds = with_(
        separations=(Separation("P1", "CBO1", sep_at, "quit", src("separations", 2)),),
    )()
    d = decide(feeds)
    deadline = {r.code: r for r in d.reasons}["separated"].deadline
    assert deadline is not None
    assert deadline - sep_at == timedelta(hours=24)  # elapsed time
    assert deadline.isoformat() == "2026-11-01T19:00:00-08:00"


@pytest.mark.parametrize(
    ("at", "grace_hours", "entitled", "deadline", "severity"),
    [
        # the day before: no decision to act on yet
        (datetime(2026, 11, 24, 23, 59, 59, tzinfo=LA), 1.0, True, None, None),
        # seconds after midnight: the disable is due, the deadline is an hour away
        (
            datetime(2026, 11, 25, 0, 0, 5, tzinfo=LA),
            1.0,
            False,
            datetime(2026, 11, 25, 1, 0, tzinfo=LA),
            "warning",
        ),
        # still within the grace
        (
            datetime(2026, 11, 25, 0, 59, 59, tzinfo=LA),
            1.0,
            False,
            datetime(2026, 11, 25, 1, 0, tzinfo=LA),
            "warning",
        ),
        # the grace has run out: a breach
        (
            datetime(2026, 11, 25, 1, 0, tzinfo=LA),
            1.0,
            False,
            datetime(2026, 11, 25, 1, 0, tzinfo=LA),
            "breach",
        ),
        # the grace is configured (policy.contract_grace_hours)
        (
            datetime(2026, 11, 25, 1, 30, tzinfo=LA),
            2.0,
            False,
            datetime(2026, 11, 25, 2, 0, tzinfo=LA),
            "warning",
        ),
        # zero grace: due and late at the same instant
        (
            datetime(2026, 11, 25, 0, 0, tzinfo=LA),
            0.0,
            False,
            datetime(2026, 11, 25, 0, 0, tzinfo=LA),
            "breach",
        ),
    ],
)
def test_disable_request_deadline_is_effective_start_plus_contract_grace(
    at: datetime,
    grace_hours: float,
    entitled: bool,
    deadline: datetime | None,
    severity: str | None,
) -> None:
    """SPEC "Deadlines": a disable request's deadline is the start of its effective date
    plus the short contract grace; a disable carried out at its instant is no breach."""
    from connector.mapping import load_mapping
    from connector.model.accounts import Account
    from connector.reconcile import PlanInputs, build_plan

    feeds = with_(
        requests=(
            request("REQ-1"),
            request("REQ-2", RequestAction.DISABLE, effective=date(2026, 11, 25), line=3),
        )
    )()
    rules = dataclasses.replace(RULES, contract_grace=timedelta(hours=grace_hours))
    decisions = evaluate_all(feeds, at, rules)
    d = decisions["P1"]
    assert d.entitled is entitled
    assert d.deadline == deadline
    if deadline is None:
        return
    mapping = load_mapping(
        Path(__file__).resolve().parents[2] / "mappings" / "openldap-ppolicy.toml"
    )
    acc = Account("uid=p1,ou=people", "P1", "alee", True)
    plan = build_plan(
        PlanInputs(
            as_of=at,
            feeds=feeds,
            decisions=decisions,
            accounts=[acc],
            mapping=mapping,
            target="t",
            warning=timedelta(hours=4),
        )
    )
    assert [a.op.value for a in plan.actions if a.person_id == "P1"] == ["disable"]
    assert [(b.account_id, b.severity) for b in plan.breaches] == [(acc.account_id, severity)]


@pytest.mark.parametrize(
    ("submitted", "deadline"),
    [
        # submitted days ahead: the grace runs from the start of the effective date
        (datetime(2026, 11, 20, 9, 0, tzinfo=LA), datetime(2026, 11, 25, 1, 0, tzinfo=LA)),
        # submitted late on the effective date: it cannot be acted on before it exists
        (datetime(2026, 11, 25, 11, 30, tzinfo=LA), datetime(2026, 11, 25, 12, 30, tzinfo=LA)),
    ],
)
def test_disable_request_submitted_late_gets_its_grace_from_submission(
    submitted: datetime, deadline: datetime
) -> None:
    feeds = with_(
        requests=(
            request("REQ-1"),
            request(
                "REQ-2",
                RequestAction.DISABLE,
                effective=date(2026, 11, 25),
                submitted=submitted,
                line=3,
            ),
        )
    )()
    d = decide(feeds)
    assert d.status is Status.ENDED
    assert d.deadline == deadline
