"""The ways a full run obtains its plan (``PlanSource``; targeted people are in
connector.runs.targeted): a fresh plan (``misync apply``), a reviewed plan confirmed
against a fresh read (``misync apply --plan``, or the plan a person said yes to), and
the daemon's incremental reconcile cycle."""

from __future__ import annotations

from collections.abc import Mapping
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
            save_snapshot=True,
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
    #: the archived inputs the plan file names (``misync plan -o``: ``id``, ``manifest``)
    planned_from: Mapping[str, str] | None = None

    def plan(self, ctx: RunContext) -> Planned:
        watch = _EnabledWatch(ctx.store.misync_disabled())
        ev = confirm_plan(ctx.rt, ctx.store, self.reviewed, observe=watch, full_scan=self.full_scan)
        ctx.evaluated(ev)
        return Planned(
            self.reviewed,
            ev,
            None,
            watch.enabled,
            watch.reenabled,
            reviewed=True,
            planned_from=self._planned_from(ctx),
        )

    def _planned_from(self, ctx: RunContext) -> Mapping[str, str] | None:
        """The saved plan's inputs, if the archive holds them as that plan's (its
        manifest is intact, of that plan id, made by ``misync plan`` with this very
        checksum); otherwise a warning, and the run names none. ``audit replay`` of the
        run rebuilds the plan from them."""
        named = self.planned_from
        if named is None:
            return None
        from connector.archive import ArchiveError, ArchiveStore
        from connector.archive.replay import load_manifest

        why = ""
        try:
            m = load_manifest(
                ArchiveStore(ctx.rt.settings.state.dir / "archive"), named["manifest"]
            )
        except ArchiveError as exc:
            why = str(exc)
        else:
            if (m.get("run_id"), m.get("kind")) != (named["id"], "plan"):
                why = f"they are not the inputs of saved plan {named['id']}"
            elif m.get("checksum") != self.reviewed.checksum:
                why = f"they are those of plan {m.get('checksum')}, not {self.reviewed.checksum}"
        if why:
            ctx.log.warning(
                "run.plan_inputs_unconfirmed",
                plan=named["id"],
                inputs=named["manifest"],
                detail=f"the plan file's archived inputs are not recorded: {why}",
            )
            return None
        return named


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
        return Planned(
            r.plan,
            r.evaluation,
            None,
            self.reconciler.enabled_accounts,
            archive_cache=self.reconciler.archive_cache,
        )
