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

A ``BucketCache`` (the daemon's reconciles keep one across cycles) spares a run the
serialising and hashing of the buckets whose accounts did not change since the last run
archived through it: a bucket's digest is reused only when its accounts are equal, in
the same order, to those it was made from (the planner keeps an unchanged account's
object, so this is mostly an identity check), and its archived object is the very file
the digest was written to (same inode, size and modification time). Anything else (a
changed account, a pruned or replaced object, a digest that names another file) and
the bucket is serialised and hashed again, so the manifest names what was read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from connector.reconcile import PlanInputs
from connector.settings import FeedsSettings, Settings

FORMAT = 1
BUCKETS = 64


def bucket_of(account_id: str) -> int:
    return int(hashlib.sha256(account_id.lower().encode()).hexdigest()[:4], 16) % BUCKETS


def account_to_dict(a: Account) -> dict[str, Any]:
    """``a`` as JSON-ready data (its attribute values' tuples are written as arrays)."""
    return {
        "id": a.account_id,
        "corr": a.correlation,
        "logon": a.logon_id,
        "enabled": a.enabled,
        "attrs": dict(a.attributes),
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


def bucket_bytes(accounts: Sequence[Account]) -> bytes:
    """One bucket's archived bytes: its accounts as JSON, sorted by account id."""
    return _json([account_to_dict(a) for a in sorted(accounts, key=_id_key)])


def _id_key(a: Account) -> str:
    return a.account_id.lower()


@dataclass(frozen=True)
class _Cached:
    members: tuple[Account, ...]  # the bucket's accounts, in the order the run read them
    digest: str
    stamp: tuple[int, int, int]  # its object file's (inode, size, mtime_ns) when cached


class BucketCache:
    """The account buckets of the last run archived through it (module docstring).
    ``serialised``: how many buckets that run serialised and hashed (0-64)."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self._buckets: dict[int, _Cached] = {}
        self.serialised = 0

    def digests(self, archive: ArchiveStore, buckets: Sequence[Sequence[Account]]) -> list[str]:
        """Each bucket's digest, its bytes archived; reused where nothing changed."""
        if self._root != archive.root:  # another archive (state.dir changed): start over
            self._root, self._buckets = archive.root, {}
        out: list[str] = []
        serialised = 0
        for i, accounts in enumerate(buckets):
            members = tuple(accounts)
            hit = self._buckets.get(i)
            if hit is None or hit.members != members or archive.stamp(hit.digest) != hit.stamp:
                digest = archive.put(bucket_bytes(members))
                stamp = archive.stamp(digest)
                serialised += 1
                if stamp is None:  # cannot be: put just wrote it (or found it)
                    self._buckets.pop(i, None)
                else:
                    self._buckets[i] = _Cached(members, digest, stamp)
            else:
                digest = hit.digest
            out.append(digest)
        self.serialised = serialised
        return out


def _feeds(archive: ArchiveStore, inputs: PlanInputs, s: FeedsSettings) -> dict[str, Any]:
    """Each feed file as the run judged it, its bytes archived (an unchanged file is
    named by its digest: neither read nor compressed again)."""
    feeds: dict[str, Any] = {}
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
    return feeds


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
    cache: BucketCache | None = None,
    planned_from: Mapping[str, str] | None = None,
    saved_plan: bool = False,
) -> str | None:
    """Write the run's inputs and manifest; the manifest's digest (None when the source
    noted no plan inputs: a reviewed plan's run records what confirmed it). ``cache``:
    the account buckets of the last run archived through it (``BucketCache``).
    ``planned_from``: a reviewed plan's run, the saved plan's inputs (``id``,
    ``manifest``) it was made from. ``saved_plan``: the inputs of ``misync plan -o``
    (``run_id`` is the plan's id), kept as a saved plan's, not a run's."""
    inputs = rec.inputs
    if inputs is None:
        return None
    s = settings.feeds
    feeds = _feeds(archive, inputs, s)
    buckets: list[list[Account]] = [[] for _ in range(BUCKETS)]
    for a in rec.accounts:
        buckets[bucket_of(a.account_id)].append(a)
    if cache is None:
        accounts = [archive.put(bucket_bytes(b)) for b in buckets]
    else:
        accounts = cache.digests(archive, buckets)
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
        **({"planned_from": dict(planned_from)} if planned_from else {}),
    }
    digest = archive.put(_json(manifest))
    if saved_plan:
        archive.record_plan(run_id, digest, at)
    else:
        archive.record_run(run_id, digest, at)
    return digest
