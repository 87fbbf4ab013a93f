"""The optional Prometheus endpoint (``[metrics] listen = "127.0.0.1:9469"``; the
``metrics`` extra installs ``prometheus-client``). Every scrape reads the state store, so
the numbers are those of the last runs whichever process made them.

Metrics: ``misync_runs_total{status}``, ``misync_actions_total{op,outcome}``,
``misync_open_breaches``, ``misync_oldest_open_breach_age_seconds`` (since its
deadline), ``misync_feed_age_seconds{feed}``, ``misync_feed_healthy{feed}``,
``misync_last_run_timestamp_seconds``, ``misync_last_success_timestamp_seconds``,
``misync_quarantined_objects``, ``misync_open_alerts{kind}``,
``misync_next_run_timestamp_seconds{job}``; on PostgreSQL (two daemons, docs/HA.md)
``misync_leader`` (1 in the leading daemon, 0 in a standby), ``misync_leader_epoch``,
``misync_leader_since_timestamp_seconds``, ``misync_leader_renewed_timestamp_seconds``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connector.settings import Settings
from connector.state import open_store


class StateCollector:
    """A prometheus-client custom collector over the state store."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        now = self.clock()
        with open_store(self.settings.state) as store:
            runs = CounterMetricFamily("misync_runs", "Finished runs by status", labels=["status"])
            for status, n in sorted(store.run_counts().items()):
                runs.add_metric([status], n)
            yield runs
            actions = CounterMetricFamily(
                "misync_actions", "Directory operations by op and outcome", labels=["op", "outcome"]
            )
            for (op, outcome), n in sorted(store.action_counts().items()):
                actions.add_metric([op, outcome], n)
            yield actions
            breaches = store.open_breaches()
            yield GaugeMetricFamily(
                "misync_open_breaches", "Timely-deactivation breaches open", value=len(breaches)
            )
            oldest = min((b.deadline for b in breaches.values()), default=None)
            yield GaugeMetricFamily(
                "misync_oldest_open_breach_age_seconds",
                "Seconds since the deadline of the oldest open breach (0 when none)",
                value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
            )
            age = GaugeMetricFamily(
                "misync_feed_age_seconds", "Age of each feed file at the last run", labels=["feed"]
            )
            healthy = GaugeMetricFamily(
                "misync_feed_healthy", "1 if the feed was usable at the last run", labels=["feed"]
            )
            for f in store.feed_health():
                if f.modified_at is not None:
                    age.add_metric([f.feed], (now - f.modified_at).total_seconds())
                healthy.add_metric([f.feed], 1.0 if f.state == "ok" else 0.0)
            yield age
            yield healthy
            last = store.last_run()
            good = store.last_run(status="ok")
            for name, row, text in (
                ("misync_last_run_timestamp_seconds", last, "When the last run finished"),
                ("misync_last_success_timestamp_seconds", good, "When the last ok run finished"),
            ):
                if row is not None and row.finished_at is not None:
                    yield GaugeMetricFamily(name, text, value=row.finished_at.timestamp())
            yield GaugeMetricFamily(
                "misync_quarantined_objects",
                "Objects held after apply.quarantine_after failed runs",
                value=len(store.quarantined(self.settings.apply.quarantine_after)),
            )
            alerts = GaugeMetricFamily("misync_open_alerts", "Open alerts by kind", labels=["kind"])
            counts: dict[str, int] = {}
            for a in store.open_alerts():
                counts[a.kind] = counts.get(a.kind, 0) + 1
            for kind, n in sorted(counts.items()):
                alerts.add_metric([kind], n)
            yield alerts
            nxt = GaugeMetricFamily(
                "misync_next_run_timestamp_seconds", "Next scheduled run per job", labels=["job"]
            )
            for job, at in sorted(store.schedule().items()):
                if at is not None:
                    nxt.add_metric([job], at.timestamp())
            yield nxt
            leader = store.leader()  # PostgreSQL: two daemons, one leads (docs/HA.md)
            if leader is not None:
                here = leader.host == socket.gethostname() and leader.pid == os.getpid()
                yield GaugeMetricFamily(
                    "misync_leader",
                    "1 if this daemon is the leader, 0 if a standby",
                    value=float(here),
                )
                yield GaugeMetricFamily(
                    "misync_leader_epoch", "The current leader epoch", value=leader.epoch
                )
                yield GaugeMetricFamily(
                    "misync_leader_since_timestamp_seconds",
                    "When the current leader took over",
                    value=leader.since.timestamp(),
                )
                yield GaugeMetricFamily(
                    "misync_leader_renewed_timestamp_seconds",
                    "When the leader last renewed its lease",
                    value=leader.renewed_at.timestamp(),
                )


@dataclass
class MetricsServer:
    host: str
    port: int
    _server: Any
    _thread: Any

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def start_metrics_server(
    settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> MetricsServer | None:
    """Serve /metrics on ``[metrics] listen`` in a daemon thread (None when not set).
    Raises ``ConfigError`` (exit 2) when prometheus-client is not installed."""
    listen = settings.metrics.listen
    if not listen:
        return None
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as exc:  # the optional extra
        from connector.settings import ConfigError

        raise ConfigError(
            "[metrics] listen is set but prometheus-client is not installed "
            "(pip install 'misync[metrics]')"
        ) from exc
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(settings, clock))
    server, thread = start_http_server(int(port), addr=host, registry=registry)
    return MetricsServer(host, server.server_port, server, thread)
