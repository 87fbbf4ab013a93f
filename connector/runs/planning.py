"""Planning runs: evaluate the feeds, read the target, build a sealed plan; and check a
reviewed plan against what the policy gives now (``apply --plan``)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from connector.app import Runtime
from connector.feeds import read_feeds
from connector.model.accounts import Account
from connector.model.decisions import Decision
from connector.model.feeds import FeedName, FeedSet
from connector.model.plan import Op, Plan
from connector.policy import evaluate_all
from connector.reconcile import PlanInputs, build_plan, seal
from connector.reconcile.diff import account_digest
from connector.state import Store


class DriftError(RuntimeError):
    """``apply --plan``: the target changed since the plan was made; nothing was applied."""

    def __init__(self, message: str, drifted: list[str]) -> None:
        super().__init__(message)
        self.drifted = drifted


@dataclass(frozen=True)
class Evaluation:
    as_of: datetime
    feeds: FeedSet
    decisions: Mapping[str, Decision]


def evaluate(rt: Runtime, store: Store, as_of: datetime) -> Evaluation:
    """Read and validate every feed (health against the last good run), then decide."""
    previous = {FeedName(k): v for k, v in store.last_good_feed_rows().items()}
    feeds = read_feeds(
        rt.settings.feeds,
        now=rt.clock(),
        tz=rt.rules.tz,
        previous_rows=previous,
        id_match=rt.mapping.correlation_match,  # ids the target cannot tell apart are rejected
    )
    log = structlog.get_logger("misync.feeds")
    for h in feeds.health.values():
        if not h.healthy:
            log.warning("feed.unusable", feed=h.feed.value, state=h.state.value, detail=h.detail)
    for r in feeds.rejected:
        log.warning(
            "feed.row_rejected",
            feed=r.feed,
            file=r.file,
            line=r.line,
            column=r.column,
            reason=r.reason,
        )
    return Evaluation(as_of, feeds, evaluate_all(feeds, as_of, rt.rules))


def make_plan(
    rt: Runtime,
    store: Store,
    as_of: datetime,
    *,
    override_guard: bool = False,
    evaluation: Evaluation | None = None,
    observe: Callable[[Account], None] | None = None,
) -> tuple[Plan, Evaluation]:
    """Evaluate the feeds, read the target (paged, streamed), and build a sealed plan.

    ``observe`` sees every account as it streams past (no second read)."""
    with collector_paused():
        return _make_plan(rt, store, as_of, override_guard, evaluation, observe)


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
) -> tuple[Plan, Evaluation]:
    ev = evaluation or evaluate(rt, store, as_of)
    target = rt.target()
    try:
        plan = build_plan(
            plan_inputs(
                rt,
                store,
                as_of=as_of,
                evaluation=ev,
                accounts=_observed(target.snapshot(), observe),
                target=target.description,
                override_guard=override_guard,
            )
        )
    finally:
        target.close()
    return seal(plan), ev


def plan_inputs(
    rt: Runtime,
    store: Store,
    *,
    as_of: datetime,
    evaluation: Evaluation,
    accounts: Iterable[Account],
    target: str,
    override_guard: bool = False,
    **extra: Any,
) -> PlanInputs:
    """The planner's inputs for one run: the evaluation and the accounts read, with what
    the settings and the state store add (logon IDs, quarantine, misync's own disables,
    guard thresholds). One place, so the full, incremental and targeted runs cannot
    drift apart; ``extra`` sets the rest (a plan cache, the enabled-account total)."""
    s = rt.settings
    return PlanInputs(
        as_of=as_of,
        feeds=evaluation.feeds,
        decisions=evaluation.decisions,
        accounts=accounts,
        mapping=rt.mapping,
        target=target,
        known_logon_ids=store.logon_ids(),
        taken_logon_ids=frozenset(store.taken_logon_ids()),
        quarantined=frozenset(store.quarantined(s.apply.quarantine_after)),
        disabled_by_misync=store.misync_disabled(),
        reenable_external=s.apply.reenable_external_disables,
        orphans=s.target.orphans,
        max_unexplained=s.guard.max_unexplained_disables,
        max_share=s.guard.max_unexplained_share,
        override_guard=override_guard,
        warning=timedelta(hours=s.policy.warning_hours),
        **extra,
    )


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
) -> Evaluation:
    """Refuse a reviewed plan if the target drifted since it was made, or if any action
    in it is not what Policy 1021 gives now.

    One fresh plan answers both, from one paged read of the directory (with the
    mass-disable guard overridden, so that it hides nothing):

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

    fresh, ev = make_plan(rt, store, rt.clock(), override_guard=True, observe=watch)
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
