"""Reconcile cycles for a long-running process: full when needed, incremental otherwise.

The daemon's normal case is that nothing changed. A ``CyclePlanner`` remembers what the
previous cycle learned, so that a cycle reads and evaluates only what changed::

    planner = CyclePlanner(rt, full_every=timedelta(hours=1))
    with rt.store() as store:
        result = planner.cycle(store)             # full or incremental, as needed
        result = planner.cycle(store, full=True)  # a full scan, e.g. on a schedule
    result.plan        # a sealed Plan of everything that differs now (as make_plan gives)
    result.full        # True when the directory was read in full; result.reason says why

Each cycle returns the plan a full ``make_plan`` would give at that instant; it is the
caller's to carry it out (``Run(rt, IncrementalCycle(reconciler))``, connector.runs) or
report it.

**The directory.** A full scan reads every account and keeps the result in the state
store (``target_snapshot``, only changed rows are written) and in memory. An
incremental cycle asks the target only for what changed since the previous read
(``IncrementalTarget.changed_since``: for LDAP, entries and groups whose
``modifyTimestamp`` is at or after a high-water mark taken *before* the previous read,
minus a clock margin) and folds it into the snapshot. A full scan runs instead when:

- there is no snapshot yet (first cycle, or the process restarted and the stored one was
  made for another target or mapping), or ``full=True``;
- the last full scan is older than ``full_every``: deletions and entries moved out of
  scope leave no trace an incremental read could see, so they wait for the next full
  scan (at most ``full_every``);
- the target has no incremental capability (SCIM: every cycle is a full scan), or the
  LDAP server keeps no ``modifyTimestamp`` on the base entry, or does not show it to the
  bind DN (389 DS grants it only explicitly): then the cycle logs
  ``cycle.no_incremental_mark`` (warning) once, not every cycle, and again only after a
  mark was seen in between; the snapshot's meta keeps it for ``misync status``;
- anything looks odd: a changed account carries the correlation of another account in
  the snapshot (a rename or a duplicate), a new account correlates to nobody (it may be
  a renamed orphan), or the target gives no mark.

**The feeds and the policy.** The feed files are hashed (sha256 of their bytes, a few
milliseconds per 100k rows); the feeds are read and every decision evaluated again only
when a file changed, when the rows of the last good run changed, or when the instant
passes ``connector.policy.horizon.valid_until`` (the first instant after the last
evaluation at which any decision or a feed's freshness can change: a date starting, a
grace or deadline running out, midnight). Until then the decisions are exactly those of
a fresh evaluation, so reusing them loses nothing.

A ``CyclePlanner`` is not thread-safe: one cycle at a time (the daemon runs one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from connector.app import Runtime
from connector.archive import BucketCache
from connector.model.accounts import Account
from connector.model.plan import DirectoryRead, Plan
from connector.reconcile import build_plan, seal
from connector.reconcile.planner import PlanCache
from connector.reconcile.settled import Seen, named_in
from connector.runs.directory import (
    account_from_json,
    account_to_json,
    fingerprint,
    fold_changes,
    new_generation,
    row_digest,
)
from connector.runs.memo import remember
from connector.runs.planning import (
    Evaluation,
    RejectionLog,
    collector_paused,
    evaluate,
    horizon,
    plan_inputs,
)
from connector.state import Store
from connector.targets.base import IncrementalTarget, Target, no_mark_warning


@dataclass(frozen=True)
class CycleResult:
    plan: Plan
    evaluation: Evaluation
    full: bool  # the directory was read in full
    reason: str  # why a full scan ("" for an incremental cycle)
    read: int  # accounts read from the directory in this cycle
    reevaluated: bool  # the feeds were read and the policy evaluated in this cycle


class CyclePlanner:
    """Makes the plan of each reconcile cycle (full or incremental) and remembers what the
    last one read. It plans and reads (I/O), so it lives in runs/, not in the pure
    reconcile/; the caller applies the plan."""

    def __init__(
        self,
        rt: Runtime,
        *,
        full_every: timedelta = timedelta(hours=1),
        rejections: RejectionLog | None = None,
    ) -> None:
        self.rt = rt
        self.full_every = full_every
        self._rejections = rejections  # how rejected rows are logged (the daemon: once)
        self._log = structlog.get_logger("misync.cycle")
        # the directory as last read: lower-cased account id -> account
        self._accounts: dict[str, Account] | None = None
        self._mark: str | None = None
        self._full_at: datetime | None = None
        # the evaluation, the feed fingerprint it was made from, and how long it holds
        self._ev: Evaluation | None = None
        self._feeds_fp = ""
        self._ev_until: datetime | None = None
        self._cache = PlanCache()  # desired accounts and diffs of what did not change
        self._no_mark = ""  # why incremental reads are off (warned once), "" when they work
        #: the account buckets of the last cycle's archived inputs (connector.archive):
        #: the accounts this planner kept unchanged are not serialised and hashed again
        self.archive_cache = BucketCache()
        self._generation: str | None = None  # of the stored snapshot our view is saved as
        # the plan memo (connector.runs.memo): each account's row digest, the last plan
        # with the logon IDs it knew, and whether the stored memo is behind it
        self._digests: dict[str, str] = {}
        self._last: tuple[Plan, Evaluation, Mapping[str, str]] | None = None
        self._memo_named: tuple[set[str], set[str]] | None = None
        self._memo_stale = True

    @property
    def enabled_accounts(self) -> int | None:
        """Enabled accounts in the snapshot as last read (None before any read)."""
        if self._accounts is None:
            return None
        return sum(1 for a in self._accounts.values() if a.enabled)

    # -- the one entry point ---------------------------------------------------------------

    def cycle(
        self, store: Store, *, full: bool = False, override_guard: bool = False
    ) -> CycleResult:
        now = self.rt.clock()
        with collector_paused():
            ev, reevaluated = self._evaluation(store, now)
            target = self.rt.target()
            try:
                reason = self._full_reason(store, target, now, full)
                read = 0
                if not reason:
                    assert isinstance(target, IncrementalTarget)
                    read, reason = self._incremental(store, target)
                if reason:
                    read = self._full(store, target, now)
                plan = self._plan(store, ev, now, target.description, override_guard)
            finally:
                target.close()
        # how the directory was read, as a plan says it (outside the checksum)
        plan = dataclasses.replace(
            plan,
            read=DirectoryRead(
                warm=not reason,
                reason=reason,
                read_at=now,
                full_scan_at=self._full_at or now,
                entries=read,
                accounts=len(self._accounts or {}),
            ),
        )
        self._log.info(
            "cycle.done",
            full=bool(reason),
            reason=reason,
            read=read,
            reevaluated=reevaluated,
            summary=plan.summary,
        )
        return CycleResult(plan, ev, bool(reason), reason, read, reevaluated)

    # -- feeds and policy --------------------------------------------------------------------

    def _feed_fingerprint(self, store: Store) -> str:
        h = hashlib.sha256()
        s = self.rt.settings.feeds
        paths = sorted(p for p in s.dir.iterdir() if p.is_file()) if s.dir.is_dir() else []
        for p in [*paths, *([s.mapping] if s.mapping else [])]:
            h.update(str(p).encode() + b"\0")
            try:
                h.update(hashlib.sha256(p.read_bytes()).digest())
            except OSError as exc:  # unreadable now: never equal to a readable state
                h.update(f"error:{exc.errno}:{os.urandom(8).hex()}".encode())
        h.update(json.dumps(store.last_good_feed_rows(), sort_keys=True).encode())
        return h.hexdigest()

    def _evaluation(self, store: Store, now: datetime) -> tuple[Evaluation, bool]:
        fp = self._feed_fingerprint(store)
        if (
            self._ev is not None
            and fp == self._feeds_fp
            and self._ev_until is not None
            and self._ev.as_of <= now < self._ev_until
        ):
            return self._ev, False
        ev = evaluate(self.rt, store, now, rejections=self._rejections)
        self._memo_stale = True
        self._ev, self._feeds_fp = ev, fp
        self._ev_until = horizon(self.rt, ev)  # kept with ev: the daemon reuses it
        return ev, True

    # -- the directory -----------------------------------------------------------------------

    def _fingerprint(self, target: Target) -> str:
        return fingerprint(self.rt, target)

    def _full_reason(  # noqa: PLR0911 -- one return per reason
        self, store: Store, target: Target, now: datetime, full: bool
    ) -> str:
        if full:
            return "requested"
        if not isinstance(target, IncrementalTarget):
            return "the target has no incremental read"
        if self._accounts is None:
            meta = store.snapshot_meta()
            if meta.get("fingerprint") != self._fingerprint(target) or "mark" not in meta:
                return "no snapshot of this target and mapping yet"
            if not self._load(store, meta):
                return "the stored snapshot changed while it was read"
        if self._mark is None or self._full_at is None:
            return "no high-water mark"
        if now - self._full_at >= self.full_every or now < self._full_at:
            return f"the last full scan is older than {self.full_every}"
        return ""

    def _load(self, store: Store, meta: dict[str, str]) -> bool:
        """Take the stored snapshot as our view, if it did not change while it was read
        (its generation before and after)."""
        rows = store.load_snapshot()
        if store.snapshot_meta().get("generation", "") != meta.get("generation", ""):
            return False
        self._accounts = {k: account_from_json(v) for k, v in rows.items()}
        self._digests = {k: row_digest(v) for k, v in rows.items()}
        self._memo_stale = True
        self._generation = meta.get("generation", "")
        self._mark = meta["mark"]
        self._full_at = datetime.fromisoformat(meta["full_at"])
        return True

    def _full(self, store: Store, target: Target, now: datetime) -> int:
        mark = target.high_water_mark() if isinstance(target, IncrementalTarget) else None
        if isinstance(target, IncrementalTarget):
            self._note_mark(target, mark)
        old = self._accounts or {}
        fresh: dict[str, Account] = {}
        for a in target.snapshot():
            key = a.account_id.lower()
            before = old.get(key)
            # an unchanged account keeps its object: the plan cache knows it by identity
            fresh[key] = before if before is not None and before == a else a
        upserts = {k: a for k, a in fresh.items() if old.get(k) is not a}
        deletes = [k for k in old if k not in fresh]
        self._save(
            store, target, mark=mark, full_at=now, view=fresh, upserts=upserts, deletes=deletes
        )
        self._accounts, self._mark, self._full_at = fresh, mark, now
        return len(fresh)

    def _note_mark(self, target: IncrementalTarget, mark: str | None) -> None:
        """Warn once when the target gives no mark (every cycle is then a full read)."""
        if mark is None and not self._no_mark:
            self._no_mark = no_mark_warning(target.description)
            self._log.warning(
                "cycle.no_incremental_mark", target=target.description, message=self._no_mark
            )
        elif mark is not None and self._no_mark:
            self._no_mark = ""
            self._log.info("cycle.incremental_mark_readable", target=target.description)

    def _incremental(self, store: Store, target: IncrementalTarget) -> tuple[int, str]:
        assert self._accounts is not None
        assert self._mark is not None
        mark = target.high_water_mark()
        if mark is None:
            return 0, "the target gave no high-water mark"
        changes = target.changed_since(self._mark)
        accounts = self._accounts
        upserts, doubt = fold_changes(accounts, changes, self.rt.mapping.correlation_key)
        if doubt:
            return len(changes.accounts), doubt
        accounts.update(upserts)
        self._save(store, target, mark=mark, full_at=self._full_at, view=accounts, upserts=upserts)
        self._mark = mark
        return len(changes.accounts), ""

    def _save(
        self,
        store: Store,
        target: Target,
        *,
        mark: str | None,
        full_at: datetime | None,
        view: dict[str, Account],
        upserts: dict[str, Account],
        deletes: Iterable[str] = (),
    ) -> None:
        """Save ``view`` (the directory as now read): only the rows that changed since our
        last save, and only onto that very save (compare-and-set on the stored
        ``generation``); the whole view when there is no such save (first one, or a plan
        or apply saved its own view since: connector.runs.directory)."""
        generation = new_generation()
        meta = {"fingerprint": self._fingerprint(target), "generation": generation}
        if mark is not None and full_at is not None:
            meta |= {"mark": mark, "full_at": full_at.isoformat()}
        elif self._no_mark:
            meta["no_mark"] = self._no_mark  # for misync status
        rows = {k: account_to_json(a) for k, a in upserts.items()}
        gone = list(deletes)
        saved = self._generation is not None and store.save_snapshot(
            meta, rows, gone, replace=False, expect=self._generation
        )
        if not saved:
            if self._generation is not None:
                self._log.info("cycle.snapshot_rewritten", reason="saved by another process")
            rows = {k: rows.get(k) or account_to_json(a) for k, a in view.items()}
            store.save_snapshot(meta, rows, [], replace=True)
        self._generation = generation
        for k in gone:
            self._digests.pop(k, None)
        self._digests.update((k, row_digest(text)) for k, text in rows.items())
        if upserts or gone:
            self._memo_stale = True

    # -- the plan ------------------------------------------------------------------------------

    def _plan(
        self,
        store: Store,
        ev: Evaluation,
        now: datetime,
        description: str,
        override_guard: bool,
    ) -> Plan:
        accounts: Any = (self._accounts or {}).values()
        inputs = plan_inputs(
            self.rt,
            store,
            as_of=now,
            evaluation=ev,
            accounts=accounts,
            target=description,
            override_guard=override_guard,
            cache=self._cache,
        )
        plan = seal(build_plan(inputs))
        self._last = (plan, ev, inputs.known_logon_ids)
        if named_in(plan) != self._memo_named:
            self._memo_stale = True
        return plan

    # -- the plan memo ---------------------------------------------------------------------

    def remember(self, store: Store) -> bool:
        """Keep the memo of the last cycle's plan for dry runs (connector.runs.memo), when
        the stored one is behind it: the evaluation, the accounts read or the accounts
        and people the plan names changed since this planner last kept one. Called by
        the daemon after the cycle's run (not inside it: a memo at 100k takes about 3 s
        to write). True when it wrote one."""
        if not self._memo_stale or self._last is None or self._accounts is None:
            return False
        plan, ev, known = self._last
        seen = [
            Seen(
                k, a.correlation, a.logon_id, self._digests.get(k) or row_digest(account_to_json(a))
            )
            for k, a in self._accounts.items()
        ]
        remember(self.rt, store, ev, plan, seen, known)
        self._memo_named = named_in(plan)
        self._memo_stale = False
        return True
