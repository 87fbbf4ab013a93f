"""``misync run``: the foreground daemon. The only module that imports APScheduler.

Jobs (each ``max_instances=1``, misfires coalesced, intervals from ``[daemon]``):

- ``reconcile``: a full run (``connector.runs.Run`` of an ``IncrementalCycle``) on an
  interval or a cron expression;
- ``watch``: polls the access-ending feeds (size/mtime/hash); a settled change since what
  the last run evaluated (its baseline) runs a targeted disable of the people who lost
  access (a run of ``TargetedPeople``, no full scan), evaluating only the changed
  separation and roster rows when it can (``FeedDeltas``: the last finished run's
  evaluation is kept for that; connector.runs.incremental);
- ``timed``: one date job at the next instant where access ends without a feed change
  (``connector.policy.instants``), re-planned after every run from that run's
  evaluation (the feeds are read again only if they changed since);
- ``monitor``: the deadline monitor (reminders through the alert sink);
- ``audit-verify``: the whole hash chain once a day, an alert when it does not verify;
- ``watchdog``: ``WATCHDOG=1`` to systemd from the scheduler loop (own thread, so a long
  run cannot starve it).

A fast-path or timed run that fails (the directory does not answer, the state is busy),
or that leaves a disable undone (not attempted, a temporary failure), is tried again
with backoff (``RETRY_DELAYS``: 2, 4, 8, 16, then every 30 s) until it succeeds; a
failed reconcile sets the fast path going the same way, so a separation that landed
while the directory was away is disabled within seconds of it answering again. A
successful reconcile covers both (it plans every disable they would) and closes their
``run.failed`` alerts.

With ``[state] url`` (PostgreSQL) two daemons may share one database, on two hosts:
one leads, the other waits (docs/HA.md). A ``leader`` job (own thread) polls
``PgLeadership`` every ``state.leader_poll_seconds``: the standby schedules no run jobs
until it takes over (a new leader epoch, an alert ``leader.takeover``); the leader
renews its lease, and every store it opens journals under its epoch. A leader that
finds itself fenced (a journal write refused: ``FencedError``) or loses its session
drops its jobs, alerts (``leader.stepped_down``) and waits as a standby. A run stops
(as on SIGTERM) when the leader's lease was not renewed in time, so a process resumed
after a pause starts no further directory operation.

Runs never overlap (one process lock around each; the state folder's flock also keeps
out a manual ``misync apply``). The main thread only handles signals: SIGTERM/SIGINT set
the stop flag (the run in flight finishes the action it is doing, journals it, records
the rest as not attempted) and the process exits 0; SIGHUP loads the configuration
again and swaps it in only if it is valid (otherwise an alert and the old one stays).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from connector.alerts import AlertSink, LogAlertSink, kinds
from connector.app import Runtime
from connector.daemon.notify import SystemdNotifier
from connector.daemon.watch import FeedWatcher
from connector.errors import MisyncError
from connector.feeds import load_feed_layout
from connector.model.feeds import FeedName
from connector.policy.instants import DueChange, next_instants
from connector.report.service import write_run_report
from connector.runs import (
    ApplyResult,
    Evaluation,
    IncrementalCycle,
    PlanSource,
    RejectionLog,
    Run,
    RunObserver,
    TargetedPeople,
    evaluate,
    still_current,
)
from connector.runs.cycle import CyclePlanner
from connector.runs.incremental import FeedDeltas
from connector.settings import ConfigError, DaemonSettings, Settings
from connector.state import FencedError, clear_leader_mark, mark_leader

if TYPE_CHECKING:
    from connector.state.postgres import LeaderPoll, PgLeadership

#: feeds whose change can take access away (training and NDA rows only grant)
WATCHED = (
    FeedName.SEPARATIONS,
    FeedName.WORKERS,
    FeedName.REQUESTS,
    FeedName.CONTRACTS,
    FeedName.ORGANIZATIONS,
    FeedName.REQUESTERS,
)


#: the jobs only the leader runs (all but the watchdog and the leader poll itself)
LEADER_JOBS = (
    "reconcile",
    "watch",
    "timed",
    "monitor",
    "audit-verify",
    "retry-fastpath",
    "retry-timed",
)

#: seconds between tries of a failed fast-path or timed run; the last one repeats
RETRY_DELAYS = (2.0, 4.0, 8.0, 16.0, 30.0)


@dataclass
class Backoff:
    """How long to wait before the next try of a job that failed (``RETRY_DELAYS``)."""

    failures: int = 0

    def next_delay(self) -> float:
        delay = RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS) - 1)]
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


@runtime_checkable
class Reminder(Protocol):
    """An alert sink that also re-sends reminders for what is still open (the alert
    manager)."""

    def remind(self, now: datetime) -> object: ...


def check_schedule(d: DaemonSettings, tz: Any) -> None:
    """Raise ``ConfigError`` for a cron expression APScheduler cannot read."""
    for name, expr in (
        ("reconcile_cron", d.reconcile_cron),
        ("audit_verify_cron", d.audit_verify_cron),
    ):
        if not expr:
            continue
        try:
            CronTrigger.from_crontab(expr, timezone=tz)
        except ValueError as exc:
            raise ConfigError(
                f"daemon.{name}: {expr!r} is not a crontab expression: {exc}"
            ) from exc


def _reconcile_trigger(s: Settings) -> BaseTrigger:
    d = s.daemon
    if d.reconcile_cron:
        return CronTrigger.from_crontab(d.reconcile_cron, timezone=s.policy.tz)
    return IntervalTrigger(seconds=d.reconcile_interval_seconds, timezone=s.policy.tz)


@dataclass
class Status:
    """What STATUS= and the log say about the last runs."""

    last: dict[str, str] = field(default_factory=dict)  # job -> one-line summary

    def line(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in sorted(self.last.items())) or "starting"


class Daemon:
    def __init__(
        self,
        rt: Runtime,
        *,
        config_path: Path | None,
        load: Callable[[Path | None], Runtime],
        alerts: AlertSink | None = None,
        notifier: SystemdNotifier | None = None,
        alerts_for: Callable[[Runtime], AbstractContextManager[AlertSink]] | None = None,
        observer_for: Callable[[Runtime], AbstractContextManager[RunObserver | None]] | None = None,
    ) -> None:
        check_schedule(rt.settings.daemon, rt.settings.policy.tz)
        self.rt = rt
        self._config_path = config_path
        self._load = load
        self.alerts: AlertSink = alerts or LogAlertSink()
        self.observer: RunObserver | None = None  # 3.k notifications
        # the alert manager and the notifier of the current configuration, built from it
        # (their connections are closed when it is replaced or the daemon stops)
        self._alerts_for = alerts_for
        self._observer_for = observer_for
        self._resources = ExitStack()
        self.notifier = notifier or SystemdNotifier()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._run_lock = threading.Lock()  # runs never overlap inside this process
        self._fast_pending = False
        # the last evaluation a run made (reused to plan the timed job) and the rejected
        # rows already logged (each logged when it appears and once when it is gone)
        self._last_ev: Evaluation | None = None
        self._rejections = RejectionLog()
        # the fast path's baseline: the last evaluation a finished run made, so that a
        # changed separation or roster file costs its changed rows (runs.incremental)
        self._deltas = FeedDeltas()
        self._fast_people: set[str] = set()  # disables a fast path left undone: try again
        self._timed_people: set[str] = set()  # people of a failed timed run: try again
        # the latest instant a timed job took: an earlier one is never due again
        self._timed_taken = datetime(1970, 1, 1, tzinfo=UTC)
        self._backoff = {"fastpath": Backoff(), "timed": Backoff()}
        self._watcher = self._make_watcher(rt)
        self._reconciler = self._make_reconciler(rt)
        self._status = Status()
        self._log = structlog.get_logger("misync.daemon")
        # leadership (PostgreSQL): None means one host, the file lock, always leading
        self._leadership = self._make_leadership(rt)
        self._leading = self._leadership is None
        self._role_lock = threading.Lock()
        self._lease_until = 0.0  # monotonic: runs stop once the lease was not renewed
        if self._leadership is not None:
            rt.leader_epoch = 0  # no epoch is 0: a standby's journal write is refused
        self._scheduler = BackgroundScheduler(
            timezone=rt.settings.policy.tz,
            executors={
                "default": ThreadPoolExecutor(4),
                "watchdog": ThreadPoolExecutor(1),
                "leader": ThreadPoolExecutor(1),
            },
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )

    # -- lifecycle ----------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the exit code (0 on a clean stop)."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        self.alerts, self.observer, self._resources = self._open_resources(self.rt)
        if self._leadership is None:
            self._baseline_from_store()
            self._schedule_all(first=True)
        else:
            self._schedule_leader_poll()
        self._scheduler.start()
        self._log.info(
            "daemon.started",
            jobs=sorted(j.id for j in self._scheduler.get_jobs()),
            watchdog_seconds=self.notifier.watchdog_seconds,
        )
        if not self.rt.settings.daemon.run_on_start:
            self._plan_timed()
        self._publish_schedule()
        self.notifier.ready(
            "started; first reconcile pending"
            if self._leading
            else "started as standby: waiting for leadership"
        )
        while not self._stop.is_set():
            self._stop.wait(1.0)
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
        self.notifier.stopping("stopping: finishing the operation in flight")
        self._log.info("daemon.stopping")
        with self._run_lock:  # the run in flight sees the flag, ends its action, finishes
            # not wait=True: APScheduler 3 holds its job store lock while it waits, and a
            # job that is ending may still ask the scheduler something; its thread is
            # joined at exit anyway
            self._scheduler.shutdown(wait=False)
        self._publish_schedule(stopped=True)
        if self._leadership is not None:
            if self._leading:
                self._mark_leader(None)
            self._leadership.close()  # the standby takes over at its next poll
        self._resources.close()
        self._log.info("daemon.stopped")
        self.notifier.close()
        return 0

    def _open_resources(self, rt: Runtime) -> tuple[AlertSink, RunObserver | None, ExitStack]:
        stack = ExitStack()
        try:
            alerts = (
                stack.enter_context(self._alerts_for(rt))
                if self._alerts_for is not None
                else self.alerts
            )
            observer = (
                stack.enter_context(self._observer_for(rt))
                if self._observer_for is not None
                else None
            )
        except BaseException:
            stack.close()
            raise
        return alerts, observer, stack

    def stop(self) -> None:
        self._stop.set()

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._reload.set()

    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- configuration ------------------------------------------------------------------

    def reload(self) -> bool:
        """Load the configuration again; swap it in only if it is entirely valid."""
        self.notifier.send(RELOADING="1", MONOTONIC_USEC=str(time.monotonic_ns() // 1000))
        try:
            new = self._load(self._config_path)
            check_schedule(new.settings.daemon, new.settings.policy.tz)
            load_feed_layout(new.settings.feeds.mapping)
            alerts, observer, resources = self._open_resources(new)
        except Exception as exc:  # noqa: BLE001 -- a reload never stops the daemon; bugs log a traceback
            if isinstance(exc, MisyncError):  # ConfigError, MappingError, FeedLayoutError...
                self._log.error("config.reload_refused", error=str(exc))
            else:  # a bug: the traceback too
                self._log.exception("config.reload_refused", error=repr(exc))
            self.alerts.send(kinds.config_reload_refused(str(self._config_path), str(exc)))
            self.notifier.ready(f"reload refused, old configuration kept; {self._status.line()}")
            return False
        old = self.rt.settings
        new.leader_epoch = self.rt.leader_epoch  # journals under the same epoch
        with self._run_lock:  # never swap under a run
            old_resources = self._resources
            self.rt, self.alerts, self.observer, self._resources = new, alerts, observer, resources
            old_resources.close()
            self._last_ev = None  # a new mapping or policy: evaluate afresh
            self._deltas.forget()
            if new.settings.feeds != old.feeds:
                self._watcher = self._make_watcher(new)
                self._baseline_from_store()
            self._reconciler = self._make_reconciler(new)
        if self._leading:
            self._schedule_all(first=False)
        self._publish_schedule()
        self._log.info("config.reloaded", config=str(self._config_path))
        self.notifier.ready(f"configuration reloaded; {self._status.line()}")
        return True

    # -- leadership (PostgreSQL) --------------------------------------------------------

    @staticmethod
    def _make_leadership(rt: Runtime) -> PgLeadership | None:
        if not rt.settings.state.url:
            return None
        from connector.state.postgres import PgLeadership

        return PgLeadership(rt.settings.state, host=socket.gethostname(), pid=os.getpid())

    def _schedule_leader_poll(self) -> None:
        s = self.rt.settings
        self._scheduler.add_job(
            self._job_leader,
            IntervalTrigger(seconds=s.state.leader_poll_seconds, timezone=s.policy.tz),
            id="leader",
            executor="leader",
            replace_existing=True,
            next_run_time=datetime.now(s.policy.tz),
        )

    def _job_leader(self) -> None:
        """One leadership round: renew, take over, or notice the loss."""
        if self._leadership is None or self._stop.is_set():
            return
        t0 = time.monotonic()
        p = self._leadership.poll()
        if p.event == "kept":
            self._lease_until = t0 + self._lease_margin()
        elif p.event == "acquired":
            self._take_over(p, t0)
        elif p.event == "lost":
            self._step_down(p.detail)
        else:
            if p.detail:
                self._log.info("leader.standby", detail=p.detail)
            who = (
                f"{p.leader.host} pid {p.leader.pid} epoch {p.leader.epoch}" if p.leader else "none"
            )
            self.notifier.status(f"standby; leader: {who}")

    def _lease_margin(self) -> float:
        """How long after a renewal began this daemon still counts itself the leader:
        the lease less a safety margin (two polls, at least a quarter of the lease), so
        it stops before a standby may take over."""
        return self.rt.settings.state.lease_margin_seconds

    def _take_over(self, p: LeaderPoll, t0: float) -> None:
        assert p.epoch is not None
        with self._role_lock:
            self.rt.leader_epoch = p.epoch
            self._lease_until = t0 + self._lease_margin()
            self._leading = True
        host, pid = socket.gethostname(), os.getpid()
        self._mark_leader(p.epoch)
        self._log.warning("leader.takeover", epoch=p.epoch, previous=p.detail)
        self.alerts.send(kinds.leader_takeover(p.epoch, host, pid, p.detail))
        self._deltas.forget()  # the other leader's runs are not in it
        self._baseline_from_store()
        self._schedule_all(first=True)
        if not self.rt.settings.daemon.run_on_start:
            self._plan_timed()
        self._publish_schedule()
        self.notifier.status(f"leader, epoch {p.epoch}; first reconcile pending")

    def _step_down(self, reason: str) -> None:
        """Stop leading: drop every run job, give the session up, alert, wait as a
        standby. The runtime keeps its (now stale) epoch, so a run still in flight
        cannot journal."""
        with self._role_lock:
            if not self._leading or self._leadership is None:
                return
            self._leading = False
        epoch = self.rt.leader_epoch
        self._deltas.forget()
        for job in LEADER_JOBS:
            self._drop_job(job)
        self._mark_leader(None)
        self._leadership.close()
        host, pid = socket.gethostname(), os.getpid()
        self._log.error("leader.stepped_down", epoch=epoch, reason=reason)
        self.alerts.send(kinds.leader_stepped_down(epoch, host, pid, reason))
        self.notifier.status(f"standby (stepped down from epoch {epoch}): {reason}")

    def _mark_leader(self, epoch: int | None) -> None:
        """Mark the state folder as this leading daemon's (a command run with the same
        folder acts under its epoch, between its runs: connector.runs.fence), or clear
        the mark (None). A folder that cannot be written only makes such commands refuse."""
        folder = self.rt.settings.state.dir
        try:
            if epoch is None:
                clear_leader_mark(folder)
            else:
                mark_leader(folder, epoch, os.getpid())
        except OSError as exc:
            self._log.warning("leader.mark_failed", folder=str(folder), error=str(exc))

    def _leads(self) -> bool:
        return self._leading and not self._stop.is_set()

    def _run_should_stop(self) -> bool:
        """A run stops (as on SIGTERM) when the daemon stops, or no longer leads, or its
        lease was not renewed in time (a process resumed after a pause)."""
        if self._stop.is_set() or not self._leading:
            return True
        return self._leadership is not None and time.monotonic() > self._lease_until

    def _make_reconciler(self, rt: Runtime) -> CyclePlanner:
        every = timedelta(seconds=rt.settings.daemon.full_scan_interval_seconds)
        return CyclePlanner(rt, full_every=every, rejections=self._rejections)

    def _settle_baseline(self, ok: bool) -> None:
        """After a reconcile or fast path: the evaluation of a run that finished is the
        fast path's next baseline (its decisions are recorded); after a failure there is
        none, and the next fast path reads the feeds whole."""
        if not ok:
            self._deltas.forget()
            return
        try:
            self._deltas.resolved(self.rt)
        except Exception as exc:  # noqa: BLE001 -- only the next fast path's speed is at stake
            self._log.warning("fastpath.baseline_failed", error=str(exc), exc_info=_is_bug(exc))
            self._deltas.forget()

    def _evaluated(self, ev: Evaluation) -> None:
        """A run evaluated the feeds: keep the evaluation (the timed job is planned from
        it), offer it as the fast path's baseline and make what it read the watcher's
        baseline."""
        self._last_ev = ev
        self._deltas.offer(self.rt, ev)
        self._watcher.baseline(
            {Path(h.stamp.path): h.stamp.digest for h in ev.feeds.health.values() if h.stamp}
        )

    def _baseline_from_store(self) -> None:
        """At start (and when the feeds move): what the last run evaluated, as recorded
        in the state store; with nothing recorded the watcher's first poll takes it."""
        try:
            with self.rt.store() as store:
                stamps = store.feed_stamps()
        except Exception as exc:  # noqa: BLE001 -- the first run reports a broken store; never stop here
            self._log.warning("watch.baseline_unavailable", error=str(exc), exc_info=_is_bug(exc))
            return
        if stamps:
            self._watcher.baseline({Path(path): digest for path, _, _, digest in stamps.values()})

    @staticmethod
    def _make_watcher(rt: Runtime) -> FeedWatcher:
        layout = load_feed_layout(rt.settings.feeds.mapping)
        return FeedWatcher(rt.settings.feeds.dir / layout.files[f] for f in WATCHED)

    # -- scheduling ---------------------------------------------------------------------

    def _schedule_all(self, *, first: bool) -> None:
        s = self.rt.settings
        d = s.daemon
        tz = s.policy.tz
        add = self._scheduler.add_job
        start = datetime.now(tz) if first and d.run_on_start else None
        trigger = _reconcile_trigger(s)
        old = None if first else self._scheduler.get_job("reconcile")
        if old is not None and str(old.trigger) == str(trigger) and old.next_run_time:
            start = old.next_run_time  # a reload keeps the schedule: it never postpones it
        add(
            self._job_reconcile,
            trigger,
            id="reconcile",
            replace_existing=True,
            **({"next_run_time": start} if start else {}),
        )
        if d.watch_interval_seconds > 0:
            add(
                self._job_watch,
                IntervalTrigger(seconds=d.watch_interval_seconds, timezone=tz),
                id="watch",
                replace_existing=True,
            )
        elif self._scheduler.get_job("watch") is not None:
            self._scheduler.remove_job("watch")
        add(
            self._job_monitor,
            IntervalTrigger(seconds=d.monitor_interval_seconds, timezone=tz),
            id="monitor",
            replace_existing=True,
        )
        if d.audit_verify_cron:
            add(
                self._job_audit_verify,
                CronTrigger.from_crontab(d.audit_verify_cron, timezone=tz),
                id="audit-verify",
                replace_existing=True,
            )
        elif self._scheduler.get_job("audit-verify") is not None:
            self._scheduler.remove_job("audit-verify")
        if self.notifier.watchdog_seconds:
            add(
                self.notifier.watchdog,
                IntervalTrigger(seconds=max(self.notifier.watchdog_seconds / 3, 0.5), timezone=tz),
                id="watchdog",
                executor="watchdog",
                replace_existing=True,
                next_run_time=datetime.now(tz),
            )
        if not first:
            self._plan_timed()

    def _plan_timed(self) -> None:
        """(Re)schedule the ``timed`` job at the next instant where access may end."""
        if not self.rt.settings.daemon.timed_actions or not self._leads():
            return
        rt = self.rt
        try:
            now = rt.clock()
            ev = self._last_ev
            # instants that passed since the evaluation the last run acted on (a run that
            # evaluated before one and ended after it: a long reconcile, the first one
            # after a start or a takeover): nobody carried them out, they are due now
            # (none while the evaluation still holds: no instant passed since it)
            missed = None
            if ev is None or not still_current(rt, ev, now):
                missed = self._missed_instants(ev, now) if ev is not None else None
                with rt.store() as store:
                    ev = evaluate(rt, store, now, rejections=self._rejections)
                # for the timed job only: not the watcher's baseline, which is what a
                # run acted on; a feed change read here must still start a fast path
                self._last_ev = ev
            upcoming = next_instants(ev.feeds, ev.decisions, now, rt.rules, limit=1)
        except Exception as exc:  # noqa: BLE001 -- a job never raises into the scheduler
            self._log.error("timed.plan_failed", error=str(exc), exc_info=_is_bug(exc))
            return
        if missed is not None:
            self._log.warning(
                "timed.overdue",
                at=missed.at.isoformat(),
                people=sorted(missed.people)[:20],
                count=len(missed.people),
                detail="passed during a run that had evaluated before it: carried out now",
            )
            upcoming = [missed]
        if not upcoming:
            if self._scheduler.get_job("timed") is not None:
                self._scheduler.remove_job("timed")
            self._log.info("timed.none")
            return
        due = upcoming[0]
        self._scheduler.add_job(
            self._job_timed,
            DateTrigger(run_date=max(due.at, datetime.now(self.rt.settings.policy.tz))),
            args=[due],
            id="timed",
            replace_existing=True,
        )
        self._publish_schedule()
        self._log.info(
            "timed.scheduled",
            at=due.at.isoformat(),
            people=sorted(due.people)[:20],
            count=len(due.people),
        )

    def _missed_instants(self, ev: Evaluation, now: datetime) -> DueChange | None:
        """The instants in (``ev.as_of``, ``now``] that no timed job has taken yet, as
        one change due at the latest of them (None if there are none)."""
        passed = [
            d
            for d in next_instants(ev.feeds, ev.decisions, ev.as_of, self.rt.rules, limit=10_000)
            if d.at <= now and d.at > self._timed_taken
        ]
        if not passed:
            return None
        people = frozenset().union(*(d.people for d in passed))
        why = tuple(w for d in passed for w in d.why)
        return DueChange(at=passed[-1].at, people=people, why=why)

    # -- jobs ---------------------------------------------------------------------------

    def _job_reconcile(self) -> None:
        if not self._leads():
            return
        with self._run_lock:
            # a feed change seen before this run is covered by it; one seen during it
            # sets the flag again and the next poll runs the fast path
            self._fast_pending = False
            # full scan or only what changed since the last read (CyclePlanner)
            ok, result = self._run("reconcile", IncrementalCycle(self._reconciler))
            self._settle_baseline(ok)
            if ok:
                self._keep_memo()
                # it planned every disable the fast path and the timed job would have:
                # what they failed to do is done or planned again, their alerts close
                self._covered_by_reconcile(result)
            elif self._leads():  # (not stopping, not stepped down)
                # the change it would have covered is not covered: the fast path (cheap,
                # targeted) takes it, with backoff, until the directory answers
                self._fast_pending = True
                self._retry_later("fastpath", self._job_fastpath_retry)
        self._plan_timed()

    def _keep_memo(self) -> None:
        """After a reconcile, the memo of its plan for admins' dry runs (``misync plan``,
        connector.runs.memo), when the stored one is behind it. A cache: a failure to
        write it is logged, never a failed run."""
        try:
            with self.rt.store() as store:
                self._reconciler.remember(store)
        except Exception as exc:  # noqa: BLE001 -- a cache; the daemon goes on
            self._log.warning("memo.not_kept", error=str(exc))

    def _covered_by_reconcile(self, result: ApplyResult | None) -> None:
        """A successful reconcile: the fast path and timed retries are no longer needed
        (unless the reconcile itself left disables undone) and their run alerts close
        (a reconcile that ran proves the directory answers and the feeds read)."""
        undone = _undone_disables(result)
        self._fast_people = set(undone)
        if undone:
            self._fast_pending = True
            self._retry_later("fastpath", self._job_fastpath_retry)
        if result is not None and result.report.stopped:
            return  # stopped early (circuit breaker, deadline): it covered nothing else
        self._timed_people.clear()
        run_id = result.run_id if result is not None else ""
        for job in ("fastpath", "timed"):
            self._backoff[job].reset()
            # closes their run.failed / run.refused (nothing else)
            self.alerts.send(kinds.run_succeeded(job, run_id, covered_by="reconcile"))
        self._drop_job("retry-timed")
        if not (undone or self._fast_pending):
            self._drop_job("retry-fastpath")

    def _drop_job(self, job_id: str) -> None:
        from apscheduler.jobstores.base import JobLookupError

        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(job_id)

    def _job_watch(self) -> None:
        if not self._leads():
            return
        changed = self._watcher.poll()
        if changed:
            self._log.info("feeds.changed", files=changed)
            self._fast_pending = True
        if not self._fast_pending or self._scheduler.get_job("retry-fastpath") is not None:
            return  # nothing to do, or a failed fast path waits for its backoff
        if not self._run_lock.acquire(blocking=False):
            return  # a run is busy: the next poll tries again
        try:
            self._fastpath()
        finally:
            self._run_lock.release()
        self._plan_timed()

    def _job_fastpath_retry(self) -> None:
        """The fast path again, after the backoff of a failure (run lock: waits for a
        run in progress, which may well cover it)."""
        if not self._leads():
            return
        with self._run_lock:
            if not (self._fast_pending or self._fast_people):
                return
            self._fastpath()
        self._plan_timed()

    def _fastpath(self) -> None:
        """One fast-path run (run lock held); on failure, or with disables left undone,
        it is tried again with backoff (``_job_fastpath_retry``)."""
        self._fast_pending = False
        again = frozenset(self._fast_people)
        ok, result = self._run(
            "fastpath",
            TargetedPeople(
                None,
                kind="fastpath",
                also=again,
                rejections=self._rejections,
                deltas=self._deltas,
            ),
        )
        self._settle_baseline(ok)
        if ok:
            undone = _undone_disables(result)
            self._fast_people = set(undone)
            if not undone:
                self._backoff["fastpath"].reset()
                return
        if not self._leads():
            return
        self._fast_pending = True
        self._retry_later("fastpath", self._job_fastpath_retry)

    def _job_timed(self, due: DueChange) -> None:
        if not self._leads():
            return
        # taken (before the run lock: a run in flight may end first and plan again)
        self._timed_taken = max(self._timed_taken, due.at)
        self._log.info("timed.due", at=due.at.isoformat(), why=list(due.why)[:20])
        with self._run_lock:
            people = frozenset(due.people | self._timed_people)
            ok, result = self._run(
                "timed", TargetedPeople(people, kind="timed", rejections=self._rejections)
            )
            # a timed run records only its own people's decisions: the next fast path
            # reads the feeds whole (and its run makes the next baseline)
            self._deltas.forget()
            undone = _undone_disables(result) if ok else set(people)
            self._timed_people = set(undone)
            if not undone:
                self._backoff["timed"].reset()
            elif self._leads():
                self._retry_later(
                    "timed", self._job_timed, args=[dataclasses.replace(due, people=people)]
                )
        self._plan_timed()

    def _retry_later(
        self, job: str, func: Callable[..., None], args: list[Any] | None = None
    ) -> None:
        """Try ``job`` again after its backoff (a date job ``retry-<job>``)."""
        delay = self._backoff[job].next_delay()
        at = datetime.now(self.rt.settings.policy.tz) + timedelta(seconds=delay)
        try:
            self._scheduler.add_job(
                func,
                DateTrigger(run_date=at),
                args=args or [],
                id=f"retry-{job}",
                replace_existing=True,
            )
        except Exception as exc:  # noqa: BLE001 -- e.g. the scheduler is shutting down; never raise into it
            self._log.warning("retry.not_scheduled", job=job, error=str(exc), exc_info=_is_bug(exc))
            return
        self._log.info("retry.scheduled", job=job, seconds=delay, at=at.isoformat())

    def _job_monitor(self) -> None:
        if not self._leads():
            return
        now = self.rt.clock()
        if isinstance(self.alerts, Reminder):
            self.alerts.remind(now)
        with self.rt.store() as store:
            open_breaches = store.open_breaches()
        oldest = min((b.deadline for b in open_breaches.values()), default=None)
        self._log.info(
            "deadline.monitor",
            open_breaches=len(open_breaches),
            oldest_deadline=oldest.isoformat() if oldest else None,
        )

    def _job_audit_verify(self) -> None:
        if not self._leads():
            return
        rt = self.rt
        self._prune_archive()  # the daily maintenance: retention of the runs' inputs
        failure: BaseException | None = None
        try:
            with rt.audit() as trail:
                checked = trail.verify()
        except Exception as exc:  # noqa: BLE001 -- whatever stops the check is alerted as such
            problem = f"audit trail could not be verified: {exc}"
            problems = [problem]
            failure = exc if _is_bug(exc) else None
        else:
            if checked.ok:
                self._log.info("audit.verified", records=checked.records, head_seq=checked.head_seq)
                # closes an open audit.altered (the manager dedups)
                self.alerts.send(kinds.audit_verified(checked.records))
                return
            problems = list(checked.problems)
            problem = "; ".join(problems[:5])
        self._log.error("audit.altered", problems=problem, exc_info=failure)
        self.alerts.send(kinds.audit_altered(problems))

    def _prune_archive(self) -> None:
        """Remove run inputs older than ``archive.keep_days`` (connector.archive); the
        trail keeps their digests. A run holding the state folder defers it a day."""
        from connector.archive import prune_archive
        from connector.state import StateBusyError

        s = self.rt.settings
        try:
            pruned = prune_archive(s.state.dir, s.archive.keep_days, self.rt.clock())
        except StateBusyError:
            self._log.info("archive.prune_deferred", reason="a run holds the state folder")
            return
        except OSError as exc:
            self._log.error("archive.prune_failed", error=str(exc))
            return
        if pruned:
            self._log.info("archive.pruned", runs=pruned, keep_days=s.archive.keep_days)

    def _run(self, job: str, source: PlanSource) -> tuple[bool, ApplyResult | None]:
        """One run of ``source`` for ``job`` (``_guarded``), with the daemon's alert
        manager, observer and stop flag; the run's evaluation is kept (``_evaluated``)."""
        return self._guarded(
            job,
            lambda rt, run_id: Run(
                rt,
                source,
                run_id=run_id,
                alerts=self.alerts,
                observer=self.observer,
                should_stop=self._run_should_stop,
                evaluated=self._evaluated,
            ).execute(),
        )

    def _guarded(self, job: str, body: Callable[[Runtime, str], Any]) -> tuple[bool, Any]:
        """Run one job body with the current runtime and a fresh run id; every failure is
        logged and alerted (``run.failed``/``run.refused``, key ``run:<job>``; a success
        sends ``run.succeeded``, which closes them), never raised into the scheduler.
        The runs themselves tell an alert manager where they start and end. Returns
        whether the body ran to its end, and what it returned."""
        from connector.audit import AuditIntegrityError
        from connector.state import StateBusyError

        rt = self.rt
        run_id = uuid.uuid4().hex[:12]
        started = time.monotonic()
        ok, result = False, None
        try:
            result = body(rt, run_id)
        except FencedError as exc:  # another daemon took over: never retried
            self._log.error("run.fenced", job=job, error=str(exc))
            self._status.last[job] = "fenced (another daemon leads)"
            self._step_down(str(exc))
        except StateBusyError as exc:
            self._log.warning("run.skipped", job=job, reason=str(exc))
            self._status.last[job] = "skipped (state busy)"
        except AuditIntegrityError as exc:
            self._log.error("run.refused", job=job, error=str(exc))
            self.alerts.send(kinds.run_refused(job, run_id, str(exc)))
            self._status.last[job] = "refused (audit trail)"
        except MisyncError as exc:  # an operating condition (directory, state, feeds...)
            self._log.error("run.failed", job=job, error=str(exc), temporary=exc.temporary)
            self.alerts.send(kinds.run_failed(job, run_id, str(exc)))
            self._status.last[job] = f"failed ({type(exc).__name__})"
        except Exception as exc:  # noqa: BLE001 -- a bug: alerted with its traceback, never into the scheduler
            self._log.exception("run.crashed", job=job)
            self.alerts.send(kinds.run_failed(job, run_id, repr(exc), bug=True))
            self._status.last[job] = "crashed"
        else:
            ok = True
            self.alerts.send(kinds.run_succeeded(job, run_id))
            if result is not None:
                self._write_report(rt, run_id)
                counts = ", ".join(f"{k} {v}" for k, v in sorted(result.report.counts.items()))
                at = rt.clock().astimezone(rt.rules.tz)  # as the scheduler's times
                self._status.last[job] = (
                    f"{result.status} at {at:%H:%M:%S} ({counts or 'no changes'}, "
                    f"held {len(result.plan.held)})"
                )
        finally:
            self._log.debug("job.finished", job=job, seconds=round(time.monotonic() - started, 3))
        nxt = self._scheduler.get_job("reconcile")
        when = f"; next reconcile {nxt.next_run_time:%H:%M:%S}" if nxt and nxt.next_run_time else ""
        self.notifier.status(self._status.line() + when)
        self._publish_schedule()
        return ok, result

    def _write_report(self, rt: Runtime, run_id: str) -> None:
        """Keep the run's HTML report in ``state.dir/reports`` (``[report] keep_runs``),
        rendered from the audit trail; a report that cannot be written never fails a run."""
        try:
            path = write_run_report(rt, run_id)
        except Exception as exc:  # noqa: BLE001 -- a report that cannot be written never fails a run
            self._log.warning("report.failed", run_id=run_id, error=str(exc), exc_info=_is_bug(exc))
        else:
            if path is not None:
                self._log.info("report.written", run_id=run_id, path=str(path))

    def _publish_schedule(self, *, stopped: bool = False) -> None:
        """When each job runs next, in the state store (``misync status`` shows it)."""
        if self._stop.is_set() and not stopped:
            return  # the scheduler is shutting down: do not ask it anything
        if not self._leading:
            return  # the schedule in a shared database is the leader's
        try:
            jobs = {} if stopped else {j.id: j.next_run_time for j in self._scheduler.get_jobs()}
            with self.rt.store() as store:
                for job in (
                    "reconcile",
                    "watch",
                    "timed",
                    "monitor",
                    "audit-verify",
                    "retry-fastpath",
                    "retry-timed",
                ):
                    store.set_schedule(job, jobs.get(job))
        except Exception as exc:  # noqa: BLE001 -- status is informative; never stop a run for it
            self._log.warning("schedule.publish_failed", error=str(exc), exc_info=_is_bug(exc))


def _is_bug(exc: BaseException) -> bool:
    """Whether a caught exception is a bug (not one of misync's operating conditions nor
    an OS error): a job boundary that swallows it logs its traceback, so it stays visible."""
    return not isinstance(exc, MisyncError | OSError)


def _undone_disables(result: Any) -> set[str]:
    """The people whose disable a run left undone for a reason that may pass (not
    attempted, stopped, retries ran out): their decision is recorded already, so only
    an explicit retry brings them back."""
    if result is None:
        return set()
    return {
        o.action.person_id
        for o in result.report.outcomes
        if o.status != "ok"
        and o.temporary
        and o.action.op.value == "disable"
        and o.action.person_id is not None
    }
