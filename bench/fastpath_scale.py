"""Separation fast path cost at 2k and 20k accounts (issue 10: "cost must not grow with
the directory").

For each N: N entitled people and N matching accounts (bulk-loaded into a private slapd),
one full apply (records the decisions and the enabled-account count, changes nothing),
then K separations are appended to the feed and, in the same run, timed:

- the full reconcile a scheduler without a fast path would need (``run_apply``);
- the fast path (``run_targeted``): feeds + policy, then one ``find`` per changed person;
  its feeds+policy share is timed apart (it grows with the feeds, not the directory).

Prints the accounts each read from the directory (the fast path's is K, whatever N) and
the times. Usage: ``.venv/bin/python bench/fastpath_scale.py [N ...]`` (default 2000
20000). Not part of the timed test run.
"""

from __future__ import annotations

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
from connector.runs.targeted import run_targeted  # noqa: E402
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
            first = runs.run_apply(base)
            assert not first.plan.actions, first.plan.summary

            def delivery(offset: int) -> None:
                sep = datetime.now(UTC) - timedelta(minutes=1)
                with (work / "feeds" / "separations.csv").open("a") as f:
                    for i in range(offset, offset + K):
                        f.write(f"P{i},CBO1,{sep.isoformat()},quit\n")

            def measured(tally: list[int]) -> app.Runtime:
                rt = app.Runtime(base.settings)
                rt.target_factory = lambda: Counting(  # type: ignore[assignment, return-value]
                    app.Runtime(base.settings).target(), tally
                )
                return rt

            # the fast path: K separations, one find each
            delivery(0)
            # its share that depends on the feeds, not the directory: read + evaluate
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
            delivery(K)
            full_read = [0]
            t0 = time.perf_counter()
            full = runs.run_apply(measured(full_read))
            full_s = time.perf_counter() - t0
            assert full.report.counts == {"disable_ok": K}, full.report.counts
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "n": n,
        "fast_s": fast_s,
        "eval_s": eval_s,
        "fast_read": fast_read[0],
        "full_s": full_s,
        "full_read": full_read[0],
    }


def main() -> int:
    configure("warning", "console")
    sizes = [int(a) for a in sys.argv[1:]] or [2000, 20000]
    rows = [one(n) for n in sizes]
    print(
        f"{'accounts':>9} {'fast path':>10} {'feeds+policy':>13} {'directory':>10} {'read':>5}"
        f" {'full run':>9} {'read':>7}"
    )
    for r in rows:
        print(
            f"{r['n']:>9} {r['fast_s']:>9.2f}s {r['eval_s']:>12.2f}s"
            f" {r['fast_s'] - r['eval_s']:>9.2f}s {r['fast_read']:>5}"
            f" {r['full_s']:>8.2f}s {r['full_read']:>7}"
        )
    print(
        "fast path = feeds+policy (grows with the feeds) + directory (one find per changed"
        " person: K, whatever the directory size)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
