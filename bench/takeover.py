"""Takeover time of two `misync run` daemons on one PostgreSQL (issue 17): N times, the
leader is killed (SIGKILL: its TCP session closes at once, as when the process dies on
a live host) or paused (SIGSTOP: its session stays up, as for a hung process or a host
that stopped answering without closing anything; the lease decides), and the time until
the standby's new epoch is recorded in the database is measured. The killed or paused
daemon is then replaced by a fresh standby, so each round starts from leader + standby.

    .venv/bin/python bench/takeover.py --rounds 20 --mode kill     # ~1 min
    .venv/bin/python bench/takeover.py --rounds 20 --mode stop     # ~6 min (lease 15 s)

Uses the default lease and poll (15 s, 2 s) unless ``--lease``/``--poll`` say
otherwise; a private PostgreSQL and slapd on this host (loopback). Prints the median
and the worst; writes JSON to ``--out`` (default ``bench/results/takeover-MODE.json``).
Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _leader(url: str) -> tuple[int, int] | None:
    from connector.state.postgres import PgStateStore

    with PgStateStore.from_url(url) as store:
        row = store.leader()
    return (row.epoch, row.pid) if row else None


def main() -> int:
    from connector.devtools.postgres import LocalPostgres
    from connector.devtools.slapd import LocalSlapd
    from tests.conftest import ldap_scope_on
    from tests.integration.test_daemon import write_config, write_world

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--mode", choices=("kill", "stop"), default="kill")
    p.add_argument("--lease", type=int, default=15)
    p.add_argument("--poll", type=float, default=2.0)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    out = args.out or ROOT / "bench" / "results" / f"takeover-{args.mode}.json"
    work = Path(tempfile.mkdtemp(prefix="misync-takeover-"))
    pg = LocalPostgres(durable=True)
    slapd = LocalSlapd(work / "slapd")
    procs: list[subprocess.Popen[bytes]] = []
    times: list[float] = []
    started = datetime.now(UTC)
    try:
        pg.start()
        slapd.start()
        url = pg.create_database("misync")
        scope = ldap_scope_on(slapd, work)
        feeds = work / "feeds"
        write_world(feeds, 5)
        env = {**os.environ, "MISYNC_FEEDS__SETTLE_SECONDS": "0"}
        env.pop("NOTIFY_SOCKET", None)

        def start(n: int) -> subprocess.Popen[bytes]:
            cfg, state = work / f"host{n}.toml", work / f"state{n}"
            write_config(cfg, feeds, state, scope, watch_interval_seconds=1)
            text = cfg.read_text(encoding="utf-8").replace(
                f'dir = "{state}"',
                f'dir = "{state}"\nurl = "{url}"\nlease_seconds = {args.lease}\n'
                f"leader_poll_seconds = {args.poll}",
            )
            cfg.write_text(text, encoding="utf-8")
            log = (work / f"host{n}.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "connector.cli", "-c", str(cfg), "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=work,
            )
            procs.append(proc)
            return proc

        def wait_leader(epoch_above: int, timeout: float = 120) -> tuple[int, int]:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                got = _leader(url)
                if got is not None and got[0] > epoch_above:
                    return got
                time.sleep(0.05)
            raise SystemExit(f"no takeover within {timeout} s; logs in {work}")

        start(0)
        epoch, pid = wait_leader(0)
        start(1)
        time.sleep(max(3.0, 2 * args.poll))  # the standby is up and polling
        for n in range(args.rounds):
            leader = next(pr for pr in procs if pr.pid == pid)
            time.sleep(random.uniform(0, args.poll))  # at no fixed phase of the polls
            leader.send_signal(signal.SIGKILL if args.mode == "kill" else signal.SIGSTOP)
            t0 = time.monotonic()
            epoch, pid = wait_leader(epoch)
            took = time.monotonic() - t0
            times.append(took)
            print(f"round {n + 1}: epoch {epoch}, takeover {took:.2f} s", flush=True)
            if args.mode == "stop":
                leader.send_signal(signal.SIGCONT)  # it finds itself fenced and steps down
                time.sleep(1)
            leader.kill()
            leader.wait(10)
            start(n + 2)
            time.sleep(max(3.0, 2 * args.poll))
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
                pr.wait(10)
        slapd.stop()
        pg.remove()
        shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {
        "mode": args.mode,
        "rounds": len(times),
        "lease_seconds": args.lease,
        "poll_seconds": args.poll,
        "median_seconds": round(statistics.median(times), 2),
        "worst_seconds": round(max(times), 2),
        "best_seconds": round(min(times), 2),
        "times": [round(t, 2) for t in times],
        "started": started.isoformat(),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"{args.mode}: median {result['median_seconds']} s, worst {result['worst_seconds']} s "
        f"over {len(times)} rounds; {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
