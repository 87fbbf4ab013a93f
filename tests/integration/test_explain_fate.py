"""``misync explain`` says what will happen (issue 13 item 9): the plan's action or why
it is held, each deadline's state, and any id the plan prints, on the demo world against
a real slapd. The demo runs with ``apply.reenable_external_disables = true``; here it is
the production default (false), so P1007's enable is held as the issue describes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.test_end_to_end import demo as demo
from tests.integration.test_end_to_end import pinned_now as pinned_now
from tests.integration.test_end_to_end import run

pytestmark = pytest.mark.slapd


@pytest.fixture
def world(demo: dict[str, Any]) -> dict[str, Any]:
    cfg = demo["config"]
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(
        text.replace("reenable_external_disables = true", "reenable_external_disables = false"),
        encoding="utf-8",
    )
    return demo


# as of the pinned instant, 2026-11-25T17:00:00Z = 09:00:00-08:00 in policy.timezone
CASES = [
    pytest.param(
        "P1007",
        [
            "person P1007: ENTITLED as of 2026-11-25T09:00:00-08:00",
            "  account: uid=gkim,{people}, disabled",
            "  plan: ENABLE uid=gkim,{people} is HELD (disabled_outside_misync), not carried "
            "out: uid=gkim,{people} is disabled and misync did not disable it",
        ],
        id="P1007-held-enable",
    ),
    pytest.param(
        "P1004",
        [
            "        deadline 2026-11-22T00:00:00-08:00: overdue by 3 d 9 h (BREACH: the account "
            "is still enabled)",
            "  account: uid=dpatel,{people}, enabled",
            "  plan: DISABLE uid=dpatel,{people}",
            "      because 3.h.viii: separated 2026-11-21T00:00:00-08:00",
        ],
        id="P1004-overdue-disable",
    ),
    pytest.param(
        "P1003",
        [
            "        deadline 2026-07-01T01:00:00-07:00: overdue by 147 d 9 h (BREACH",
            "  plan: DISABLE uid=cnguyen,{people}",
        ],
        id="P1003-overdue-by-months",
    ),
    pytest.param(
        "p1001",  # any spelling the directory matches
        ["person P1001: ENTITLED", "  account: none in the target", "  plan: CREATE new aortiz"],
        id="P1001-create",
    ),
    pytest.param(
        "aortiz",  # the logon ID the plan gives P1001's new account
        ["person P1001: ENTITLED", "  plan: CREATE new aortiz"],
        id="logon-id-of-a-planned-create",
    ),
    pytest.param(
        "P1006",
        ["  account: none in the target", "  plan: nothing to do (no account, and none to"],
        id="P1006-nothing",
    ),
    pytest.param(
        "P9999",  # printed by the plan (employeeNumber=P9999) though no feed has it
        [
            "account uid=oldtemp,{people} (enabled), logon ID oldtemp, employeeNumber=P9999",
            "an orphan",
            "  plan: disable in the plan",
        ],
        id="P9999-orphan-by-correlation",
    ),
    pytest.param(
        "uid=hruiz,{people}",  # an account id, as the plan prints it
        ["person P1008:", "overdue by 16 h 0 min (BREACH", "  plan: DISABLE uid=hruiz,{people}"],
        id="account-id-of-a-person",
    ),
]


@pytest.mark.parametrize(("subject", "lines"), CASES)
def test_explain_says_what_will_happen(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], subject: str, lines: list[str]
) -> None:
    people = world["scope"].people_dn
    code, out = run(world, "explain", subject.format(people=people), capsys=capsys)
    assert code == 0, world["last_err"]
    for line in lines:
        assert line.format(people=people) in out, out


def test_explain_json_has_the_plan_and_the_deadline_state(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(world, "explain", "P1007", "--format", "json", capsys=capsys)
    assert code == 0
    body = json.loads(out)
    assert body["as_of"] == "2026-11-25T09:00:00-08:00"
    assert body["plan"]["actions"] == []
    (held,) = body["plan"]["held"]
    assert (held["op"], held["code"]) == ("enable", "disabled_outside_misync")
    code, out = run(world, "explain", "P1004", "--format", "json", capsys=capsys)
    body = json.loads(out)
    assert [a["op"] for a in body["plan"]["actions"]] == ["disable"]
    (separated,) = [r for r in body["reasons"] if r["code"] == "separated"]
    assert separated["deadline"] == "2026-11-22T00:00:00-08:00"
    assert separated["deadline_state"] == {"state": "breach", "words": "overdue by 3 d 9 h"}


def test_explain_after_the_disable_says_the_deadline_is_behind(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(world, "apply", capsys=capsys)[0] == 4  # P1007 held
    code, out = run(world, "explain", "P1004", capsys=capsys)
    assert code == 0
    assert "deadline 2026-11-22T00:00:00-08:00: passed 3 d 9 h ago; no enabled account" in out
    assert "BREACH" not in out
    assert "  plan: nothing to do (the account is as the decision wants it)" in out
