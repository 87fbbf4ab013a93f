"""The HTML report as a page: escaping everywhere, large plans collapsed, WDA scoping."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from connector.model.accounts import Change, ChangeKind
from connector.model.decisions import Reason
from connector.model.feeds import FeedHealth, FeedName, FeedState, Rejection
from connector.model.plan import Action, Breach, HeldAction, Op, Plan
from connector.report import Areas, Report, render_html, scope_to_wda
from connector.report.html import OPEN_GROUP_MAX

TZ = ZoneInfo("America/Los_Angeles")
AS_OF = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
EVIL = '<img src=x onerror="alert(1)">'


def _action(i: int, op: Op = Op.CREATE, text: str = "x") -> Action:
    return Action(
        op=op,
        person_id=f"P{i}",
        account_id=None if op is Op.CREATE else f"uid=u{i},ou=people",
        logon_id=f"u{i}",
        changes=(Change(ChangeKind.ATTRIBUTE, "cn", (), (text,)),),
        reasons=(Reason("entitled", "3.a", f"grant for {text}"),),
        before=None,
    )


def test_every_value_is_escaped() -> None:
    plan = Plan(
        as_of=AS_OF,
        target=EVIL,
        actions=(_action(1, text=EVIL),),
        held=(HeldAction(_action(2, Op.DISABLE, EVIL), "feed_unhealthy", EVIL),),
        breaches=(Breach(EVIL, EVIL, AS_OF, "breach", (Reason(EVIL, EVIL, EVIL),)),),
        rejected=(Rejection("workers", EVIL, 3, EVIL, EVIL, EVIL, key=EVIL),),
        feeds=(FeedHealth(FeedName.WORKERS, EVIL, FeedState.UNREADABLE, 0, 1, EVIL),),
        decisions={EVIL: 1},
        checksum=EVIL,
    )
    page = render_html(Report(plan, TZ, AS_OF, title=EVIL, wda=EVIL, notes=(EVIL,)))
    assert "<img" not in page
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") >= 15
    assert len(re.findall(r"<script", page)) == 1


def test_ten_thousand_actions_stay_collapsed() -> None:
    actions = tuple(_action(i) for i in range(10_000)) + tuple(
        _action(i, Op.UPDATE) for i in range(10_000, 10_000 + OPEN_GROUP_MAX)
    )
    page = render_html(Report(Plan(as_of=AS_OF, target="t", actions=actions), TZ, AS_OF))
    groups = {g: bool(o) for o, g in re.findall(r'<details (open )?data-group="(\w+)"', page)}
    assert groups == {"update": True, "create": False}  # the big group starts closed
    assert page.count("<tr data-row>") == 10_000 + OPEN_GROUP_MAX
    assert len(page) < 12_000_000


def test_deadlines_overdue_first_in_policy_time_zone() -> None:
    late = Breach("P1", "a1", AS_OF - timedelta(days=2, hours=3), "breach", ())
    later = Breach("P2", "a2", AS_OF - timedelta(hours=1), "breach", ())
    soon = Breach("P3", "a3", AS_OF + timedelta(hours=2), "warning", ())
    page = render_html(Report(Plan(AS_OF, "t", (), breaches=(soon, later, late)), TZ, AS_OF))
    rows = re.findall(r'data-severity="(\w+)">.*?<td>(P\d)</td>', page)
    assert rows == [("breach", "P1"), ("breach", "P2"), ("warning", "P3")]
    assert "overdue by 2 d 3 h" in page and "due in 2 h 0 min" in page
    # 2026-11-23T14:00Z is 06:00 PST (-08:00) in the policy zone
    assert "2026-11-23T06:00:00-08:00" in page  # to the second (issue 13.12)
    assert "No changes" not in page


def test_scope_keeps_one_area_only() -> None:
    areas = Areas(people={"P1": "W1", "P2": "W2"}, orgs={"O1": "W1", "O2": "W2"})
    plan = Plan(
        AS_OF,
        "t",
        (_action(1), _action(2), _action(3)),
        rejected=(
            Rejection("workers", "w.csv", 2, None, None, "bad", key="P1"),
            Rejection("workers", "w.csv", 3, None, None, "bad", key="P2"),
            Rejection("contracts", "c.csv", 4, None, None, "bad", key="O2"),
            Rejection("training", "t.csv", 5, None, None, "bad", key=""),
        ),
    )
    w2 = scope_to_wda(plan, "W2", areas)
    assert [a.person_id for a in w2.actions] == ["P2"]
    assert [r.line for r in w2.rejected] == [3, 4]
