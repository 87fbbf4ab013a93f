"""Rebuild a run's plan from its archived inputs alone (``misync audit replay``).

The feed files are written back into a temporary folder under their names and read by
the same reader, their judged health (state, detail, modification time) as the run
recorded it; the policy is evaluated with the archived rules at the run's ``as_of``; the
plan is built from the archived accounts, planner state and mapping, and sealed. No
feed folder, directory or state store is read. Any blob missing or altered stops the
replay with ``ArchiveError`` (exit 6)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from connector.archive.inputs import account_from_dict
from connector.archive.store import ArchiveError, ArchiveStore
from connector.feeds import load_feed_layout, read_feeds
from connector.mapping import AccountMapping, load_mapping
from connector.model.accounts import Account
from connector.model.decisions import Decision
from connector.model.feeds import FeedName, FeedSet, FeedState
from connector.model.plan import HeldDecision, Op, Plan
from connector.policy import PolicyRules, evaluate_all
from connector.reconcile import PlanInputs, build_plan, seal
from connector.settings import FeedsSettings


@dataclass(frozen=True)
class Replayed:
    """A run rebuilt from its archive: its plan, and the inputs it was made from."""

    run_id: str
    manifest: dict[str, Any]
    plan: Plan
    feeds: FeedSet  # as the run read them, from the archived bytes
    decisions: Mapping[str, Decision]  # of everyone in the feeds, at the run's as_of
    accounts: tuple[Account, ...]  # as the run read them
    mapping: AccountMapping


def _rules(d: dict[str, Any]) -> PolicyRules:
    kwargs: dict[str, Any] = {}
    for k, v in d.items():
        if k == "tz":
            kwargs[k] = ZoneInfo(v)
        elif isinstance(v, dict) and "seconds" in v:
            kwargs[k] = timedelta(seconds=v["seconds"])
        elif isinstance(v, list):
            kwargs[k] = frozenset(v)
        else:
            kwargs[k] = v
    return PolicyRules(**kwargs)


def _dt(v: str | None) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


def load_manifest(archive: ArchiveStore, digest: str) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads(archive.get(digest))
    except ValueError as exc:
        raise ArchiveError(f"manifest {digest}: not JSON ({exc})") from None
    return manifest


def replay(archive: ArchiveStore, run_id: str, digest: str) -> Replayed:
    """The plan rebuilt from the manifest ``digest`` (the one the trail recorded)."""
    m = load_manifest(archive, digest)
    if m.get("run_id") != run_id:
        raise ArchiveError(f"manifest {digest} is run {m.get('run_id')}'s, not {run_id}'s")
    blobs = m["blobs"]
    with tempfile.TemporaryDirectory(prefix="misync-replay-") as tmp:
        root = Path(tmp)
        mapping_path = root / "mapping.toml"
        mapping_path.write_bytes(archive.get(blobs["mapping"]))
        mapping = load_mapping(mapping_path)
        layout_path = None
        if blobs.get("feed_layout"):
            layout_path = root / "feeds.toml"
            layout_path.write_bytes(archive.get(blobs["feed_layout"]))
        feed_dir = root / "feeds"
        feed_dir.mkdir()
        for f in m["feeds"].values():
            if f["blob"]:
                path = feed_dir / f["file"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.get(f["blob"]))
                if f["modified_at"]:
                    ns = int(datetime.fromisoformat(f["modified_at"]).timestamp() * 1e9)
                    os.utime(path, ns=(ns, ns))
            elif f["digest"] and f["state"] not in (FeedState.MISSING.value,):
                raise ArchiveError(f"run {run_id}: the bytes of {f['file']} were not archived")
        settings = FeedsSettings.model_validate(
            {
                **m["feed_settings"],
                "dir": feed_dir,
                "mapping": layout_path,
                "settle_seconds": 0,
                "settle_max_seconds": 0,
            }
        )
        rules = _rules(m["rules"])
        as_of = datetime.fromisoformat(m["as_of"])
        feeds = read_feeds(
            settings,
            now=as_of,
            tz=rules.tz,
            layout=load_feed_layout(layout_path),
            id_match=mapping.correlation_match,
        )
    # the reader's judgement of each file (age, shrink) is the run's, as recorded
    health = dict(feeds.health)
    for name, f in m["feeds"].items():
        fn = FeedName(name)
        h = health[fn]
        health[fn] = dataclasses.replace(
            h,
            state=FeedState(f["state"]),
            detail=f["detail"],
            modified_at=_dt(f["modified_at"]),
            stamp=None,
        )
    feeds = dataclasses.replace(feeds, health=health)
    wanted = set(json.loads(archive.get(blobs["decisions"])))
    everyone = evaluate_all(feeds, as_of, rules)
    decisions = {p: d for p, d in everyone.items() if p in wanted}
    state = json.loads(archive.get(blobs["state"]))
    accounts = tuple(
        account_from_dict(d) for b in m["accounts"] for d in json.loads(archive.get(b))
    )
    p = m["planner"]
    inputs = PlanInputs(
        as_of=as_of,
        feeds=feeds,
        decisions=decisions,
        accounts=accounts,
        mapping=mapping,
        target=m["target"],
        known_logon_ids=state["known_logon_ids"],
        taken_logon_ids=frozenset(state["taken_logon_ids"]),
        quarantined=frozenset(state["quarantined"]),
        disabled_by_misync=frozenset(state["disabled_by_misync"]),
        reenable_external=p["reenable_external"],
        held_decisions={
            k: HeldDecision(
                d["verdict"],
                d["digest"],
                d["by"],
                d["reason"],
                datetime.fromisoformat(d["at"]),
                _dt(d["until"]),
            )
            for k, d in state["held_decisions"].items()
        },
        orphans=p["orphans"],
        max_unexplained=p["max_unexplained"],
        max_share=p["max_share"],
        override_guard=p["override_guard"],
        warning=timedelta(seconds=p["warning_seconds"]),
        enabled_total=p["enabled_total"],
    )
    plan = build_plan(inputs)
    if m["scoped"]:  # a targeted run keeps only its disables (connector.runs.targeted)
        keys = {a.key for a in plan.actions if a.op is Op.DISABLE}
        plan = dataclasses.replace(
            plan,
            actions=tuple(a for a in plan.actions if a.op is Op.DISABLE),
            held=tuple(h for h in plan.held if h.action.op is Op.DISABLE),
            accepted=tuple(h for h in plan.accepted if h.action.op is Op.DISABLE),
            approved=tuple(k for k in plan.approved if k.partition(":")[2] in keys),
        )
    return Replayed(run_id, m, seal(plan), feeds, everyone, accounts, mapping)
