"""Two `misync run` daemons on one PostgreSQL database (issue 17, "Done when"), as real
subprocesses against a real slapd and a private PostgreSQL, on the real clock:

- the leader is killed (SIGKILL) in the middle of a 250-create apply: the standby takes
  over within 30 s and finishes; journal and audit agree one to one, `audit verify`
  passes, no account is created twice;
- the leader is paused (SIGSTOP) past its lease: the standby ends its session, takes
  over and finishes; resumed (SIGCONT), the old leader journals nothing more (fenced),
  starts no further directory operation, steps down and alerts;
- PostgreSQL restarted under both daemons: they recover without a restart;
- a separation that lands during a failover is disabled within 60 s;
- a timed disable due during a failover happens within 60 s of its instant, once;
- a manual ``misync apply`` is fenced by the leader (refused elsewhere, under the
  daemon's epoch with its state folder, leading itself when no daemon leads).

All in the default run (``deploy/test.sh``, so ``.ci/run``); ``pytest -m ha`` selects
them. Leases are short here (6 s, polls every second) to keep the run short; the
defaults are 15 s and 2 s. Takeover statistics over many kills are
``bench/takeover.py``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connector.devtools.slapd import LocalSlapd
from connector.errors import MisyncError
from connector.state.postgres import PgStateStore
from tests.integration.test_daemon import N_STOP, Daemon, write_config, write_world

pytestmark = [pytest.mark.slapd, pytest.mark.postgresql, pytest.mark.ha]
__all__ = ["start_daemon"]

from tests.integration.test_daemon import start_daemon  # noqa: E402 - the fixture, by name

LEASE = 6
CLI = (sys.executable, "-m", "connector.cli")
TAKEOVER_LIMIT = 30.0


def ha_config(tmp_path: Path, name: str, feeds: Path, scope: Any, url: str) -> tuple[Path, Path]:
    """One "host": its own config and state folder (run lock, reports), the shared
    database."""
    cfg, state = tmp_path / f"{name}.toml", tmp_path / f"state-{name}"
    write_config(cfg, feeds, state, scope, watch_interval_seconds=0)
    text = cfg.read_text(encoding="utf-8").replace(
        f'dir = "{state}"',
        f'dir = "{state}"\nurl = "{url}"\nlease_seconds = {LEASE}\nleader_poll_seconds = 1',
    )
    cfg.write_text(text, encoding="utf-8")
    return cfg, state


def _is(event: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("event") == event and not e.get("alert")


def accounts(scope: Any) -> list[str]:
    """The employee numbers of every account under the test's branch (repeats kept)."""
    s = scope.settings
    with ldap3.Connection(
        ldap3.Server(s.url), s.bind_dn, Path(s.password_file).read_text().strip(), auto_bind=True
    ) as c:
        entries = c.extend.standard.paged_search(
            s.base_dn, "(employeeNumber=*)", attributes=["employeeNumber"], generator=False
        )
        return [
            str(e["attributes"]["employeeNumber"])
            for e in entries
            if e.get("type") == "searchResEntry"
        ]


def check_consistent(url: str, cfg: Path, scope: Any) -> None:
    """Everyone created exactly once; every journal entry closed and audited exactly
    once (the audit's ``data.journal`` ids are the journal's ids); the trail verifies."""
    numbers = accounts(scope)
    assert len(numbers) == N_STOP and len(set(numbers)) == N_STOP, len(numbers)
    with PgStateStore.from_url(url) as store:
        assert store.open_journal_entries() == []
        journal = store.journal()
    assert all(j.audit_seq is not None for j in journal)
    creates_ok = [j.person_id for j in journal if j.op == "create" and j.outcome == "ok"]
    assert len(creates_ok) == len(set(creates_ok)), "an account created twice"
    verify = subprocess.run(
        [sys.executable, "-m", "connector.cli", "-c", str(cfg), "audit", "verify"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    records = audit_records(cfg)
    audited = sorted(
        r["data"]["journal"]
        for r in records
        if r.get("kind") == "operation" and "journal" in r["data"]
    )
    assert audited == sorted(j.id for j in journal), "journal and audit differ"


def audit_records(cfg: Path) -> list[dict[str, Any]]:
    """The whole audit trail, as ``misync audit export --format jsonl`` gives it."""
    export = subprocess.run(
        [*CLI, "-c", str(cfg), "audit", "export", "--format", "jsonl"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in export.stdout.splitlines() if line.strip()]


def _start_pair(
    tmp_path: Path, scope: Any, url: str, start_daemon: Callable[..., Daemon]
) -> tuple[Daemon, Daemon]:
    feeds = tmp_path / "feeds"
    write_world(feeds, N_STOP)
    cfg_a, state_a = ha_config(tmp_path, "a", feeds, scope, url)
    cfg_b, state_b = ha_config(tmp_path, "b", feeds, scope, url)
    a = start_daemon(cfg_a, state_a)
    a.wait_event(_is("leader.takeover"))
    b = start_daemon(cfg_b, state_b)
    b.wait_event(_is("daemon.started"))
    return a, b


def test_the_standby_takes_over_from_a_killed_leader_and_finishes(
    tmp_path: Path, ldap_scope: Any, pg_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    a, b = _start_pair(tmp_path, ldap_scope, pg_url, start_daemon)
    a.wait_event(_is("operation.ok"))
    a.proc.kill()  # SIGKILL in the middle of the apply
    killed = time.monotonic()
    a.proc.wait(10)
    b.wait_event(_is("leader.takeover"), timeout=TAKEOVER_LIMIT + 5)
    took = time.monotonic() - killed
    assert took < TAKEOVER_LIMIT, took
    done = b.wait_event(_is("run.finished"), timeout=120)
    assert done["status"] == "ok", done
    with PgStateStore.from_url(pg_url) as store:
        leader = store.leader()
    assert leader is not None and leader.epoch == 2 and leader.pid == b.proc.pid
    check_consistent(pg_url, b.config, ldap_scope)
    # `misync status` (JSON and text) names the leader, its epoch and since when
    status = subprocess.run(
        [sys.executable, "-m", "connector.cli", "-c", str(b.config), "status", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    lead = json.loads(status.stdout)["leader"]
    assert (lead["role"], lead["pid"], lead["epoch"], lead["lease_ok"]) == (
        "leader",
        b.proc.pid,
        2,
        True,
    ), lead
    assert lead["since"]
    text = subprocess.run(
        [sys.executable, "-m", "connector.cli", "-c", str(b.config), "status"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert f"role: leader (this host); leader: {lead['host']} pid {b.proc.pid}, epoch 2" in text
    takeover = b.wait_event(lambda e: e.get("event") == "leader.takeover" and bool(e.get("alert")))
    assert takeover["key"] == "epoch:2" and "epoch 1" in takeover["previous"], takeover
    b.proc.send_signal(signal.SIGTERM)
    assert b.proc.wait(60) == 0


def test_a_paused_leader_is_fenced_when_it_resumes(
    tmp_path: Path, ldap_scope: Any, pg_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    a, b = _start_pair(tmp_path, ldap_scope, pg_url, start_daemon)
    a.wait_event(_is("operation.ok"))
    a.proc.send_signal(signal.SIGSTOP)  # paused mid-apply; its TCP sessions stay up
    paused = time.monotonic()
    b.wait_event(_is("leader.takeover"), timeout=TAKEOVER_LIMIT + 5)
    assert time.monotonic() - paused < TAKEOVER_LIMIT
    done = b.wait_event(_is("run.finished"), timeout=120)
    assert done["status"] == "ok", done
    mark = len(a.events())
    a.proc.send_signal(signal.SIGCONT)
    down = a.wait_event(_is("leader.stepped_down"), after=mark)
    assert down["epoch"] == 1
    after = a.events()[mark:]
    # at most the one operation it had sent before the pause (workers = 1) completes;
    # nothing new is journaled or sent to the directory
    sent = [
        e for e in after if str(e.get("event", "")).startswith("operation.") and not e.get("alert")
    ]
    assert len([e for e in sent if e["event"] == "operation.ok"]) <= 1, sent
    alert = a.wait_event(
        lambda e: e.get("event") == "leader.stepped_down" and bool(e.get("alert")), after=mark
    )
    assert alert["level"] == "error" and alert["key"] == "epoch:1", alert  # critical
    assert not any(e.get("event") == "retry.scheduled" for e in a.events()[mark:])
    check_consistent(pg_url, b.config, ldap_scope)
    # the old leader stays up as the standby; both stop cleanly
    for d in (a, b):
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(60) == 0


def test_postgresql_restarted_under_both_daemons_they_recover_without_a_restart(
    tmp_path: Path, ldap_scope: Any, start_daemon: Callable[..., Daemon]
) -> None:
    """The database restarts under both daemons (its own server here, not the session's):
    the leader loses its session and steps down, one of them takes over under a new
    epoch once the server is back, and a separation that lands then is disabled within
    60 s; neither daemon exits."""
    from connector.devtools.postgres import LocalPostgres
    from tests.integration.test_daemon import LA, append_row, ldap_enabled

    with LocalPostgres(durable=True) as pg:  # started by the with
        url = pg.create_database("ha")
        feeds = tmp_path / "feeds"
        ids = write_world(feeds, 3)
        daemons = []
        for name in ("a", "b"):
            cfg, state = ha_config(tmp_path, name, feeds, ldap_scope, url)
            cfg.write_text(
                cfg.read_text(encoding="utf-8").replace(
                    "watch_interval_seconds = 0", "watch_interval_seconds = 0.5"
                ),
                encoding="utf-8",
            )
            daemons.append(start_daemon(cfg, state))
        a, b = daemons
        a.wait_event(_is("daemon.started"))
        b.wait_event(_is("daemon.started"))
        first = time.monotonic() + 60  # whichever leads makes the first run
        while time.monotonic() < first and not any(
            e.get("event") == "run.finished" for d in daemons for e in d.events()
        ):
            time.sleep(0.2)
        pg.stop()
        time.sleep(5)
        pg.start()
        back = time.monotonic()
        assert until_leader(url, above=1, timeout=60), "no new leader after the restart"
        sep_at = datetime.now(LA) - timedelta(minutes=5)
        append_row(feeds / "separations.csv", f"{ids[0]},LWDB04,{sep_at.isoformat()},resignation")
        end = time.monotonic() + 60
        while time.monotonic() < end and ldap_enabled(ldap_scope, ids[0]) is not False:
            time.sleep(0.5)
        assert ldap_enabled(ldap_scope, ids[0]) is False, time.monotonic() - back
        assert a.proc.poll() is None and b.proc.poll() is None
        for d in daemons:
            d.proc.send_signal(signal.SIGTERM)
            assert d.proc.wait(60) == 0


def until_leader(url: str, *, above: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with PgStateStore.from_url(url) as store:
                row = store.leader()
        except MisyncError:  # the server restarting: ask again
            row = None
        if row is not None and row.epoch > above:
            return True
        time.sleep(0.5)
    return False


def test_a_separation_that_lands_during_a_failover_is_disabled_within_60_s(
    tmp_path: Path, ldap_scope: Any, pg_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    """The leader is killed and a separation lands at once, before anyone leads: the
    new leader's first reconcile (or its fast path) disables the account within 60 s
    of the separation."""
    from tests.integration.test_daemon import LA, append_row, ldap_enabled

    feeds = tmp_path / "feeds"
    ids = write_world(feeds, 3)
    daemons = []
    for name in ("a", "b"):
        cfg, state = ha_config(tmp_path, name, feeds, ldap_scope, pg_url)
        cfg.write_text(
            cfg.read_text(encoding="utf-8").replace(
                "watch_interval_seconds = 0", "watch_interval_seconds = 0.5"
            ),
            encoding="utf-8",
        )
        daemons.append(start_daemon(cfg, state))
        daemons[-1].wait_event(_is("daemon.started"))
    first = time.monotonic() + 60
    while time.monotonic() < first and not any(
        e.get("event") == "run.finished" for d in daemons for e in d.events()
    ):
        time.sleep(0.2)
    with PgStateStore.from_url(pg_url) as store:
        row = store.leader()
    assert row is not None
    leader = next(d for d in daemons if d.proc.pid == row.pid)
    other = next(d for d in daemons if d is not leader)
    leader.proc.kill()
    landed = time.monotonic()
    sep_at = datetime.now(LA) - timedelta(seconds=1)
    append_row(feeds / "separations.csv", f"{ids[0]},LWDB04,{sep_at.isoformat()},resignation")
    end = landed + 60
    while time.monotonic() < end and ldap_enabled(ldap_scope, ids[0]) is not False:
        time.sleep(0.5)
    took = time.monotonic() - landed
    assert ldap_enabled(ldap_scope, ids[0]) is False, f"not disabled after {took:.1f} s"
    assert ldap_enabled(ldap_scope, ids[1]) is True
    other.proc.send_signal(signal.SIGTERM)
    assert other.proc.wait(60) == 0


def test_a_timed_disable_due_during_a_failover_happens_within_60_s(
    tmp_path: Path,
    ldap_scope: Any,
    slapd: LocalSlapd,
    pg_url: str,
    start_daemon: Callable[..., Daemon],
) -> None:
    """A separation dated a few seconds ahead (a timed disable: no feed changes at its
    instant) is scheduled by the leader, which is then killed (SIGKILL) before the
    instant. The standby takes over and evaluates before the instant, but its first
    reconcile is still running when the instant passes (the directory hangs for a few
    seconds, as a big directory's first full read takes): the account is disabled within
    60 s of the instant, exactly once in journal and audit."""
    from tests.integration.test_daemon import LA, append_row, ldap_enabled

    feeds = tmp_path / "feeds"
    ids = write_world(feeds, 3)
    x = ids[0]
    daemons = []
    for name in ("a", "b"):
        cfg, state = ha_config(tmp_path, name, feeds, ldap_scope, pg_url)
        text = cfg.read_text(encoding="utf-8")
        text = text.replace("watch_interval_seconds = 0", "watch_interval_seconds = 0.5")
        # the directory hangs for longer than the default 10 s to connect: it answers late
        text = text.replace('scope = "one"', 'scope = "one"\nconnect_timeout = 45', 1)
        cfg.write_text(text, encoding="utf-8")
        daemons.append((cfg, state))
    a = start_daemon(*daemons[0])
    a.wait_event(_is("leader.takeover"))
    b = start_daemon(*daemons[1])
    b.wait_event(_is("daemon.started"))
    a.wait_event(_is("run.finished"))
    assert ldap_enabled(ldap_scope, x) is True
    mark = len(a.events())
    due = (datetime.now(LA) + timedelta(seconds=10)).replace(microsecond=0)
    append_row(feeds / "separations.csv", f"{x},LWDB04,{due.isoformat()},resignation")
    # the leader plans its timed job for the instant (its watcher saw the new row) ...
    a.wait_event(
        lambda e: (
            e.get("event") == "timed.scheduled"
            and datetime.fromisoformat(e["at"]) == due
            and x in e["people"]
        ),
        after=mark,
    )
    # ... and dies before it; the directory hangs until after the instant
    a.proc.kill()
    a.proc.wait(10)
    assert slapd._proc is not None
    slapd._proc.send_signal(signal.SIGSTOP)
    try:
        b.wait_event(_is("leader.takeover"), timeout=TAKEOVER_LIMIT)
        while datetime.now(LA) < due + timedelta(seconds=2):
            time.sleep(0.2)
    finally:
        slapd._proc.send_signal(signal.SIGCONT)
    end = due + timedelta(seconds=60)
    while datetime.now(LA) < end and ldap_enabled(ldap_scope, x) is not False:
        time.sleep(0.5)
    late = datetime.now(LA) - due
    assert ldap_enabled(ldap_scope, x) is False, f"not disabled {late} after its instant"
    assert ldap_enabled(ldap_scope, ids[1]) is True
    with PgStateStore.from_url(pg_url) as store:
        runs = store.runs(50)
        journal = store.journal()
    # the new leader's first reconcile evaluated before the instant (so it could not
    # disable) and ended after it: the case where the instant falls inside a failover
    first_id = b.wait_event(_is("run.finished"))["run_id"]
    first = next(r for r in runs if r.run_id == first_id)
    assert first.kind == "apply" and first.finished_at is not None, first  # a reconcile
    assert first.as_of < due < first.finished_at, first
    disables = [j for j in journal if j.person_id == x and j.op == "disable"]
    assert [(j.outcome, j.audit_seq is not None) for j in disables] == [("ok", True)], disables
    audited = [
        r
        for r in audit_records(b.config)
        if r.get("kind") == "operation" and r["data"].get("journal") == disables[0].id
    ]
    assert len(audited) == 1, audited
    verify = subprocess.run(
        [sys.executable, "-m", "connector.cli", "-c", str(b.config), "audit", "verify"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    b.proc.send_signal(signal.SIGTERM)
    assert b.proc.wait(60) == 0


def _apply(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "-c", str(cfg), "apply", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_a_manual_apply_on_postgresql_is_fenced_by_the_leader(
    tmp_path: Path, ldap_scope: Any, pg_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    """``misync apply`` on PostgreSQL: refused (exit 7, naming the leader) from another
    state folder while a daemon leads; carried out under the daemon's epoch with the
    daemon's own folder; with no daemon leading, the command leads itself under a new
    epoch and gives the leadership up at the end."""
    import socket

    from tests.integration.test_daemon import LA, append_row, ldap_enabled

    feeds = tmp_path / "feeds"
    ids = write_world(feeds, 3)
    cfg_a, state_a = ha_config(tmp_path, "a", feeds, ldap_scope, pg_url)
    cfg_b, _ = ha_config(tmp_path, "b", feeds, ldap_scope, pg_url)  # "the other host"
    a = start_daemon(cfg_a, state_a)
    a.wait_event(_is("leader.takeover"))
    a.wait_event(_is("run.finished"))
    # separations the daemon does not act on by itself here (no watcher, hourly reconcile)
    gone = (datetime.now(LA) - timedelta(minutes=1)).isoformat()
    append_row(feeds / "separations.csv", f"{ids[0]},LWDB04,{gone},resignation")
    with PgStateStore.from_url(pg_url) as store:
        before = len(store.journal())

    refused = _apply(cfg_b)
    assert refused.returncode == 7, refused.stdout + refused.stderr
    host = socket.gethostname()
    assert f"misync on {host} (pid {a.proc.pid}) leads, epoch 1" in refused.stderr, refused.stderr
    assert ldap_enabled(ldap_scope, ids[0]) is True
    with PgStateStore.from_url(pg_url) as store:
        assert len(store.journal()) == before  # nothing journaled, nothing done

    # the daemon's own configuration (its state folder, this host): under its epoch
    done = _apply(cfg_a)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ldap_enabled(ldap_scope, ids[0]) is False
    with PgStateStore.from_url(pg_url) as store:
        leader = store.leader()
    assert leader is not None and (leader.epoch, leader.pid) == (1, a.proc.pid), leader

    # no daemon leads: the command leads (epoch 2) and lets go at the end
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(60) == 0
    assert not (state_a / "misync.leader").exists()
    append_row(feeds / "separations.csv", f"{ids[1]},LWDB04,{gone},resignation")
    led = _apply(cfg_b)
    assert led.returncode == 0, led.stdout + led.stderr
    assert ldap_enabled(ldap_scope, ids[1]) is False
    assert ldap_enabled(ldap_scope, ids[2]) is True
    with PgStateStore.from_url(pg_url) as store:
        leader = store.leader()
        journal = store.journal()
    assert leader is not None and leader.epoch == 2 and leader.pid != a.proc.pid, leader
    disables = [j.person_id for j in journal if j.op == "disable" and j.outcome == "ok"]
    assert sorted(disables) == sorted(ids[:2]), disables
    # the lock is free again: a daemon started now leads under epoch 3
    b = start_daemon(cfg_b, tmp_path / "state-b")
    took = b.wait_event(_is("leader.takeover"))
    assert took["epoch"] == 3, took
    b.proc.send_signal(signal.SIGTERM)
    assert b.proc.wait(60) == 0
    audited = sorted(
        r["data"]["journal"]
        for r in audit_records(cfg_b)
        if r.get("kind") == "operation" and "journal" in r["data"]
    )
    assert audited == sorted(j.id for j in journal)
