"""Against a real slapd: no run acts on a feed caught mid-write, and the daemon reuses what
a run evaluated instead of reading the feeds again (and logs a rejected row once).

The roster is redelivered in place in two halves with a pause, the first half cut at a
line boundary, so that it reads as a valid but shorter roster (the last ``LATE`` people
missing: fewer than the shrink check notices). A run started in the pause must wait
for the file to settle and disable nobody: the CLI's apply (``make_plan``), the
daemon's reconcile (``CyclePlanner``) and its fast path (``run_targeted``, which the
timed job runs too). These tests use the default ``feeds.settle_seconds``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from connector.app import Runtime
from connector.daemon import Daemon
from connector.model.plan import Op
from connector.runs import ApplyResult, IncrementalCycle, Run, planning, run_apply
from connector.runs.cycle import CyclePlanner
from connector.runs.targeted import run_targeted
from connector.settings import load_settings
from tests.conftest import SETTLE_ENV
from tests.integration.test_daemon import (
    LA,
    append_row,
    ldap_enabled,
    write_config,
    write_world,
)

pytestmark = pytest.mark.slapd

PEOPLE = 60
LATE = 9  # people in the second half: 9 of 61 rows is under the 20% shrink check
PAUSE = 1.5  # seconds between the two halves


@pytest.fixture(autouse=True)
def default_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SETTLE_ENV, raising=False)  # the setting as shipped


def backdate(feeds: Path) -> None:
    """The feeds as delivered a while ago (the first run need not wait for them)."""
    old = time.time() - 600
    for p in feeds.iterdir():
        os.utime(p, (old, old))


def world(tmp_path: Path, scope: Any) -> tuple[Runtime, list[str], Path]:
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, PEOPLE)
    backdate(feeds)
    write_config(cfg, feeds, state, scope)
    rt = Runtime(load_settings(cfg))
    first = run_apply(rt)
    assert first.report.counts == {"create_ok": PEOPLE}
    return rt, ids, feeds


def write_in_two_halves(path: Path, first_half: threading.Event) -> None:
    """The same roster again, written in place: all but the last ``LATE`` rows, a pause,
    then the rest (a feed job that writes as it goes)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    head, tail = "".join(lines[:-LATE]), "".join(lines[-LATE:])
    with path.open("w", encoding="utf-8") as fh:
        fh.write(head)
        fh.flush()
        first_half.set()
        time.sleep(PAUSE)
        fh.write(tail)


def reconcile(rt: Runtime) -> ApplyResult | None:
    return Run(rt, IncrementalCycle(CyclePlanner(rt))).execute()


RUNS: dict[str, Callable[[Runtime], ApplyResult | None]] = {
    "apply": run_apply,  # misync apply (and plan: make_plan)
    "reconcile": reconcile,  # the daemon's scheduled reconcile
    "fastpath": lambda rt: run_targeted(rt, None, kind="fastpath"),
}


def test_no_run_acts_on_a_roster_written_in_two_halves(tmp_path: Path, ldap_scope: Any) -> None:
    rt, ids, feeds = world(tmp_path, ldap_scope)
    late = ids[-LATE:]
    for kind, run in RUNS.items():
        first_half = threading.Event()
        writer = threading.Thread(
            target=write_in_two_halves, args=(feeds / "workers.csv", first_half)
        )
        writer.start()
        assert first_half.wait(10)
        started = time.monotonic()
        try:
            with capture_logs() as logs:
                result = run(rt)  # starts while the second half is still to come
            took = time.monotonic() - started
        finally:
            writer.join()
        assert took >= PAUSE, kind  # it waited for the file
        disabled = [a for a in (result.plan.actions if result else ()) if a.op is Op.DISABLE]
        assert disabled == [], (kind, [a.person_id for a in disabled])
        assert all(ldap_enabled(ldap_scope, p) for p in late), kind
        settled = [e for e in logs if e["event"] == "feed.settled"]
        assert [e["file"] for e in settled] == ["workers.csv"], (kind, settled)
        if result is not None:
            assert all(f.healthy for f in result.plan.feeds), kind


def test_the_daemon_reuses_the_run_evaluation_and_logs_a_rejected_row_once(
    tmp_path: Path, ldap_scope: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, 4)
    training = feeds / "training.csv"
    training.write_text(
        training.read_text(encoding="utf-8") + f"{ids[0]},MIS Basic,not-a-date\n",
        encoding="utf-8",
    )
    backdate(feeds)
    write_config(cfg, feeds, state, ldap_scope)
    reads: list[float] = []
    read_feeds = planning.read_feeds

    def counted(*args: Any, **kw: Any) -> Any:
        reads.append(time.monotonic())
        return read_feeds(*args, **kw)

    monkeypatch.setattr(planning, "read_feeds", counted)
    rt = Runtime(load_settings(cfg))
    daemon = Daemon(rt, config_path=cfg, load=lambda p: Runtime(load_settings(p)))

    def rejected(logs: list[dict[str, Any]]) -> list[str]:
        kinds = ("feed.row_rejected", "feed.row_rejection_gone")
        return [e["event"] for e in logs if e["event"] in kinds]

    def evaluated_by_runs(logs: list[dict[str, Any]]) -> int:
        return sum(1 for e in logs if e["event"] == "cycle.done" and e["reevaluated"])

    with capture_logs() as logs:
        for _ in range(3):  # each: a reconcile, then the timed job planned after it
            daemon._job_reconcile()
    assert sum(1 for e in logs if e["event"] == "timed.none") == 3
    # the feeds were read only by the reconciles that evaluated them (the first, and the
    # second: the row counts of a good run changed), never again to plan the timed job
    assert 1 <= evaluated_by_runs(logs) == len(reads) <= 2
    assert rejected(logs) == ["feed.row_rejected"]  # the bad row, once
    assert all(ldap_enabled(ldap_scope, p) for p in ids[1:])

    # a separation: the fast path reads the feeds once; the timed job is planned from
    # that read
    reads.clear()
    sep = datetime.now(LA) - timedelta(minutes=5)
    append_row(feeds / "separations.csv", f"{ids[1]},LWDB04,{sep.isoformat()},quit")
    backdate(feeds)  # delivered whole: no settle wait here
    with capture_logs() as logs:
        daemon._job_watch()  # seen once
        daemon._job_watch()  # settled: the fast path
    assert [e["kind"] for e in logs if e["event"] == "targeted.planned"] == ["fastpath"]
    assert len(reads) == 1
    assert rejected(logs) == []
    assert ldap_enabled(ldap_scope, ids[1]) is False

    # the bad row is corrected: read again (it changed); the rejection is over, said once
    training.write_text(
        training.read_text(encoding="utf-8").replace("not-a-date", "2025-09-11"),
        encoding="utf-8",
    )
    backdate(feeds)
    reads.clear()
    with capture_logs() as logs:
        for _ in range(2):
            daemon._job_reconcile()
    assert 1 <= evaluated_by_runs(logs) == len(reads)
    assert rejected(logs) == ["feed.row_rejection_gone"]
    assert ldap_enabled(ldap_scope, ids[0]) is True  # created now that its row is good
