"""Which area an item belongs to (connector.reconcile.areas), table by table: rejected
rows keep the columns that say their area, every kind of item is placed, an area's page
counts the area and words held reasons for the board."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from connector.model.decisions import Decision, Reason, Status
from connector.model.feeds import FeedHealth, FeedName, FeedSet, FeedState, Rejection
from connector.model.plan import Action, Breach, HeldAction, Op, Plan
from connector.model.records import (
    Organization,
    OrgKind,
    Separation,
    SourceRef,
    Training,
    Worker,
    WorkerStatus,
)
from connector.reconcile import plan_from_json, plan_to_json, seal
from connector.reconcile.areas import areas_of, known_areas, scope_to_wda
from connector.report import Report, render_html
from tests.unit.test_feeds import DEMO, read

AS_OF = datetime(2026, 11, 25, 17, tzinfo=UTC)


# --- the reader keeps a rejected row's area columns ---------------------------------


@pytest.mark.parametrize(
    ("file", "row", "org", "wda"),
    [
        pytest.param(
            "workers.csv", "P9,CBO1,A,B,not-an-email,O,S,active,\n", "CBO1", "", id="roster"
        ),
        pytest.param("separations.csv", "P9,CBO2,not-a-date,quit\n", "CBO2", "", id="separation"),
        pytest.param("organizations.csv", "CBO9,N,no-such-kind,WDA-07\n", "", "WDA-07", id="org"),
        pytest.param("requesters.csv", "R9,WDA-07,Dir,not-a-date,\n", "", "WDA-07", id="requester"),
        pytest.param("training.csv", "P1001,MIS Basic,not-a-date\n", "", "", id="training"),
        pytest.param(
            "workers.csv", "P9,CBO1,A,B,not-an-email,O,S,active,", "CBO1", "", id="unterminated"
        ),
        pytest.param("workers.csv", "P9,CBO1,A,B\n", "", "", id="wrong-field-count"),
    ],
)
def test_a_rejected_row_keeps_the_columns_that_say_its_area(
    tmp_path: Path, file: str, row: str, org: str, wda: str
) -> None:
    feeds = tmp_path / "feeds"
    shutil.copytree(DEMO, feeds)
    with (feeds / file).open("a", encoding="utf-8") as f:
        f.write(row)
    rejected = [r for r in read(feeds).rejected if r.file == file and r.value != "2025-13-01"]
    assert rejected, file
    assert {(r.org, r.wda) for r in rejected} == {(org, wda)}


def test_duplicate_rows_each_keep_their_own_organization(tmp_path: Path) -> None:
    feeds = tmp_path / "feeds"
    shutil.copytree(DEMO, feeds)
    with (feeds / "workers.csv").open("a", encoding="utf-8") as f:
        f.write("P1001,CBO2,Ana,Ortiz,a@x.org,O,S,active,\n")
    dup = [r for r in read(feeds).rejected if r.key == "P1001"]
    assert {(r.line, r.org) for r in dup} == {(2, "LWDB04"), (14, "CBO2")}


def test_plan_files_and_checksums_do_not_carry_the_area_columns() -> None:
    """A plan's checksum is what it always was (a replayed 0.3.0 run still matches)."""
    bare = Rejection("workers", "workers.csv", 3, "email", "x", "bad", key="P1")
    placed = Rejection("workers", "workers.csv", 3, "email", "x", "bad", key="P1", org="O7")
    one = seal(Plan(AS_OF, "t", (), rejected=(bare,)))
    two = seal(Plan(AS_OF, "t", (), rejected=(placed,)))
    assert one.checksum == two.checksum
    assert '"org"' not in plan_to_json(two)
    assert plan_from_json(plan_to_json(two)).rejected == (bare,)


# --- placement of every kind of item -------------------------------------------------


def _src(file: str, line: int) -> SourceRef:
    return SourceRef(file.removesuffix(".csv"), file, line)


def _org(org_id: str, wda: str, line: int) -> Organization:
    return Organization(org_id, f"Org {org_id}", OrgKind.LWDB, wda, _src("organizations.csv", line))


def _worker(pid: str, org: str, line: int) -> Worker:
    return Worker(
        pid, org, "Given", pid, f"{pid}@x.org", "", "", WorkerStatus.ACTIVE, None,
        _src("workers.csv", line),
    )  # fmt: skip


SEPARATED = Reason("separated", "3.h.viii", "separated", source=_src("separations.csv", 2))
FEEDS = FeedSet(
    organizations=(_org("O7", "WDA7", 2), _org("O8", "WDA8", 3), _org("O9", "WDA9", 4)),
    workers=(_worker("P7", "O7", 2), _worker("MOVER", "O8", 3), _worker("P9", "O9", 4),
             _worker("R8", "O8", 5)),
    separations=(
        Separation("MOVER", "O7", AS_OF - timedelta(days=2), "transfer", _src("separations.csv", 2)),
    ),
    training=(Training("P7", "MIS Basic", date(2025, 1, 1), _src("training.csv", 2)),),
    rejected=(
        Rejection("workers", "workers.csv", 6, "email", "x", "bad", key="NEW7", org="O7"),
        Rejection("workers", "workers.csv", 7, "email", "x", "bad", key="NOBODY", org="NOPE"),
        Rejection("separations", "separations.csv", 3, "separated_at", "x", "bad", key="P9", org="O8"),
        Rejection("organizations", "organizations.csv", 5, "kind", "x", "bad", key="O10", wda="WDA9"),
        Rejection("contracts", "contracts.csv", 2, "starts_on", "x", "bad", key="O9"),
        Rejection("requesters", "requesters.csv", 2, "starts_on", "x", "bad", key="R8", wda="*"),
        Rejection("requesters", "requesters.csv", 3, "starts_on", "x", "bad", key="R8", wda="WDA7"),
        Rejection("training", "training.csv", 3, "completed_on", "x", "bad", key="P7"),
        Rejection("training", "training.csv", 4, "completed_on", "x", "bad", key=""),
    ),
)  # fmt: skip
AREAS = areas_of(FEEDS)


def _act(pid: str | None, *reasons: Reason, op: Op = Op.DISABLE) -> Action:
    return Action(op, pid, f"uid={pid}", pid, (), reasons, None)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param(_act("P7"), {"WDA7"}, id="action-of-a-person"),
        pytest.param(_act("MOVER", SEPARATED), {"WDA7", "WDA8"}, id="mover-disable"),
        pytest.param(_act("MOVER", op=Op.UPDATE), {"WDA8"}, id="mover-other-item"),
        pytest.param(_act("P9", SEPARATED), {"WDA9"}, id="a-cited-line-now-someone-elses"),
        pytest.param(_act(None), set(), id="orphan"),
        pytest.param(_act("GHOST"), set(), id="person-in-no-feed"),
        pytest.param(_act("NEW7"), {"WDA7"}, id="person-only-in-a-rejected-roster-row"),
        pytest.param(
            Breach("MOVER", "uid=m", AS_OF, "breach", (SEPARATED,)), {"WDA7", "WDA8"}, id="breach"
        ),
        pytest.param(Breach("P9", "uid=p9", AS_OF, "warning", ()), {"WDA9"}, id="warning"),
        pytest.param(
            HeldAction(_act("P9"), "rejected_row", "m"), {"WDA9", "WDA8"}, id="held-by-a-row"
        ),
        pytest.param(
            HeldAction(_act("P9"), "feed_unhealthy", "m"), {"WDA9", "WDA8"}, id="feed-held"
        ),
        pytest.param(HeldAction(_act("P9"), "mass_disable_guard", "m"), {"WDA9"}, id="guard-held"),
        pytest.param(
            Decision("MOVER", AS_OF, Status.ENDED, (SEPARATED,)), {"WDA7", "WDA8"}, id="decision"
        ),
    ],
)
def test_every_kind_of_item_is_placed(item: object, expected: set[str]) -> None:
    if isinstance(item, HeldAction):
        got = AREAS.of_held(item)
    elif isinstance(item, Breach):
        got = AREAS.of_breach(item)
    elif isinstance(item, Decision):
        got = AREAS.of_decision(item)
    else:
        assert isinstance(item, Action)
        got = AREAS.of_action(item)
    assert got == expected


@pytest.mark.parametrize(
    ("file", "line", "expected"),
    [
        pytest.param("workers.csv", 6, "WDA7", id="roster-row-by-its-org"),
        pytest.param("workers.csv", 7, None, id="roster-row-of-no-known-org"),
        pytest.param("separations.csv", 3, "WDA8", id="separation-by-its-org-not-the-person"),
        pytest.param("organizations.csv", 5, "WDA9", id="org-row-by-its-wda"),
        pytest.param("contracts.csv", 2, "WDA9", id="contract-by-its-org"),
        pytest.param("requesters.csv", 2, "WDA8", id="central-designation-by-the-person"),
        pytest.param("requesters.csv", 3, "WDA7", id="designation-by-its-wda"),
        pytest.param("training.csv", 3, "WDA7", id="training-by-its-person"),
        pytest.param("training.csv", 4, None, id="no-subject"),
    ],
)
def test_a_rejected_row_is_placed_by_its_own_columns(
    file: str, line: int, expected: str | None
) -> None:
    (r,) = [r for r in FEEDS.rejected if (r.file, r.line) == (file, line)]
    assert AREAS.of_rejection(r) == expected
    # as a plan file or the trail gives it back (no area columns): the same answer
    bare = Rejection(r.feed, r.file, r.line, r.column, r.value, r.reason, key=r.key)
    assert AREAS.of_rejection(bare) == expected


def test_a_plan_files_row_is_not_placed_by_another_row_now_at_its_line() -> None:
    """A reviewed plan is placed by today's feeds: workers.csv line 6 is now NEW7's
    (WDA7); the plan's row at that line was about someone else and stays statewide."""
    old = Rejection("workers", "workers.csv", 6, "email", "x", "bad", key="SOMEONE")
    assert AREAS.of_rejection(old) is None


@pytest.mark.parametrize(
    ("person", "expected"),
    [("MOVER", {"WDA7", "WDA8"}), ("P7", {"WDA7"}), ("GHOST", set()), (None, set())],
)
def test_the_areas_of_a_persons_separation(person: str | None, expected: set[str]) -> None:
    """What an alert router asks when it knows only the person: the area left too."""
    assert AREAS.of_separated_person(person) == expected


def test_known_areas_include_a_rejected_organization_rows_area() -> None:
    assert known_areas(AREAS) == ["WDA7", "WDA8", "WDA9"]


# --- an area's page: its counts, its words -------------------------------------------


def _health(
    feed: FeedName, rows: int, rejected: int, state: FeedState = FeedState.OK
) -> FeedHealth:
    return FeedHealth(feed, f"{feed.value}.csv", state, rows, rejected, "44 rows, down from 90")


def test_an_area_page_counts_the_area() -> None:
    plan = Plan(
        AS_OF,
        "t",
        (_act("P7"), _act("MOVER", SEPARATED), _act("P9"), _act(None)),
        rejected=FEEDS.rejected,
        feeds=(_health(FeedName.WORKERS, 4, 2), _health(FeedName.TRAINING, 1, 2)),
    )
    decisions = {
        "P7": Decision("P7", AS_OF, Status.ENTITLED),
        "MOVER": Decision("MOVER", AS_OF, Status.ENDED, (SEPARATED,)),
        "P9": Decision("P9", AS_OF, Status.ENTITLED),
    }
    wda7 = scope_to_wda(plan, "WDA7", AREAS, decisions)
    assert [a.person_id for a in wda7.actions] == ["P7", "MOVER"]
    assert wda7.decisions == {"entitled": 1, "ended": 1}
    workers, training = wda7.feeds
    assert (workers.rows, workers.rejected) == (1, 1)  # P7's row; NEW7's rejected row
    assert (training.rows, training.rejected) == (1, 1)
    assert {(r.file, r.line) for r in wda7.rejected} == {
        ("workers.csv", 6), ("requesters.csv", 3), ("training.csv", 3)
    }  # fmt: skip


GUARD = "4 disables without positive evidence (13.8% of 29 enabled accounts) exceed the guard"


@pytest.mark.parametrize(
    ("code", "message", "feeds", "says", "never"),
    [
        pytest.param(
            "feed_unhealthy",
            "every reason for this disable rests on an unusable feed (workers)",
            (_health(FeedName.WORKERS, 4, 0, FeedState.STALE),),
            ["workers.csv (stale)", "ITSD", "owner fix the file"],
            ["correct the row", "44 rows"],
            id="unusable-file",
        ),
        pytest.param(
            "rejected_row",
            "rejected row(s) training.csv line 3 may end P7's access; correct the row(s)",
            (),
            ["training.csv line 3", "corrects it"],
            ["correct the row(s)"],
            id="rejected-row",
        ),
        pytest.param("mass_disable_guard", GUARD, (), ["statewide", "ITSD"], ["13.8", "29"],
                     id="guard"),
        pytest.param("quarantined", "q", (), ["ITSD"], [], id="quarantined"),
        pytest.param("ambiguous_correlation", "a", (), ["ITSD"], [], id="ambiguous"),
        pytest.param("disabled_outside_misync", "d", (), ["security administrator"], [],
                     id="locked-outside"),
    ],
)  # fmt: skip
def test_held_reasons_are_worded_for_the_board(
    code: str, message: str, feeds: tuple[FeedHealth, ...], says: list[str], never: list[str]
) -> None:
    held = HeldAction(_act("P7"), code, message)
    plan = Plan(AS_OF, "t", (), held=(held,), rejected=FEEDS.rejected, feeds=feeds)
    scoped = scope_to_wda(plan, "WDA7", AREAS)
    page = render_html(Report(scoped, UTC, AS_OF, wda="WDA7", areas=AREAS))
    assert "Who acts" in page
    for s in says:
        assert s in page, s
    for s in never:
        assert s not in page, s
    # the statewide page (ITSD) keeps the planner's own words and numbers
    whole = render_html(Report(plan, UTC, AS_OF, areas=AREAS))
    assert message.replace("'", "&#x27;") in whole


def test_an_area_page_names_its_people_and_the_organization_a_mover_left() -> None:
    plan = Plan(AS_OF, "t", (_act("MOVER", SEPARATED),))
    page = render_html(
        Report(scope_to_wda(plan, "WDA7", AREAS), UTC, AS_OF, wda="WDA7", areas=AREAS)
    )
    assert "Given MOVER" in page and "Org O8 (O8)" in page
    assert "separated from Org O7 (O7)" in page
    assert 'id="statewide-note"' in page
