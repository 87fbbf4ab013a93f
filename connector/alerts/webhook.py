"""The JSON webhook alert sink (``requests``): one POST per alert, retried with backoff.

The payload (schema ``misync.alert/1``, documented in the README) is::

    {"schema": "misync.alert/1", "kind": "breach.open", "severity": "critical",
     "state": "open", "key": "uid=dpatel,ou=people,...", "summary": "...",
     "fields": {...}, "sent_at": "2026-11-25T17:00:00+00:00", "source": "misync"}

5xx answers, 429, timeouts and connection errors are retried (``max_attempts``, with
exponential backoff from ``backoff_seconds``); other 4xx are permanent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import requests
import structlog

from connector.alerts.email import _RANK, DeliveryError
from connector.alerts.port import Alert, Severity, routing_severity
from connector.settings import WebhookAlertSettings

SCHEMA = "misync.alert/1"


def alert_payload(alert: Alert, sent_at: datetime) -> dict[str, Any]:
    fields = {k: v for k, v in alert.fields.items() if k != "alert_state"}
    return {
        "schema": SCHEMA,
        "source": "misync",
        "kind": alert.kind,
        "severity": alert.severity.value,
        "state": str(alert.fields.get("alert_state", "event")),
        "key": alert.key,
        "summary": alert.summary,
        "fields": fields,
        "sent_at": sent_at.astimezone(UTC).isoformat(),
    }


class WebhookAlertSink:
    name = "webhook"

    def __init__(
        self,
        settings: WebhookAlertSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._session = requests.Session()
        self._log = structlog.get_logger("misync.alert")

    def wants(self, alert: Alert) -> bool:
        return _RANK[routing_severity(alert)] >= _RANK[Severity(self.settings.min_severity)]

    def deliver(self, alert: Alert) -> None:
        s = self.settings
        try:
            token = s.token()
        except ValueError as exc:
            raise DeliveryError(str(exc)) from exc
        headers = {"User-Agent": "misync"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify: bool | str = str(s.ca_file) if s.ca_file and s.verify_tls else s.verify_tls
        body = alert_payload(alert, self._clock())
        problem = ""
        for attempt in range(1, s.max_attempts + 1):
            try:
                r = self._session.post(
                    s.url, json=body, headers=headers, timeout=s.timeout, verify=verify
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                problem = f"{type(exc).__name__}"
            else:
                if r.status_code < HTTPStatus.MULTIPLE_CHOICES:  # 2xx: delivered
                    return
                problem = f"HTTP {r.status_code}"
                if (
                    r.status_code < HTTPStatus.INTERNAL_SERVER_ERROR
                    and r.status_code != HTTPStatus.TOO_MANY_REQUESTS
                ):
                    raise DeliveryError(f"webhook: {problem} (not retried)")
            if attempt < s.max_attempts:
                self._sleep(s.backoff_seconds * 2 ** (attempt - 1))
        raise DeliveryError(f"webhook: {problem} after {s.max_attempts} attempts")

    def send(self, alert: Alert) -> None:
        try:
            self.deliver(alert)
        except DeliveryError as exc:
            self._log.error(
                "alert.delivery_failed", sink=self.name, kind=alert.kind, error=str(exc)
            )
