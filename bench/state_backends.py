"""The cost of the PostgreSQL state store against SQLite: the same 10k-action apply and
the same daemon cycles, one run, each backend on its own fresh slapd.

    .venv/bin/python bench/state_backends.py --n 10000      # a few minutes on 2 cores

Builds one world with ``bench/generate.py`` (N people, every account stale in attributes
only: N modifies), starts a private PostgreSQL (``connector.devtools.postgres``, with
fsync on, as a real server keeps it) on this host, then for each backend loads a fresh
slapd from the same LDIF and measures in a child process (``bench/run.py`` phases):

- ``apply``: ``misync apply`` of the whole plan (journal and audit for every action);
- ``cycles``: the daemon's first full cycle, a full cycle with unchanged feeds, and an
  incremental cycle after K accounts changed behind its back.

Checks after each apply that every journal entry is closed with its audit seq and that
the audit trail verifies. Prints the figures and the ratio PostgreSQL / SQLite; writes
them to ``--out`` (JSON). Not part of the test run. The PostgreSQL server runs on the
same host over loopback: a server across a network adds its round trips.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import generate as gen  # noqa: E402
import run as bench  # noqa: E402


def _check(cfg: Path) -> dict[str, Any]:
    """Journal and audit, one to one, and the chain intact."""
    rt = bench._runtime(cfg)
    with rt.store() as store:
        journal = store.journal()
    with rt.audit(read_only=True) as trail:
        verified = trail.verify()
    return {
        "journal_entries": len(journal),
        "unaudited": sum(1 for j in journal if j.audit_seq is None or j.ended_at is None),
        "audit_records": verified.records,
        "audit_ok": verified.ok,
    }


def main() -> int:
    from connector.devtools.postgres import LocalPostgres
    from connector.devtools.slapd import LocalSlapd

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10000, help="people and stale accounts")
    p.add_argument("--behind-back", type=int, default=100, help="K for the incremental cycle")
    p.add_argument("--out", type=Path, help="JSON (default bench/results/state-N.json)")
    args = p.parse_args()
    args.profile = False  # what bench.measure expects of its arguments
    n = args.n
    out = args.out or ROOT / "bench" / "results" / f"state-{n}.json"
    started = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="misync-state-bench-"))
    fig: dict[str, Any] = {}
    pg = LocalPostgres(durable=True)
    try:
        sc, _c, dc = bench.world(work, "w", n, drift=1.0, stale_profile=False)
        sc.stop()
        pg.start()
        for backend in ("sqlite", "postgresql"):
            fresh = LocalSlapd(dc / f"slapd-{backend}", suffix=gen.SUFFIX)
            fresh.start()
            try:
                fresh.bulk_load(dc / "people.ldif")
                state = dc / f"state-{backend}"
                cfg = bench._config(dc, fresh.url, fresh.root_dn, fresh.root_password, state)
                if backend == "postgresql":
                    url = pg.create_database("misync")
                    cfg.write_text(cfg.read_text() + f'url = "{url}"\n', encoding="utf-8")
                spec = {
                    "url": fresh.url,
                    "root_dn": fresh.root_dn,
                    "password": fresh.root_password,
                    "config": str(cfg),
                }
                f = bench.measure(args, "apply", spec)
                f["execute_seconds"] = f["seconds"] - f["plan_seconds"]
                f["state"] = _check(cfg)
                f["cycles"] = bench.measure(
                    args, "cycles", spec | {"behind_back": args.behind_back, "n": n}
                )
                fig[backend] = f
            finally:
                fresh.stop()
    finally:
        pg.remove()
        shutil.rmtree(work, ignore_errors=True)

    lite, post = fig["sqlite"], fig["postgresql"]
    ratios = {
        "apply": post["seconds"] / lite["seconds"],
        "execute": post["execute_seconds"] / lite["execute_seconds"],
    }
    for key in (
        "first_full_seconds",
        "warm_full_seconds",
        "incremental_seconds",
        "idle_incremental_seconds",
    ):
        if key in lite["cycles"] and key in post["cycles"]:
            ratios[key] = post["cycles"][key] / lite["cycles"][key]
    result = {
        "n": n,
        "world": "every account stale in attributes only (no group moves)",
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "ratios_postgresql_to_sqlite": {k: round(v, 2) for k, v in ratios.items()},
        "figures": fig,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for backend in ("sqlite", "postgresql"):
        f = fig[backend]
        print(
            f"{backend:10} apply {f['seconds']:7.2f} s (execute {f['execute_seconds']:7.2f} s), "
            f"{f['counts']}, state {f['state']}, cycles {json.dumps(f['cycles'])}"
        )
    print(f"PostgreSQL / SQLite: {result['ratios_postgresql_to_sqlite']}; {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
