"""Soak: ``misync run`` as a real process for N minutes through directory outages, feeds
rewritten in halves and SIGHUP reloads (issue 13, "Done when"). Not part of the tests.

It starts a private slapd seeded with a crowd of entitled people (``plan_scale``'s
world: ``--people`` workers of one CBO, each with an account), an aiosmtpd relay that
keeps every email, and ``misync run`` with short intervals (reconcile 90 s, watch 3 s).
Then, for ``--minutes``, it repeats one cycle:

1. a separation appended while the directory answers; a SIGHUP reload;
2. the roster (workers.csv) rewritten in place in two halves, its last 15 rows 2 s
   later, timed to straddle the next scheduled reconcile (a feed job that writes in
   place instead of renaming);
3. a directory outage of ``--outage`` seconds (alternately stopped and restarted on the
   same port and data folder, and SIGSTOPped then SIGCONTed), a separation appended in
   the middle of it;
4. a quiet minute (nothing changes) in which the log lines are counted.

A sampler thread polls the directory every second for the separated accounts (when each
one is disabled) and the daemon's RSS every 5 s. At the end it stops the daemon
(SIGTERM), runs ``misync audit verify`` and checks, printing each result:

- every separation was disabled within 60 s of the directory answering (or of being
  appended, when the directory was up): the time of each;
- no entitled person was ever disabled (the audit trail's ``operation`` records: no
  ``disable ok`` of anyone the soak did not separate) and all of them are enabled at
  the end;
- emails per incident, and each close went to the same recipients as its open; no
  alert stays open long after its incident;
- every log line is a JSON event; log lines per minute while nothing changes;
- the daemon's RSS over time (no steady growth);
- the daemon kept the plan memo (no failed write), and an admin's dry run at the end
  has the checksum of a full scan at the same instant (with or without the memo);
- ``audit verify`` intact, and the daemon stopped with exit 0 on SIGTERM.

Exit 0 when every check passes, 1 otherwise. Usage::

    .venv/bin/python bench/soak.py --minutes 10 [--people 400] [--outage 60] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ldap3  # noqa: E402
from plan_scale import PEOPLE, SUFFIX, write_feeds, write_ldif  # noqa: E402

from connector.devtools.slapd import LocalSlapd  # noqa: E402
from tests.configs import ldap_toml  # noqa: E402

LA = ZoneInfo("America/Los_Angeles")
PROMISE = 60.0  # seconds from the directory answering (or the row landing) to disabled
TAIL = 15  # roster rows written after the pause
QUIET_LINES_PER_MINUTE = 30.0  # above this, the log is not quiet when nothing changes
RSS_EVERY = 5  # seconds between two samples of the daemon's RSS
REWRITE_NOTICE = 120  # seconds: announce a roster rewrite this close to its reconcile
STALE_ALERT = 240  # seconds after its incident an alert should be closed
MAX_EMAILS_PER_INCIDENT = 8
RSS_BASELINE = 180  # seconds: the first minutes' RSS is the baseline it must not outgrow
TO = "itsd@example.org"
TO_CRITICAL = "security@example.org"


# -- the world -------------------------------------------------------------------------


@dataclass
class Mail:
    at: float  # time.monotonic() when it arrived
    rcpt: tuple[str, ...]
    subject: str


@dataclass
class Separation:
    person_id: str
    appended: float  # monotonic
    during_outage: bool
    answered: float = 0.0  # when the directory answered again (outage), else appended
    disabled: float | None = None

    @property
    def start(self) -> float:
        return max(self.appended, self.answered)


@dataclass
class Incident:
    name: str
    start: float
    end: float = 0.0


@dataclass
class Soak:
    work: Path
    slapd: LocalSlapd
    password_file: Path
    feeds: Path
    state: Path
    config: Path
    log: Path
    people: list[str]
    mails: list[Mail] = field(default_factory=list)
    separations: list[Separation] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    quiet: list[tuple[float, int]] = field(default_factory=list)  # (minutes, lines)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, kB)
    directory_up: bool = True
    stopped_how: str = ""
    proc: subprocess.Popen[bytes] | None = None
    t0: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", flush=True)


def start_smtp(soak: Soak) -> Any:
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            with soak.lock:
                soak.mails.append(
                    Mail(time.monotonic(), tuple(sorted(envelope.rcpt_tos)), str(msg["Subject"]))
                )
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    return controller, port


def write_config(soak: Soak, smtp_port: int) -> None:
    connection = ldap_toml(
        feeds=soak.feeds,
        url=soak.slapd.url,
        bind_dn=soak.slapd.root_dn,
        password_file=soak.password_file,
        base_dn=PEOPLE,
        group_base_dn=f"ou=groups,{SUFFIX}",
    )
    soak.config.write_text(
        f"""
{connection}
connect_timeout = 3
receive_timeout = 10

[apply]
workers = 2
circuit_breaker_after = 4

[state]
dir = "{soak.state}"

[log]
format = "json"

[daemon]
reconcile_interval_seconds = 90
full_scan_interval_seconds = 300
watch_interval_seconds = 3
monitor_interval_seconds = 60
audit_verify_cron = ""

[alerts.email]
host = "127.0.0.1"
port = {smtp_port}
starttls = false
sender = "misync@example.org"
to = ["{TO}"]
to_critical = ["{TO_CRITICAL}"]
""",
        encoding="utf-8",
    )


def misync(soak: Soak, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MISYNC_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "connector.cli", "-c", str(soak.config), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=soak.work,
        check=False,
    )


# -- the directory ---------------------------------------------------------------------


def account_enabled(soak: Soak, person_id: str) -> bool | None:
    """True/False from the directory; None when it does not answer."""
    try:
        server = ldap3.Server(soak.slapd.url, connect_timeout=2, get_info=ldap3.NONE)
        with ldap3.Connection(
            server,
            soak.slapd.root_dn,
            soak.slapd.root_password,
            auto_bind=True,
            receive_timeout=2,
        ) as c:
            c.search(PEOPLE, f"(employeeNumber={person_id})", attributes=["pwdAccountLockedTime"])
            if not c.entries:
                return None
            return not c.entries[0].entry_attributes_as_dict.get("pwdAccountLockedTime")
    except ldap3.core.exceptions.LDAPException:
        return None


def all_enabled(soak: Soak) -> dict[str, bool]:
    server = ldap3.Server(soak.slapd.url, get_info=ldap3.NONE)
    with ldap3.Connection(
        server, soak.slapd.root_dn, soak.slapd.root_password, auto_bind=True
    ) as c:
        entries = c.extend.standard.paged_search(
            PEOPLE,
            "(employeeNumber=*)",
            attributes=["employeeNumber", "pwdAccountLockedTime"],
            paged_size=500,
            generator=False,
        )
        out = {}
        for e in entries:
            attrs = e.get("attributes", {})
            pid = attrs.get("employeeNumber")
            pid = pid[0] if isinstance(pid, list) else pid
            if pid:
                out[str(pid)] = not attrs.get("pwdAccountLockedTime")
        return out


def sampler(soak: Soak) -> None:
    last_rss = 0.0
    while not soak.done.is_set():
        now = time.monotonic()
        if soak.proc is not None and now - last_rss >= RSS_EVERY:
            last_rss = now
            try:
                text = Path(f"/proc/{soak.proc.pid}/status").read_text()
                kb = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
                soak.rss.append((now, kb))
            except (OSError, AttributeError):
                pass
        with soak.lock:
            pending = [s for s in soak.separations if s.disabled is None]
        if pending and soak.directory_up:
            for s in pending:
                if account_enabled(soak, s.person_id) is False:
                    s.disabled = time.monotonic()
                    waited = s.disabled - s.start
                    soak.say(
                        f"  {s.person_id} disabled {waited:.1f} s after "
                        + ("the directory answered" if s.during_outage else "the row landed")
                    )
        soak.done.wait(1.0)


# -- the feeds -------------------------------------------------------------------------


def append_separation(soak: Soak, person_id: str, *, during_outage: bool) -> None:
    path = soak.feeds / "separations.csv"
    at = (datetime.now(LA) - timedelta(minutes=1)).isoformat(timespec="seconds")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        path.read_text(encoding="utf-8") + f"{person_id},CBO1,{at},resignation\n", encoding="utf-8"
    )
    tmp.replace(path)  # the way a feed job should deliver
    with soak.lock:
        soak.separations.append(Separation(person_id, time.monotonic(), during_outage))
    soak.say(f"separation appended: {person_id}" + (" (directory away)" if during_outage else ""))


def next_reconcile(soak: Soak) -> datetime | None:
    try:
        with sqlite3.connect(soak.state / "state.sqlite3", timeout=5) as db:
            row = db.execute("select next_at from schedule where job = 'reconcile'").fetchone()
    except sqlite3.Error:
        return None
    if not row or not row[0]:
        return None
    return datetime.fromisoformat(row[0])


def roster_in_halves(soak: Soak) -> None:
    """Rewrite workers.csv in place, the last rows 2 s after the rest, straddling the
    next reconcile (same content in the end: nobody's entitlement changes)."""
    path = soak.feeds / "workers.csv"
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    head, tail = "".join(lines[:-TAIL]), "".join(lines[-TAIL:])
    at = next_reconcile(soak)
    if at is not None:
        wait = (at - datetime.now(at.tzinfo)).total_seconds() - 0.7
        if 0 < wait < REWRITE_NOTICE:
            soak.say(f"roster rewrite in halves in {wait:.0f} s (at the next reconcile)")
            time.sleep(wait)
    inc = Incident("roster in halves", time.monotonic())
    soak.incidents.append(inc)
    with path.open("w", encoding="utf-8") as f:
        f.write(head)
        f.flush()
        os.fsync(f.fileno())
        soak.say(f"roster: first part written ({len(lines) - TAIL} lines), pausing 2 s")
        time.sleep(2.0)
        f.write(tail)
    inc.end = time.monotonic()
    soak.say("roster: complete again")


# -- the outage --------------------------------------------------------------------------


def outage(soak: Soak, seconds: float, n: int, person_id: str) -> None:
    how = "stopped" if n % 2 == 0 else "SIGSTOPped"
    inc = Incident(f"directory {how} {seconds:.0f} s", time.monotonic())
    soak.incidents.append(inc)
    soak.directory_up = False
    if how == "stopped":
        soak.slapd.stop()
    else:
        assert soak.slapd._proc is not None
        os.kill(soak.slapd._proc.pid, signal.SIGSTOP)
    soak.say(f"directory {how}")
    time.sleep(seconds / 3)
    append_separation(soak, person_id, during_outage=True)
    time.sleep(seconds * 2 / 3)
    if how == "stopped":
        soak.slapd.start()  # the same port and data folder
    else:
        assert soak.slapd._proc is not None
        os.kill(soak.slapd._proc.pid, signal.SIGCONT)
    back = time.monotonic()
    inc.end = back
    with soak.lock:
        for s in soak.separations:
            if s.during_outage and s.answered == 0.0:
                s.answered = back
    soak.directory_up = True
    soak.say("directory answers again")


def wait_disabled(soak: Soak, person_id: str, limit: float) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        with soak.lock:
            s = next(x for x in soak.separations if x.person_id == person_id)
        if s.disabled is not None:
            return
        time.sleep(0.5)


def quiet_minute(soak: Soak, seconds: float = 60.0) -> None:
    before = _lines(soak.log)
    time.sleep(seconds)
    lines = _lines(soak.log) - before
    soak.quiet.append((seconds / 60, lines))
    soak.say(f"quiet {seconds:.0f} s: {lines} log lines")


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


# -- checks ----------------------------------------------------------------------------


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        print(f"{'PASS' if ok else 'FAIL'}  {what}" + (f": {detail}" if detail else ""))
        if not ok:
            self.failed.append(what)


def report(
    soak: Soak, checks: Checks, exit_code: int, verify: subprocess.CompletedProcess[str]
) -> None:
    print("\n== results ==")
    _report_separations(soak, checks)
    _report_operations(soak, checks)
    _report_emails(soak, checks)
    _report_log(soak, checks)
    _report_rss(soak, checks)
    _report_memo(soak, checks)
    _report_stop(checks, exit_code, verify)


def _report_memo(soak: Soak, checks: Checks) -> None:
    """6. the plan memo the daemon kept, and an admin's dry run against a full scan"""
    text = soak.log.read_text(encoding="utf-8", errors="replace")
    kept = text.count('"memo.kept"')
    failed = text.count('"memo.not_kept"')
    checks.check(
        kept > 0 and failed == 0, "the daemon kept the plan memo", f"{kept} kept, {failed} failed"
    )
    at = datetime.now(UTC).isoformat()
    dry = misync(soak, "plan", "--format", "json", "--as-of", at)
    full = misync(soak, "plan", "--format", "json", "--as-of", at, "--full-scan")
    if dry.returncode != 0 or full.returncode != 0:
        checks.check(False, "misync plan after the soak", (dry.stderr + full.stderr)[-500:])
        return
    a, b = json.loads(dry.stdout), json.loads(full.stdout)
    memo = a["read"].get("memo", {})
    print("the dry run after the soak:", memo)
    checks.check(
        a["checksum"] == b["checksum"],
        "a dry run is the plan of a full scan at the same instant",
        "memo used" if "whole_plan_at" in memo else f"memo not used: {memo.get('unused')}",
    )


def _report_separations(soak: Soak, checks: Checks) -> None:
    """1. separations"""
    times = []
    late = []
    for s in soak.separations:
        took = None if s.disabled is None else s.disabled - s.start
        times.append(
            f"{s.person_id} {'outage' if s.during_outage else 'up'} "
            + ("never" if took is None else f"{took:.1f}s")
        )
        if took is None or took > PROMISE:
            late.append(s.person_id)
    print("separations:", "; ".join(times))
    checks.check(
        not late and bool(soak.separations),
        f"each separation disabled within {PROMISE:.0f} s of the directory answering",
        f"late or never: {late}" if late else f"{len(soak.separations)} separations",
    )


def _report_operations(soak: Soak, checks: Checks) -> None:
    """2. no entitled person disabled (audit trail), all enabled at the end"""
    separated = {s.person_id for s in soak.separations}
    with sqlite3.connect(soak.state / "audit.sqlite3") as db:
        rows = db.execute("select at, data from records where kind = 'operation'").fetchall()
    wrong: dict[str, list[str]] = {}
    ops: dict[str, int] = {}
    for at, data in rows:
        rec = json.loads(data)
        key = f"{rec.get('op')}_{rec.get('outcome')}"
        ops[key] = ops.get(key, 0) + 1
        if rec.get("op") == "disable" and rec.get("outcome") == "ok":
            pid = rec.get("person_id")
            if pid not in separated:
                wrong.setdefault(str(pid), []).append(at)
    print("directory operations in the audit trail:", dict(sorted(ops.items())))
    checks.check(
        not wrong,
        "no entitled person ever disabled (audit trail)",
        f"{len(wrong)} entitled people disabled, e.g. {dict(list(wrong.items())[:5])}"
        if wrong
        else "",
    )
    state = all_enabled(soak)
    off = sorted(p for p in soak.people if p not in separated and state.get(p) is False)
    still = sorted(p for p in separated if state.get(p) is True)
    checks.check(
        not off, "every entitled person enabled at the end", f"disabled: {off[:10]}" if off else ""
    )
    checks.check(
        not still,
        "every separated person disabled at the end",
        f"enabled: {still}" if still else "",
    )


def _report_emails(soak: Soak, checks: Checks) -> None:
    """3. emails per incident; each close to its open's recipients"""
    mails = sorted(soak.mails, key=lambda m: m.at)
    print(f"emails: {len(mails)} in all")
    bounds = [*soak.incidents]
    for i, inc in enumerate(bounds):
        until = bounds[i + 1].start if i + 1 < len(bounds) else float("inf")
        got = [m for m in mails if inc.start <= m.at < until]
        print(
            f"  incident {i + 1} ({inc.name}, at {inc.start - soak.t0:.0f} s): {len(got)} emails"
            + "".join(f"\n      {m.subject}  -> {', '.join(m.rcpt)}" for m in got)
        )
    before = [m for m in mails if not bounds or m.at < bounds[0].start]
    if before:
        print(f"  before the first incident: {len(before)} emails")
    pat = re.compile(r"^\[misync\] (\w+)(?: (reminder|digest))?: (.*)$")
    opens: dict[str, Mail] = {}
    mismatched = []
    closed_keys = set()
    for m in mails:
        if " closed: " in m.subject:
            what = m.subject.split(" closed: ", 1)[1]
            closed_keys.add(what)
            o = opens.pop(what, None)
            if o is not None and o.rcpt != m.rcpt:
                mismatched.append(f"{what}: open -> {o.rcpt}, close -> {m.rcpt}")
            continue
        g = pat.match(m.subject)
        if g and g.group(2) is None:
            opens[g.group(3)] = m
    end = time.monotonic()
    stale = [k for k, m in opens.items() if end - m.at > STALE_ALERT]
    checks.check(
        not mismatched, "each close went to the recipients of its open", "; ".join(mismatched)
    )
    checks.check(
        not stale,
        "no alert left open long after its incident",
        f"open, never closed: {stale}" if stale else f"{len(closed_keys)} closes",
    )
    worst = 0
    for i, inc in enumerate(bounds):
        until = bounds[i + 1].start if i + 1 < len(bounds) else float("inf")
        worst = max(worst, sum(1 for m in mails if inc.start <= m.at < until))
    checks.check(
        worst <= MAX_EMAILS_PER_INCIDENT,
        f"a few emails per incident (at most {MAX_EMAILS_PER_INCIDENT})",
        f"most in one incident: {worst}",
    )


def _report_log(soak: Soak, checks: Checks) -> None:
    """4. the log"""
    text = soak.log.read_text(encoding="utf-8", errors="replace").splitlines()
    plain = [ln for ln in text if ln.strip() and not ln.lstrip().startswith("{")]
    checks.check(
        not plain,
        "every log line is a JSON event",
        f"{len(plain)} plain lines, e.g. {plain[:3]}" if plain else f"{len(text)} lines",
    )
    rates = [lines / minutes for minutes, lines in soak.quiet if minutes]
    print("log lines per minute while nothing changes:", [round(r, 1) for r in rates])
    checks.check(
        bool(rates) and max(rates) <= QUIET_LINES_PER_MINUTE,
        f"the log is quiet when nothing changes (at most {QUIET_LINES_PER_MINUTE:.0f} lines/min)",
        f"max {max(rates):.1f}/min" if rates else "no quiet window measured",
    )
    events: dict[str, int] = {}
    for ln in text:
        if ln.startswith("{"):
            try:
                ev = json.loads(ln).get("event", "?")
            except json.JSONDecodeError:
                continue
            events[ev] = events.get(ev, 0) + 1
    print("log events:", dict(sorted(events.items(), key=lambda kv: -kv[1])[:25]))


def _report_rss(soak: Soak, checks: Checks) -> None:
    """5. RSS"""
    if soak.rss:
        per_minute: dict[int, int] = {}
        for at, kb in soak.rss:
            per_minute[int((at - soak.t0) // 60)] = kb
        print(
            "daemon RSS (MB) per minute:",
            [round(kb / 1024, 1) for _, kb in sorted(per_minute.items())],
        )
        early = max(kb for at, kb in soak.rss if at - soak.t0 < RSS_BASELINE)
        late_rss = max(kb for at, kb in soak.rss[-12:])
        checks.check(
            late_rss <= early * 1.5 + 30 * 1024,
            "the daemon's RSS does not keep growing",
            f"first 3 min max {early / 1024:.1f} MB, last minute max {late_rss / 1024:.1f} MB",
        )


def _report_stop(checks: Checks, exit_code: int, verify: subprocess.CompletedProcess[str]) -> None:
    """6. stop and audit"""
    checks.check(exit_code == 0, "the daemon stopped with exit 0 on SIGTERM", f"exit {exit_code}")
    checks.check(
        verify.returncode == 0 and "intact" in verify.stdout,
        "audit verify: intact",
        (verify.stdout + verify.stderr).strip().splitlines()[-1]
        if (verify.stdout + verify.stderr).strip()
        else "",
    )


# -- main ------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--people", type=int, default=400)
    ap.add_argument("--outage", type=float, default=60.0, help="seconds the directory is away")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="misync-soak-"))
    feeds = work / "feeds"
    write_feeds(feeds, args.people)
    write_ldif(work / "people.ldif", args.people)
    slapd = LocalSlapd(work / "slapd", suffix=SUFFIX)
    slapd.start()
    controller = None
    try:
        slapd.bulk_load(work / "people.ldif")
        password = work / "ldap-password"
        password.write_text(slapd.root_password + "\n", encoding="utf-8")
        password.chmod(0o600)
        soak = Soak(
            work,
            slapd,
            password,
            feeds,
            work / "state",
            work / "misync.toml",
            work / "misync.log",
            [f"P{i}" for i in range(args.people)],
        )
        controller, port = start_smtp(soak)
        write_config(soak, port)
        checked = misync(soak, "config", "check")
        if checked.returncode != 0:
            print(checked.stdout, checked.stderr)
            return 1
        print(f"soak: {args.minutes:g} min, {args.people} people, work folder {work}")
        with soak.log.open("wb") as log:
            env = {k: v for k, v in os.environ.items() if k != "MISYNC_CONFIG"}
            soak.proc = subprocess.Popen(
                [sys.executable, "-m", "connector.cli", "-c", str(soak.config), "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=work,
            )
        soak.t0 = time.monotonic()
        threading.Thread(target=sampler, args=(soak,), daemon=True).start()
        # the first reconcile, and a few watcher polls after it
        end_first = time.monotonic() + 120
        while time.monotonic() < end_first and '"run.finished"' not in soak.log.read_text(
            errors="replace"
        ):
            time.sleep(0.5)
        time.sleep(8)
        soak.say("first reconcile done")

        deadline = soak.t0 + args.minutes * 60
        victims = iter(soak.people[::7])
        n = 0
        while time.monotonic() < deadline - 60:
            append_separation(soak, next(victims), during_outage=False)
            time.sleep(5)
            mark = _lines(soak.log)
            soak.proc.send_signal(signal.SIGHUP)
            soak.say("SIGHUP sent")
            time.sleep(3)
            tail = soak.log.read_text(errors="replace").splitlines()[mark:]
            if not any('"config.reloaded"' in ln for ln in tail):
                soak.say("  (no config.reloaded yet)")
            if time.monotonic() < deadline - 90:
                roster_in_halves(soak)
                time.sleep(10)
            if time.monotonic() < deadline - args.outage - 30:
                outage(soak, args.outage, n, next(victims))
                wait_disabled(soak, soak.separations[-1].person_id, PROMISE + 5)
                time.sleep(20)  # the fast path's retries, the alerts' closes
            if time.monotonic() < deadline - 45:
                quiet_minute(soak, 60.0 if time.monotonic() < deadline - 60 else 40.0)
            n += 1
        # let the last separations land and the alerts close
        time.sleep(15)
        soak.proc.send_signal(signal.SIGTERM)
        try:
            code = soak.proc.wait(120)
        except subprocess.TimeoutExpired:
            soak.proc.kill()
            code = -9
        soak.done.set()
        verify = misync(soak, "audit", "verify")
        checks = Checks()
        report(soak, checks, code, verify)
        print(
            f"\nsoak: {len(checks.failed)} check(s) failed"
            + (f": {checks.failed}" if checks.failed else "")
            + f"; work folder {work}"
            + ("" if args.keep else " (removed)")
        )
        return 1 if checks.failed else 0
    finally:
        if controller is not None:
            controller.stop()
        if slapd._proc is not None:
            with contextlib.suppress(OSError):
                os.kill(slapd._proc.pid, signal.SIGCONT)
        slapd.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
