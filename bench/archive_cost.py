"""What the archive of run inputs costs (issue 15 item 6, first part): bytes per run and
the time a run spends archiving, and replay time, at N accounts on a private slapd.

For each N: N entitled people and their accounts (bench/plan_scale.py's world), then
three runs of ``misync apply`` (``runs.run_apply``), each timed whole and in its archive
step (``Run._archive``): the first (everything is new), one with nothing changed (the
feeds and accounts dedup: only the run's manifest and what changed are new), one after
a day's churn (``CHURN`` separations appended: one feed file and the accounts they
disable change). Then ``audit replay`` of the last run, timed. Prints one line per
figure. Usage: ``.venv/bin/python bench/archive_cost.py [N ...]`` (default 10000).

``--day``: a day of the daemon's operation instead, compressed in time. After a first
full run, the daemon's reconcile as ``misync run`` does it (one ``CyclePlanner`` kept
across cycles, a ``Run`` of ``IncrementalCycle`` each) DAY_CYCLES times (a 30-minute
interval), a delivery of DAY_SEPARATIONS separations before every DAY_CHURN_EVERY-th
cycle: the bytes the day added to the archive and the share of the cycles' time spent
archiving, and how many account buckets were serialised and hashed (the others'
digests are kept between cycles: ``connector.archive.inputs.BucketCache``). Every cycle
gives the planner (and the archive) the whole directory, as the daemon's do. The
planner's hourly full scan does not come round in compressed time, but an incremental
read takes again every entry changed within ``target.ldap.clock_margin_seconds`` (10
minutes) of its mark, so the cycles of the first ten minutes after the bulk load read
every account: the reads are heavier than a real day's, not lighter.
Not part of the timed test run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# the feeds are written a moment before the runs: no settle wait in the times
os.environ.setdefault("MISYNC_FEEDS__SETTLE_SECONDS", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from plan_scale import PEOPLE, SUFFIX, write_feeds, write_ldif  # noqa: E402

from connector import app, runs  # noqa: E402
from connector.archive import ArchiveStore  # noqa: E402
from connector.archive.replay import replay  # noqa: E402
from connector.devtools.slapd import LocalSlapd  # noqa: E402
from connector.runs import run as run_module  # noqa: E402
from connector.runs.cycle import CyclePlanner  # noqa: E402
from connector.settings import load_settings  # noqa: E402

CHURN = 50  # separations in a day's delivery
DAY_CYCLES = 48  # a day of reconciles every 30 minutes
DAY_CHURN_EVERY = 4  # a feed delivery every 2 hours ...
DAY_SEPARATIONS = 5  # ... of this many separations (60 a day)


def one(n: int, *, day: bool = False) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="misync-archive-"))
    archived: list[float] = []
    original = run_module.Run._archive

    def timed(self: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(self, *args)
        finally:
            archived.append(time.perf_counter() - t0)

    run_module.Run._archive = timed  # type: ignore[method-assign]
    out: list[dict[str, Any]] = []
    try:
        write_feeds(work / "feeds", n)
        write_ldif(work / "people.ldif", n)
        with LocalSlapd(work / "slapd", suffix=SUFFIX) as slapd:
            slapd.bulk_load(work / "people.ldif")
            pw = work / "pw"
            pw.write_text(slapd.root_password)
            cfg = work / "misync.toml"
            cfg.write_text(f"""
[feeds]
dir = "{work / "feeds"}"
max_age_hours = 0
[target]
mapping = "{ROOT / "mappings" / "openldap-ppolicy.toml"}"
[target.ldap]
url = "{slapd.url}"
bind_dn = "{slapd.root_dn}"
password_file = "{pw}"
base_dn = "{PEOPLE}"
group_base_dn = "ou=groups,{SUFFIX}"
[guard]
max_unexplained_disables = {CHURN * 2}
[state]
dir = "{work / "state"}"
""")
            rt = app.Runtime(load_settings(cfg))
            store = ArchiveStore(rt.settings.state.dir / "archive")
            if day:
                return [*out, *_day(n, rt, store, work / "feeds" / "separations.csv", archived)]
            last = None
            for label in ("first run", "nothing changed", f"{CHURN} separations"):
                if label.endswith("separations"):
                    sep = datetime.now(UTC) - timedelta(minutes=1)
                    with (work / "feeds" / "separations.csv").open("a") as f:
                        for i in range(CHURN):
                            f.write(f"P{i},CBO1,{sep.isoformat()},quit\n")
                before = store.size()
                t0 = time.perf_counter()
                last = runs.run_apply(rt)
                took = time.perf_counter() - t0
                out.append(
                    {
                        "n": n,
                        "run": label,
                        "bytes": store.size() - before,
                        "run_s": round(took, 2),
                        "archive_s": round(archived[-1], 2),
                        "share": round(archived[-1] / took, 3),
                    }
                )
            assert last is not None
            manifest = store.run_manifest(last.run_id)
            assert manifest is not None
            t0 = time.perf_counter()
            r = replay(store, last.run_id, manifest)
            assert r.plan.checksum == last.plan.checksum
            out.append(
                {
                    "n": n,
                    "run": "replay of the last",
                    "replay_s": round(time.perf_counter() - t0, 2),
                }
            )
    finally:
        run_module.Run._archive = original  # type: ignore[method-assign]
        shutil.rmtree(work, ignore_errors=True)
    return out


def _day(
    n: int, rt: app.Runtime, store: ArchiveStore, separations: Path, archived: list[float]
) -> list[dict[str, Any]]:
    """A compressed day of the daemon's reconciles (see the module's docstring)."""
    runs.run_apply(rt)  # the first run: everything new, as the day before
    planner = CyclePlanner(rt)
    runs.Run(rt, runs.IncrementalCycle(planner)).execute()  # the planner's first read
    before = store.size()
    archived.clear()
    total = 0.0
    person = 0
    serialised = 0  # account buckets serialised and hashed (of 64 a cycle)
    for cycle in range(DAY_CYCLES):
        if cycle % DAY_CHURN_EVERY == 0:
            sep = datetime.now(UTC) - timedelta(minutes=1)
            with separations.open("a") as f:
                for _ in range(DAY_SEPARATIONS):
                    f.write(f"P{person},CBO1,{sep.isoformat()},quit\n")
                    person += 1
        t0 = time.perf_counter()
        runs.Run(rt, runs.IncrementalCycle(planner)).execute()
        total += time.perf_counter() - t0
        serialised += planner.archive_cache.serialised
    return [
        {
            "n": n,
            "run": f"a day: {DAY_CYCLES} reconciles, {person} separations",
            "bytes": store.size() - before,
            "cycles_s": round(total, 2),
            "archive_s": round(sum(archived), 2),
            "share": round(sum(archived) / total, 3),
            "buckets_serialised": f"{serialised} of {DAY_CYCLES * 64}",
        }
    ]


def main() -> int:
    args = sys.argv[1:]
    day = "--day" in args
    for n in [int(a) for a in args if a != "--day"] or [10000]:
        for row in one(n, day=day):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
