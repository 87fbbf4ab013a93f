"""The alert port: one value type and one method."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog

if TYPE_CHECKING:
    from connector.alerts.kinds import AlertKind
    from connector.model.feeds import FeedSet


class Severity(StrEnum):
    INFO = "info"  # something was fixed (a breach closed)
    WARNING = "warning"  # act soon (a deadline is near, an action is held)
    CRITICAL = "critical"  # act now (a deadline was missed, a run failed)


@dataclass(frozen=True, slots=True)
class Alert:
    """Something a person must know about.

    ``kind`` is a stable event name (``connector.alerts.kinds.AlertKind``: build alerts
    with that module's constructors); ``key`` names the thing it is about (an account id, a feed,
    a run) so that repeats of the same alert can be recognised; ``fields`` are ids and
    dates only (no names, no emails, no secrets).
    """

    kind: AlertKind
    severity: Severity
    key: str
    summary: str
    fields: Mapping[str, Any] = field(default_factory=dict)


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def routing_severity(alert: Alert) -> Severity:
    """The severity that picks an alert's recipients and passes a sink's ``min_severity``:
    its own, or, for a closing message (``closes_severity``), that of the alert it
    closes, so that a close reaches whoever got the open (a CRITICAL open went to
    ``to_critical``: so does its INFO close)."""
    closes = alert.fields.get("closes_severity")
    try:
        other = Severity(str(closes)) if closes else alert.severity
    except ValueError:
        other = alert.severity
    return max(alert.severity, other, key=_RANK.__getitem__)


class AlertSink(Protocol):
    """Delivers alerts. Implementations must not raise for a delivery problem they can
    report themselves (log it); the run that raised the alert goes on either way."""

    def send(self, alert: Alert) -> None: ...


@runtime_checkable
class RunAwareSink(AlertSink, Protocol):
    """A sink that wants to know where a run starts and ends (the alert manager: it
    closes what a *full* run no longer raises, and sends one digest per run)."""

    def run_started(self, run_id: str) -> None: ...

    def run_finished(self, run_id: str, *, full: bool = True) -> None: ...


@runtime_checkable
class FeedAwareSink(AlertSink, Protocol):
    """A sink that places alerts by the feeds a run read (the alert manager: which
    area's monitors get a person's alerts, connector.alerts.areas)."""

    def observe(self, feeds: FeedSet) -> None: ...


class LogAlertSink:
    """The sink that is always there: one structlog event per alert, named after its kind."""

    def __init__(self, logger_name: str = "misync.alert") -> None:
        self._log = structlog.get_logger(logger_name)

    def send(self, alert: Alert) -> None:
        level = {
            Severity.INFO: self._log.info,
            Severity.WARNING: self._log.warning,
            Severity.CRITICAL: self._log.error,
        }[alert.severity]
        level(alert.kind, key=alert.key, summary=alert.summary, alert=True, **dict(alert.fields))
