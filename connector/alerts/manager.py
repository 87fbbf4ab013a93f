"""The alert manager: one alert per event, reminders while it stays open, a closing
message when it is fixed, never a storm. It is the ``AlertSink`` the runs are given;
the real sinks (log, email, webhook) sit behind it.

Every alert has a *kind* and a *key* (what it is about). The manager keeps the open
ones in the state store (table ``alerts``) and gives each kind one of these lives:

=====================  ==============================================================
kind                   opens / closes
=====================  ==============================================================
breach.open            opens per account; closed by ``breach.closed`` for that account
                       (the closing message). Its open and close are already in the
                       audit trail as ``breach`` records, so only reminders are added.
deadline.warning       opens per account; closed silently when ``breach.open`` opens
                       for it (escalation), by ``breach.closed``, or by a full run that
                       no longer raises it (the account was disabled in time).
operation.held         per held action (``code:key``), swept: a full run that no
operation.failed       longer raises it closes it, with a closing message. The
feed.unhealthy         quarantine alert is raised when an object's failures reach
object.quarantined     ``apply.quarantine_after`` and while it is held as quarantined.
guard.tripped
requester.separated
run.failed,            per job (key ``run:<job>``: ``run:reconcile``...); closed by
run.refused            ``run.succeeded`` for the same job.
audit.altered          per trail; closed by ``audit.verified``.
anything else          a one-off event: delivered (and audited) each time it is raised,
                       within the per-run digest limit; never reminded.
=====================  ==============================================================

Area monitors (``[areas.W]``, connector.alerts.areas): a person's ``breach.open``,
``deadline.warning``, their closes and ``separation.disabled`` (a one-off event only
the areas and the log get) carry ``areas``, placed by the feeds of the run that raised
them (``observe``) and stored with the open alert; one sink per area delivers them.
Digests carry ``by_area`` so each area's names only its own keys; areas get no
per-alert reminders but ``area_digests`` (daily, from ``remind``).

A closer (``breach.closed``, ``run.succeeded``, ``audit.verified``) is delivered only
when it closed something (``breach.closed`` always: the breach was open in the store).

Storms: within one run, after ``[alerts] digest_after`` alerts of one kind have gone
out, further new ones of that kind are recorded (state and audit) but not sent; the run
end sends one ``alert.digest`` naming how many and the first keys. Reminders due at the
same time beyond that limit go as one digest too.

Failures: a sink that raises ``DeliveryError`` (or anything else) is logged as
``alert.delivery_failed``; the alert remembers the sinks that missed it and
``remind()`` tries them again. A failed sink is skipped for the rest of the run (one
timeout per run at most), so a dead relay never holds a run up.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol

import structlog

from connector.alerts.areas import (
    AREA_SINK,
    DIGEST_META,
    AreaDeliverer,
    AreaIndex,
    Placement,
    area_deliverers,
    area_only,
    daily_digests,
    daily_message,
    digest_due,
    event_areas,
)
from connector.alerts.kinds import AlertKind
from connector.alerts.port import Alert, AlertSink, LogAlertSink, Severity
from connector.audit import AuditError, AuditLog
from connector.errors import MisyncError
from connector.model.feeds import FeedSet
from connector.settings import ConfigError, Settings
from connector.state import AlertRow, Store
from connector.timefmt import when

K = AlertKind
#: kinds a full run raises again while their cause lasts: closed when it no longer does
SWEPT = frozenset(
    {
        K.DEADLINE_WARNING,
        K.OPERATION_HELD,
        K.OPERATION_FAILED,
        K.FEED_UNHEALTHY,
        K.OBJECT_QUARANTINED,
        K.GUARD_TRIPPED,
        K.REQUESTER_SEPARATED,
    }
)
STATEFUL = SWEPT | {K.BREACH_OPEN, K.RUN_FAILED, K.RUN_REFUSED, K.AUDIT_ALTERED}
CLOSERS: dict[str, tuple[str, ...]] = {
    K.BREACH_CLOSED: (K.BREACH_OPEN, K.DEADLINE_WARNING),
    K.RUN_SUCCEEDED: (K.RUN_FAILED, K.RUN_REFUSED),
    K.AUDIT_VERIFIED: (K.AUDIT_ALTERED,),
}
SUPERSEDES: dict[str, tuple[str, ...]] = {K.BREACH_OPEN: (K.DEADLINE_WARNING,)}
# `breach` audit records; a separation carried out is its `operation` record
AUDITED_ELSEWHERE = frozenset({K.BREACH_OPEN, K.BREACH_CLOSED, K.SEPARATION_DISABLED})
_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
# the severity of what a closer closes when no open alert row was found (breach.closed)
_CLOSES_SEVERITY = {K.BREACH_OPEN.value: Severity.CRITICAL.value}
_DIGEST_KEYS_SHOWN = 10  # a digest's subject names this many keys, then "..."
_AREA_KEYS_SHOWN = 50  # an area's digest names this many of its keys (its page lists all)


class Deliverer(Protocol):
    """A sink that reports failure by raising (``DeliveryError``); may filter by severity."""

    name: str

    def deliver(self, alert: Alert) -> None: ...

    def wants(self, alert: Alert) -> bool: ...


class _LogDeliverer:
    name = "log"

    def __init__(self, sink: AlertSink | None = None) -> None:
        self._sink = sink or LogAlertSink()

    def deliver(self, alert: Alert) -> None:
        self._sink.send(alert)

    def wants(self, alert: Alert) -> bool:
        return True


class AlertManager:
    """Deduplicates, reminds, closes and rate-limits alerts; implements ``AlertSink``.

    Thread-safe (apply's workers raise ``operation.failed`` from their threads).
    ``run_started``/``run_finished`` bracket a *full* run: only a full run may close
    swept alerts it no longer raises (a partial path, such as the separation fast path,
    must not call ``run_finished(..., full=True)``).
    """

    def __init__(  # noqa: PLR0913 -- the store and sinks; the rest is keyword-only settings
        self,
        store: Store,
        sinks: Iterable[Deliverer],
        *,
        audit: AuditLog | None = None,
        reminder: timedelta = timedelta(hours=4),
        digest_after: int = 10,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tz: tzinfo | None = None,
        placement: Placement | None = None,
        area_digest_at: str = "07:00",
    ) -> None:
        self.store = store
        # area monitors (connector.alerts.areas): who gets a person's events
        self.placement = placement
        self.area_digest_at = area_digest_at
        self._index: AreaIndex | None = None
        self.tz = tz  # instants in summaries and fields: policy.timezone (connector.timefmt)
        self.sinks = list(sinks)
        self.audit = audit
        self.reminder = reminder
        self.digest_after = digest_after
        self.clock = clock
        self._lock = threading.RLock()
        self._log = structlog.get_logger("misync.alert")
        self._run_id: str | None = None
        self._window: object = None
        self._sent: Counter[str] = Counter()
        self._held_back: dict[str, list[Alert]] = defaultdict(list)
        self._down: set[str] = set()

    # -- the AlertSink port ----------------------------------------------------------------

    def send(self, alert: Alert) -> None:
        with self._lock:
            try:
                self._handle(alert)
            except Exception:  # noqa: BLE001 -- the run goes on whatever happens here; logged with its traceback
                self._log.exception("alert.manager_failed", kind=alert.kind, key=alert.key)

    # -- runs ---------------------------------------------------------------------------

    def observe(self, feeds: FeedSet) -> None:
        """The feeds a run read: they place its people's alerts in areas (called by the
        run before it raises any)."""
        if self.placement is None:
            return
        with self._lock:
            try:
                self._index = self.placement(feeds)
            except Exception:  # noqa: BLE001 -- an alert problem never fails a run; logged with its traceback
                self._log.exception("alert.placement_failed")

    def run_started(self, run_id: str) -> None:
        with self._lock:
            self._run_id = run_id
            self._new_window(run_id)

    def run_finished(self, run_id: str, *, full: bool = True) -> None:
        """End of a run: close what a full run no longer raises; flush the digests."""
        with self._lock:
            try:
                if full:
                    self._sweep(run_id)
                self._flush_digests()
            except Exception:  # noqa: BLE001 -- an alert problem never fails a run; logged with its traceback
                self._log.exception("alert.manager_failed", kind="run.finished", key=run_id)
            finally:
                self._run_id = None

    # -- reminders ----------------------------------------------------------------------

    def remind(self, now: datetime | None = None) -> int:
        """Send the reminders that are due and retry failed deliveries; returns how many
        alerts went out. The daemon schedules this (e.g. every few minutes)."""
        with self._lock:
            now = now or self.clock()
            # a new chance for the sinks that failed; the digest window of a run that may
            # be going on in another thread is left alone (its digest goes out at its end)
            self._down.clear()
            due: list[AlertRow] = []
            # areas take no reminders: one that missed the open gets the open again, and
            # stays undelivered (not cleared by the reminder) until it has it
            areas_missed: dict[int, tuple[str, ...]] = {}
            for row in self.store.open_alerts():
                last = row.sent_at or row.opened_at
                if row.kind in STATEFUL and now - last >= self.reminder:
                    due.append(row)
                    if areas := [n for n in row.undelivered if n.startswith(AREA_SINK)]:
                        areas_missed[row.id] = self._deliver(self._from_row(row, "open"), areas)
                elif row.undelivered:  # not due: only retry the sinks that missed it
                    missed = self._deliver(self._from_row(row, "open"), row.undelivered)
                    self.store.alert_delivered(row.id, missed)
            if len(due) > self.digest_after:
                by_kind = Counter(r.kind for r in due)
                worst = max((Severity(r.severity) for r in due), key=_RANK.__getitem__)
                digest = Alert(
                    AlertKind.ALERT_DIGEST,
                    worst,
                    "reminder",
                    f"reminder: {len(due)} alerts are still open: "
                    + ", ".join(f"{k} x{n}" for k, n in sorted(by_kind.items())),
                    {
                        "alert_state": "reminder",
                        "counts": dict(by_kind),
                        "keys": [f"{r.kind}:{r.key}" for r in due[:20]],
                    },
                )
                missed = self._deliver(digest)
                for r in due:
                    self.store.alert_sent(
                        r.id, now, missed + areas_missed.get(r.id, ()), reminder=True
                    )
                self._audit([("alert", self._record(r, "reminder")) for r in due])
                self.area_digests(now)
                return 1
            for r in due:
                n = r.reminders + 1
                alert = self._from_row(r, "reminder", reminder=n)
                missed = self._deliver(alert) + areas_missed.get(r.id, ())
                self.store.alert_sent(r.id, now, missed, reminder=True)
                self._audit([("alert", self._record(r, "reminder"))])
            self.area_digests(now)
            return len(due)

    def area_digests(self, now: datetime | None = None) -> int:
        """Once a day (``[alerts] area_digest_at`` in policy.timezone), one digest per
        area of what is still open for it; returns how many went out. A digest an area
        missed is not re-sent (the next day's lists the same and more)."""
        areas = [s for s in self.sinks if isinstance(s, AreaDeliverer)]
        if not areas:
            return 0
        with self._lock:
            now = now or self.clock()
            day = digest_due(now, self.area_digest_at, self.tz, self.store.meta(DIGEST_META))
            if day is None:
                return 0
            self.store.set_meta(DIGEST_META, day)
            sent = 0
            for d, alert in daily_digests(self.store.open_alerts(), areas, day=day, tz=self.tz):
                try:
                    d.relay.send(daily_message(d, alert))
                    sent += 1
                except Exception as exc:  # noqa: BLE001 -- a sink never fails the daemon's pass
                    self._delivery_failed(d.name, alert, exc)
            return sent

    # -- internals ----------------------------------------------------------------------

    def _place(self, alert: Alert) -> Alert:
        """Add ``areas`` to an alert about a person of some area (stored with an open
        alert, so its reminders and its close go where it went)."""
        if "areas" in alert.fields:
            return alert
        areas = event_areas(alert, self._index)
        if not areas:
            return alert
        fields = {**alert.fields, "areas": list(areas)}
        return Alert(alert.kind, alert.severity, alert.key, alert.summary, fields)

    def _new_window(self, window: object) -> None:
        self._window = window
        self._sent.clear()
        self._held_back.clear()
        self._down.clear()

    def _handle(self, alert: Alert) -> None:
        now = self.clock()
        if self._run_id is None and self._window != ("hour", now.replace(minute=0, second=0)):
            # outside a run, the digest limit counts per clock hour
            self._flush_digests()
            self._new_window(("hour", now.replace(minute=0, second=0)))
        alert = self._place(alert)
        if alert.kind in CLOSERS:
            self._close_by(alert, now)
            return
        for kind in SUPERSEDES.get(alert.kind, ()):
            row = self.store.open_alert(kind, alert.key)
            if row is not None:
                self.store.close_alert(row.id, now, f"superseded by {alert.kind}")
                self._audit([("alert", self._record(row, "closed", f"superseded by {alert.kind}"))])
        if alert.kind not in STATEFUL:
            self._emit(_with_state(alert, "event"), None)
            if alert.kind not in AUDITED_ELSEWHERE:
                self._audit([("alert", _event_record(alert, "event"))])
            return
        row, created = self.store.raise_alert(
            alert.kind,
            alert.key,
            alert.severity.value,
            alert.summary,
            alert.fields,
            now,
            run_id=self._run_id,
        )
        if not created:
            return  # already open: the reminder schedule takes it from here
        if alert.kind not in AUDITED_ELSEWHERE:
            self._audit([("alert", _event_record(alert, "open"))])
        self._emit(_with_state(alert, "open"), row)

    def _emit(self, alert: Alert, row: AlertRow | None) -> None:
        """Deliver now, or hold back for the digest once this kind has had its share
        (closes count per kind they close)."""
        bucket = _bucket(alert)
        if self._sent[bucket] >= self.digest_after:
            self._held_back[bucket].append(alert)
            if row is not None:
                self.store.alert_sent(row.id, self.clock(), (), reminder=False)
            return
        self._sent[bucket] += 1
        missed = self._deliver(alert)
        if row is not None:
            self.store.alert_sent(row.id, self.clock(), missed, reminder=False)

    def _flush_digests(self) -> None:
        for kind, held in sorted(self._held_back.items()):
            if not held:
                continue
            worst = max((a.severity for a in held), key=_RANK.__getitem__)
            states = Counter(str(a.fields.get("alert_state", "event")) for a in held)
            closes = [
                str(a.fields["closes_severity"]) for a in held if "closes_severity" in a.fields
            ]
            route = (
                {"closes_severity": max((Severity(c) for c in closes), key=_RANK.__getitem__).value}
                if closes
                else {}
            )
            digest = Alert(
                AlertKind.ALERT_DIGEST,
                worst,
                f"{kind}:{self._run_id or 'window'}",
                f"{len(held)} more {kind} alerts"
                + (f" in run {self._run_id}" if self._run_id else "")
                + ": "
                + ", ".join(a.key for a in held[:_DIGEST_KEYS_SHOWN])
                + (", ..." if len(held) > _DIGEST_KEYS_SHOWN else ""),
                {
                    "alert_state": "digest",
                    "digest_of": kind,
                    "count": len(held),
                    "states": dict(states),
                    "keys": [a.key for a in held[:50]],
                    **route,
                    **({"run_id": self._run_id} if self._run_id else {}),
                    **_by_area(held),
                },
            )
            self._deliver(digest)
        self._held_back.clear()

    def _close_by(self, closer: Alert, now: datetime) -> None:
        closed: list[AlertRow] = []
        for kind in CLOSERS[closer.kind]:
            row = self.store.open_alert(kind, closer.key)
            if row is not None:
                self.store.close_alert(row.id, now, closer.summary)
                closed.append(row)
        audit = [
            ("alert", self._record(r, "closed", closer.summary))
            for r in closed
            if r.kind not in AUDITED_ELSEWHERE
        ]
        self._audit(audit)
        if not closed and closer.kind != AlertKind.BREACH_CLOSED:
            return
        # the close names what it closes and goes to whoever got the open
        worst = max(closed, key=lambda r: _RANK[Severity(r.severity)], default=None)
        closes = worst.kind if worst is not None else CLOSERS[closer.kind][0]
        severity = worst.severity if worst is not None else _CLOSES_SEVERITY.get(closes, "info")
        extra: dict[str, Any] = {"closes": closes, "closes_severity": severity}
        if worst is not None:
            extra["opened_at"] = when(worst.opened_at, self.tz)
            # the areas that got the open (a mover's close still reaches the area left)
            extra["areas"] = sorted({a for r in closed for a in r.fields.get("areas") or ()})
        self._emit(_with_state(closer, "closed", extra), None)

    def _sweep(self, run_id: str) -> None:
        now = self.clock()
        for row in self.store.open_alerts():
            if row.kind not in SWEPT or row.seen_run == run_id:
                continue
            resolution = f"no longer raised by run {run_id}"
            self.store.close_alert(row.id, now, resolution)
            self._audit([("alert", self._record(row, "closed", resolution))])
            self._emit(
                Alert(
                    AlertKind.ALERT_CLOSED,
                    Severity.INFO,
                    row.key,
                    f"resolved: {row.summary}",
                    {
                        **row.fields,
                        "alert_state": "closed",
                        "closes": row.kind,
                        "closes_severity": row.severity,
                        "opened_at": when(row.opened_at, self.tz),
                        "resolution": resolution,
                    },
                ),
                None,
            )

    def _deliver(self, alert: Alert, only: Iterable[str] | None = None) -> tuple[str, ...]:
        """Hand ``alert`` to every sink (or only those named); returns the sinks that failed."""
        names = set(only) if only is not None else None
        missed: list[str] = []
        for sink in self.sinks:
            if names is not None and sink.name not in names:
                continue
            if not sink.wants(alert):
                continue
            if area_only(alert) and not isinstance(sink, AreaDeliverer | _LogDeliverer):
                continue
            if sink.name in self._down:
                missed.append(sink.name)
                continue
            try:
                sink.deliver(alert)
            except Exception as exc:  # noqa: BLE001 -- a sink never fails a run; a bug logs its traceback
                missed.append(sink.name)
                self._down.add(sink.name)  # one failure per run: the next ones wait for remind
                self._delivery_failed(sink.name, alert, exc)
        return tuple(missed)

    def _delivery_failed(self, sink: str, alert: Alert, exc: Exception) -> None:
        """Log a failed delivery; a bug (not a relay or an OS error) with its traceback."""
        self._log.error(
            "alert.delivery_failed",
            sink=sink,
            kind=alert.kind,
            key=alert.key,
            error=str(exc),
            exc_info=not isinstance(exc, MisyncError | OSError),
        )

    def _audit(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        if self.audit is None or not records:
            return
        try:
            self.audit.append_many(records, run_id=self._run_id or "")
        except AuditError as exc:  # an altered trail is itself alerted (audit.altered)
            self._log.error("alert.audit_failed", error=str(exc), records=len(records))

    def _record(self, row: AlertRow, state: str, resolution: str = "") -> dict[str, Any]:
        rec: dict[str, Any] = {
            "kind": row.kind,
            "key": row.key,
            "severity": row.severity,
            "state": state,
            "summary": row.summary,
            "opened_at": when(row.opened_at, self.tz),
        }
        if state == "reminder":
            rec["reminder"] = row.reminders + 1
        if resolution:
            rec["resolution"] = resolution
        return rec

    def _from_row(self, row: AlertRow, state: str, reminder: int = 0) -> Alert:
        fields: dict[str, Any] = {**row.fields, "alert_state": state}
        summary = row.summary
        if reminder:
            fields["reminder"] = reminder
            since = when(row.opened_at, self.tz)
            fields["opened_at"] = since
            summary = f"reminder {reminder}: {summary} (open since {since})"
        return Alert(AlertKind(row.kind), Severity(row.severity), row.key, summary, fields)


def _with_state(alert: Alert, state: str, extra: dict[str, Any] | None = None) -> Alert:
    return Alert(
        alert.kind,
        alert.severity,
        alert.key,
        alert.summary,
        {**alert.fields, **(extra or {}), "alert_state": state},
    )


def _bucket(alert: Alert) -> str:
    """Where an alert counts against the per-run digest limit: its kind, or for a
    close, the kind it closes. So the close of ``guard.tripped`` or of a fast path's
    ``run.failed`` is always sent on its own, never behind a thousand closes of
    per-account warnings, and a digest of closes names what they closed."""
    if alert.fields.get("alert_state") != "closed":
        return alert.kind
    return f"closes of {alert.fields.get('closes') or alert.kind}"


def _by_area(held: list[Alert]) -> dict[str, Any]:
    """A digest's keys per area (``by_area``), for the area sinks to cut it: an area's
    digest names only its own keys."""
    by_area: dict[str, list[str]] = {}
    for a in held:
        for area in a.fields.get("areas") or ():
            by_area.setdefault(str(area), []).append(a.key)
    if not by_area:
        return {}
    return {
        "by_area": {w: keys[:_AREA_KEYS_SHOWN] for w, keys in by_area.items()},
        "by_area_count": {w: len(keys) for w, keys in by_area.items()},
    }


def _event_record(alert: Alert, state: str) -> dict[str, Any]:
    return {
        "kind": alert.kind,
        "key": alert.key,
        "severity": alert.severity.value,
        "state": state,
        "summary": alert.summary,
    }


def config_problems(settings: Settings) -> list[str]:
    """What ``config check`` can find before the first alert is due: the relay password
    and webhook token files, the notification templates, prometheus-client for metrics."""
    problems: list[str] = []
    a, n = settings.alerts, settings.notifications
    relays = [("alerts.email", a.email), ("notifications.smtp", n.smtp if n.enabled else None)]
    for where, relay in relays:
        if relay is None:
            continue
        if relay.username and relay.password_file is None:
            problems.append(f"{where}.password_file: required with username")
            continue
        try:
            relay.password()
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
    if a.webhook is not None:
        try:
            a.webhook.token()
        except ConfigError as exc:
            problems.append(str(exc))
    if n.enabled:
        from connector.alerts.notify import (
            NotificationTemplateError,
            load_templates,
            load_user_templates,
        )

        try:
            load_templates(n.templates)
            if n.notify_user:
                load_user_templates(n.templates)
        except NotificationTemplateError as exc:
            problems.append(f"notifications.templates: {exc}")
    if settings.metrics.listen:
        import importlib.util

        if importlib.util.find_spec("prometheus_client") is None:
            problems.append(
                "metrics.listen: prometheus-client is not installed (pip install 'misync[metrics]')"
            )
    return problems


def build_alert_sink(
    settings: Settings,
    store: Store,
    audit: AuditLog | None,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    extra: Iterable[Deliverer] = (),
    placement: Placement | None = None,
) -> AlertManager:
    """The manager with the configured sinks: the log always, email and webhook when
    their sections are present, one per area with monitors (``[areas.W]``; ``placement``
    builds the index that places a run's people in areas)."""
    sinks: list[Deliverer] = [_LogDeliverer()]
    a = settings.alerts
    if a.email is not None:
        from connector.alerts.email import EmailAlertSink

        sinks.append(EmailAlertSink(a.email))
    if a.webhook is not None:
        from connector.alerts.webhook import WebhookAlertSink

        sinks.append(WebhookAlertSink(a.webhook, clock=clock))
    if settings.areas and a.email is not None:
        sinks.extend(area_deliverers({w: x.email for w, x in settings.areas.items()}, a.email))
    sinks.extend(extra)
    return AlertManager(
        store,
        sinks,
        audit=audit,
        reminder=timedelta(hours=a.reminder_hours),
        digest_after=a.digest_after,
        clock=clock,
        tz=settings.policy.tz,
        placement=placement if settings.areas else None,
        area_digest_at=a.area_digest_at,
    )
