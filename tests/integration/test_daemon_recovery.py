"""`misync run` as a real subprocess through a directory outage (issue 13, items 3 and 5).

The daemon's own slapd is stopped and started again on the same port and data folder
(as ``systemctl restart slapd`` would), or SIGSTOPped (a hung server):

- a separation appended while the directory is away is disabled within 60 s of the
  directory answering again (the failed fast path is retried with backoff, not left
  for the next full reconcile, here an hour away);
- the fast path's ``run.failed`` closes once a run succeeds again, and the close goes
  to the critical recipients who got the open, named in its subject (a real SMTP relay);
- APScheduler's own warnings reach the log as JSON events, not plain text lines.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.devtools.slapd import LocalSlapd
from tests.conftest import SmtpCapture, ldap_scope_on
from tests.integration.test_daemon import (
    LA,
    Daemon,
    append_row,
    ldap_enabled,
    start_daemon,
    until,
    write_config,
    write_world,
)

pytestmark = pytest.mark.slapd
__all__ = ["start_daemon"]  # the fixture, used by name


@pytest.fixture
def own_slapd(tmp_path: Path) -> Iterator[LocalSlapd]:
    with LocalSlapd(tmp_path / "slapd") as s:
        yield s


def _email(path: Path, smtp: SmtpCapture) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text
        + f"""
[alerts.email]
host = "{smtp.host}"
port = {smtp.port}
starttls = false
sender = "misync@example.org"
to = ["itsd@example.org"]
to_critical = ["security@example.org"]
""",
        encoding="utf-8",
    )


def _closes(smtp: SmtpCapture, words: str) -> list[tuple[str, list[str], Any]]:
    return [m for m in smtp.messages if words in str(m[2]["Subject"])]


def test_a_separation_during_an_outage_is_disabled_soon_after_the_directory_answers(
    tmp_path: Path,
    own_slapd: LocalSlapd,
    start_daemon: Callable[..., Daemon],
    smtp_server: SmtpCapture,
) -> None:
    scope = ldap_scope_on(own_slapd, tmp_path)
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, 3)
    write_config(cfg, feeds, state, scope, reconcile_interval_seconds=3600)
    _email(cfg, smtp_server)
    d = start_daemon(cfg, state)
    first = d.wait_event(lambda e: e.get("event") == "run.finished")
    assert first["summary"]["create_ok"] == 3, first

    # (a few polls first: a row appended before the watcher's first poll is item 2's)
    time.sleep(3)
    # the directory goes away; a separation lands; the fast path fails
    mark = len(d.events())
    own_slapd.stop()
    sep_at = datetime.now(LA) - timedelta(minutes=5)
    append_row(feeds / "separations.csv", f"{ids[0]},LWDB04,{sep_at.isoformat()},resignation")
    d.wait_event(
        lambda e: e.get("event") == "run.failed" and e.get("job") == "fastpath",
        after=mark,
    )
    smtp_server.wait_for(1)
    opened = [m for m in smtp_server.messages if "run.failed run:fastpath" in str(m[2]["Subject"])]
    assert opened and opened[0][1] == ["security@example.org"], smtp_server.messages
    time.sleep(20)  # an outage of a while: several tries fail, the backoff grows
    retries = [
        e
        for e in d.events()[mark:]
        if e.get("event") == "retry.scheduled" and e.get("job") == "fastpath"
    ]
    assert len(retries) >= 2, retries
    assert all(e["seconds"] <= 30 for e in retries)

    # the directory answers again (same port, same data): disabled within 60 s
    own_slapd.start()
    back = time.monotonic()
    assert until(lambda: ldap_enabled(scope, ids[0]) is False, 60.0), "not disabled in 60 s"
    took = time.monotonic() - back
    assert took < 60.0
    assert ldap_enabled(scope, ids[1]) is True and ldap_enabled(scope, ids[2]) is True

    # the fast path's run.failed closes, to the security address that got the open
    assert until(lambda: bool(_closes(smtp_server, "closed: run.failed run:fastpath")), 30.0), [
        str(m[2]["Subject"]) for m in smtp_server.messages
    ]
    close = _closes(smtp_server, "closed: run.failed run:fastpath")[0]
    assert "security@example.org" in close[1]

    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(60) == 0


def test_a_reload_keeps_the_reconcile_schedule_and_publishes_it(
    tmp_path: Path, ldap_scope: Any
) -> None:
    """SIGHUP with the same schedule keeps the next reconcile where it was (a reload
    every 20 minutes must not postpone a 30-minute reconcile for ever) and `misync
    status` sees the schedule as it is after the reload."""
    from connector import app
    from connector.daemon.service import Daemon as Service
    from connector.settings import load_settings
    from connector.state import StateStore

    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    write_world(feeds, 1)
    write_config(cfg, feeds, state, ldap_scope, reconcile_interval_seconds=600, run_on_start=False)

    def load(path: Path | None) -> app.Runtime:
        assert path is not None
        return app.Runtime(load_settings(path))

    d = Service(load(cfg), config_path=cfg, load=load)
    d._schedule_all(first=True)
    d._scheduler.start(paused=True)
    try:
        before = d._scheduler.get_job("reconcile").next_run_time
        time.sleep(1.5)
        assert d.reload()
        assert d._scheduler.get_job("reconcile").next_run_time == before
        with StateStore(state / "state.sqlite3") as store:
            assert store.schedule()["reconcile"] == before
        # a changed schedule is taken from the reload on
        cfg.write_text(cfg.read_text().replace("= 600", "= 900"), encoding="utf-8")
        assert d.reload()
        assert d._scheduler.get_job("reconcile").next_run_time > before
    finally:
        d._scheduler.shutdown(wait=False)
        d._resources.close()


@pytest.mark.parametrize(
    ("stopped", "closes"), [("", ["run:fastpath", "run:timed"]), ("circuit breaker: ...", [])]
)
def test_only_a_reconcile_that_ran_to_its_end_closes_the_fast_paths_failure(
    tmp_path: Path, ldap_scope: Any, stopped: str, closes: list[str]
) -> None:
    """A reconcile that finished read the directory and planned every disable: it closes
    the fast path's and timed job's `run.failed`. One stopped early by the circuit
    breaker proves nothing: it closes nothing, and what it left undone goes to the fast
    path's retry."""
    from types import SimpleNamespace

    from connector import app
    from connector.daemon.service import Daemon as Service
    from connector.settings import load_settings

    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    write_world(feeds, 1)
    write_config(cfg, feeds, state, ldap_scope, run_on_start=False)
    sent: list[Any] = []
    d = Service(
        app.Runtime(load_settings(cfg)),
        config_path=cfg,
        load=lambda p: app.Runtime(load_settings(cfg)),
        alerts=SimpleNamespace(send=sent.append),  # type: ignore[arg-type]
    )
    undone = SimpleNamespace(
        status="not_attempted",
        temporary=True,
        action=SimpleNamespace(op=SimpleNamespace(value="disable"), person_id="P5000"),
    )
    result = SimpleNamespace(
        run_id="r1", report=SimpleNamespace(stopped=stopped, outcomes=[undone])
    )
    d._covered_by_reconcile(result)
    assert [a.key for a in sent if a.kind == "run.succeeded"] == closes
    assert d._fast_people == {"P5000"} and d._fast_pending
    assert d._scheduler.get_job("retry-fastpath") is not None


def test_a_feed_change_read_to_plan_the_timed_job_still_starts_a_fast_path(
    tmp_path: Path, ldap_scope: Any
) -> None:
    """Planning the timed job re-reads feeds that changed since the last run. That read
    must not become the watcher's baseline (what a run acted on): a separation landing
    just after a run finished was otherwise swallowed, never disabled (seen in the HA
    restart test, docs/HA.md)."""
    from connector import app
    from connector.daemon.service import Daemon as Service
    from connector.settings import load_settings

    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, 1)
    write_config(cfg, feeds, state, ldap_scope, run_on_start=False)
    d = Service(
        app.Runtime(load_settings(cfg)),
        config_path=cfg,
        load=lambda p: app.Runtime(load_settings(cfg)),
    )
    try:
        d._watcher.baseline(  # what "the last run" read: the feeds as they are now
            {p: s.digest for p, s in ((p, d._watcher._stamp(p)) for p in d._watcher._files)}
        )
        d._watcher.poll()
        sep_at = datetime.now(LA) - timedelta(minutes=5)
        append_row(feeds / "separations.csv", f"{ids[0]},LWDB04,{sep_at.isoformat()},resignation")
        d._plan_timed()  # re-reads the changed feeds to plan the timed job
        changed = d._watcher.poll() + d._watcher.poll()
        assert "separations.csv" in changed
    finally:
        if d._scheduler.running:
            d._scheduler.shutdown(wait=False)
        d._resources.close()
