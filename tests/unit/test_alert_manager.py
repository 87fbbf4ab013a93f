"""The alert manager on a real state store and audit trail, with an injected clock:
one alert per event, one reminder per interval, a closing message, no storms, and a
failing sink that neither blocks nor loses anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from connector.alerts import Alert, Severity
from connector.alerts.email import DeliveryError
from connector.alerts.kinds import audit_altered, audit_verified, run_failed, run_succeeded
from connector.alerts.manager import AlertManager
from connector.audit import AuditTrail
from connector.state import StateStore

T0 = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


class Recorder:
    def __init__(self, name: str = "rec", fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.got: list[Alert] = []
        self.attempts = 0

    def wants(self, alert: Alert) -> bool:
        return True

    def deliver(self, alert: Alert) -> None:
        self.attempts += 1
        if self.fail:
            raise DeliveryError("relay down")
        self.got.append(alert)

    def states(self) -> list[tuple[str, str, str]]:
        return [(a.kind, a.key, str(a.fields.get("alert_state"))) for a in self.got]


@pytest.fixture
def env(tmp_path: Path) -> Any:
    store = StateStore(tmp_path / "state.sqlite3")
    audit = AuditTrail(tmp_path / "audit.sqlite3")
    clock = Clock()
    rec = Recorder()
    mgr = AlertManager(
        store, [rec], audit=audit, reminder=timedelta(hours=4), digest_after=3, clock=clock
    )
    yield mgr, rec, clock, store, audit
    store.close()
    audit.close()


def breach(account: str = "uid=dpatel") -> Alert:
    return Alert(
        "breach.open",
        Severity.CRITICAL,
        account,
        f"{account} is still enabled past its deadline",
        {"account_id": account, "deadline": "2026-11-21T08:00:00+00:00"},
    )


def audit_kinds(audit: AuditTrail) -> list[tuple[str, str, str]]:
    import io
    import json

    buf = io.StringIO()
    audit.export(buf, "jsonl")
    out = []
    for line in buf.getvalue().splitlines():
        rec = json.loads(line)
        data = rec["data"] if isinstance(rec["data"], dict) else json.loads(rec["data"])
        out.append((rec["kind"], data.get("kind", ""), data.get("state", "")))
    return out


def test_breach_one_alert_one_reminder_per_interval_then_closing(env: Any) -> None:
    mgr, rec, clock, store, audit = env
    for run in range(3):  # three runs 30 min apart all see the same breach
        mgr.run_started(f"r{run}")
        mgr.send(breach())
        mgr.run_finished(f"r{run}")
        clock.advance(minutes=30)
    assert rec.states() == [("breach.open", "uid=dpatel", "open")]

    sent = []
    for _ in range(20):  # ten hours in 30-minute steps: reminders at 4 h and 8 h only
        sent.append(mgr.remind())
        clock.advance(minutes=30)
    assert sum(sent) == 2
    reminders = [a for a in rec.got if a.fields.get("alert_state") == "reminder"]
    assert [a.fields["reminder"] for a in reminders] == [1, 2]
    assert reminders[0].summary.startswith("reminder 1: uid=dpatel is still enabled")

    mgr.send(Alert("breach.closed", Severity.INFO, "uid=dpatel", "disabled by run r9", {}))
    assert rec.states()[-1] == ("breach.closed", "uid=dpatel", "closed")
    assert store.open_alerts() == []
    clock.advance(hours=12)
    assert mgr.remind() == 0  # closed: no more reminders
    # breaches are audited as `breach` records by the run: only reminders are added here
    assert audit_kinds(audit) == [("alert", "breach.open", "reminder")] * 2


def test_a_new_breach_after_closing_alerts_again(env: Any) -> None:
    mgr, rec, clock, _store, _audit = env
    mgr.send(breach())
    mgr.send(Alert("breach.closed", Severity.INFO, "uid=dpatel", "fixed", {}))
    clock.advance(days=2)
    mgr.send(breach())
    assert [s for _, _, s in rec.states()] == ["open", "closed", "open"]


def test_warning_escalates_silently_into_the_breach(env: Any) -> None:
    mgr, rec, clock, store, _audit = env
    mgr.send(Alert("deadline.warning", Severity.WARNING, "uid=a", "disable by 18:00", {}))
    clock.advance(hours=1)
    mgr.send(breach("uid=a"))
    assert [(k, s) for k, _, s in rec.states()] == [
        ("deadline.warning", "open"),
        ("breach.open", "open"),
    ]
    assert [r.kind for r in store.open_alerts()] == ["breach.open"]


def test_held_alert_closes_when_a_full_run_no_longer_raises_it(env: Any) -> None:
    mgr, rec, _clock, store, audit = env
    held = Alert("operation.held", Severity.WARNING, "feed_unhealthy:uid=x", "held", {})
    for run in ("r1", "r2"):
        mgr.run_started(run)
        mgr.send(held)
        mgr.run_finished(run)
    mgr.run_started("r3")  # a partial run (fast path) closes nothing
    mgr.run_finished("r3", full=False)
    assert len(store.open_alerts()) == 1
    mgr.run_started("r4")
    mgr.run_finished("r4")
    assert rec.states() == [
        ("operation.held", "feed_unhealthy:uid=x", "open"),
        ("alert.closed", "feed_unhealthy:uid=x", "closed"),
    ]
    assert rec.got[-1].fields["closes"] == "operation.held"
    assert store.open_alerts() == []
    assert audit_kinds(audit) == [
        ("alert", "operation.held", "open"),
        ("alert", "operation.held", "closed"),
    ]


def test_hundreds_of_held_actions_in_one_run_are_one_digest(env: Any) -> None:
    mgr, rec, clock, store, _audit = env
    mgr.run_started("r1")
    for i in range(250):
        mgr.send(Alert("operation.held", Severity.WARNING, f"mass:uid=u{i}", "held", {}))
    mgr.run_finished("r1")
    kinds = [k for k, _, _ in rec.states()]
    assert kinds == ["operation.held"] * 3 + ["alert.digest"]
    assert rec.got[-1].fields["count"] == 247
    assert len(store.open_alerts()) == 250  # each one is still tracked and will close
    clock.advance(hours=4)
    assert mgr.remind() == 1  # due reminders beyond the limit go as one digest
    assert rec.got[-1].kind == "alert.digest"
    assert rec.got[-1].fields["counts"] == {"operation.held": 250}


def test_a_failing_sink_never_blocks_and_is_retried_at_remind(env: Any) -> None:
    mgr, rec, clock, store, _audit = env
    bad = Recorder("webhook", fail=True)
    mgr.sinks.append(bad)
    mgr.run_started("r1")
    for i in range(5):
        mgr.send(breach(f"uid=b{i}"))  # no exception reaches the run
    mgr.run_finished("r1")
    assert len(rec.got) == 3 + 1  # the healthy sink: 3, then the digest
    assert bad.attempts == 1  # after one failure the sink waits for the next remind
    assert {r.undelivered for r in store.open_alerts()} == {("webhook",), ()}
    bad.fail = False
    clock.advance(minutes=5)
    before = len(rec.got)
    mgr.remind()  # not due yet: only the missed deliveries are retried, on that sink only
    assert len(rec.got) == before
    assert len(bad.got) == 3
    assert all(r.undelivered == () for r in store.open_alerts())


class Raising(Recorder):
    def __init__(self, exc: Exception) -> None:
        super().__init__("webhook")
        self.exc = exc

    def deliver(self, alert: Alert) -> None:
        self.attempts += 1
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "traceback"),
    [
        (DeliveryError("relay down"), False),  # an operating condition: its words suffice
        (KeyError("subject"), True),  # a bug in the sink: swallowed, so its traceback shown
    ],
)
def test_a_failing_sink_logs_a_traceback_only_for_a_bug(
    env: Any, exc: Exception, traceback: bool
) -> None:
    mgr, rec, *_ = env
    mgr.sinks.append(Raising(exc))
    with capture_logs() as logs:
        mgr.send(breach())  # no exception reaches the caller either way
    assert len(rec.got) == 1
    (failed,) = [e for e in logs if e["event"] == "alert.delivery_failed"]
    assert failed["sink"] == "webhook"
    assert bool(failed.get("exc_info")) is traceback


@pytest.mark.parametrize(
    ("raise_", "close", "kind"),
    [
        (
            run_failed("reconcile", "r1", "ldap down"),
            run_succeeded("reconcile", "r2"),
            "run.failed",
        ),
        (audit_altered(["record 7: hash mismatch"]), audit_verified(12), "audit.altered"),
    ],
)
def test_run_and_audit_alerts_open_remind_and_close(
    env: Any, raise_: Alert, close: Alert, kind: str
) -> None:
    mgr, rec, clock, _store, _audit = env
    mgr.send(close)  # nothing open: a closer says nothing
    assert rec.got == []
    mgr.send(raise_)
    mgr.send(raise_)
    clock.advance(hours=4)
    assert mgr.remind() == 1
    mgr.send(close)
    assert [(k, s) for k, _, s in rec.states()] == [
        (kind, "open"),
        (kind, "reminder"),
        (close.kind, "closed"),
    ]


def test_one_off_events_are_sent_each_time(env: Any) -> None:
    mgr, rec, _clock, _store, audit = env
    ev = Alert("config.reload_refused", Severity.WARNING, "config", "bad config kept old", {})
    mgr.send(ev)
    mgr.send(ev)
    assert [s for _, _, s in rec.states()] == ["event", "event"]
    assert audit_kinds(audit) == [("alert", "config.reload_refused", "event")] * 2


def test_a_reminder_pass_during_a_run_keeps_that_runs_digest(env: Any) -> None:
    mgr, rec, _clock, _store, _audit = env
    mgr.run_started("r1")
    for i in range(5):
        mgr.send(Alert("operation.held", Severity.WARNING, f"g:uid=u{i}", "held", {}))
    mgr.remind()  # the daemon's monitor job, from another thread, mid-run
    for i in range(5, 8):
        mgr.send(Alert("operation.held", Severity.WARNING, f"g:uid=u{i}", "held", {}))
    mgr.run_finished("r1")
    assert [k for k, _, _ in rec.states()] == ["operation.held"] * 3 + ["alert.digest"]
    assert rec.got[-1].fields["count"] == 5
