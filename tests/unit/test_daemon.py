"""The daemon's pure parts, table-driven: the next instants where access ends, the feed
watcher's settle rule, the notify protocol's datagrams, the cron check."""

from __future__ import annotations

import os
import socket
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connector.daemon import FeedWatcher, SystemdNotifier, check_schedule
from connector.model import (
    AccessRequest,
    Contract,
    ContractType,
    FeedSet,
    Organization,
    OrgKind,
    RequestAction,
    RequestStatus,
    Separation,
    SourceRef,
    Worker,
    WorkerStatus,
)
from connector.policy import PolicyRules, evaluate_all
from connector.policy.instants import next_instants
from connector.settings import ConfigError, DaemonSettings

LA = ZoneInfo("America/Los_Angeles")
RULES = PolicyRules(tz=LA)
AT = datetime(2026, 11, 25, 12, 0, tzinfo=LA)


def src(feed: str) -> SourceRef:
    return SourceRef(feed, f"{feed}.csv", 2)


def worker(pid: str, status: WorkerStatus = WorkerStatus.ACTIVE, sep: date | None = None) -> Worker:
    return Worker(pid, "CBO1", "A", "B", "a@x.org", "Renton", "S", status, sep, src("workers"))


def disable(pid: str, eff: date, submitted: datetime | None = None) -> AccessRequest:
    sub = submitted or datetime(2026, 11, 1, tzinfo=LA)
    return AccessRequest(
        f"D-{pid}",
        RequestAction.DISABLE,
        pid,
        "R1",
        sub,
        eff,
        RequestStatus.APPROVED,
        "",
        (),
        False,
        False,
        False,
        "S",
        src("requests"),
    )


def contract(ends: date | None = None, terminated: date | None = None) -> Contract:
    return Contract(
        "DS-1",
        "CBO1",
        ContractType.DATA_SHARING,
        "lwdb",
        "case",
        date(2025, 1, 1),
        date(2025, 1, 1),
        ends,
        terminated,
        date(2025, 1, 1),
        date(2025, 1, 1),
        date(2025, 1, 1),
        src("contracts"),
    )


ORG = Organization("CBO1", "Goodwill", OrgKind.WIOA_CONTRACTOR, "WDA-04", src("organizations"))

CASES = [
    ("nothing dated", FeedSet(workers=(worker("P1"),)), []),
    (
        "a disable effective tomorrow: its day start",
        FeedSet(workers=(worker("P1"),), requests=(disable("P1", date(2026, 11, 26)),)),
        [(datetime(2026, 11, 26, 0, 0, tzinfo=LA), {"P1"})],
    ),
    (
        "a disable effective today but submitted later: its submission",
        FeedSet(
            workers=(worker("P1"),),
            requests=(disable("P1", date(2026, 11, 25), datetime(2026, 11, 25, 15, tzinfo=LA)),),
        ),
        [(datetime(2026, 11, 25, 15, 0, tzinfo=LA), {"P1"})],
    ),
    (
        "a disable already in effect: nothing ahead",
        FeedSet(workers=(worker("P1"),), requests=(disable("P1", date(2026, 11, 20)),)),
        [],
    ),
    (
        "a separation later today",
        FeedSet(
            workers=(worker("P1"),),
            separations=(
                Separation("P1", "CBO1", datetime(2026, 11, 25, 17, tzinfo=LA), "quit", src("s")),
            ),
        ),
        [(datetime(2026, 11, 25, 17, 0, tzinfo=LA), {"P1"})],
    ),
    (
        "a roster separation today: the end of the day",
        FeedSet(workers=(worker("P1", WorkerStatus.SEPARATED, date(2026, 11, 25)),)),
        [(datetime(2026, 11, 26, 0, 0, tzinfo=LA), {"P1"})],
    ),
    (
        "a contract ending: everyone of its organization, the day after ends_on",
        FeedSet(
            organizations=(ORG,),
            workers=(worker("P1"), worker("P2")),
            contracts=(contract(ends=date(2026, 11, 30)),),
        ),
        [(datetime(2026, 12, 1, 0, 0, tzinfo=LA), {"P1", "P2"})],
    ),
    (
        "a contract terminated: the start of terminated_on",
        FeedSet(
            organizations=(ORG,),
            workers=(worker("P1"),),
            contracts=(contract(ends=date(2027, 6, 30), terminated=date(2026, 12, 10)),),
        ),
        [(datetime(2026, 12, 10, 0, 0, tzinfo=LA), {"P1"})],
    ),
    (
        "in order, earliest first",
        FeedSet(
            workers=(worker("P1"), worker("P2")),
            requests=(disable("P1", date(2026, 12, 2)), disable("P2", date(2026, 11, 27))),
        ),
        [
            (datetime(2026, 11, 27, 0, 0, tzinfo=LA), {"P2"}),
            (datetime(2026, 12, 2, 0, 0, tzinfo=LA), {"P1"}),
        ],
    ),
]


@pytest.mark.parametrize(("name", "feeds", "expected"), CASES, ids=[c[0] for c in CASES])
def test_next_instants(
    name: str, feeds: FeedSet, expected: list[tuple[datetime, set[str]]]
) -> None:
    decisions = evaluate_all(feeds, AT, RULES)
    got = next_instants(feeds, decisions, AT, RULES)
    assert [(d.at, set(d.people)) for d in got] == expected


def test_a_disable_carried_out_at_its_instant_is_decided_there() -> None:
    """At the instant next_instants gives, the policy has ended the grant (not a second
    later), so a timed run at that instant disables."""
    from connector.policy import evaluate_all as ev

    feeds = FeedSet(workers=(worker("P1"),), requests=(disable("P1", date(2026, 11, 26)),))
    (due,) = next_instants(feeds, ev(feeds, AT, RULES), AT, RULES)
    before = ev(feeds, due.at - timedelta(seconds=1), RULES)["P1"]
    at = ev(feeds, due.at, RULES)["P1"]
    assert "disabled_by_request" not in {r.code for r in before.reasons}
    assert "disabled_by_request" in {r.code for r in at.reasons}


def test_feed_watcher_reports_a_settled_change_once(tmp_path: Path) -> None:
    f = tmp_path / "separations.csv"
    f.write_text("a\n")
    w = FeedWatcher([f, tmp_path / "missing.csv"])
    assert w.poll() == []  # baseline
    assert w.poll() == []
    f.write_text("a\nb\n")
    assert w.poll() == []  # seen once: may be half-written
    assert w.poll() == ["separations.csv"]  # unchanged on the next poll: settled
    assert w.poll() == []  # reported once
    os.utime(f, None)  # touched, same bytes
    assert w.poll() == [] and w.poll() == []
    f.write_text("a\nb\nc\n")
    w.poll()
    f.write_text("a\nb\nc\nd\n")  # still being written
    assert w.poll() == []
    assert w.poll() == ["separations.csv"]


def test_feed_watcher_baseline_is_what_a_run_evaluated(tmp_path: Path) -> None:
    import hashlib

    f, gone = tmp_path / "separations.csv", tmp_path / "missing.csv"
    f.write_text("a\n")
    evaluated = hashlib.sha256(b"a\n").hexdigest()
    w = FeedWatcher([f, gone])
    w.baseline({f: evaluated})  # the run read "a"; a missing file: nothing read
    f.write_text("a\nb\n")  # appended after the run's read, before the first poll
    assert w.poll() == []  # seen once
    assert w.poll() == ["separations.csv"]  # a change against what the run evaluated
    w.baseline({f: hashlib.sha256(b"a\nb\n").hexdigest()})  # a run read it
    assert w.poll() == [] and w.poll() == []


def test_notifier_speaks_sd_notify(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    n = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"})
    assert n.enabled and n.watchdog_seconds == 30.0
    n.ready("up")
    n.watchdog()
    n.status("line one\nline two")
    got = [sock.recv(4096).decode() for _ in range(3)]
    assert got[0].splitlines()[:2] == ["READY=1", "STATUS=up"]
    assert got[1] == "WATCHDOG=1"
    assert got[2] == "STATUS=line one line two"  # one line per field
    sock.close()
    n.close()


def test_notifier_without_systemd_is_a_no_op() -> None:
    n = SystemdNotifier({})
    assert not n.enabled and n.watchdog_seconds is None
    n.ready("up")  # nothing to send to, no error


def test_notifier_ignores_another_process_watchdog() -> None:
    n = SystemdNotifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert n.watchdog_seconds is None


@pytest.mark.parametrize(
    ("cron", "ok"),
    [
        ("*/30 * * * *", True),
        ("0 2 * * mon-fri", True),
        ("not a cron", False),
        ("61 * * * *", False),
    ],
)
def test_check_schedule(cron: str, ok: bool) -> None:
    d = DaemonSettings(reconcile_cron=cron)
    if ok:
        check_schedule(d, LA)
    else:
        with pytest.raises(ConfigError, match=r"daemon\.reconcile_cron"):
            check_schedule(d, LA)
