"""The scale benchmark: every figure of docs/PERFORMANCE.md with its baseline, one run.

    .venv/bin/python bench/run.py --n 100000            # the documented figures (~15 min)
    .venv/bin/python bench/run.py --n 10000 --profile   # the small profile (a few minutes)
    .venv/bin/python bench/run.py --n 30000 --only-cold --before /tmp/old  # cold plans only

``--only-cold`` measures world A's raw dump, bare ldap3 scan, read and idle cold plan
only; ``--before TREE`` (a checkout of an earlier commit, e.g. ``git archive C | tar
-x -C TREE``) also times that tree's idle cold plan and read in the same run, on the
same slapd, against the same bare scan: a before/after pair that machine load cannot
skew (the runs alternate).

Builds three worlds with ``bench/generate.py`` (each a private slapd loaded with
slapadd) and measures, each in its own child process (so that peak RSS is that of the
one thing measured; times are taken inside the child, after imports):

- world A, N people, directory in line: the raw ``ldapsearch`` dump and a bare ldap3
  paged scan (``paged_search(generator=True)`` on a SYNC connection, ldap3's defaults)
  of the same attributes, misync's directory read alone, the idle full cycle
  (``make_plan`` with a full scan: feeds + policy + read + diff, as ``misync plan
  --full-scan``), the warm plan (``misync plan`` after an apply's full scan saved the
  snapshot and K accounts were changed behind its back: feeds + policy + the stored
  snapshot and the K entries + diff; its phases timed apart), and the daemon's
  cycles (``CyclePlanner``: first full cycle, a full cycle with unchanged feeds, an
  incremental cycle after K accounts were changed behind its back, which must find them);
- world B, N people, 94% of the accounts stale: the first plan, written to a file as
  ``misync plan -o`` does;
- world C, ``--apply-n`` people, every account stale: a raw sequential ``ldapmodify`` of
  exactly the changes of the plan, then (on a fresh copy) ``misync apply`` of them.

Prints a table and writes every figure, its baseline, their ratio and peak RSS to
``--out`` (JSON). Ratios are the point: the machine may be shared; figures of one run
on one slapd are comparable with each other, not with another machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import generate as gen  # noqa: E402

ATTRS = [
    "uid",
    "employeeNumber",
    "cn",
    "sn",
    "givenName",
    "mail",
    "displayName",
    "o",
    "departmentNumber",
    "employeeType",
    "physicalDeliveryOfficeName",
    "description",
    "pwdAccountLockedTime",
]
FILTER = "(objectClass=inetOrgPerson)"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


# -- the children: one measurement each ---------------------------------------------------


def _config(work: Path, url: str, root_dn: str, password: str, state: Path) -> Path:
    pw = work / "pw"
    pw.write_text(password)
    cfg = work / f"misync-{state.name}.toml"
    cfg.write_text(
        f"""
[feeds]
dir = "{work / "feeds"}"
max_age_hours = 0
[target]
mapping = "{ROOT / "mappings" / "openldap-ppolicy.toml"}"
[target.ldap]
url = "{url}"
bind_dn = "{root_dn}"
password_file = "{pw}"
base_dn = "{gen.PEOPLE}"
group_base_dn = "{gen.GROUPS}"
clock_margin_seconds = 0  # misync and slapd share this host's clock
[guard]
max_unexplained_share = 1.0
max_unexplained_disables = 1000000
[apply]
backoff_seconds = 0
[state]
dir = "{state}"
""",
        encoding="utf-8",
    )
    return cfg


def _runtime(cfg: Path) -> Any:
    from connector.app import Runtime
    from connector.settings import load_settings

    return Runtime(load_settings(cfg))


def _profiled(args: argparse.Namespace, fn: Any) -> Any:
    if not args.profile:
        return fn()
    import cProfile
    import pstats

    prof = cProfile.Profile()
    result = prof.runcall(fn)
    stats = pstats.Stats(prof, stream=sys.stderr)
    print(f"\n--- profile of {args.child} (cumulative, top 30) ---", file=sys.stderr)
    stats.sort_stats("cumulative").print_stats(30)
    print(f"--- profile of {args.child} (own time, top 20) ---", file=sys.stderr)
    stats.sort_stats("tottime").print_stats(20)
    return result


def child(args: argparse.Namespace) -> dict[str, Any]:
    c = json.loads(args.spec)
    phase = args.child
    out: dict[str, Any] = {}
    if phase == "ldapsearch":
        cmd = ["ldapsearch", "-x", "-H", c["url"], "-D", c["root_dn"], "-w", c["password"]]
        cmd += ["-b", gen.PEOPLE, "-s", "one", "-E", "pr=1000/noprompt", "-LLL", FILTER, *ATTRS]
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        out["seconds"] = time.perf_counter() - t0
        out["rss_mb"] = children_rss_mb()
        return out
    if phase == "ldapmodify":
        cmd = ["ldapmodify", "-x", "-H", c["url"], "-D", c["root_dn"], "-w", c["password"]]
        t0 = time.perf_counter()
        subprocess.run([*cmd, "-f", c["ldif"]], stdout=subprocess.DEVNULL, check=True)
        out["seconds"] = time.perf_counter() - t0
        out["rss_mb"] = children_rss_mb()
        return out
    if phase == "bare_ldap3":
        out["seconds"], out["entries"] = _bare_scan(c)
        out["rss_mb"] = rss_mb()
        return out

    from connector import runs
    from connector.reconcile.serialize import write_plan

    rt = _runtime(Path(c["config"]))
    now = datetime.now(UTC)
    if phase == "read":
        target = rt.target()
        t0 = time.perf_counter()
        n = _profiled(args, lambda: sum(1 for _ in target.snapshot()))
        out["seconds"] = time.perf_counter() - t0
        out["entries"] = n
        target.close()
    elif phase in ("plan", "first_plan"):
        with rt.store() as store:
            t0 = time.perf_counter()

            def plan_and_write() -> Any:
                plan, _ = runs.make_plan(rt, store, now, full_scan=True)
                if phase == "first_plan":
                    with Path(c["plan_out"]).open("w", encoding="utf-8") as f:
                        write_plan(plan, f)
                return plan

            plan = _profiled(args, plan_and_write)
            out["seconds"] = time.perf_counter() - t0
        out["summary"] = plan.summary
        if phase == "first_plan":
            out["plan_file_mb"] = round(Path(c["plan_out"]).stat().st_size / 2**20, 1)
    elif phase == "warm_plan":
        out |= _warm_plan(args, rt, c)
    elif phase == "dry_plan":  # ``misync plan`` alone, in a new process (after warm_plan)
        with rt.store() as store:
            t0 = time.perf_counter()
            plan = runs.dry_plan(rt, store, now)
            out["seconds"] = time.perf_counter() - t0
        assert plan.read is not None
        out["memo_used"] = plan.read.memo_at is not None
        out["memo_unused"] = plan.read.memo_unused
        out["warm"] = plan.read.warm
    elif phase == "cycles":
        out |= _cycles(rt, c)
    elif phase == "modify_ldif":
        with rt.store() as store:
            plan, _ = runs.make_plan(rt, store, now, full_scan=True)
        out["summary"] = plan.summary
        out["modifies"] = _write_modify_ldif(plan, Path(c["ldif"]))
    elif phase == "apply":
        with rt.store() as store:
            t0 = time.perf_counter()
            runs.make_plan(rt, store, now, full_scan=True)
            out["plan_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # as measured before warm plans (a full scan); profiled with --profile
        result = _profiled(args, lambda: runs.run_apply(rt, runs.FreshPlan(full_scan=True)))
        out["seconds"] = time.perf_counter() - t0
        out["counts"] = result.report.counts
        out["failed"] = len(result.report.failed)
        with rt.store() as store:
            after, _ = runs.make_plan(rt, store, datetime.now(UTC))
        out["after"] = after.summary
    out["rss_mb"] = rss_mb()
    return out


def _bare_scan(c: dict[str, Any]) -> tuple[float, int]:
    """The baseline: a bare ldap3 paged scan of the managed attributes (seconds, entries)."""
    import ldap3

    conn = ldap3.Connection(
        ldap3.Server(c["url"], get_info=ldap3.NONE),
        c["root_dn"],
        c["password"],
        client_strategy=ldap3.SYNC,
        auto_bind=True,
        raise_exceptions=True,
    )
    t0 = time.perf_counter()
    n = 0
    for _entry in conn.extend.standard.paged_search(
        gen.PEOPLE, FILTER, ldap3.LEVEL, attributes=ATTRS, paged_size=1000, generator=True
    ):
        n += 1
    seconds = time.perf_counter() - t0
    conn.unbind()
    return seconds, n


def _change_behind_back(c: dict[str, Any], tag: str) -> None:
    """K accounts of entitled people get another display name, with ldap3 directly."""
    import ldap3

    time.sleep(1.1)  # modifyTimestamp has one-second steps (the margin is 0 here)
    conn = ldap3.Connection(ldap3.Server(c["url"]), c["root_dn"], c["password"], auto_bind=True)
    n = c["n"]
    ppl = [p for p in gen.people(n, max(len(gen.WDAS), n // 400), 1021) if not p.separated]
    for i, person in enumerate(ppl[: c["behind_back"]]):
        conn.modify(
            f"uid={person.uid},{gen.PEOPLE}",
            {"displayName": [(ldap3.MODIFY_REPLACE, [f"changed behind its back {tag} {i}"])]},
        )
    conn.unbind()


def _warm_plan(args: argparse.Namespace, rt: Any, c: dict[str, Any]) -> dict[str, Any]:
    """``misync plan`` from the stored snapshot: a full-scan plan saves it; then, in
    ``rounds`` rounds, a bare ldap3 scan (the baseline, taken seconds from the figure:
    the machine is shared), K accounts changed behind misync's back, and the warm plan
    timed (the whole, and its phases: feeds and policy, the directory, the rest). The
    round of the median ratio is kept, with its phases and its baseline; each warm plan
    is checked against a full-scan plan at the same instant (same checksum)."""
    import gc

    from connector import runs
    from connector.runs.directory import DirectoryReader
    from connector.runs.planning import collector_paused

    now = datetime.now(UTC)
    rounds: list[dict[str, Any]] = []
    with rt.store() as store:
        # as an apply plans: the snapshot and the plan memo kept (timed against a plan
        # that keeps neither, just after)
        t0 = time.perf_counter()
        runs.make_plan(rt, store, now, full_scan=True, save_snapshot=True)
        keep_seconds = time.perf_counter() - t0
        gc.collect()
        t0 = time.perf_counter()
        runs.make_plan(rt, store, now, full_scan=True)
        plain_seconds = time.perf_counter() - t0
        rss_after_first = rss_mb()
        for i in range(c.get("rounds", 3)):
            r: dict[str, Any] = {"bare_seconds": _bare_scan(c)[0]}
            _change_behind_back(c, f"{time.time()} {i}")

            gc.collect()  # the last round's plans are gone, as in a new process

            def warm() -> Any:
                # what ``misync plan`` does (the collector paused inside)
                return runs.dry_plan(rt, store, now)

            t0 = time.perf_counter()
            plan = _profiled(args, warm) if i == 0 else warm()
            r["seconds"] = time.perf_counter() - t0
            r["read"] = {"warm": plan.read.warm, "reason": plan.read.reason}
            r["memo"] = {
                "used": plan.read.memo_at is not None,
                "unused": plan.read.memo_unused,
                "people_planned": plan.read.replanned,
                "accounts_reused": plan.read.reused,
            }
            r["entries_read"] = plan.read.entries
            r["found"] = plan.summary["update"]
            # the directory part alone, as the plan did it (the stored snapshot, the
            # mark, the changed entries), without saving
            target = rt.target()
            with collector_paused():
                t0 = time.perf_counter()
                sum(1 for _ in DirectoryReader(rt, store, target, save=False).accounts())
                r["directory_seconds"] = time.perf_counter() - t0
            target.close()
            r["plan_rest_seconds"] = r["seconds"] - r["directory_seconds"]
            r["ratio"] = r["seconds"] / r["bare_seconds"]
            cold, _ = runs.make_plan(rt, store, now, full_scan=True)
            r["same_checksum_as_full_scan"] = cold.checksum == plan.checksum
            rounds.append(r)
            del plan, cold
        rss_after_plans = rss_mb()
        # what a full scan pays to keep the snapshot (encode every account, write it)
        out: dict[str, Any] = {}
        for save in (False, True, False, True):
            gc.collect()
            target = rt.target()
            with collector_paused():
                t0 = time.perf_counter()
                reader = DirectoryReader(rt, store, target, full_scan=True, save=save)
                sum(1 for _ in reader.accounts())
                key = f"full_read_{'save' if save else 'nosave'}_seconds"
                out[key] = min(out.get(key, 1e9), time.perf_counter() - t0)
            target.close()
    # the round of the median ratio, with its own baseline (a round's ratio is what
    # survives the load of a shared machine; the fastest round may have had a slow scan)
    median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
    out |= median
    out["round_ratios"] = [round(r["ratio"], 3) for r in rounds]
    out["all_checksums_equal"] = all(r["same_checksum_as_full_scan"] for r in rounds)
    out["rss_mb"] = rss_after_plans  # the peak: full-scan plans too
    out["rss_after_first_full_scan_plan_mb"] = rss_after_first
    out["apply_plan_keeping_snapshot_and_memo_seconds"] = keep_seconds
    out["full_scan_plan_keeping_nothing_seconds"] = plain_seconds
    return out


def _cycles(rt: Any, c: dict[str, Any]) -> dict[str, Any]:
    """The daemon's cycles; K accounts changed behind its back must be found."""
    from connector.runs.cycle import CyclePlanner

    out: dict[str, Any] = {}
    rec = CyclePlanner(rt)
    with rt.store() as store:
        t0 = time.perf_counter()
        first = rec.cycle(store)
        out["first_full_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = rec.cycle(store, full=True)
        out["warm_full_seconds"] = time.perf_counter() - t0
        out["warm_full_reevaluated"] = warm.reevaluated
        _change_behind_back(c, "cycle")
        t0 = time.perf_counter()
        inc = rec.cycle(store)
        out["incremental_seconds"] = time.perf_counter() - t0
        out["incremental_full"] = inc.full
        out["incremental_read"] = inc.read
        out["incremental_found"] = inc.plan.summary["update"]
        out["first_summary"] = first.plan.summary
        # what the daemon does after that cycle's run (not inside it): the plan memo
        # for dry runs, written whole (connector.runs.memo)
        t0 = time.perf_counter()
        out["memo_written"] = rec.remember(store)
        out["memo_write_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        idle = rec.cycle(store)
        out["idle_incremental_seconds"] = time.perf_counter() - t0
        out["idle_incremental_full"] = idle.full
    return out


def _write_modify_ldif(plan: Any, path: Path) -> int:
    """The plan's updates as one LDIF for ldapmodify: what a hand-written script sends."""
    from connector.model.accounts import ChangeKind
    from connector.model.plan import Op

    n = 0
    with path.open("w", encoding="utf-8") as f:
        for a in plan.actions:
            if a.op is not Op.UPDATE:
                continue
            n += 1
            attrs = [c for c in a.changes if c.kind is ChangeKind.ATTRIBUTE]
            if attrs:
                f.write(f"dn: {a.account_id}\nchangetype: modify\n")
                for ch in attrs:
                    f.write(f"replace: {ch.name}\n")
                    f.writelines(f"{ch.name}: {v}\n" for v in ch.new if v)
                    f.write("-\n")
                f.write("\n")
            for ch in a.changes:
                if ch.kind is not ChangeKind.GROUPS:
                    continue
                for g in sorted(set(ch.new) - set(ch.old)):
                    f.write(f"dn: cn={g},{gen.GROUPS}\nchangetype: modify\nadd: member\n")
                    f.write(f"member: {a.account_id}\n-\n\n")
                for g in sorted(set(ch.old) - set(ch.new)):
                    f.write(f"dn: cn={g},{gen.GROUPS}\nchangetype: modify\ndelete: member\n")
                    f.write(f"member: {a.account_id}\n-\n\n")
    return n


# -- the parent ------------------------------------------------------------------------------


def _write_results(
    out: Path, started: datetime, head: dict[str, Any], tail: dict[str, Any]
) -> None:
    """One results file: ``head``, when and on what machine, then ``tail``."""
    result = {
        **head,
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
        },
        **tail,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def measure(
    args: argparse.Namespace,
    phase: str,
    spec: dict[str, Any],
    *,
    repeat: int = 1,
    script: Path | None = None,
) -> Any:
    """Run a child ``repeat`` times; keep the fastest run (and the highest peak RSS).
    ``script``: another tree's bench/run.py (``--before``)."""
    runs_: list[dict[str, Any]] = []
    for _ in range(repeat):
        cmd = [
            sys.executable,
            str(script or __file__),
            "--child",
            phase,
            "--spec",
            json.dumps(spec),
        ]
        if args.profile and phase in ("read", "plan", "first_plan", "warm_plan", "apply"):
            cmd.append("--profile")
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SystemExit(f"{phase} failed:\n{res.stderr[-4000:]}")
        if args.profile and res.stderr.strip():
            print(res.stderr, file=sys.stderr)
        runs_.append(json.loads(res.stdout.strip().splitlines()[-1]))
    best = min(runs_, key=lambda r: r.get("seconds", 0))
    best["rss_mb"] = max(r["rss_mb"] for r in runs_)
    if repeat > 1 and "seconds" in best:
        best["all_seconds"] = [round(r["seconds"], 3) for r in runs_]
    print(f"  {phase:12} {json.dumps(best)}", file=sys.stderr, flush=True)
    return best


def world(work: Path, name: str, n: int, **drift: Any) -> tuple[Any, dict[str, Any], Path]:
    from connector.devtools.slapd import LocalSlapd

    d = work / name
    d.mkdir()
    t0 = time.perf_counter()
    counts = gen.generate(d, n, **drift)
    slapd = LocalSlapd(d / "slapd", suffix=gen.SUFFIX)
    slapd.start()
    slapd.bulk_load(d / "people.ldif")
    print(f"world {name}: {counts} ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    spec = {"url": slapd.url, "root_dn": slapd.root_dn, "password": slapd.root_password}
    return slapd, spec, d


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10000, help="people and accounts (default 10000)")
    p.add_argument("--apply-n", type=int, default=0, help="apply world size (default min(N, 10k))")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure; the fastest is kept")
    p.add_argument("--behind-back", type=int, default=10, help="accounts changed behind its back")
    p.add_argument("--profile", action="store_true", help="cProfile the read and the plans")
    p.add_argument(
        "--only-apply",
        action="store_true",
        help="only the apply world, its accounts stale in attributes only (no group moves)",
    )
    p.add_argument(
        "--only-plans",
        action="store_true",
        help="only world A: the baselines, the read, the cold and warm plans, the cycles",
    )
    p.add_argument(
        "--only-cold",
        action="store_true",
        help="only world A's dump, bare scan, read and idle cold plan",
    )
    p.add_argument(
        "--before",
        type=Path,
        help="with --only-cold: also time the cold plan and read of this tree (earlier code)",
    )
    p.add_argument("--out", type=Path, help="JSON results (default bench/results/bench-N.json)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0

    n, rep = args.n, args.repeat
    apply_n = args.apply_n or min(n, 10000)
    out = args.out or ROOT / "bench" / "results" / f"bench-{n}.json"
    work = Path(tempfile.mkdtemp(prefix="misync-bench-"))
    started = datetime.now(UTC)
    fig: dict[str, Any] = {}
    servers = []
    try:
        if args.only_apply:
            return _only_apply(args, work, apply_n, out, started)
        if args.only_cold:
            return _only_cold(args, work, n, out, started)
        # world A: in line
        sa, a, da = world(work, "idle", n)
        servers.append(sa)
        fig["ldapsearch"] = measure(args, "ldapsearch", a, repeat=rep)
        fig["bare_ldap3"] = measure(args, "bare_ldap3", a, repeat=rep)
        cfg = str(_config(da, sa.url, sa.root_dn, sa.root_password, da / "state-read"))
        fig["read"] = measure(args, "read", a | {"config": cfg}, repeat=rep)
        cfg = str(_config(da, sa.url, sa.root_dn, sa.root_password, da / "state-plan"))
        fig["idle_plan"] = measure(args, "plan", a | {"config": cfg}, repeat=rep)
        cfg = str(_config(da, sa.url, sa.root_dn, sa.root_password, da / "state-warm"))
        spec = a | {"config": cfg, "behind_back": args.behind_back, "n": n}
        fig["warm_plan"] = measure(args, "warm_plan", spec | {"rounds": max(rep, 2)})
        fig["dry_plan"] = measure(args, "dry_plan", spec, repeat=rep)
        fig["bare_interleaved"] = {
            "seconds": fig["warm_plan"]["bare_seconds"],
            "rss_mb": fig["bare_ldap3"]["rss_mb"],
        }
        cfg = str(_config(da, sa.url, sa.root_dn, sa.root_password, da / "state-cycles"))
        spec = a | {"config": cfg, "behind_back": args.behind_back, "n": n}
        fig["cycles"] = measure(args, "cycles", spec)
        sa.stop()
        if args.only_plans:
            return _report(args, fig, out, started, n, apply_n)
        # world B: 94% stale
        sb, b, db = world(work, "first", n, drift=0.94)
        servers.append(sb)
        cfg = str(_config(db, sb.url, sb.root_dn, sb.root_password, db / "state"))
        spec = b | {"config": cfg, "plan_out": str(db / "plan.json")}
        fig["first_plan"] = measure(args, "first_plan", spec, repeat=rep)
        sb.stop()
        # world C: apply; the same changes by ldapmodify first, then misync on a fresh copy
        sc, c, dc = world(work, "apply", apply_n, drift=1.0)
        servers.append(sc)
        cfg = str(_config(dc, sc.url, sc.root_dn, sc.root_password, dc / "state-ldif"))
        ldif = str(dc / "modify.ldif")
        fig["apply_changes"] = measure(args, "modify_ldif", c | {"config": cfg, "ldif": ldif})
        fig["ldapmodify"] = measure(args, "ldapmodify", c | {"ldif": ldif})
        sc.stop()
        shutil.rmtree(dc / "slapd")
        from connector.devtools.slapd import LocalSlapd

        fresh = LocalSlapd(dc / "slapd2", suffix=gen.SUFFIX)
        fresh.start()
        fresh.bulk_load(dc / "people.ldif")
        servers.append(fresh)
        c2 = {"url": fresh.url, "root_dn": fresh.root_dn, "password": fresh.root_password}
        cfg = str(_config(dc, fresh.url, fresh.root_dn, fresh.root_password, dc / "state-apply"))
        fig["apply"] = measure(args, "apply", c2 | {"config": cfg})
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    return _report(args, fig, out, started, n, apply_n)


def _report(
    args: argparse.Namespace,
    fig: dict[str, Any],
    out: Path,
    started: datetime,
    n: int,
    apply_n: int,
) -> int:
    """The table of every figure measured, printed and written to ``out``."""
    rep = args.repeat
    cy = fig["cycles"]
    rows: list[tuple[str, dict[str, Any], str, float | None]] = [
        ("idle full cycle (misync plan --full-scan)", fig["idle_plan"], "bare_ldap3", 1.3),
        ("warm plan (misync plan, K changed)", fig["warm_plan"], "bare_interleaved", 0.3),
        (
            "warm plan: directory",
            _fig(fig["warm_plan"], "directory_seconds"),
            "bare_interleaved",
            None,
        ),
        (
            "warm plan: memo, feeds, policy, plan, seal",
            _fig(fig["warm_plan"], "plan_rest_seconds"),
            "bare_interleaved",
            None,
        ),
        ("misync plan alone, a new process", fig["dry_plan"], "bare_ldap3", None),
        ("daemon full cycle, feeds unchanged", _fig(cy, "warm_full_seconds"), "bare_ldap3", 1.3),
        ("incremental cycle", _fig(cy, "incremental_seconds"), "ldapsearch", 3.0),
    ]
    if "apply" in fig:  # not with --only-plans
        rows += [
            ("first plan, 94% updates (plan -o)", fig["first_plan"], "idle_plan", 2.0),
            ("apply of the updates (plan + execute)", fig["apply"], "ldapmodify", 1.5),
            (
                "apply, execution only",
                {
                    "seconds": fig["apply"]["seconds"] - fig["apply"]["plan_seconds"],
                    "rss_mb": fig["apply"]["rss_mb"],
                },
                "ldapmodify",
                1.5,
            ),
        ]
    rows += [
        ("misync directory read alone", fig["read"], "bare_ldap3", None),
        ("bare ldap3 paged scan", fig["bare_ldap3"], "ldapsearch", None),
        ("bare ldap3 scan, between the warm plans", fig["bare_interleaved"], "bare_ldap3", None),
    ]
    table = []
    for label, f, base, target in rows:
        b = fig[base]["seconds"]
        ratio = f["seconds"] / b
        table.append(
            {
                "figure": label,
                "seconds": round(f["seconds"], 3),
                "rss_mb": round(f.get("rss_mb", cy["rss_mb"]), 1),
                "baseline": base,
                "baseline_seconds": round(b, 3),
                "ratio": round(ratio, 2),
                "target_ratio": target,
                "met": None if target is None else ratio <= target,
            }
        )
    _write_results(
        out, started, {"n": n, "apply_n": apply_n, "repeat": rep}, {"table": table, "figures": fig}
    )
    print(f"\nN = {n} (apply: {apply_n}); load average {os.getloadavg()}; {out}")
    print(f"{'figure':40} {'s':>8} {'RSS MB':>7}  {'baseline':12} {'s':>7} {'ratio':>6} target")
    for r in table:
        goal = "" if r["target_ratio"] is None else f"<= {r['target_ratio']}x"
        met = "" if r["met"] is None else ("met" if r["met"] else "MISSED")
        print(
            f"{r['figure']:40} {r['seconds']:8.2f} {r['rss_mb']:7.0f}  {r['baseline']:12} "
            f"{r['baseline_seconds']:7.2f} {r['ratio']:5.2f}x {goal} {met}"
        )
    wp = fig["warm_plan"]
    print(
        f"warm plan: {wp['found']} of {args.behind_back} accounts changed behind its back "
        f"found, {wp['entries_read']} entries read, read={wp['read']}, memo={wp['memo']}, "
        f"same checksum as a "
        f"full scan: {wp['all_checksums_equal']}; ratio to the bare scan just before, by "
        f"round: {wp['round_ratios']}; a full scan saving the snapshot "
        f"{wp['full_read_save_seconds']:.2f} s, not saving it "
        f"{wp['full_read_nosave_seconds']:.2f} s"
    )
    print(
        f"incremental cycle: {cy['incremental_found']} of {args.behind_back} accounts changed "
        f"behind its back found, {cy['incremental_read']} read, full={cy['incremental_full']}; "
        f"the daemon's memo write after it: {cy['memo_write_seconds']:.2f} s"
    )
    print(
        f"an apply's plan keeping the snapshot and the memo: "
        f"{wp['apply_plan_keeping_snapshot_and_memo_seconds']:.2f} s; the same plan keeping "
        f"nothing: {wp['full_scan_plan_keeping_nothing_seconds']:.2f} s"
    )
    return 0


def _only_apply(
    args: argparse.Namespace, work: Path, apply_n: int, out: Path, started: datetime
) -> int:
    """The apply world alone, stale in attributes only: 10k plain modifies."""
    from connector.devtools.slapd import LocalSlapd

    fig: dict[str, Any] = {}
    sc, c, dc = world(work, "apply", apply_n, drift=1.0, stale_profile=False)
    try:
        cfg = str(_config(dc, sc.url, sc.root_dn, sc.root_password, dc / "state-ldif"))
        ldif = str(dc / "modify.ldif")
        fig["apply_changes"] = measure(args, "modify_ldif", c | {"config": cfg, "ldif": ldif})
        fig["ldapmodify"] = measure(args, "ldapmodify", c | {"ldif": ldif})
    finally:
        sc.stop()
    fresh = LocalSlapd(dc / "slapd2", suffix=gen.SUFFIX)
    fresh.start()
    try:
        fresh.bulk_load(dc / "people.ldif")
        c2 = {"url": fresh.url, "root_dn": fresh.root_dn, "password": fresh.root_password}
        cfg = str(_config(dc, fresh.url, fresh.root_dn, fresh.root_password, dc / "state-apply"))
        fig["apply"] = measure(args, "apply", c2 | {"config": cfg})
    finally:
        fresh.stop()
    a, base = fig["apply"], fig["ldapmodify"]["seconds"]
    result = {
        "apply_ratio": round(a["seconds"] / base, 2),
        "execution_ratio": round((a["seconds"] - a["plan_seconds"]) / base, 2),
    }
    head = {
        "apply_n": apply_n,
        "world": "every account stale in attributes only (no group moves)",
    }
    _write_results(out, started, head, result | {"figures": fig})
    print(
        f"apply of {apply_n} (attributes only): {a['seconds']:.2f} s, execution "
        f"{a['seconds'] - a['plan_seconds']:.2f} s; ldapmodify {base:.2f} s; ratios "
        f"{result['apply_ratio']}x / {result['execution_ratio']}x; {out}"
    )
    return 0


def _only_cold(args: argparse.Namespace, work: Path, n: int, out: Path, started: datetime) -> int:
    """World A alone: the raw dump, the bare ldap3 scan, misync's read and its idle cold
    plan (and, with ``--before``, the earlier tree's read and plan), each ``--repeat``
    times, interleaved so that load moves every figure alike."""
    fig: dict[str, Any] = {}
    sa, a, da = world(work, "idle", n)
    before = args.before / "bench" / "run.py" if args.before else None
    try:
        cfg = str(_config(da, sa.url, sa.root_dn, sa.root_password, da / "state-plan"))
        fig["ldapsearch"] = measure(args, "ldapsearch", a, repeat=args.repeat)
        kinds = [("bare_ldap3", a, None), ("read", a | {"config": cfg}, None)]
        kinds.append(("idle_plan", a | {"config": cfg}, None))
        if before is not None:
            bcfg = str(_config(da, sa.url, sa.root_dn, sa.root_password, da / "state-before"))
            kinds.append(("before_read", a | {"config": bcfg}, before))
            kinds.append(("before_plan", a | {"config": bcfg}, before))
        runs_: dict[str, list[dict[str, Any]]] = {k: [] for k, _s, _t in kinds}
        for _ in range(args.repeat):  # round-robin: one of each per round
            for key, spec, script in kinds:
                phase = {"idle_plan": "plan", "before_plan": "plan", "before_read": "read"}
                runs_[key].append(measure(args, phase.get(key, key), spec, script=script))
        for key, got in runs_.items():
            best = min(got, key=lambda r: r["seconds"])
            best["rss_mb"] = max(r["rss_mb"] for r in got)
            best["all_seconds"] = [round(r["seconds"], 3) for r in got]
            fig[key] = best
    finally:
        sa.stop()
    base = fig["bare_ldap3"]["seconds"]
    rows = [("idle_plan", "idle full cycle (misync plan)", 1.3), ("read", "misync read", None)]
    if before is not None:
        rows += [
            ("before_plan", f"idle full cycle, before ({args.before.name})", 1.3),
            ("before_read", f"misync read, before ({args.before.name})", None),
        ]
    table = [
        {
            "figure": label,
            "seconds": round(fig[key]["seconds"], 3),
            "rss_mb": round(fig[key]["rss_mb"], 1),
            "baseline": "bare_ldap3",
            "baseline_seconds": round(base, 3),
            "ratio": round(fig[key]["seconds"] / base, 2),
            "median_ratio": round(
                sorted(fig[key]["all_seconds"])[len(fig[key]["all_seconds"]) // 2]
                / sorted(fig["bare_ldap3"]["all_seconds"])[
                    len(fig["bare_ldap3"]["all_seconds"]) // 2
                ],
                2,
            ),
            "target_ratio": target,
            "met": None if target is None else fig[key]["seconds"] / base <= target,
        }
        for key, label, target in rows
    ]
    head = {
        "n": n,
        "only_cold": True,
        "before": str(args.before) if args.before else None,
        "repeat": args.repeat,
    }
    _write_results(out, started, head, {"table": table, "figures": fig})
    print(f"\nN = {n}, cold plans only; load average {os.getloadavg()}; {out}")
    print(f"bare ldap3 scan {base:.2f} s, {fig['bare_ldap3']['rss_mb']:.0f} MB")
    for r in table:
        print(
            f"{r['figure']:45} {r['seconds']:8.2f} s {r['rss_mb']:6.0f} MB  {r['ratio']:5.2f}x "
            f"(median {r['median_ratio']:.2f}x)"
        )
    return 0


def _fig(cy: dict[str, Any], key: str) -> dict[str, Any]:
    return {"seconds": cy[key], "rss_mb": cy["rss_mb"]}


if __name__ == "__main__":
    sys.exit(main())
