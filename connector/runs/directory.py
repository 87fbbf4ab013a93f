"""The directory as ``misync plan`` and ``misync apply`` see it: warm, or a full scan.

A **warm** read starts from the state store's snapshot of the target
(``target_snapshot``: kept by the daemon's cycles, connector.runs.cycle, and by every
plan and apply) and reads only the entries and groups changed since its mark
(``IncrementalTarget.changed_since``: the daemon's incremental read; for LDAP,
``modifyTimestamp`` at or after a mark taken before the previous read, minus the clock
margin). Every entry not changed since the mark is as the snapshot holds it, so the
plan is the plan a full scan gives (same checksum), except for what no incremental read
can see: an entry deleted or moved out of scope since the snapshot's last full scan
(``plan.warm_max_age_seconds`` bounds how old that may be).

A **full scan** reads the whole directory instead, on any doubt (the plan says which it
did, why, and as of when: ``Plan.read``):

- asked for (``--full-scan``), or warm reads are off (``warm_max_age_seconds = 0``);
- the target has no incremental read (SCIM);
- no stored snapshot of this target, base DN, scope, filter and mapping (its
  fingerprint), or one without a mark (the server gave none when it was made);
- its last full scan is older than ``warm_max_age_seconds``, or in the future (a clock
  that went back);
- a run is in progress or was interrupted (a run with no end, or open journal entries):
  its writes and its journal are not settled;
- the stored snapshot changed while it was being loaded (another process saved its view);
- the server's change mark is unreadable now;
- an entry changed since the mark carries another account's correlation (a rename, a
  duplicate), or a new entry correlates to nobody (it may be a renamed orphan).

A full scan by an apply saves what it read, whole, so that the next plan is warm without
a daemon (``make_plan(save_snapshot=True)``; a dry run saves nothing); a warm read saves
nothing (it read only a few entries, which the next reader reads
again). Several processes share the store (the daemon, plans, applies; SQLite or
PostgreSQL), so a snapshot is only ever written whole or onto the very view it was
derived from: the daemon's rows changed relative to its view go in only if the store's
``generation`` is still that view's (compare-and-set, ``save_snapshot(expect=)``), and
the store is loaded as one state (its generation read before and after). Any (rows,
mark) pair written this way is true: an entry that is not as the rows say was changed
at or after the mark, and the next reader reads it again.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta

import structlog

from connector.app import Runtime
from connector.model.accounts import Account
from connector.model.plan import DirectoryRead
from connector.reconcile.settled import Seen
from connector.state import Store
from connector.targets.base import IncrementalTarget, Target, TargetChanges, no_mark_warning

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def row_digest(text: str) -> str:
    """The digest of an account's row as read (``account_to_json``): what the plan memo
    compares (connector.runs.memo)."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def account_to_json(a: Account) -> str:
    """One snapshot row (the format of ``target_snapshot.body``)."""
    return _encode(
        {
            "id": a.account_id,
            "corr": a.correlation,
            "logon": a.logon_id,
            "enabled": a.enabled,
            "attrs": {k: list(v) for k, v in a.attributes.items()},
            "groups": sorted(a.groups),
        }
    )


def account_from_json(text: str) -> Account:
    """A snapshot row back as an account. Values are interned, as the LDAP adapter's
    are: offices, organizations, profiles and group names repeat across 100k accounts."""
    d = json.loads(text)
    return Account(
        account_id=d["id"],
        correlation=d["corr"],
        logon_id=d["logon"],
        enabled=bool(d["enabled"]),
        attributes={sys.intern(k): tuple(map(sys.intern, v)) for k, v in d["attrs"].items()},
        groups=frozenset(map(sys.intern, d["groups"])),
    )


def fingerprint(rt: Runtime, target: Target) -> str:
    """What a stored snapshot was read from: the target, its settings (base DN, scope,
    filter, groups) and the mapping. Another fingerprint: the snapshot is not ours."""
    body = f"{target.description}\n{rt.settings.target!r}\n{rt.mapping!r}"
    return hashlib.sha256(body.encode()).hexdigest()


def new_generation() -> str:
    return uuid.uuid4().hex


def fold_changes(
    accounts: Mapping[str, Account],
    changes: TargetChanges,
    same: Callable[[str], str],
) -> tuple[dict[str, Account], str]:
    """What ``changes`` (read since the snapshot's mark) changes in ``accounts`` (lower-
    cased account id -> account), or the doubt that calls for a full scan instead.

    ``same`` is the target's correlation key (P1001 = p1001 where the target says so)."""
    owner = {same(a.correlation): k for k, a in accounts.items() if a.correlation}
    upserts: dict[str, Account] = {}
    for a in changes.accounts:
        key = a.account_id.lower()
        held_by = owner.get(same(a.correlation)) if a.correlation else None
        if held_by is not None and held_by != key:
            why = f"{a.account_id} carries the correlation of {held_by} (renamed or duplicated)"
            return {}, why
        if key not in accounts and not a.correlation:  # maybe a renamed uncorrelated one
            return {}, f"{a.account_id} is new and correlates to nobody"
        upserts[key] = a
    if changes.groups_of is not None:  # a group changed: every account's groups again
        for key, a in accounts.items():
            if key in upserts:
                continue
            groups = changes.groups_of(a.account_id)
            if groups != a.groups:
                upserts[key] = Account(
                    a.account_id, a.correlation, a.logon_id, a.enabled, a.attributes, groups
                )
    return {k: a for k, a in upserts.items() if accounts.get(k) != a}, ""


class DirectoryReader:
    """One plan's view of the directory: ``accounts()`` streams it (warm or a full scan,
    as the module's docstring says; a full scan is saved to the store once it was read
    to the end); ``read`` then says how it was read.

    ``full_scan``: read the whole directory whatever the snapshot. ``save``: keep a full
    scan in the store (False: a read that must leave the state as it is). ``digests``:
    keep each account as read (``seen``: its id, correlation, logon ID and the digest
    of its row), for the plan memo (connector.runs.memo)."""

    def __init__(
        self,
        rt: Runtime,
        store: Store,
        target: Target,
        *,
        full_scan: bool = False,
        save: bool = True,
        digests: bool = False,
    ) -> None:
        self.rt = rt
        self.store = store
        self.target = target
        self.full_scan = full_scan
        self.save = save
        #: lower-cased account id -> the account as read (with ``digests``)
        self.seen: dict[str, Seen] | None = {} if digests else None
        self._read: DirectoryRead | None = None
        self._log = structlog.get_logger("misync.directory")

    @property
    def read(self) -> DirectoryRead:
        """How the directory was read (once ``accounts()`` has been read to the end)."""
        if self._read is None:
            raise RuntimeError("the directory has not been read to the end")
        return self._read

    def accounts(self) -> Iterator[Account]:
        now = self.rt.clock()
        meta = self.store.snapshot_meta()
        reason = self._doubt(meta, now)
        if not reason:
            assert isinstance(self.target, IncrementalTarget)
            view, reason = self._warm(self.target, meta, now)
            if view is not None:
                yield from view
                return
        yield from self._full(now, reason)

    # -- when not warm ---------------------------------------------------------------------

    def _doubt(self, meta: Mapping[str, str], now: datetime) -> str:  # noqa: PLR0911 -- one per doubt
        """Why the stored snapshot may not be used ("" when it may)."""
        max_age = self.rt.settings.plan.warm_max_age_seconds
        if self.full_scan:
            return "requested (--full-scan)"
        if not max_age:
            return "warm reads are off (plan.warm_max_age_seconds = 0)"
        if not isinstance(self.target, IncrementalTarget):
            return "the target has no incremental read"
        if meta.get("fingerprint") != fingerprint(self.rt, self.target):
            return "no stored snapshot of this target, scope and mapping"
        if "mark" not in meta or "full_at" not in meta:
            return "the stored snapshot has no change mark"
        full_at = datetime.fromisoformat(meta["full_at"])
        if now < full_at:
            return f"the stored snapshot's full scan ({meta['full_at']}) is in the future"
        if now - full_at > timedelta(seconds=max_age):
            return (
                f"the stored snapshot's last full scan ({meta['full_at']}) is older than "
                f"plan.warm_max_age_seconds ({max_age:g} s)"
            )
        if self.store.unfinished_runs() or self.store.open_journal_entries():
            return "a run is in progress or was interrupted"
        return ""

    # -- warm --------------------------------------------------------------------------------

    def _warm(
        self, target: IncrementalTarget, meta: Mapping[str, str], now: datetime
    ) -> tuple[list[Account] | None, str]:
        generation = meta.get("generation", "")
        rows = self.store.load_snapshot()
        if self.store.snapshot_meta().get("generation", "") != generation:
            return None, "the stored snapshot changed while it was read"
        # the server must still give a mark (its modifyTimestamp readable to us), else
        # its changed entries may be invisible too; the mark itself is not kept: a warm
        # read saves nothing
        if target.high_water_mark() is None:
            return None, "the server's change mark is unreadable"
        accounts = {k: account_from_json(v) for k, v in rows.items()}
        changes = target.changed_since(meta["mark"])
        upserts, doubt = fold_changes(accounts, changes, self.rt.mapping.correlation_key)
        if doubt:
            return None, doubt
        accounts.update(upserts)
        if self.seen is not None:
            for k, a in accounts.items():
                text = account_to_json(a) if k in upserts else rows[k]
                self.seen[k] = _seen(k, a, text)
        del rows
        full_at = datetime.fromisoformat(meta["full_at"])
        # nothing saved: the next reader reads the same few entries again, and a save
        # here would make the daemon write its whole view at its next cycle (its own
        # save would no longer go onto the snapshot it last saved)
        self._read = DirectoryRead(
            warm=True,
            reason="",
            read_at=now,
            full_scan_at=full_at,
            entries=len(changes.accounts),
            accounts=len(accounts),
        )
        self._log.info(
            "directory.read",
            mode="warm",
            full_scan_at=meta["full_at"],
            read=len(changes.accounts),
            changed=len(upserts),
        )
        return list(accounts.values()), ""

    # -- full --------------------------------------------------------------------------------

    def _full(self, now: datetime, reason: str) -> Iterator[Account]:
        target = self.target
        mark = target.high_water_mark() if isinstance(target, IncrementalTarget) else None
        save = self.save and isinstance(target, IncrementalTarget)  # SCIM: nothing to keep
        writer = _ChunkedSnapshot(self.store) if save else None
        count = 0
        seen = self.seen
        for a in target.snapshot():
            count += 1
            text = writer.add(a) if writer is not None else None
            if seen is not None:
                k = a.account_id.lower()
                seen[k] = _seen(k, a, text if text is not None else account_to_json(a))
            yield a
        # read to the end: a partial read raised above and is never taken for a snapshot
        if writer is not None:
            meta = {"fingerprint": fingerprint(self.rt, target)}
            if mark is not None:
                meta |= {"mark": mark, "full_at": now.isoformat()}
            else:
                meta["no_mark"] = no_mark_warning(target.description)
            if not writer.finish(meta):
                self._log.info("directory.snapshot_not_saved", reason="saved by another process")
        self._read = DirectoryRead(
            warm=False, reason=reason, read_at=now, full_scan_at=now, entries=count, accounts=count
        )
        self._log.info("directory.read", mode="full_scan", reason=reason, read=count)


def _seen(key: str, a: Account, text: str) -> Seen:
    return Seen(key, a.correlation, a.logon_id, row_digest(text))


#: Rows of a full scan written per transaction (a 100k scan never holds all its rows).
SAVE_CHUNK = 5000


class _ChunkedSnapshot:
    """A full scan written to the store as it streams past, ``SAVE_CHUNK`` rows at a
    time, so that the rows of 100k accounts are never held at once (~60 MB of JSON).

    The first chunk empties the stored snapshot and leaves a meta with a new
    ``generation`` and no mark: while the scan runs, and for good if it stops, readers
    find no usable snapshot (a full scan for them; the daemon writes its whole view at
    its next save). Every later chunk and the final meta go in only onto that very
    generation (compare-and-set): if another process saved a whole view meanwhile, it
    stays and this scan saves nothing more. The final meta (fingerprint, mark, time of
    the full scan) is written only once the scan was read to the end."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.generation = new_generation()
        self.rows: dict[str, str] = {}
        self.started = False
        self.lost = False  # another process saved its view since our first chunk

    def add(self, account: Account) -> str | None:
        """Add one account; its row (None once another process saved its view)."""
        if self.lost:
            return None
        text = self.rows[account.account_id.lower()] = account_to_json(account)
        if len(self.rows) >= SAVE_CHUNK:
            self._flush()
        return text

    def _flush(self) -> None:
        meta = {"generation": self.generation}
        if not self.started:
            self.store.save_snapshot(meta, self.rows, [], replace=True)
            self.started = True
        elif not self.store.save_snapshot(
            meta, self.rows, [], replace=False, expect=self.generation
        ):
            self.lost = True
        self.rows = {}

    def finish(self, meta: Mapping[str, str]) -> bool:
        """Write the last rows and the meta; False when another process saved since."""
        if self.lost:
            return False
        whole = {**meta, "generation": new_generation()}
        if not self.started:  # one chunk: rows and meta in one transaction
            self.store.save_snapshot(whole, self.rows, [], replace=True)
            return True
        return self.store.save_snapshot(whole, self.rows, [], replace=False, expect=self.generation)
