"""`misync status` (text and JSON) and the Prometheus endpoint, from a real state store;
the endpoint is scraped over HTTP on loopback."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connector.health import collect_status, render_status
from connector.health.metrics import start_metrics_server
from connector.settings import Settings
from connector.state import FeedHealthRow, StateStore

NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)


@pytest.fixture
def state(tmp_path: Path) -> Any:
    settings = Settings.model_validate(
        {
            "target": {"ldap": {"base_dn": "ou=people,dc=x"}},
            "state": {"dir": str(tmp_path)},
            "metrics": {"listen": "127.0.0.1:0"},
        }
    )
    store = StateStore(settings.state.db)
    store.start_run("r1", "apply", NOW - timedelta(hours=2), "sha256:a")
    store.finish_run("r1", "ok", {"disable": 1})
    store.start_run("r2", "apply", NOW - timedelta(hours=1), "sha256:b")
    e = store.journal_begin("r2", "uid=a", "disable", "P1", "uid=a", {})
    store.journal_end(e, "ok", "uid=a", "")
    e = store.journal_begin("r2", "uid=b", "update", "P2", "uid=b", {})
    store.journal_end(e, "failed", "uid=b", "busy")
    store.finish_run("r2", "incomplete", {"disable": 1, "update": 1, "failed": 1})
    store.open_breach("uid=c", "P3", NOW - timedelta(hours=5), "breach", "separated", NOW)
    for _ in range(3):
        store.record_failure("uid=b", NOW, "ldap: busy")
    store.raise_alert(
        "operation.held",
        "feed_unhealthy:uid=d",
        "warning",
        "disable uid=d held",
        {},
        NOW,
        run_id="r2",
    )
    store.record_feed_health(
        "r2",
        NOW,
        [
            FeedHealthRow("workers", "ok", 12, 0, "", NOW - timedelta(hours=3), "r2", NOW),
            FeedHealthRow(
                "ndas", "stale", 4, 0, "older than 36 h", NOW - timedelta(hours=40), "r2", NOW
            ),
        ],
    )
    store.set_schedule("reconcile", NOW + timedelta(minutes=30))
    yield settings, store
    store.close()


def test_status_json_and_text(state: Any) -> None:
    settings, store = state
    s = collect_status(settings, store, NOW)
    json.dumps(s)  # serializable as is
    assert s["last_run"]["run_id"] == "r2" and s["last_run"]["status"] == "incomplete"
    assert s["last_success"]["run_id"] == "r1"
    # policy.timezone (the default, America/Los_Angeles), to the second (issue 13.12)
    assert s["schedule"] == [{"job": "reconcile", "next_at": "2026-11-25T09:30:00-08:00"}]
    assert s["recorded"] is True
    assert [(b["account_id"], b["overdue_hours"]) for b in s["breaches"]] == [("uid=c", 5.0)]
    assert [q["key"] for q in s["quarantined"]] == ["uid=b"]
    assert [h["key"] for h in s["held"]] == ["feed_unhealthy:uid=d"]
    assert [(f["feed"], f["state"], f["age_hours"]) for f in s["feeds"]] == [
        ("ndas", "stale", 40.0),
        ("workers", "ok", 3.0),
    ]
    text = render_status(s)
    assert "last run: r2 (apply) incomplete" in text
    assert "  reconcile: 2026-11-25T09:30:00-08:00" in text
    assert "  uid=c (P3): deadline 2026-11-25T04:00:00-08:00, 5.0 h overdue (separated)" in text
    assert "  ndas: stale, 4 rows age 40.0 h (older than 36 h)" in text
    assert "quarantined: 1" in text


def test_metrics_endpoint_scraped_over_http(state: Any) -> None:
    settings, _store = state
    server = start_metrics_server(settings, clock=lambda: NOW)
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        server.close()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert samples[("misync_runs_total", (("status", "ok"),))] == 1
    assert samples[("misync_runs_total", (("status", "incomplete"),))] == 1
    assert samples[("misync_actions_total", (("op", "disable"), ("outcome", "ok")))] == 1
    assert samples[("misync_actions_total", (("op", "update"), ("outcome", "failed")))] == 1
    assert samples[("misync_open_breaches", ())] == 1
    assert samples[("misync_oldest_open_breach_age_seconds", ())] == 5 * 3600
    assert samples[("misync_feed_age_seconds", (("feed", "ndas"),))] == 40 * 3600
    assert samples[("misync_feed_healthy", (("feed", "ndas"),))] == 0
    assert samples[("misync_feed_healthy", (("feed", "workers"),))] == 1
    assert samples[("misync_quarantined_objects", ())] == 1
    assert samples[("misync_open_alerts", (("kind", "operation.held"),))] == 1
    assert samples[("misync_last_success_timestamp_seconds", ())] > 0
    assert (
        samples[("misync_next_run_timestamp_seconds", (("job", "reconcile"),))]
        == (NOW + timedelta(minutes=30)).timestamp()
    )


def test_no_listen_no_server(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"target": {"ldap": {"base_dn": "ou=x"}}, "state": {"dir": str(tmp_path)}}
    )
    assert start_metrics_server(settings) is None


@pytest.mark.parametrize(
    ("runs", "recorded"),
    [
        ([], False),  # nothing has run
        ([("fastpath", True)], False),  # a targeted run sees a few accounts only
        ([("apply", False)], False),  # the first full run is still going
        ([("timed", True), ("apply", True)], True),
    ],
)
def test_status_says_when_breaches_are_not_recorded_yet(
    tmp_path: Path, runs: list[tuple[str, bool]], recorded: bool
) -> None:
    settings = Settings.model_validate(
        {"target": {"ldap": {"base_dn": "ou=people,dc=x"}}, "state": {"dir": str(tmp_path)}}
    )
    with StateStore(settings.state.db) as store:
        for n, (kind, finished) in enumerate(runs):
            store.start_run(f"r{n}", kind, NOW, None)
            if finished:
                store.finish_run(f"r{n}", "ok", {})
        s = collect_status(settings, store, NOW)
    assert s["recorded"] is recorded
    text = render_status(s)
    if recorded:
        assert s["breaches"] == [] and "open breaches: 0\n" in text
    else:
        assert s["breaches"] is None
        assert "open breaches: 0" not in text
        assert "open breaches: not recorded yet" in text and "`misync plan`" in text
