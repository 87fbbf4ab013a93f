"""Separation fast path cost at several sizes (issue 10: "cost must not grow with the
directory"; issue 18: "a fast path flat in N").

For each N: N entitled people and N matching accounts (bulk-loaded into a private slapd),
one full apply (records the decisions and the enabled-account count, changes nothing),
kept as the daemon keeps it (``FeedDeltas``: the fast path's baseline; the time it takes
to prepare, after that run, is ``upkeep``). Then, in the same run, K separations are
appended to the feed for each of (each delivery waits ``feeds.settle_seconds`` first, so
that the figures are the work, not the settle rule's deliberate wait):

- the daemon's fast path (``TargetedPeople`` with the baseline): the changed rows only,
  then one ``find`` per changed person;
- the fast path reading the feeds whole (as before issue 18, and the fallback whenever
  the incremental path declines): its feeds+policy share is timed apart;
- the full reconcile a scheduler without a fast path would need (``run_apply``).

Prints the accounts each read from the directory (the fast path's is K, whatever N), the
times and peak RSS, and the ratio of the daemon's fast path at the largest N to the
smallest (the target: <= 2). ``--json FILE`` writes the figures. Usage:
``.venv/bin/python bench/fastpath_scale.py [--json FILE] [N ...]`` (default 2000 20000).
Not part of the timed test run.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from plan_scale import PEOPLE, SUFFIX, write_feeds, write_ldif  # noqa: E402

from connector import app, runs  # noqa: E402
from connector.devtools.slapd import LocalSlapd  # noqa: E402
from connector.logs import configure  # noqa: E402
from connector.model.accounts import Account  # noqa: E402
from connector.policy.instants import next_instants  # noqa: E402
from connector.runs import FreshPlan, Run  # noqa: E402
from connector.runs.incremental import FeedDeltas  # noqa: E402
from connector.runs.planning import horizon  # noqa: E402
from connector.runs.targeted import TargetedPeople, run_targeted  # noqa: E402
from connector.settings import load_settings  # noqa: E402
from connector.state import StateStore  # noqa: E402
from connector.targets.base import Target  # noqa: E402

K = 5  # separations per delivery


class Counting:
    """Wraps a target and counts the accounts it reads (snapshot entries and finds)."""

    def __init__(self, inner: Target, tally: list[int]) -> None:
        self._inner = inner
        self._tally = tally

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def snapshot(self) -> Iterator[Account]:
        for a in self._inner.snapshot():
            self._tally[0] += 1
            yield a

    def find(self, person_id: str) -> Account | None:
        self._tally[0] += 1
        return self._inner.find(person_id)


def one(n: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="misync-fastpath-"))
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
[state]
dir = "{work / "state"}"
""")
            base = app.Runtime(load_settings(cfg))
            settle = base.settings.feeds.settle_seconds
            # the daemon's first reconcile: its evaluation becomes the fast path's baseline
            deltas = FeedDeltas()
            seen: list[runs.Evaluation] = []

            def offered(ev: runs.Evaluation) -> None:
                seen.append(ev)
                deltas.offer(base, ev)

            first = Run(base, FreshPlan(), evaluated=offered).execute()
            assert first is not None
            assert not first.plan.actions, first.plan.summary
            # the horizon: one pass over the rows the daemon's reconcile makes anyway
            t0 = time.perf_counter()
            horizon(base, seen[-1])
            horizon_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            deltas.resolved(base)  # the index by person: the baseline's own upkeep
            upkeep_s = time.perf_counter() - t0

            def delivery(offset: int) -> None:
                sep = datetime.now(UTC) - timedelta(minutes=1)
                with (work / "feeds" / "separations.csv").open("a") as f:
                    for i in range(offset, offset + K):
                        f.write(f"P{i},CBO1,{sep.isoformat()},quit\n")
                time.sleep(settle + 0.2)  # the settle rule's wait is not the fast path's work

            def measured(tally: list[int]) -> app.Runtime:
                rt = app.Runtime(base.settings)
                rt.target_factory = lambda: Counting(  # type: ignore[assignment, return-value]
                    app.Runtime(base.settings).target(), tally
                )
                return rt

            # the daemon's fast path: the changed rows, then one find per changed person
            delivery(0)
            inc_read = [0]
            t0 = time.perf_counter()
            inc = Run(
                measured(inc_read),
                TargetedPeople(None, kind="fastpath", deltas=deltas),
                evaluated=offered,
            ).execute()
            inc_s = time.perf_counter() - t0
            assert inc is not None
            assert inc.report.counts == {"disable_ok": K}, inc.report.counts
            # what the daemon does next (not on the disable's clock): re-plan the timed job
            t0 = time.perf_counter()
            assert runs.still_current(base, seen[-1], base.clock())
            next_instants(seen[-1].feeds, seen[-1].decisions, base.clock(), base.rules, limit=1)
            timed_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            deltas.resolved(base)
            inc_upkeep_s = time.perf_counter() - t0
            # the fast path reading the feeds whole (the fallback); its feeds + policy share
            delivery(K)
            t0 = time.perf_counter()
            with StateStore(base.settings.state.db) as store:
                runs.evaluate(base, store, base.clock())
            eval_s = time.perf_counter() - t0
            fast_read = [0]
            t0 = time.perf_counter()
            fast = run_targeted(measured(fast_read), None)
            fast_s = time.perf_counter() - t0
            assert fast is not None
            assert fast.report.counts == {"disable_ok": K}, fast.report.counts
            # the same delivery handled by a full reconcile instead
            delivery(2 * K)
            full_read = [0]
            t0 = time.perf_counter()
            full = runs.run_apply(measured(full_read))
            full_s = time.perf_counter() - t0
            assert full.report.counts == {"disable_ok": K}, full.report.counts
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "n": n,
        "incremental_s": inc_s,
        "incremental_read": inc_read[0],
        "horizon_after_full_run_s": horizon_s,
        "upkeep_after_full_run_s": upkeep_s,
        "timed_replan_after_fast_path_s": timed_s,
        "upkeep_after_fast_path_s": inc_upkeep_s,
        "whole_read_s": fast_s,
        "whole_read_feeds_policy_s": eval_s,
        "whole_read_read": fast_read[0],
        "full_s": full_s,
        "full_read": full_read[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    configure("warning", "console")
    args = sys.argv[1:]
    out = None
    if args[:1] == ["--json"]:
        out, args = Path(args[1]), args[2:]
    sizes = [int(a) for a in args] or [2000, 20000]
    rows = [one(n) for n in sizes]
    print(
        f"{'accounts':>9} {'fast path':>10} {'read':>5} {'upkeep':>7} {'horizon':>8}"
        f" {'timed replan':>13} {'whole-read fp':>14} {'feeds+policy':>13} {'full run':>9}"
        f" {'read':>7} {'RSS MB':>7}"
    )
    for r in rows:
        print(
            f"{r['n']:>9} {r['incremental_s']:>9.2f}s {r['incremental_read']:>5}"
            f" {r['upkeep_after_full_run_s']:>6.2f}s {r['horizon_after_full_run_s']:>7.2f}s"
            f" {r['timed_replan_after_fast_path_s']:>12.2f}s {r['whole_read_s']:>13.2f}s"
            f" {r['whole_read_feeds_policy_s']:>12.2f}s {r['full_s']:>8.2f}s {r['full_read']:>7}"
            f" {r['peak_rss_mb']:>7.0f}"
        )
    ratio = rows[-1]["incremental_s"] / rows[0]["incremental_s"]
    print(
        f"fast path at {rows[-1]['n']} / at {rows[0]['n']}: {ratio:.2f}x (target <= 2x); "
        "upkeep = preparing the baseline after the full run (not on the fast path's clock)"
    )
    if out is not None:
        body = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_average": os.getloadavg(),
            "k_separations": K,
            "rows": rows,
            "ratio_largest_to_smallest": ratio,
        }
        out.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
