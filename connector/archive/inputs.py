"""A run's manifest: every input its plan was made from, by digest.

The manifest (JSON, itself a blob) holds the run's id and kind, ``as_of``, the feed
files (each one's archived bytes by sha256, and how the reader judged it: state,
detail, modification time), the configuration (the account mapping's and the feed
layout's bytes, the policy rules, the feed settings), the planner's state inputs
(logon ids, quarantine, misync's own disables, operators' decisions on held actions,
guard thresholds) and the directory accounts as read, in 64 buckets by account id so
that an unchanged bucket is not stored again. Its digest goes into the run's ``plan``
audit record (``inputs``): the hash-chained trail vouches for the manifest, the
manifest for every blob.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from connector.archive.capture import Recorder
from connector.archive.store import ArchiveStore, sha256
from connector.feeds import load_feed_layout
from connector.model.accounts import Account
from connector.model.feeds import FeedName
from connector.model.plan import HeldDecision
from connector.policy import PolicyRules
from connector.settings import Settings

FORMAT = 1
BUCKETS = 64


def bucket_of(account_id: str) -> int:
    return int(hashlib.sha256(account_id.lower().encode()).hexdigest()[:4], 16) % BUCKETS


def account_to_dict(a: Account) -> dict[str, Any]:
    return {
        "id": a.account_id,
        "corr": a.correlation,
        "logon": a.logon_id,
        "enabled": a.enabled,
        "attrs": {k: list(v) for k, v in a.attributes.items()},
        "groups": sorted(a.groups),
    }


def account_from_dict(d: Mapping[str, Any]) -> Account:
    return Account(
        account_id=d["id"],
        correlation=d["corr"],
        logon_id=d["logon"],
        enabled=bool(d["enabled"]),
        attributes={k: tuple(v) for k, v in d["attrs"].items()},
        groups=frozenset(d["groups"]),
    )


def rules_to_json(r: PolicyRules) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(r):
        v = getattr(r, f.name)
        if isinstance(v, timedelta):
            out[f.name] = {"seconds": v.total_seconds()}
        elif isinstance(v, frozenset):
            out[f.name] = sorted(v)
        elif f.name == "tz":
            out[f.name] = v.key
        else:
            out[f.name] = v
    return out


def _held_decision(d: HeldDecision) -> dict[str, Any]:
    return {
        "verdict": d.verdict,
        "digest": d.digest,
        "by": d.by,
        "reason": d.reason,
        "at": d.at.isoformat(),
        "until": d.until.isoformat() if d.until else None,
    }


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def archive_run(  # noqa: PLR0913 -- keyword-only, one per fact the manifest records
    archive: ArchiveStore,
    rec: Recorder,
    *,
    run_id: str,
    kind: str,
    settings: Settings,
    rules: PolicyRules,
    checksum: str,
    scoped: bool,
    reviewed: bool = False,
    at: datetime,
) -> str | None:
    """Write the run's inputs and manifest; the manifest's digest (None when the source
    noted no plan inputs: a reviewed plan's run records what confirmed it)."""
    inputs = rec.inputs
    if inputs is None:
        return None
    feeds: dict[str, Any] = {}
    s = settings.feeds
    layout = load_feed_layout(s.mapping)
    for name in FeedName:
        h = inputs.feeds.health.get(name)
        if h is None:
            continue
        blob = None
        if h.digest:
            if archive.has(h.digest):
                blob = h.digest
            else:
                try:
                    data = (s.dir / layout.files[name]).read_bytes()
                except OSError:
                    data = b""
                if sha256(data) == h.digest:  # the bytes parsed, unless changed since
                    blob = archive.put(data)
        feeds[name.value] = {
            "file": layout.files[name],
            "state": h.state.value,
            "detail": h.detail,
            "rows": h.rows,
            "modified_at": h.modified_at.isoformat() if h.modified_at else None,
            "digest": h.digest,
            "blob": blob,
        }
    buckets: list[list[dict[str, Any]]] = [[] for _ in range(BUCKETS)]
    for a in rec.accounts:
        buckets[bucket_of(a.account_id)].append(account_to_dict(a))
    accounts = [archive.put(_json(sorted(b, key=lambda d: str(d["id"]).lower()))) for b in buckets]
    state = {
        "known_logon_ids": dict(inputs.known_logon_ids),
        "taken_logon_ids": sorted(inputs.taken_logon_ids),
        "quarantined": sorted(inputs.quarantined),
        "disabled_by_misync": sorted(inputs.disabled_by_misync),
        "held_decisions": {k: _held_decision(d) for k, d in inputs.held_decisions.items()},
    }
    layout_bytes = s.mapping.read_bytes() if s.mapping is not None else None
    blobs = {
        "mapping": archive.put(Path(settings.target.mapping).read_bytes()),
        "feed_layout": archive.put(layout_bytes) if layout_bytes is not None else None,
        "state": archive.put(_json(state)),
        "decisions": archive.put(_json(sorted(inputs.decisions))),
    }
    manifest = {
        "format": FORMAT,
        "run_id": run_id,
        "kind": kind,
        "checksum": checksum,
        "as_of": inputs.as_of.isoformat(),
        "target": inputs.target,
        "scoped": scoped,  # a targeted run: only its disables were kept
        # a reviewed plan (apply --plan): these inputs are the fresh read that confirmed it
        "reviewed": reviewed,
        "rules": rules_to_json(rules),
        "feed_settings": s.model_dump(mode="json", exclude={"dir", "mapping"}),
        "planner": {
            "reenable_external": inputs.reenable_external,
            "orphans": inputs.orphans,
            "max_unexplained": inputs.max_unexplained,
            "max_share": inputs.max_share,
            "override_guard": inputs.override_guard,
            "warning_seconds": inputs.warning.total_seconds(),
            "enabled_total": inputs.enabled_total,
        },
        "feeds": feeds,
        "accounts": accounts,
        "account_count": len(rec.accounts),
        "blobs": blobs,
    }
    digest = archive.put(_json(manifest))
    archive.record_run(run_id, digest, at)
    return digest
