"""`misync run` as a real subprocess against a real slapd, with second-scale intervals.

- a separation row appended to the feed: that account is disabled by the fast path
  (no full scan) within the poll interval plus one run;
- a disable request that takes effect a few seconds ahead: carried out at its instant
  by the timed job, with no breach;
- SIGHUP with a broken configuration: refused with an alert, the old one kept (and the
  daemon keeps working); a good one is taken;
- SIGTERM during an apply: the operation in flight finishes and is journaled, the rest
  are recorded as not attempted, exit 0, a consistent journal and an intact trail;
- systemd's notify socket receives READY=1, STATUS= and WATCHDOG=1;
- a separation carried out by the fast path is mailed to the monitors of that person's
  area ([areas.W]), once, and to no other area (aiosmtpd on loopback).

Every wait polls for its condition with a generous timeout (the machine is shared).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import ldap3
import pytest

from connector.state import StateStore
from tests.configs import ldap_toml

pytestmark = pytest.mark.slapd

ROOT = Path(__file__).resolve().parents[2]
LA = ZoneInfo("America/Los_Angeles")
TIMEOUT = 60.0
N_STOP = 250  # creates in the run SIGTERM interrupts: enough to still be running then

HEADERS = {
    "organizations.csv": "org_id,name,kind,wda",
    "contracts.csv": "contract_id,org_id,type,counterparty,business_case,signed_on,starts_on,"
    "ends_on,terminated_on,security_admin_approved_on,contracts_office_approved_on,"
    "data_owner_approved_on",
    "workers.csv": "person_id,org_id,given_name,family_name,email,office,supervisor_id,status,"
    "separated_on",
    "separations.csv": "person_id,org_id,separated_at,reason",
    "training.csv": "person_id,course,completed_on",
    "ndas.csv": "person_id,signed_on",
    "requesters.csv": "person_id,wda,designated_by,starts_on,ends_on",
    "requests.csv": "request_id,action,person_id,requester_id,submitted_at,effective_on,status,"
    "profile,offices,cert_training,cert_profile_approved,cert_nda,supervisor_id",
}


def write_world(feeds: Path, people: int) -> list[str]:
    """``people`` entitled LWDB workers (P5000...), one requester; returns the person ids."""
    feeds.mkdir(parents=True, exist_ok=True)
    ids = [f"P{5000 + i}" for i in range(people)]
    rows: dict[str, list[str]] = {name: [] for name in HEADERS}
    rows["organizations.csv"].append("LWDB04,Seattle-King County WDC,lwdb,WDA-04")
    rows["contracts.csv"] += [
        "W-1,LWDB04,wioa_services,dol,,2025-06-01,2025-07-01,,,,,",
        "DS-1,LWDB04,data_sharing,esd,Case management,2025-06-01,2025-07-01,,,"
        "2025-06-10,2025-06-12,2025-06-05",
    ]
    rows["requesters.csv"].append("R900,WDA-04,LWDB04 Executive Director,2024-01-01,")
    rows["workers.csv"].append("R900,LWDB04,Rita,Requester,r900@example.org,Seattle,,active,")
    for n, pid in enumerate(ids):
        rows["workers.csv"].append(
            f"{pid},LWDB04,Given{n},Family{n},p{n}@example.org,Seattle,R900,active,"
        )
        rows["training.csv"].append(f"{pid},MIS Basic,2025-09-10")
        rows["ndas.csv"].append(f"{pid},2025-09-15")
        rows["requests.csv"].append(
            f"REQ-{pid},add,{pid},R900,2025-09-16T09:00:00-07:00,2025-09-17,approved,"
            f"case-manager,Seattle,true,true,true,R900"
        )
    for name, header in HEADERS.items():
        (feeds / name).write_text("\n".join([header, *rows[name]]) + "\n", encoding="utf-8")
    return ids


def append_row(path: Path, line: str) -> None:
    """Deliver a new version of the feed the way a feed job should: write, then rename."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(path.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")
    tmp.replace(path)


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    log_path: Path
    config: Path
    state: Path
    notify: socket.socket
    notes: list[str] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def wait_event(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT, after: int = 0
    ) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for e in self.events()[after:]:
                if pred(e):
                    return e
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise AssertionError(f"event not seen (exit {self.proc.poll()}); log tail:\n{tail}")

    def read_notify(self) -> list[str]:
        return list(self.notes)  # filled by a reader thread (the queue never fills up)


def until(pred: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def write_config(path: Path, feeds: Path, state: Path, scope: Any, **daemon: Any) -> None:
    ldap = scope.settings
    opts = {
        "reconcile_interval_seconds": 3600,
        "watch_interval_seconds": 0.5,
        "monitor_interval_seconds": 3600,
        "audit_verify_cron": "",
        **daemon,
    }
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in opts.items())
    path.write_text(
        f"""
{ldap_toml(feeds=feeds, url=ldap.url, bind_dn=ldap.bind_dn, password_file=ldap.password_file, base_dn=scope.people_dn, group_base_dn=scope.groups_dn)}

[guard]
max_unexplained_share = 0.5

[apply]
workers = 1

[state]
dir = "{state}"

[daemon]
{body}
""",
        encoding="utf-8",
    )


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(config: Path, state: Path, *, watchdog_usec: int = 1_000_000) -> Daemon:
        sock_path = tmp_path / f"notify{len(started)}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
        sock.settimeout(0.2)
        log_path = tmp_path / f"daemon{len(started)}.log"
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(sock_path),
            "WATCHDOG_USEC": str(watchdog_usec),
        }
        env.pop("MISYNC_CONFIG", None)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "connector.cli", "-c", str(config), "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp_path,
            )
        d = Daemon(proc, log_path, config, state, sock)
        started.append(d)

        def drain() -> None:
            while d.proc.poll() is None:
                try:
                    d.notes.append(sock.recv(4096).decode())
                except (TimeoutError, OSError):
                    continue

        threading.Thread(target=drain, daemon=True).start()
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
        d.notify.close()


def ldap_enabled(scope: Any, person_id: str) -> bool | None:
    s = scope.settings
    with ldap3.Connection(
        ldap3.Server(s.url),
        s.bind_dn,
        Path(s.password_file).read_text().strip(),
        auto_bind=True,
    ) as c:
        c.search(s.base_dn, f"(employeeNumber={person_id})", attributes=["pwdAccountLockedTime"])
        if not c.entries:
            return None
        return not c.entries[0].entry_attributes_as_dict.get("pwdAccountLockedTime")


def test_fast_path_timed_action_reload_and_notify(
    tmp_path: Path, ldap_scope: Any, start_daemon: Callable[..., Daemon]
) -> None:
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, 4)
    write_config(cfg, feeds, state, ldap_scope)
    d = start_daemon(cfg, state)

    # the first full reconcile creates everyone
    first = d.wait_event(lambda e: e.get("event") == "run.finished")
    assert first["summary"]["create_ok"] == 4, first
    assert all(ldap_enabled(ldap_scope, p) for p in ids)

    # systemd: READY=1, then WATCHDOG=1 pings from the scheduler loop, STATUS with a summary
    assert until(lambda: any("READY=1" in n for n in d.read_notify()))
    assert until(lambda: sum("WATCHDOG=1" in n for n in d.read_notify()) >= 2)
    assert until(lambda: any("STATUS=reconcile: ok" in n for n in d.read_notify()))

    # `misync status` sees the daemon's schedule
    def schedule() -> dict[str, Any]:
        with StateStore(state / "state.sqlite3") as store:
            return store.schedule()

    assert until(lambda: schedule().get("reconcile") is not None)
    assert schedule().get("watch") is not None

    # separation fast path: one row appended -> that account, and only it, is disabled
    mark = len(d.events())
    sep_at = datetime.now(LA) - timedelta(minutes=5)
    append_row(feeds / "separations.csv", f"{ids[0]},LWDB04,{sep_at.isoformat()},resignation")
    t0 = time.monotonic()
    assert until(lambda: ldap_enabled(ldap_scope, ids[0]) is False, TIMEOUT)
    took = time.monotonic() - t0
    planned = d.wait_event(lambda e: e.get("event") == "targeted.planned", after=mark)
    assert planned["kind"] == "fastpath"
    assert planned["people"] == 1 and planned["accounts"] == 1 and planned["disables"] == 1
    # from the reconcile's evaluation and the changed row only (connector.runs.incremental)
    inc = d.wait_event(lambda e: e.get("event") == "fastpath.incremental", after=mark)
    assert inc["people"] == 1 and inc["changed_lines"] == 1
    fast = d.wait_event(lambda e: e.get("event") == "run.finished", after=mark)
    assert fast["status"] == "ok" and fast["summary"]["disable_ok"] == 1
    # every run keeps its HTML report, rendered from the audit trail
    report = d.wait_event(lambda e: e.get("event") == "report.written", after=mark)
    page = Path(report["path"]).read_text(encoding="utf-8")
    assert report["path"].endswith(f"run-{fast['run_id']}.html") and ids[0] in page
    assert all(ldap_enabled(ldap_scope, p) for p in ids[1:])
    assert took < TIMEOUT

    # timed action: a disable request that takes effect a few seconds from now (its
    # submission instant) is carried out at that instant, by the timed job, no breach
    mark = len(d.events())
    when = datetime.now(LA).replace(microsecond=0) + timedelta(seconds=6)
    today = when.date().isoformat()
    append_row(
        feeds / "requests.csv",
        f"REQ-X,disable,{ids[1]},R900,{when.isoformat()},{today},approved,,,false,false,false,R900",
    )
    sched = d.wait_event(
        lambda e: e.get("event") == "timed.scheduled" and e.get("people") == [ids[1]], after=mark
    )
    assert datetime.fromisoformat(sched["at"]) == when
    assert ldap_enabled(ldap_scope, ids[1]) is True  # not before its instant
    assert until(lambda: ldap_enabled(ldap_scope, ids[1]) is False, TIMEOUT)
    disabled_at = datetime.now(LA)
    assert disabled_at >= when
    timed = d.wait_event(
        lambda e: e.get("event") == "targeted.planned" and e.get("kind") == "timed", after=mark
    )
    assert timed["disables"] == 1
    with StateStore(state / "state.sqlite3") as store:
        assert store.open_breaches() == {}
    assert not [e for e in d.events()[mark:] if e.get("event") in ("breach.open",)]

    # SIGHUP with a broken configuration: refused, alerted, old one kept
    good = cfg.read_text(encoding="utf-8")
    cfg.write_text(good.replace("[daemon]", "[daemon]\nreconcile_cron = 'not a cron'"))
    mark = len(d.events())
    d.proc.send_signal(signal.SIGHUP)
    refused = d.wait_event(lambda e: e.get("event") == "config.reload_refused", after=mark)
    assert "reconcile_cron" in refused["error"]
    d.wait_event(
        lambda e: e.get("event") == "config.reload_refused" and e.get("alert") is True, after=mark
    )
    assert d.proc.poll() is None
    # ... and the old configuration still works: another separation is carried out
    append_row(feeds / "separations.csv", f"{ids[2]},LWDB04,{sep_at.isoformat()},quit")
    assert until(lambda: ldap_enabled(ldap_scope, ids[2]) is False, TIMEOUT)
    # a good configuration is taken
    cfg.write_text(good, encoding="utf-8")
    mark = len(d.events())
    d.proc.send_signal(signal.SIGHUP)
    d.wait_event(lambda e: e.get("event") == "config.reloaded", after=mark)

    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(TIMEOUT) == 0
    assert ldap_enabled(ldap_scope, ids[3]) is True
    assert set(schedule().values()) == {None}  # stopped: nothing scheduled


def test_sigterm_during_apply_finishes_the_operation_in_flight(
    tmp_path: Path, ldap_scope: Any, start_daemon: Callable[..., Daemon]
) -> None:
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    write_world(feeds, N_STOP)
    write_config(cfg, feeds, state, ldap_scope, watch_interval_seconds=0)
    d = start_daemon(cfg, state)
    d.wait_event(lambda e: e.get("event") == "operation.ok")
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(TIMEOUT) == 0
    events = d.events()
    finished = [e for e in events if e.get("event") == "run.finished"]
    assert len(finished) == 1 and finished[0]["status"] in ("incomplete", "stopped")
    ok = sum(1 for e in events if e.get("event") == "operation.ok")
    skipped = sum(  # the executor's events (the alert manager's carry alert=True)
        1 for e in events if e.get("event") == "operation.not_attempted" and not e.get("alert")
    )
    assert ok >= 1 and skipped >= 1 and ok + skipped == N_STOP
    assert any(e.get("event") == "daemon.stopped" for e in events)
    with StateStore(state / "state.sqlite3") as store:
        assert store.open_journal_entries() == []
        assert store.unfinished_runs() == []
        journal = store.journal()
        assert len(journal) == N_STOP  # every action journaled with its outcome, none left open
        assert sum(j.outcome == "ok" for j in journal) == ok
        assert sum(j.outcome == "not_attempted" for j in journal) == skipped
    verify = subprocess.run(
        [sys.executable, "-m", "connector.cli", "-c", str(cfg), "audit", "verify"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    export = subprocess.run(
        [
            sys.executable,
            "-m",
            "connector.cli",
            "-c",
            str(cfg),
            "audit",
            "export",
            "--format",
            "jsonl",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    records = [json.loads(line) for line in export.stdout.splitlines() if line.strip()]
    outcomes = [r for r in records if r.get("kind") == "operation"]
    assert len(outcomes) == N_STOP, records[:3]  # every action audited: done or not attempted
    assert sum(1 for r in outcomes if "not_attempted" in json.dumps(r)) == skipped


def test_a_separation_appended_before_the_first_poll_is_seen(
    tmp_path: Path, ldap_scope: Any, start_daemon: Callable[..., Daemon]
) -> None:
    """The watcher's baseline is what the first reconcile evaluated, not what its first
    poll happens to see: a separation that lands between the two is a change."""
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, 3)
    # the first poll comes 4 s after the start, after the first reconcile (a fraction
    # of a second here) has read the feeds and finished
    write_config(cfg, feeds, state, ldap_scope, watch_interval_seconds=4)
    d = start_daemon(cfg, state)
    first = d.wait_event(lambda e: e.get("event") == "run.finished")
    assert first["summary"]["create_ok"] == 3, first
    mark = len(d.events())
    sep_at = datetime.now(LA) - timedelta(minutes=5)
    append_row(feeds / "separations.csv", f"{ids[0]},LWDB04,{sep_at.isoformat()},resignation")
    t0 = time.monotonic()
    disabled = until(lambda: ldap_enabled(ldap_scope, ids[0]) is False, 30)
    assert disabled, d.log_path.read_text(encoding="utf-8")[-3000:]
    took = time.monotonic() - t0
    planned = d.wait_event(lambda e: e.get("event") == "targeted.planned", after=mark)
    assert planned["kind"] == "fastpath" and planned["disables"] == 1
    assert all(ldap_enabled(ldap_scope, p) for p in ids[1:])
    assert took < 30
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(TIMEOUT) == 0


AREA_STATEWIDE = "itsd@esd.example.gov"
AREA_MONITORS = {"WDA-04": "wda04@lwdb04.example.org", "WDA-07": "wda07@lwdb07.example.org"}


def test_the_fast_path_tells_the_area_of_a_separation_carried_out_once(
    tmp_path: Path, ldap_scope: Any, smtp_server: Any, start_daemon: Callable[..., Daemon]
) -> None:
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, 3)  # LWDB04 in WDA-04; WDA-07 has an organization, no one left
    append_row(feeds / "organizations.csv", "LWDB07,Pacific Mountain WDC,lwdb,WDA-07")
    write_config(cfg, feeds, state, ldap_scope)
    areas = "".join(f'\n[areas.{w}]\nemail = ["{a}"]\n' for w, a in AREA_MONITORS.items())
    with cfg.open("a", encoding="utf-8") as f:
        f.write(
            f"""
[alerts.email]
host = "{smtp_server.host}"
port = {smtp_server.port}
starttls = false
to = ["{AREA_STATEWIDE}"]
{areas}"""
        )
    d = start_daemon(cfg, state)
    first = d.wait_event(lambda e: e.get("event") == "run.finished")
    assert first["summary"]["create_ok"] == 3, first

    mark = len(d.events())
    sep_at = datetime.now(LA) - timedelta(minutes=5)
    append_row(feeds / "separations.csv", f"{ids[0]},LWDB04,{sep_at.isoformat()},resignation")
    assert until(lambda: ldap_enabled(ldap_scope, ids[0]) is False, TIMEOUT)
    d.wait_event(lambda e: e.get("event") == "run.finished", after=mark)

    def inbox(address: str) -> list[str]:
        return [str(m["Subject"]) for _, rcpt, m in smtp_server.messages if address in rcpt]

    assert until(lambda: len(inbox(AREA_MONITORS["WDA-04"])) >= 1, TIMEOUT)
    time.sleep(3)  # the watcher polls every 0.5 s: a duplicate would have come by now
    (got,) = inbox(AREA_MONITORS["WDA-04"])
    assert got.startswith("[misync] WDA-04 INFO: separation.disabled uid=")
    assert inbox(AREA_MONITORS["WDA-07"]) == []
    assert not [s for s in inbox(AREA_STATEWIDE) if "separation.disabled" in s]
    body = next(m for _, r, m in smtp_server.messages if AREA_MONITORS["WDA-04"] in r).get_content()
    assert f"person_id: {ids[0]}" in body and "--wda WDA-04" in body
    assert not [p for p in ids[1:] if p in body]
