"""Leadership and fencing on a private PostgreSQL (issue 17, item 2), below the daemon:
two ``PgLeadership`` on one database, the leader epoch, and the journal refused to a
writer whose epoch is no longer current."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from connector.runs.fence import LeaderBusyError, command_fence
from connector.settings import StateSettings
from connector.state import FencedError
from connector.state.postgres import PgLeadership, PgStateStore

pytestmark = pytest.mark.postgresql

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _state(url: str, tmp_path: Path) -> StateSettings:
    return StateSettings(dir=tmp_path, url=url, lease_seconds=5, leader_poll_seconds=1)


def _begin(store: PgStateStore, key: str) -> list[int]:
    return store.journal_begin_many("r1", [(key, "disable", "P1", "a1", {"k": key})])


def test_one_leader_then_a_takeover_with_a_new_epoch_fences_the_old_one(
    pg_url: str, tmp_path: Path
) -> None:
    st = _state(pg_url, tmp_path)
    a, b = PgLeadership(st, host="hostA", pid=1), PgLeadership(st, host="hostB", pid=2)
    try:
        got = a.poll()
        assert (got.event, got.epoch, got.detail) == ("acquired", 1, "nobody")
        assert b.poll().event == "standby"
        assert a.poll().event == "kept"
        with PgStateStore.from_url(pg_url, epoch=1) as old:
            assert len(_begin(old, "x1")) == 1  # the leader journals
            # the server ends a dead client host's session in ~25 s, not 2 hours
            keepalive = old._conn.execute("show tcp_keepalives_idle").fetchone()
            assert keepalive is not None and keepalive[0] == "10"
            leader = old.leader()
            assert leader is not None and (leader.epoch, leader.host, leader.pid) == (
                1,
                "hostA",
                1,
            )
            a.close()  # the leader's session ends: the standby takes over
            got = b.poll()
            assert (got.event, got.epoch) == ("acquired", 2)
            assert got.detail == "hostA (pid 1), epoch 1"
            with pytest.raises(FencedError, match=r"epoch 1 .* current leader epoch is 2"):
                _begin(old, "x2")  # the old leader's store: nothing journaled
            with pytest.raises(FencedError):
                old.journal_record([(1, "ok", "a1", "")])
        with PgStateStore.from_url(pg_url, epoch=2) as new:
            _begin(new, "x3")
            assert [j.key for j in new.journal()] == ["x1", "x3"]
            assert new.journal()[0].outcome is None  # the old one could not record
    finally:
        a.close()
        b.close()


def test_a_leader_whose_lease_ran_out_is_ended_and_replaced(pg_url: str, tmp_path: Path) -> None:
    """A paused leader keeps its TCP session (its kernel answers keepalives): the standby
    ends the session once the lease ran out, takes over, and the leader's next poll
    finds it has lost."""
    st = _state(pg_url, tmp_path)
    a, b = PgLeadership(st, host="hostA", pid=1), PgLeadership(st, host="hostB", pid=2)
    try:
        assert a.poll().event == "acquired"
        assert b.poll().event == "standby"  # lease still good: nothing happens
        with PgStateStore.from_url(pg_url) as admin:
            admin._conn.execute(
                "update leader set renewed_at = now() - interval '1 minute' where id = 1"
            )
        assert "lease ran out" in b.poll().detail
        got = b.poll()
        for _ in range(50):  # the ended backend lets go of the lock within moments
            if got.event == "acquired":
                break
            time.sleep(0.1)
            got = b.poll()
        assert (got.event, got.epoch) == ("acquired", 2)
        lost = a.poll()
        assert lost.event == "lost" and a.epoch is None, lost
        assert a.poll().event == "standby"  # and it waits as a standby
    finally:
        a.close()
        b.close()


def test_sqlite_has_no_leader(tmp_path: Path) -> None:
    from connector.state import StateStore

    with StateStore(tmp_path / "s.sqlite3") as store:
        assert store.leader() is None


def test_status_and_metrics_show_the_leader(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import socket
    from types import SimpleNamespace

    from connector.health.metrics import StateCollector
    from connector.health.status import _leader_text, leader_status

    st = _state(pg_url, tmp_path)
    here = PgLeadership(st, host=socket.gethostname(), pid=os.getpid())
    try:
        assert here.poll().event == "acquired"
        with PgStateStore.from_url(pg_url) as store:
            row = store.leader()
        assert row is not None
        now = datetime.now(UTC)
        s = leader_status(row, now, UTC)
        assert s is not None and (s["role"], s["epoch"], s["lease_ok"]) == ("leader", 1, True)
        late = leader_status(row, now.replace(year=2030), UTC)
        assert late is not None and late["lease_ok"] is False
        assert "lease ran out" in _leader_text(late)[0]
        other = leader_status(row, now, UTC, pid=os.getpid() + 1)
        assert other is not None and other["role"] == "standby"
        collector = StateCollector(
            SimpleNamespace(  # type: ignore[arg-type]
                state=st, apply=SimpleNamespace(quarantine_after=3)
            ),
            lambda: now,
        )
        metrics = {m.name: m.samples[0].value for m in collector.collect() if m.samples}
        assert metrics["misync_leader"] == 1.0 and metrics["misync_leader_epoch"] == 1.0
        assert metrics["misync_leader_since_timestamp_seconds"] == row.since.timestamp()
    finally:
        here.close()


@pytest.mark.parametrize(
    ("lease", "poll", "ok"), [(15, 2.0, True), (8, 2.0, True), (7, 2.0, False), (3, 1.0, False)]
)
def test_the_lease_must_outlast_four_polls(lease: int, poll: float, ok: bool) -> None:
    from pydantic import ValidationError

    if ok:
        assert StateSettings(lease_seconds=lease, leader_poll_seconds=poll).lease_seconds == lease
    else:
        with pytest.raises(ValidationError, match=r"at least 4 x state\.leader_poll_seconds"):
            StateSettings(lease_seconds=lease, leader_poll_seconds=poll)


def _command_runtime(st: StateSettings) -> Any:
    """What ``command_fence`` uses of a runtime: the state settings and the epoch."""
    return SimpleNamespace(settings=SimpleNamespace(state=st), leader_epoch=None)


def test_a_command_that_leads_renews_its_lease_and_a_standby_waits(
    pg_url: str, tmp_path: Path
) -> None:
    """``misync apply`` with no daemon leading takes the leadership (connector.runs.fence):
    it renews its lease for as long as it runs (a standby never ends it), journals under
    its epoch, and gives the leadership up at the end."""
    st = StateSettings(dir=tmp_path, url=pg_url, lease_seconds=3, leader_poll_seconds=0.5)
    rt = _command_runtime(st)
    standby = PgLeadership(st, host="hostB", pid=2)
    try:
        with command_fence(rt) as should_stop:
            assert rt.leader_epoch == 1
            end = time.monotonic() + 1.5 * st.lease_seconds  # past one lease
            while time.monotonic() < end:
                assert standby.poll().event == "standby"
                assert not should_stop()
                time.sleep(0.3)
            with PgStateStore.from_url(pg_url, epoch=rt.leader_epoch) as store:
                assert len(_begin(store, "c1")) == 1
        assert rt.leader_epoch is None
        got = standby.poll()
        assert (got.event, got.epoch) == ("acquired", 2), got
        assert f"(pid {os.getpid()}), epoch 1" in got.detail
    finally:
        standby.close()


def test_a_command_whose_lease_was_ended_stops_and_is_fenced(pg_url: str, tmp_path: Path) -> None:
    """A command that stopped renewing (paused, hung) is ended by a standby like a
    daemon: its run stops (``should_stop``) and its journal writes are refused."""
    st = StateSettings(dir=tmp_path, url=pg_url, lease_seconds=3, leader_poll_seconds=0.5)
    rt = _command_runtime(st)
    standby = PgLeadership(st, host="hostB", pid=2)
    try:
        with command_fence(rt) as should_stop:
            epoch = rt.leader_epoch
            with PgStateStore.from_url(pg_url) as admin:
                for _ in range(20):  # as if its renewals had stopped
                    admin._conn.execute(
                        "update leader set renewed_at = now() - interval '1 minute' where id = 1"
                    )
                    if standby.poll().detail == "the leader's lease ran out: ended its session":
                        break
            end = time.monotonic() + 10
            while time.monotonic() < end and not should_stop():
                time.sleep(0.1)
            assert should_stop()
            assert standby.poll().event == "acquired"
            with (
                PgStateStore.from_url(pg_url, epoch=epoch) as store,
                pytest.raises(FencedError),
            ):
                _begin(store, "c2")
    finally:
        standby.close()


def test_a_command_refuses_while_a_daemon_leads_elsewhere(pg_url: str, tmp_path: Path) -> None:
    st = StateSettings(dir=tmp_path, url=pg_url, lease_seconds=5, leader_poll_seconds=1)
    daemon = PgLeadership(st, host="hostA", pid=1)
    try:
        assert daemon.poll().event == "acquired"
        rt = _command_runtime(st)
        busy = r"misync on hostA \(pid 1\) leads, epoch 1"
        with pytest.raises(LeaderBusyError, match=busy), command_fence(rt):
            pass
        assert rt.leader_epoch is None
    finally:
        daemon.close()


def test_a_command_with_the_leading_daemons_folder_acts_under_its_epoch_and_is_fenced(
    pg_url: str, tmp_path: Path
) -> None:
    """On the leader's host with the daemon's state folder (its ``misync.leader`` mark)
    a command journals under the daemon's epoch; once another host takes over, its
    journal writes are refused. A mark that does not match the leader is refused."""
    import socket

    from connector.state import mark_leader

    st = StateSettings(dir=tmp_path, url=pg_url, lease_seconds=5, leader_poll_seconds=1)
    here = socket.gethostname()
    daemon, other = PgLeadership(st, host=here, pid=4242), PgLeadership(st, host="hostB", pid=2)
    try:
        assert daemon.poll().event == "acquired"
        mark_leader(tmp_path, 7, 4242)  # a stale mark: another epoch
        with pytest.raises(LeaderBusyError), command_fence(_command_runtime(st)):
            pass
        mark_leader(tmp_path, 1, 4242)
        rt = _command_runtime(st)
        with command_fence(rt) as should_stop:
            assert rt.leader_epoch == 1 and not should_stop()
            with PgStateStore.from_url(pg_url, epoch=rt.leader_epoch) as store:
                assert len(_begin(store, "j1")) == 1
                daemon.close()  # the other host takes over
                assert other.poll().event == "acquired"
                with pytest.raises(FencedError):
                    _begin(store, "j2")
        assert rt.leader_epoch is None
    finally:
        daemon.close()
        other.close()
