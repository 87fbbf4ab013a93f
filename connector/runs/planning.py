"""Planning runs: evaluate the feeds, read the target, build a sealed plan; and check a
reviewed plan against what the policy gives now (``apply --plan``)."""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from connector import archive
from connector.app import Runtime
from connector.errors import ExitCode, MisyncError
from connector.feeds import load_feed_layout, read_feeds
from connector.feeds.settle import unchanged_since
from connector.model.accounts import Account
from connector.model.decisions import Decision
from connector.model.feeds import FeedName, FeedSet, FeedState, FileStamp, Rejection
from connector.model.plan import Op, Plan
from connector.policy import evaluate_all
from connector.policy.horizon import valid_until
from connector.reconcile import PlanInputs, build_plan, seal
from connector.reconcile.diff import account_digest
from connector.reconcile.settled import Seen
from connector.runs.directory import DirectoryReader
from connector.runs.held import plan_decisions
from connector.state import Store


class DriftError(MisyncError):
    """``apply --plan``: the target changed since the plan was made; nothing was applied
    (exit 5)."""

    exit_code = ExitCode.REFUSED

    def __init__(self, message: str, drifted: list[str]) -> None:
        super().__init__(message)
        self.drifted = drifted


@dataclass(frozen=True)
class Evaluation:
    as_of: datetime
    feeds: FeedSet
    decisions: Mapping[str, Decision]
    #: what is computed once per evaluation and reused (``horizon``)
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def horizon(rt: Runtime, ev: Evaluation) -> datetime:
    """Until when ``ev``'s decisions are what the policy gives with the feeds unchanged
    (``connector.policy.horizon.valid_until``, one pass over every row): computed once
    per evaluation and kept with it, for the reconcile cycle, the timed job's
    ``still_current`` and the fast path's baseline alike. A value set by whoever made
    the evaluation (the fast path's, connector.runs.incremental) may be sooner than
    ``valid_until`` would say, never later."""
    until = ev.memo.get("horizon")
    if until is None:
        hours = rt.settings.feeds.max_age_hours
        until = valid_until(
            ev.feeds, ev.as_of, rt.rules, max_feed_age=timedelta(hours=hours) if hours else None
        )
        ev.memo["horizon"] = until
    assert isinstance(until, datetime)
    return until


def record_read(store: Store, feeds: FeedSet, rejections: RejectionLog | None) -> None:
    """After a read of the feeds (whole, or by changed rows): record the stamps of what
    was read for the next run, warn of each unusable feed, log the rejected rows through
    ``rejections`` (the daemon's: each row once) or, without one, all of them."""
    store.record_feed_stamps(
        {
            h.feed.value: (h.stamp.path, h.stamp.size, h.stamp.mtime_ns, h.stamp.digest)
            for h in feeds.health.values()
            if h.stamp is not None
        }
    )
    log = structlog.get_logger("misync.feeds")
    for h in feeds.health.values():
        if not h.healthy:
            log.warning("feed.unusable", feed=h.feed.value, state=h.state.value, detail=h.detail)
    (rejections or RejectionLog(once=False)).log(feeds.rejected)


def evaluate(
    rt: Runtime, store: Store, as_of: datetime, *, rejections: RejectionLog | None = None
) -> Evaluation:
    """Read and validate every feed (health against the last good run), then decide.

    A feed file that changed since the last evaluation is read only once it has stopped
    changing, and re-read if it moved during the read (connector.feeds.settle); the
    stamps of what was read are recorded for the next run. Rejected rows are logged
    through ``rejections`` (the daemon's: each row once) or, without one, all of them."""
    previous = {FeedName(k): v for k, v in store.last_good_feed_rows().items()}
    seen = {FeedName(k): FileStamp(*v) for k, v in store.feed_stamps().items() if k in _FEED_NAMES}
    layout = load_feed_layout(rt.settings.feeds.mapping)
    feeds = read_feeds(
        rt.settings.feeds,
        now=rt.clock(),
        tz=rt.rules.tz,
        previous_rows=previous,
        layout=layout,
        id_match=rt.mapping.correlation_match,  # ids the target cannot tell apart are rejected
        seen=seen,
    )
    record_read(store, feeds, rejections)
    ev = Evaluation(as_of, feeds, evaluate_all(feeds, as_of, rt.rules))
    ev.memo["layout"] = layout  # what the rows were parsed under (the plan memo's key)
    return ev


_FEED_NAMES = frozenset(f.value for f in FeedName)


def still_current(rt: Runtime, ev: Evaluation, now: datetime) -> bool:
    """``ev`` is what a fresh evaluation at ``now`` would give: every feed file is the
    version it read (same path, size and mtime; a missing one still missing) and
    ``now`` is before the first instant at which a decision may change
    (``connector.policy.horizon.valid_until``). A few stat calls, no read."""
    if now < ev.as_of:
        return False
    s = rt.settings.feeds
    layout = load_feed_layout(s.mapping)
    for name in FeedName:
        h = ev.feeds.health.get(name)
        path = s.dir / layout.files[name]
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        except OSError:
            return False
        if h is None or h.stamp is None:  # not read: only a file still missing is the same
            if h is None or h.state is not FeedState.MISSING or st is not None:
                return False
        elif st is None or not unchanged_since(h.stamp, path, st):
            return False
    return now < horizon(rt, ev)


class RejectionLog:
    """Logs rejected rows (``feed.row_rejected``). A CLI run logs every one; the daemon
    keeps one ``RejectionLog(once=True)`` across its runs, which logs a row when it is
    first rejected and ``feed.row_rejection_gone`` once when it no longer is, so a bad
    row that stays is not logged again every cycle. A row is known by its file,
    subject, column, value and reason (not its line: rows added above it move it)."""

    def __init__(self, *, once: bool = True) -> None:
        self._once = once
        self._seen: dict[tuple[str, str, str | None, str | None, str], Rejection] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(r: Rejection) -> tuple[str, str, str | None, str | None, str]:
        return (r.file, r.key, r.column, r.value, r.reason)

    def log(self, rejected: Iterable[Rejection]) -> None:
        log = structlog.get_logger("misync.feeds")
        now = {self._key(r): r for r in rejected}
        with self._lock:
            new = [r for k, r in now.items() if k not in self._seen] if self._once else now.values()
            gone = [r for k, r in self._seen.items() if k not in now] if self._once else []
            if self._once:
                self._seen = now
        for r in new:
            log.warning(
                "feed.row_rejected",
                feed=r.feed,
                file=r.file,
                line=r.line,
                column=r.column,
                reason=r.reason,
            )
        for r in gone:
            log.info(
                "feed.row_rejection_gone",
                feed=r.feed,
                file=r.file,
                line=r.line,
                column=r.column,
                reason=r.reason,
            )


def make_plan(
    rt: Runtime,
    store: Store,
    as_of: datetime,
    *,
    override_guard: bool = False,
    evaluation: Evaluation | None = None,
    observe: Callable[[Account], None] | None = None,
    full_scan: bool = False,
    save_snapshot: bool = False,
) -> tuple[Plan, Evaluation]:
    """Evaluate the feeds, read the target, and build a sealed plan.

    The target is read warm (the stored snapshot and what changed since its mark) when
    nothing gives a doubt, else in full (paged, streamed); ``full_scan`` always reads it
    in full (connector.runs.directory). ``plan.read`` says which. ``observe`` sees every
    account as it streams past (no second read). ``save_snapshot``: keep a full scan in
    the store as the next warm read's snapshot (a run that applies: ``FreshPlan``,
    ``ReviewedPlan``); a dry run leaves the store as it found it."""
    with collector_paused():
        return _make_plan(
            rt,
            store,
            as_of,
            override_guard,
            evaluation,
            observe,
            full_scan=full_scan,
            save_snapshot=save_snapshot,
        )


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one plan, and restore it after.

    A plan allocates hundreds of thousands of long-lived objects (feed rows, decisions,
    accounts) and little cyclic garbage; the collector's full passes over them were
    ~30% of a 100k plan (docs/PERFORMANCE.md). Reference counting still frees
    everything else at once. The switch is the interpreter's: other threads of the
    process (the daemon's scheduler) run without cyclic collection for the few seconds
    of the plan, which costs them nothing but a later collection.
    """
    if not gc.isenabled():  # already paused (a nested plan, or by the embedding program)
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _make_plan(
    rt: Runtime,
    store: Store,
    as_of: datetime,
    override_guard: bool,
    evaluation: Evaluation | None,
    observe: Callable[[Account], None] | None,
    *,
    full_scan: bool = False,
    save_snapshot: bool = False,
) -> tuple[Plan, Evaluation]:
    ev = evaluation or evaluate(rt, store, as_of)
    target = rt.target()
    try:
        directory = DirectoryReader(
            rt, store, target, full_scan=full_scan, save=save_snapshot, digests=save_snapshot
        )
        inputs = plan_inputs(
            rt,
            store,
            as_of=as_of,
            evaluation=ev,
            accounts=_observed(directory.accounts(), observe),
            target=target.description,
            override_guard=override_guard,
        )
        plan = build_plan(inputs)
    finally:
        target.close()
    plan = seal(dataclasses.replace(plan, read=directory.read))
    if directory.seen is not None:  # a run that applies: the next dry run may reuse it
        _remember(rt, store, ev, plan, directory.seen, inputs.known_logon_ids)
    return plan, ev


def _remember(
    rt: Runtime,
    store: Store,
    ev: Evaluation,
    plan: Plan,
    seen: Mapping[str, Seen],
    known_logons: Mapping[str, str],
) -> None:
    """Keep the plan memo of a whole plan (connector.runs.memo); a failure to keep it is
    logged, never the run's: a memo is only ever used once it checked out."""
    from connector.runs.memo import remember

    try:
        remember(rt, store, ev, plan, seen.values(), known_logons)
    except Exception as exc:  # noqa: BLE001 -- a cache; the run goes on
        structlog.get_logger("misync.memo").warning("memo.not_kept", error=str(exc))


def dry_plan(
    rt: Runtime,
    store: Store,
    as_of: datetime,
    *,
    override_guard: bool = False,
    full_scan: bool = False,
) -> Plan:
    """``misync plan``: the plan a run would carry out now, changing nothing.

    Unless ``full_scan``, it reads the directory warm when it can (as ``make_plan``
    does) and reuses the memo of the last whole plan when the feeds, settings and
    mapping are byte for byte that plan's and the instant is within its horizon
    (connector.runs.memo): only the people that plan named and the people of the
    accounts changed since are evaluated and planned again. Otherwise (the plan says
    why) every feed is read and evaluated, as ``make_plan`` does. Either way the same
    plan: same actions, same checksum."""
    if full_scan:
        return make_plan(rt, store, as_of, override_guard=override_guard, full_scan=True)[0]
    from connector.runs import memo

    with collector_paused():
        target = rt.target()
        try:
            reader = DirectoryReader(rt, store, target, save=False, digests=True)
            view = list(reader.accounts())
            description = target.description
        finally:
            target.close()
        assert reader.seen is not None
        made = memo.replan(
            rt,
            store,
            as_of,
            view,
            reader.seen,
            description=description,
            override_guard=override_guard,
        )
        if isinstance(made, memo.MemoPlan):
            read = dataclasses.replace(
                reader.read, memo_at=made.made_at, replanned=made.people, reused=made.reused
            )
            return seal(dataclasses.replace(made.plan, read=read))
        structlog.get_logger("misync.memo").info("memo.unused", reason=made)
        reader.seen = None  # the ordinary plan does not need it
        ev = evaluate(rt, store, as_of)
        plan = build_plan(
            plan_inputs(
                rt,
                store,
                as_of=as_of,
                evaluation=ev,
                accounts=view,
                target=description,
                override_guard=override_guard,
            )
        )
        return seal(
            dataclasses.replace(plan, read=dataclasses.replace(reader.read, memo_unused=made))
        )


def plan_inputs(  # noqa: PLR0913 -- keyword-only inputs of one plan, each named
    rt: Runtime,
    store: Store,
    *,
    as_of: datetime,
    evaluation: Evaluation,
    accounts: Iterable[Account],
    target: str,
    override_guard: bool = False,
    people: Collection[str] | None = None,
    known_logon_ids: Mapping[str, str] | None = None,
    **extra: Any,
) -> PlanInputs:
    """The planner's inputs for one run: the evaluation and the accounts read, with what
    the settings and the state store add (logon IDs, quarantine, misync's own disables,
    operators' decisions on held actions, guard thresholds). One place, so the full,
    incremental and targeted runs cannot drift apart; ``extra`` sets the rest (a plan
    cache, the enabled-account total). ``people``: a targeted plan's people; when none
    of them is entitled (no logon ID is proposed, nobody is created or updated) only
    their own logon IDs are read, not every one ever assigned. ``known_logon_ids``:
    every logon ID the store holds, when the caller has read them already."""
    s = rt.settings
    decisions = evaluation.decisions
    everyone = people is None or any(decisions[p].entitled for p in people if p in decisions)
    inputs = PlanInputs(
        as_of=as_of,
        feeds=evaluation.feeds,
        decisions=evaluation.decisions,
        accounts=accounts,
        mapping=rt.mapping,
        target=target,
        known_logon_ids=known_logon_ids
        if known_logon_ids is not None
        else store.logon_ids(None if everyone else people),
        taken_logon_ids=frozenset(store.taken_logon_ids() if everyone else ()),
        quarantined=frozenset(store.quarantined(s.apply.quarantine_after)),
        disabled_by_misync=store.misync_disabled(),
        reenable_external=s.apply.reenable_external_disables,
        held_decisions=plan_decisions(store),
        orphans=s.target.orphans,
        max_unexplained=s.guard.max_unexplained_disables,
        max_share=s.guard.max_unexplained_share,
        override_guard=override_guard,
        warning=timedelta(hours=s.policy.warning_hours),
        **extra,
    )
    return archive.note(inputs)  # the run's archive records what its plan was made from


def _observed(
    accounts: Iterator[Account], observe: Callable[[Account], None] | None
) -> Iterator[Account]:
    for account in accounts:
        if observe is not None:
            observe(account)
        yield account


def confirm_plan(
    rt: Runtime,
    store: Store,
    plan: Plan,
    *,
    observe: Callable[[Account], None] | None = None,
    full_scan: bool = False,
) -> Evaluation:
    """Refuse a reviewed plan if the target drifted since it was made, or if any action
    in it is not what Policy 1021 gives now.

    One fresh plan answers both, from one read of the directory (warm unless
    ``full_scan`` or a doubt: connector.runs.directory), with the mass-disable guard
    overridden, so that it hides nothing:

    - drift: every account the plan touches must still read with the digest the plan
      recorded, and no account may have appeared for a planned create;
    - policy: the checksum proves only that a file was not altered after it was sealed,
      and anyone who can write the file can seal it again, so every reviewed action
      must appear in the fresh plan with the same op, desired account and changes. An
      edited plan can never grant access, a profile or a group that the policy does
      not, nor disable someone the policy keeps.

    Actions of the fresh plan that the reviewed one lacks are not applied.
    """
    read: dict[str, str] = {}  # account id (lower case) -> digest as read now
    owners: dict[str, str] = {}  # person id (as the target compares it) -> account id
    key = rt.mapping.correlation_key

    def watch(account: Account) -> None:
        read[account.account_id.lower()] = account_digest(account)
        if account.correlation:
            owners[key(account.correlation)] = account.account_id
        if observe is not None:
            observe(account)

    fresh, ev = make_plan(
        rt,
        store,
        rt.clock(),
        override_guard=True,
        observe=watch,
        full_scan=full_scan,
        save_snapshot=True,
    )
    if fresh.target != plan.target:
        raise DriftError(
            f"the plan was made for {plan.target}, this configuration targets {fresh.target}",
            [],
        )
    drifted: list[str] = []
    for a in plan.actions:
        if a.op is Op.CREATE:
            owner = owners.get(key(a.person_id or ""))
            if owner is not None:
                drifted.append(f"{a.person_id}: an account now exists ({owner})")
        elif a.account_id is None or a.account_id.lower() not in read:
            drifted.append(f"{a.account_id}: no longer exists")
        elif read[a.account_id.lower()] != a.before:
            drifted.append(f"{a.account_id}: changed since the plan was made")
    if drifted:
        raise DriftError(
            f"the target drifted since the plan was made ({len(drifted)} objects)", drifted
        )

    current = {(a.op, a.key): a for a in fresh.actions}
    refused: list[str] = []
    for a in plan.actions:
        who = a.person_id or a.account_id or "?"
        now_a = current.get((a.op, a.key))
        if now_a is None:
            held = next((h for h in fresh.held if h.action.key == a.key), None)
            why = f"held now: {held.message}" if held else "not in a plan made now"
            refused.append(f"{who}: {a.op.value} {a.key} is {why}")
        elif now_a.desired != a.desired or now_a.changes != a.changes:
            refused.append(f"{who}: {a.op.value} {a.key} differs from what the policy gives now")
    if refused:
        raise DriftError(
            f"the plan is not what Policy 1021 gives now ({len(refused)} actions)", refused
        )
    return ev
