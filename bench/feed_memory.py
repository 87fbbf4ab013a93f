"""Peak memory of reading one big feed: ``python bench/feed_memory.py [--mb 200]``.

Generates a training feed of about ``--mb`` MB (one row per person and course) next to
the demo's other feeds, then reads all the feeds in a fresh child process and reports:
the file size, the peak resident memory of the read (``ru_maxrss``), the memory still
held once the read is over with the records kept (RSS after minus RSS before), and their
ratios. Not a test: the numbers depend on the machine. Limits (``feeds.max_bytes``,
``feeds.max_rows``) are raised for the run so that the feed is read, not refused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if not (ROOT / "connector").is_dir():
    ROOT = Path.cwd()

CHILD = r"""
import gc, json, resource, sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

from connector.feeds import read_feeds
from connector.settings import FeedsSettings
gc.collect()
before = rss()
raw = json.loads(sys.argv[1])
s = FeedsSettings.model_validate({k: v for k, v in raw.items() if k in FeedsSettings.model_fields})
feeds = read_feeds(s, now=datetime.now(UTC), tz=ZoneInfo("America/Los_Angeles"))
gc.collect()
after = rss()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
states = {h.feed.value: h.state.value for h in feeds.health.values()}
print(json.dumps({"before": before, "after": after, "peak": peak,
                  "training_rows": len(feeds.training), "training_state": states["training"]}))
"""


def generate(path: Path, megabytes: float) -> int:
    courses = ["MIS Basic", "MIS Advanced", "WIOA Title I-B", "Data Security 101"]
    target = int(megabytes * 1_000_000)
    size = 0
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        header = "person_id,course,completed_on\n"
        f.write(header)
        size += len(header)
        while size < target:
            line = f"P{rows // 4:08d},{courses[rows % 4]},2026-{rows % 12 + 1:02d}-15\n"
            f.write(line)
            size += len(line)
            rows += 1
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200.0, help="training feed size (MB)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="misync-feedmem-") as tmp:
        feeds = Path(tmp) / "feeds"
        shutil.copytree(ROOT / "config" / "demo" / "feeds", feeds)
        rows = generate(feeds / "training.csv", args.mb)
        size = (feeds / "training.csv").stat().st_size
        settings = {
            "dir": str(feeds),
            "mapping": str(ROOT / "mappings" / "feeds.toml"),
            "max_age_hours": 0,
            "max_bytes": size * 2,
            "max_rows": rows * 2,
        }
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(settings)],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        r = json.loads(proc.stdout)
    kept = max(r["after"] - r["before"], 1)
    mb = 1024 * 1024
    print(
        f"training feed: {size / mb:.0f} MiB, {rows} rows ({r['training_rows']} kept, "
        f"{r['training_state']})"
    )
    print(f"peak RSS of the read: {r['peak'] / mb:.0f} MiB = {r['peak'] / size:.1f}x the file")
    print(f"held after the read (records kept): {kept / mb:.0f} MiB")
    print(f"peak above the baseline / kept: {(r['peak'] - r['before']) / kept:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
