"""The ways a full run obtains its plan (``PlanSource``; targeted people are in
connector.runs.targeted): a fresh plan (``misync apply``), a reviewed plan confirmed
against a fresh read (``misync apply --plan``, or the plan a person said yes to), and
the daemon's incremental reconcile cycle."""

from __future__ import annotations

from dataclasses import dataclass, field

from connector.model.accounts import Account
from connector.model.plan import Plan
from connector.runs.cycle import CyclePlanner
from connector.runs.planning import confirm_plan, make_plan
from connector.runs.run import Planned, RunContext


class _EnabledWatch:
    """Sees every account of a full read stream past: counts the enabled ones and notes
    those misync disabled that someone enabled since (misync's mark on them goes)."""

    def __init__(self, marked: frozenset[str] | set[str]) -> None:
        self._marked = marked
        self.enabled = 0
        self.reenabled: list[str] = []

    def __call__(self, account: Account) -> None:
        if account.enabled:
            self.enabled += 1
            if account.account_id.lower() in self._marked:
                self.reenabled.append(account.account_id)


@dataclass(frozen=True)
class FreshPlan:
    """Evaluate the feeds, read the directory (warm, or in full on any doubt or with
    ``full_scan``: connector.runs.directory), plan (``make_plan``)."""

    override_guard: bool = False
    kind: str = "apply"
    full_scan: bool = False

    def plan(self, ctx: RunContext) -> Planned:
        watch = _EnabledWatch(ctx.store.misync_disabled())
        plan, ev = make_plan(
            ctx.rt,
            ctx.store,
            ctx.rt.clock(),
            override_guard=self.override_guard,
            observe=watch,
            full_scan=self.full_scan,
        )
        ctx.evaluated(ev)
        return Planned(plan, ev, None, watch.enabled, watch.reenabled)


@dataclass(frozen=True)
class ReviewedPlan:
    """A reviewed plan, carried out only if a fresh plan confirms it (``confirm_plan``:
    ``DriftError`` otherwise). One read, as a fresh plan's (warm unless ``full_scan``
    or a doubt)."""

    reviewed: Plan
    kind: str = "apply"
    full_scan: bool = False

    def plan(self, ctx: RunContext) -> Planned:
        watch = _EnabledWatch(ctx.store.misync_disabled())
        ev = confirm_plan(ctx.rt, ctx.store, self.reviewed, observe=watch, full_scan=self.full_scan)
        ctx.evaluated(ev)
        return Planned(self.reviewed, ev, None, watch.enabled, watch.reenabled, reviewed=True)


@dataclass(frozen=True)
class IncrementalCycle:
    """The daemon's reconcile: a full scan or only what changed since the last read
    (``CyclePlanner.cycle``), with the feeds evaluated again only when they may give
    another answer."""

    reconciler: CyclePlanner = field(repr=False)
    kind: str = "apply"

    def plan(self, ctx: RunContext) -> Planned:
        r = self.reconciler.cycle(ctx.store)
        ctx.evaluated(r.evaluation)
        return Planned(r.plan, r.evaluation, None, self.reconciler.enabled_accounts)
