"""A command that writes the directory (``misync apply``) on a PostgreSQL store: one
writer across the hosts, fenced as the daemons are (issue 17; docs/HA.md, "Manual
commands").

On SQLite the state folder's lock (``state_lock``) is the whole story: one host, one
folder. On PostgreSQL two hosts share the state, so the file lock of one host keeps
nothing out of the other. ``command_fence`` decides, before the run, under which leader
epoch the command journals:

- **no daemon leads** (the leader lock is free: the daemons are stopped, or none was
  ever started): the command takes the leadership itself, under a new epoch, as a
  daemon would (the ``leader`` row names its host and pid; ``misync status`` shows
  it), renews the lease while it runs and gives it up at the end. A standby daemon
  waits meanwhile, then takes over (its ``leader.takeover`` alert names the command).
  If the command stops renewing (paused, hung), a standby ends its session after the
  lease, as for a daemon: the command's run stops and its journal writes are refused;
- **the daemon that leads marked this state folder** (same host, same folder: its
  epoch and pid in ``misync.leader``): the command journals under that daemon's epoch,
  and the folder's lock keeps it and the daemon's runs apart, exactly as on one host
  with SQLite. Should another host take over meanwhile, the command's next journal
  write is refused (``FencedError``) and it stops;
- **a daemon leads elsewhere** (another host, or another state folder): the command
  refuses (``LeaderBusyError``, exit 7), naming the leader's host, pid and epoch.
  Nothing was read or changed.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog

from connector.app import Runtime
from connector.state import StateBusyError, StateUnavailableError, leader_mark

if TYPE_CHECKING:
    from connector.state.postgres import PgLeadership


class LeaderBusyError(StateBusyError):
    """A daemon on another host (or with another state folder) leads: a command here
    would write beside it (exit 7; nothing was done)."""


def _never() -> bool:
    return False


@contextmanager
def command_fence(rt: Runtime) -> Iterator[Callable[[], bool]]:
    """Around a command's run: sets ``rt.leader_epoch`` for the run's journal writes
    and yields its ``should_stop`` (see the module's docstring). SQLite: nothing."""
    if not rt.settings.state.url:
        yield _never
        return
    from connector.state.postgres import PgLeadership

    state = rt.settings.state
    host, pid = socket.gethostname(), os.getpid()
    log = structlog.get_logger("misync.fence")
    leadership = PgLeadership(state, host=host, pid=pid)
    t0 = time.monotonic()
    p = leadership.poll()
    if p.event != "acquired":
        leadership.close()
        row, mark = p.leader, leader_mark(state.dir)
        if row is not None and row.host == host and mark == (row.epoch, row.pid):
            log.info("command.under_leader", epoch=row.epoch, leader_pid=row.pid)
            rt.leader_epoch = row.epoch
            try:
                yield _never
            finally:
                rt.leader_epoch = None
            return
        if row is None and p.detail:  # the database did not answer (poll never raises)
            raise StateUnavailableError(f"{p.detail}; nothing was done")
        if row is None:  # another process is taking the leadership at this moment
            raise LeaderBusyError(
                f"state database {leadership.where}: another misync process is taking "
                "the leadership; try again. Nothing was done"
            )
        raise LeaderBusyError(
            f"state database {leadership.where}: misync on {row.host} (pid {row.pid}) "
            f"leads, epoch {row.epoch} since {row.since.isoformat(timespec='seconds')}"
            + (f" ({p.detail})" if p.detail else "")
            + f"; a command here would write beside it. Run it on {row.host} with the "
            "daemon's configuration (its state folder), or stop the daemons on both "
            "hosts first. Nothing was done"
        )
    assert p.epoch is not None
    log.warning("command.leads", epoch=p.epoch, previous=p.detail)
    lease = _Lease(leadership, rt, t0)
    rt.leader_epoch = p.epoch
    try:
        yield lease.should_stop
    finally:
        rt.leader_epoch = None
        lease.close()
        if lease.lost:
            log.error("command.lost_leadership", epoch=p.epoch, reason=lease.lost)


class _Lease:
    """Renews a command's leadership from a thread of its own every
    ``state.leader_poll_seconds``; the run stops (``should_stop``) once a renewal is
    overdue (``state.lease_margin_seconds``) or the leadership is lost."""

    def __init__(self, leadership: PgLeadership, rt: Runtime, t0: float) -> None:
        self._leadership = leadership
        self._margin = rt.settings.state.lease_margin_seconds
        self._every = rt.settings.state.leader_poll_seconds
        self._until = t0 + self._margin
        self.lost = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="misync-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._done.wait(self._every):
            t0 = time.monotonic()
            p = self._leadership.poll()
            if p.event != "kept":
                self.lost = p.detail or p.event
                return
            self._until = t0 + self._margin

    def should_stop(self) -> bool:
        return bool(self.lost) or time.monotonic() > self._until

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._leadership.close()  # gives the lock up: a standby takes over
