"""A cold plan's results are pinned: speed work on the per-person path changes nothing.

A fixed world from ``bench/generate.py`` (300 people, 30% of the accounts stale, 5%
missing, 3 orphans, 1% separated) with a few odd rows added (an internationalized
address, a bad address, a single-label domain, a quoted local part, an invisible
character, a person id spelled two ways) is loaded into a private slapd and planned by
``make_plan`` at a fixed instant. The digests below were computed with the code as it
was before the cold-plan work of issue 18 (commit 1309951, this file run in a checkout
of it); a change to row validation, policy evaluation, templates, the diff or the
directory read that alters any record, decision or action makes them differ. Recompute
them (``MISYNC_PRINT_GOLDEN=1``) only for a change that is meant to alter results, and
say so in its commit.

Hashed: every record and rejection the feeds yield, every decision (all their fields),
and the plan as written (``plan_to_dict``) without what depends on the machine: the
target's URL (a free port) and the feed files' modification times.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from connector import runs
from connector.app import Runtime
from connector.devtools.slapd import LocalSlapd
from connector.reconcile.serialize import plan_to_dict
from connector.settings import load_settings

pytestmark = pytest.mark.slapd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import generate as gen  # noqa: E402

AS_OF = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
GOLDEN = {
    "feeds": "82311fad4efed8cb1689ab6f5f304890d675e68db027d2b84b1df8bf50abee7b",
    "decisions": "1b6bbf3b691441dfc45edd7653cfc5331ff781899f9f714353167c429316a8b0",
    "plan": "629e4e0b3108b137680bc7d317850666a3ae9c0bea3371bb6c2e713ee716e245",
}
ODD_WORKERS = [  # appended to workers.csv: accepted and rejected rows off the plain path
    "P9000001,O00000,Zoë,Müller,zoe.muller@bücher.example,Olympia,S0,active,",
    "P9000002,O00001,Bad,Address,bad..address@example.org,Olympia,S1,active,",
    "P9000003,O00002,Single,Label,single@localhost,Olympia,S2,active,",
    "P9000004,O00003,Zero\u200bWidth,Space,zw@example.org,Olympia,S3,active,",
    'P9000005,O00004,Quoted,Local,"""q.l""@example.org",Olympia,S4,active,',
    "P9000006,O00005,Upper,Case,Upper.Case@EXAMPLE.ORG,Spokane,S5,active,",
]

CLASHING_ID = "p0000007"  # another spelling of P0000007: every row with either is rejected


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    d = tmp_path_factory.mktemp("golden")
    gen.generate(d, 300, drift=0.3, missing=0.05, orphans=3)
    with (d / "feeds" / "workers.csv").open("a", encoding="utf-8") as f:
        f.writelines(f"{row}\n" for row in ODD_WORKERS)
    with (d / "feeds" / "training.csv").open("a", encoding="utf-8") as f:
        f.write(f"{CLASHING_ID},MIS Basic,2025-02-01\n")  # P0000007 for the directory
    with LocalSlapd(d / "slapd", suffix=gen.SUFFIX) as server:
        server.bulk_load(d / "people.ldif")
        (d / "pw").write_text(server.root_password)
        cfg = d / "misync.toml"
        cfg.write_text(
            f"""
[feeds]
dir = "{d / "feeds"}"
max_age_hours = 0
[target]
mapping = "{ROOT / "mappings" / "openldap-ppolicy.toml"}"
[target.ldap]
url = "{server.url}"
bind_dn = "{server.root_dn}"
password_file = "{d / "pw"}"
base_dn = "{gen.PEOPLE}"
group_base_dn = "{gen.GROUPS}"
[guard]
max_unexplained_share = 1.0
max_unexplained_disables = 1000000
[state]
dir = "{d / "state"}"
""",
            encoding="utf-8",
        )
        yield Runtime(load_settings(cfg))


def _plain(value: Any) -> Any:
    """``value`` as JSON-able data in one order whatever the run (sets sorted: their
    iteration order follows string hashing, which differs from process to process)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, Enum):
        return value.value
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def _digest(value: Any) -> str:
    text = json.dumps(_plain(value), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_a_cold_plan_of_the_fixed_world_is_what_it_was(world: Runtime) -> None:
    with world.store() as store:
        plan, ev = runs.make_plan(world, store, AS_OF)
    feeds = ev.feeds
    records = [
        getattr(feeds, name)
        for name in (
            "organizations",
            "contracts",
            "workers",
            "separations",
            "training",
            "ndas",
            "requesters",
            "requests",
            "rejected",
        )
    ]
    body = plan_to_dict(plan)
    body.pop("target")
    body.pop("checksum")
    body.pop("read", None)  # how the directory was read (issue 18 item 1), not what it says
    for health in body["feeds"]:
        health.pop("modified_at")
    # the area columns a rejection keeps (issue 16: placing it on an area's page) came
    # after the golden values; everything else a rejection says is compared
    records[-1] = [
        {k: v for k, v in _plain(r).items() if k not in ("org", "wda")} for r in feeds.rejected
    ]
    got = {
        "feeds": _digest(records),
        "decisions": _digest(ev.decisions),
        "plan": _digest(body),
    }
    if os.environ.get("MISYNC_PRINT_GOLDEN"):
        print(json.dumps(got, indent=4))
    # the world is not trivial: every kind of work, and the odd rows took both paths
    assert plan.summary["create"] and plan.summary["update"] and plan.summary["disable"]
    rejected = {r.key for r in feeds.rejected}
    assert {"P9000002", "P9000003", "P9000004", "P9000005"} <= rejected
    assert not {"P9000001", "P9000006"} & rejected
    assert {"P0000007", CLASHING_ID} <= rejected
    assert got == GOLDEN
