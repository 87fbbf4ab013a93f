"""apply vs. raw ``ldapmodify`` of the same changes, with and without group commit.

    .venv/bin/python bench/apply_speed.py --n 10000      # ~2-4 min on 2 cores

Builds one world with ``bench/generate.py`` (N people, every account stale: N modifies),
then measures in the same run, each in its own child process (``bench/run.py`` phases):

- baseline: one raw sequential ``ldapmodify`` of exactly the plan's changes;
- ``misync apply`` with ``apply.commit_batch = 1`` (one journal transaction and one
  audit append with its head write per outcome: how apply committed before issue 7);
- ``misync apply`` with the default group commit.

Each apply runs on a fresh slapd loaded from the same LDIF. Journal and audit are
written for every action in both modes (checked after each run: every journal entry
closed with its audit seq). Prints the figures and the ratios to ``ldapmodify``; writes
them to ``--out`` (JSON). Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import generate as gen  # noqa: E402
import run as bench  # noqa: E402


def _check_state(state: Path) -> dict[str, int]:
    """Journal and audit, one to one: what the run wrote for every action."""
    with sqlite3.connect(state / "state.sqlite3") as db:
        entries, unaudited = db.execute(
            "select count(*), sum(audit_seq is null or ended_at is null) from journal"
        ).fetchone()
    with sqlite3.connect(state / "audit.sqlite3") as db:
        (records,) = db.execute("select count(*) from records where kind = 'operation'").fetchone()
    return {"journal_entries": entries, "unaudited": unaudited or 0, "operation_records": records}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10000, help="people and stale accounts")
    p.add_argument("--repeat", type=int, default=1, help="ldapmodify runs (fastest kept)")
    p.add_argument("--out", type=Path, help="JSON (default bench/results/apply-N.json)")
    p.add_argument(
        "--no-groups",
        action="store_true",
        help="a mapping without groups: attribute modifies only (slapd rewrites a large "
        "groupOfNames on every member change, which otherwise dominates both sides)",
    )
    args = p.parse_args()
    args.profile = False  # what bench.measure expects of its arguments
    n = args.n
    out = args.out or ROOT / "bench" / "results" / f"apply-{n}.json"
    work = Path(tempfile.mkdtemp(prefix="misync-apply-bench-"))
    fig: dict[str, Any] = {}
    servers: list[Any] = []
    if args.no_groups:
        text = (ROOT / "mappings" / "openldap-ppolicy.toml").read_text(encoding="utf-8")
        mapping = work / "no-groups.toml"
        mapping.write_text(text.split("\n[groups]")[0].rsplit("\n#", 1)[0] + "\n")
        os.environ["MISYNC_TARGET__MAPPING"] = str(mapping)
    try:
        sc, c, dc = bench.world(work, "apply", n, drift=1.0)
        servers.append(sc)
        cfg = str(bench._config(dc, sc.url, sc.root_dn, sc.root_password, dc / "state-ldif"))
        ldif = str(dc / "modify.ldif")
        fig["changes"] = bench.measure(args, "modify_ldif", c | {"config": cfg, "ldif": ldif})
        fig["ldapmodify"] = bench.measure(
            args, "ldapmodify", c | {"ldif": ldif}, repeat=args.repeat
        )
        sc.stop()
        from connector.devtools.slapd import LocalSlapd

        for mode, batch in (("per_action_commit", "1"), ("group_commit", "")):
            fresh = LocalSlapd(dc / f"slapd-{mode}", suffix=gen.SUFFIX)
            fresh.start()
            servers.append(fresh)
            fresh.bulk_load(dc / "people.ldif")
            state = dc / f"state-{mode}"
            cfg = str(bench._config(dc, fresh.url, fresh.root_dn, fresh.root_password, state))
            spec = {"url": fresh.url, "root_dn": fresh.root_dn, "password": fresh.root_password}
            if batch:
                os.environ["MISYNC_APPLY__COMMIT_BATCH"] = batch
            try:
                fig[mode] = bench.measure(args, "apply", spec | {"config": cfg})
            finally:
                os.environ.pop("MISYNC_APPLY__COMMIT_BATCH", None)
            fig[mode]["execute_seconds"] = fig[mode]["seconds"] - fig[mode]["plan_seconds"]
            fig[mode]["state"] = _check_state(state)
            fresh.stop()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    raw = fig["ldapmodify"]["seconds"]
    groups = "attributes only" if args.no_groups else "attributes and group members"
    lines = [
        f"N = {n}: {fig['changes'].get('modifies')} modifies ({groups}); load {os.getloadavg()}"
    ]
    lines.append(f"  raw sequential ldapmodify           {raw:8.2f} s   1.00x")
    for mode in ("per_action_commit", "group_commit"):
        f = fig[mode]
        for what, key in (
            ("apply (plan + execute)", "seconds"),
            ("execution only", "execute_seconds"),
        ):
            f[f"ratio_{key}"] = f[key] / raw
            lines.append(f"  {mode:17} {what:23} {f[key]:8.2f} s {f[key] / raw:6.2f}x")
        lines.append(f"    state: {f['state']}, failed {f['failed']}")
    print("\n".join(lines))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "at": datetime.now(UTC).isoformat(),
                "n": n,
                "groups": not args.no_groups,
                "figures": fig,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
