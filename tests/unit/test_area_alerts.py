"""Area monitors behind the alert manager (connector.alerts.areas), on a real state
store with an injected clock: where an event is placed, the run digest cut per area,
closes to the areas of the open, no reminders but one daily digest per area, and the
area-only kind kept from the statewide sinks. The proof with a real slapd and SMTP
server is tests/integration/test_area_alerts_e2e.py."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connector.alerts import Alert
from connector.alerts.areas import AreaDeliverer, AreaIndex, event_areas
from connector.alerts.kinds import breach_closed, breach_open, deadline_warning, separation_disabled
from connector.alerts.manager import AlertManager
from connector.settings import EmailAlertSettings
from connector.state import StateStore
from tests.unit.test_alert_manager import Clock, Recorder

LA = ZoneInfo("America/Los_Angeles")
T0 = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)  # 09:00 in Los Angeles
INDEX = AreaIndex(
    current={
        "P1": "WDA-07",
        "P2": "WDA-07",
        "P3": "WDA-07",
        "P4": "WDA-07",
        "P5": "WDA-08",
        "M1": "WDA-08",
    },
    separated_from={"M1": frozenset({"WDA-07"})},
)


class Relay:
    """Keeps the messages the area deliverers would hand to the SMTP relay."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        self.sent.append(message)

    def to(self, wda: str) -> list[EmailMessage]:
        return [m for m in self.sent if m["X-Misync-Area"] == wda]

    def subjects(self, wda: str) -> list[str]:
        return [str(m["Subject"]) for m in self.to(wda)]


@pytest.fixture
def env(tmp_path: Path) -> Any:
    store = StateStore(tmp_path / "state.sqlite3")
    clock = Clock()
    statewide = Recorder("email")
    relay = Relay()
    email = EmailAlertSettings(host="127.0.0.1", to=["itsd@x.org"])
    areas = [
        AreaDeliverer(w, [f"{w.lower()}@x.org"], email, relay)
        for w in ("WDA-04", "WDA-07", "WDA-08")
    ]
    index = {"now": INDEX}
    mgr = AlertManager(
        store,
        [statewide, *areas],
        digest_after=2,
        clock=clock,
        tz=LA,
        placement=lambda feeds: index["now"],
    )
    mgr.observe(None)  # the placement here ignores the feeds
    yield mgr, statewide, relay, clock, store, index
    store.close()


def breach(pid: str, reasons: str = "wioa_contract_ended") -> Alert:
    account = f"uid={pid.lower()}"
    fields = {"account_id": account, "person_id": pid, "deadline": "2026-11-21", "reasons": reasons}
    return breach_open(account, "2026-11-21", reasons, fields)


@pytest.mark.parametrize(
    ("person", "reasons", "areas"),
    [
        ("P1", "wioa_contract_ended", ("WDA-07",)),
        ("M1", "wioa_contract_ended", ("WDA-08",)),  # not separation-driven: where they are
        ("M1", "separated", ("WDA-07", "WDA-08")),  # the area left, and the current one
        ("M1", "data_sharing_ended,separated", ("WDA-07", "WDA-08")),
        ("P9", "separated", ()),  # in no area (an orphan, a person in no feed)
    ],
)
def test_where_an_event_is_placed(person: str, reasons: str, areas: tuple[str, ...]) -> None:
    assert event_areas(breach(person, reasons), INDEX) == areas


def test_the_run_digest_is_cut_per_area(env: Any) -> None:
    mgr, statewide, relay, _, _, _ = env
    mgr.run_started("r1")
    for pid in ("P1", "P2", "P3", "P4", "P5"):  # digest_after = 2: P3, P4, P5 are digested
        mgr.send(breach(pid))
    mgr.run_finished("r1")
    assert [a.fields.get("alert_state") for a in statewide.got] == ["open", "open", "digest"]
    assert relay.subjects("WDA-07") == [
        "[misync] WDA-07 CRITICAL: breach.open uid=p1",
        "[misync] WDA-07 CRITICAL: breach.open uid=p2",
        "[misync] WDA-07 CRITICAL digest: 2 more breach.open",
    ]
    digest07 = relay.to("WDA-07")[2].get_content()
    assert "uid=p3, uid=p4" in digest07 and "uid=p5" not in digest07
    assert "misync report --run r1 --wda WDA-07" in digest07
    assert relay.subjects("WDA-08") == ["[misync] WDA-08 CRITICAL digest: 1 more breach.open"]
    digest08 = relay.to("WDA-08")[0].get_content()
    assert "uid=p5" in digest08 and "uid=p3" not in digest08 and "uid=p4" not in digest08
    assert relay.to("WDA-04") == []


def test_a_close_goes_to_the_areas_of_its_open(env: Any) -> None:
    mgr, _, relay, clock, _, index = env
    mgr.run_started("r1")
    mgr.send(breach("M1", "separated"))  # to WDA-07 (left) and WDA-08 (now)
    mgr.run_finished("r1")
    # the mover moves again (to WDA-04) before the breach is closed
    index["now"] = AreaIndex({**INDEX.current, "M1": "WDA-04"}, {})
    mgr.observe(None)
    clock.advance(hours=1)
    mgr.run_started("r2")
    fields = {"account_id": "uid=m1", "person_id": "M1", "state": "closed"}
    mgr.send(breach_closed("uid=m1", "disabled by run r2", fields))
    mgr.run_finished("r2")
    for wda in ("WDA-07", "WDA-08"):
        assert relay.subjects(wda) == [
            f"[misync] {wda} CRITICAL: breach.open uid=m1",
            f"[misync] {wda} INFO closed: breach.open uid=m1",
        ]
    assert relay.to("WDA-04") == []


def test_a_warning_then_its_breach_then_no_reminder_but_a_daily_digest(env: Any) -> None:
    mgr, statewide, relay, clock, store, _ = env
    fields = {"account_id": "uid=p5", "person_id": "P5", "deadline": "x", "reasons": "separated"}
    mgr.run_started("r1")
    mgr.send(deadline_warning("uid=p5", "x", "separated", "", fields))
    mgr.run_finished("r1")
    clock.advance(hours=3)
    mgr.run_started("r2")
    mgr.send(breach("P5", "separated"))  # the warning closes silently
    mgr.run_finished("r2")
    assert relay.subjects("WDA-08") == [
        "[misync] WDA-08 WARNING: deadline.warning uid=p5",
        "[misync] WDA-08 CRITICAL: breach.open uid=p5",
    ]
    n = len(relay.sent)
    clock.now = datetime(2026, 11, 26, 14, 59, tzinfo=UTC)  # 06:59 the next morning
    mgr.remind()
    assert any(a.fields.get("alert_state") == "reminder" for a in statewide.got)
    assert len(relay.sent) == n  # no reminder to the area, no digest before 07:00
    clock.now = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # 07:00
    assert mgr.area_digests() == 1
    (daily,) = relay.sent[n:]
    assert str(daily["Subject"]) == (
        "[misync] WDA-08 daily digest 2026-11-26: 1 breach and 0 deadline warnings open"
    )
    assert "breach.open uid=p5 (person P5" in daily.get_content()
    assert "misync report --wda WDA-08" in daily.get_content()
    clock.advance(hours=5)
    mgr.remind()  # the same day: no second digest
    assert len(relay.sent) == n + 1
    clock.now = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)  # the day after
    mgr.remind()
    assert len(relay.sent) == n + 2
    assert store.meta("areas.daily_digest") == "2026-11-27"


def test_a_separation_carried_out_goes_to_areas_only(env: Any) -> None:
    mgr, statewide, relay, _, _, _ = env
    mgr.run_started("r1")
    mgr.send(separation_disabled("uid=m1", "M1", "separated", "r1", "2026-11-25T09:00-08:00"))
    mgr.run_finished("r1")
    assert statewide.got == []
    assert relay.subjects("WDA-07") == ["[misync] WDA-07 INFO: separation.disabled uid=m1"]
    assert relay.subjects("WDA-08") == ["[misync] WDA-08 INFO: separation.disabled uid=m1"]
    body = relay.to("WDA-07")[0].get_content()
    assert "misync report --run r1 --wda WDA-07" in body and "person_id: M1" in body


def test_an_area_that_missed_the_open_gets_it_at_the_reminder_pass(env: Any) -> None:
    from connector.alerts.email import DeliveryError

    mgr, statewide, relay, clock, store, _ = env
    real = relay.send

    def down(message: EmailMessage) -> None:
        raise DeliveryError("relay down")

    relay.send = down
    mgr.run_started("r1")
    mgr.send(breach("P5"))
    mgr.run_finished("r1")
    assert relay.sent == [] and len(statewide.got) == 1
    (row,) = store.open_alerts()
    assert row.undelivered == ("area:WDA-08",)
    relay.send = real
    clock.advance(hours=5)  # a reminder is due: the statewide sink gets it, the area the open
    mgr.remind()
    assert [a.fields["alert_state"] for a in statewide.got] == ["open", "reminder"]
    assert relay.subjects("WDA-08") == [
        "[misync] WDA-08 CRITICAL: breach.open uid=p5",
        # 14:00 in Los Angeles: the day's digest was due too
        "[misync] WDA-08 daily digest 2026-11-25: 1 breach and 0 deadline warnings open",
    ]
    (row,) = store.open_alerts()
    assert row.undelivered == ()


def test_a_large_area_digest_counts_all_and_names_the_first_fifty(env: Any) -> None:
    mgr, statewide, relay, _, _, index = env
    people = {f"Q{n:03}": "WDA-07" for n in range(60)}
    index["now"] = AreaIndex(people, {})
    mgr.observe(None)
    mgr.run_started("r1")
    for pid in people:
        mgr.send(breach(pid))
    mgr.run_finished("r1")
    digest = relay.to("WDA-07")[-1]
    assert str(digest["Subject"]) == "[misync] WDA-07 CRITICAL digest: 58 more breach.open"
    body = digest.get_content()
    assert "uid=q002" in body and "uid=q051" in body and "uid=q052" not in body
    assert "count: 58" in body and ", ..." in body
    (statewide_digest,) = [a for a in statewide.got if a.fields["alert_state"] == "digest"]
    assert statewide_digest.fields["by_area_count"] == {"WDA-07": 58}
    assert len(statewide_digest.fields["by_area"]["WDA-07"]) == 50
