"""Build the plan: who gets created, updated, enabled, disabled, and what is held back.

Rules (SPEC.md "Interfaces" and "Authoritative feeds"):

- **Feed guard.** An unhealthy feed (missing, unreadable, stale, shrunk, empty) drives
  nothing. Creates and enables need every feed healthy; updates need the roster, the
  requests, the organizations and the requesters. A disable goes ahead when at least one
  of its failing reasons is *sound*: every feed that reason relies on
  (``Reason.feeds``) is usable ("except disables driven by other feeds"). Only sound
  reasons set the deadline, count as evidence and raise breaches. A person with a
  rejected row in a feed is treated as if that feed were unhealthy *for that person*
  (and for the people they requested, for a requester's rows): a rejected row is never
  read as "no row".
- **Mass-disable guard.** Disables that no positive evidence explains (orphans,
  people who vanished from a feed: reasons with ``evidenced=False`` only) are held when
  their count exceeds ``max_unexplained`` or their share of enabled managed accounts
  exceeds ``max_share``, unless overridden. A disable backed by evidence (a separation,
  a contract end, a disable request) is a policy duty and is never held by a count.
- **Orphans.** Enabled accounts in scope that correlate to no person in the feeds are
  disabled (or, with ``orphans="report"``, held and reported).
- **Breaches.** An enabled account of a person who lost entitlement is a breach once
  the deadline has passed and a warning within ``warning`` of it.
- **Operators' decisions** (``misync held``). A held action an operator accepted, for
  the same action (``held_digest``) and before its ``until``, goes to ``accepted``: not
  carried out, but not held either. One an operator approved, for the same action, is
  carried out once: it passes every other guard as any action does (the feed guard,
  the mass-disable guard); only the hold decided on is waived, and only for the codes in
  ``APPROVABLE``. A decision whose action changed (or whose ``until`` passed) is
  ``reopened`` and the action is held again.
- **Order.** Disables first (revoking comes before granting), then updates, enables,
  creates; within an op, by person_id then account_id. The plan is deterministic.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, cast

from connector.mapping.types import AccountMapping
from connector.model.accounts import Account, Change, DesiredAccount
from connector.model.decisions import Decision, Reason, Status
from connector.model.feeds import ORG_KEYED_FEEDS, REQUESTER_FEEDS, FeedName, FeedSet
from connector.model.plan import (
    ACCEPTABLE,
    APPROVABLE,
    PAST,
    Action,
    Breach,
    HeldAction,
    HeldDecision,
    Op,
    Plan,
    Reopened,
)
from connector.model.records import Organization, Worker
from connector.reconcile.desired import desired_account, person_fields
from connector.reconcile.diff import account_digest, creation_changes, diff_account
from connector.reconcile.logon import propose_logon_id
from connector.reconcile.serialize import held_digest
from connector.timefmt import when

ALL_FEEDS = frozenset(FeedName)
UPDATE_DRIVERS = frozenset(
    {FeedName.WORKERS, FeedName.REQUESTS, FeedName.ORGANIZATIONS, FeedName.REQUESTERS}
)
# An orphan is an account whose person is in no feed that names people: all must be whole.
ORPHAN_DRIVERS = frozenset({FeedName.WORKERS, FeedName.REQUESTS, FeedName.SEPARATIONS})
OP_ORDER = {Op.DISABLE: 0, Op.UPDATE: 1, Op.ENABLE: 2, Op.CREATE: 3}
# Feeds whose rows can end access (a separation, a disable request, a roster status, a
# contract end); a training or NDA row only ever grants.
ACCESS_ENDING_FEEDS = ALL_FEEDS - {FeedName.TRAINING, FeedName.NDAS}
# The attributes of every stub (an account in line): one shared empty mapping, not a
# dict each.
_NO_ATTRIBUTES: Mapping[str, tuple[str, ...]] = MappingProxyType({})


class PlanCache:
    """The costly pure steps of a plan (a person's desired account, its diff against the
    account read), kept for the next plan made with the same mapping.

    Keyed by object identity: every input is a frozen value, so the same objects give
    the same result. A daemon's incremental cycle reuses the decisions and the accounts
    that did not change, so only what changed is rendered and compared again. Entries
    not used by a plan are dropped at its end.
    """

    def __init__(self) -> None:
        self._old: dict[str, tuple[Any, ...]] = {}
        self._new: dict[str, tuple[Any, ...]] = {}

    def desired(
        self,
        decision: Decision,
        worker: Worker,
        org: Organization | None,
        logon: str,
        mapping: AccountMapping,
    ) -> tuple[DesiredAccount, Reason]:
        key = f"d:{decision.person_id}"
        hit = self._old.get(key) or self._new.get(key)
        if (
            hit is not None
            and hit[0] is decision
            and hit[1] is worker
            and hit[2] is org
            and hit[3] == logon
            and hit[4] is mapping
        ):
            self._new[key] = hit
            return hit[5], hit[6]
        desired = desired_account(decision, worker, org, logon, mapping)
        reason = _entitled_reason(decision)
        self._new[key] = (decision, worker, org, logon, mapping, desired, reason)
        return desired, reason

    def desired_only(
        self,
        decision: Decision,
        worker: Worker,
        org: Organization | None,
        logon: str,
        mapping: AccountMapping,
    ) -> DesiredAccount:
        """``desired(...)[0]``: the account alone, for a person whose account may be in
        line (the reason is worded only for an action)."""
        return self.desired(decision, worker, org, logon, mapping)[0]

    def diff(
        self, acc: Account, desired: DesiredAccount, manage_groups: bool
    ) -> tuple[Change, ...]:
        key = f"a:{acc.account_id}"
        hit = self._old.get(key) or self._new.get(key)
        if hit is not None and hit[0] is acc and hit[1] is desired and hit[2] == manage_groups:
            self._new[key] = hit
            return cast(tuple[Change, ...], hit[3])
        changes = diff_account(acc, desired, manage_groups=manage_groups)
        self._new[key] = (acc, desired, manage_groups, changes)
        return changes

    def digest(self, acc: Account) -> str:
        key = f"h:{acc.account_id}"
        hit = self._old.get(key) or self._new.get(key)
        if hit is not None and hit[0] is acc:
            self._new[key] = hit
            return cast(str, hit[1])
        digest = account_digest(acc)
        self._new[key] = (acc, digest)
        return digest

    def rotate(self) -> None:
        self._old, self._new = self._new, {}


class _NoCache(PlanCache):
    """A one-shot plan keeps nothing: each account is freed once its person is planned."""

    def desired(
        self,
        decision: Decision,
        worker: Worker,
        org: Organization | None,
        logon: str,
        mapping: AccountMapping,
    ) -> tuple[DesiredAccount, Reason]:
        return desired_account(decision, worker, org, logon, mapping), _entitled_reason(decision)

    def desired_only(
        self,
        decision: Decision,
        worker: Worker,
        org: Organization | None,
        logon: str,
        mapping: AccountMapping,
    ) -> DesiredAccount:
        return desired_account(decision, worker, org, logon, mapping)  # no reason to word

    def diff(
        self, acc: Account, desired: DesiredAccount, manage_groups: bool
    ) -> tuple[Change, ...]:
        return diff_account(acc, desired, manage_groups=manage_groups)

    def digest(self, acc: Account) -> str:
        return account_digest(acc)


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """Everything the planner needs; gathered by the app from the adapters."""

    as_of: datetime
    feeds: FeedSet
    decisions: Mapping[str, Decision]
    accounts: Iterable[Account]
    mapping: AccountMapping
    target: str
    known_logon_ids: Mapping[str, str] = field(default_factory=dict)  # person_id -> logon_id
    taken_logon_ids: frozenset[str] = frozenset()  # lower-cased, ever assigned
    quarantined: frozenset[str] = frozenset()  # action keys
    # accounts (ids, lower-cased) misync disabled itself: the only ones it re-enables,
    # unless reenable_external (apply.reenable_external_disables) says otherwise
    disabled_by_misync: frozenset[str] = frozenset()
    reenable_external: bool = False
    # operators' open decisions on held actions, by held key (``code:object``)
    held_decisions: Mapping[str, HeldDecision] = field(default_factory=dict)
    orphans: str = "disable"  # "disable" | "report"
    max_unexplained: int = 25
    max_share: float = 0.05
    override_guard: bool = False
    warning: timedelta = timedelta(hours=4)
    cache: PlanCache | None = None  # reuse results of the previous plan (a daemon's cycles)
    # the guard's denominator when ``accounts`` is not the whole directory (a targeted
    # run reads only its people's accounts): the enabled count of the last full read
    enabled_total: int | None = None


def _entitled_reason(decision: Decision) -> Reason:
    grant = decision.grant
    started = f" from {when(grant.started_at, None)} ({grant.source})" if grant else ""
    rid = grant.request_id if grant else "?"
    return Reason(
        code="entitled",
        clause="3.a, 3.i",
        message=f"every condition of Policy 1021 holds; grant {rid}{started}",
        source=grant.source if grant else None,
        evidenced=True,
    )


_UPDATE_REASON = Reason(
    code="data_changed",
    clause="3.k",
    message="account data differs from the roster and the approved requests",
)


def _update_reason() -> Reason:
    return _UPDATE_REASON  # one frozen value shared by every update (100k of them)


def _on(acc: Account, op: Op, person_id: str | None, **fields: Any) -> Action:
    """An action on an existing account: its id, its logon ID and the digest as read
    (what ``apply --plan`` compares), unless ``fields`` says otherwise."""
    base: dict[str, Any] = {"logon_id": acc.logon_id, "changes": (), "reasons": ()}
    if "before" not in fields:
        base["before"] = account_digest(acc)
    return Action(op=op, person_id=person_id, account_id=acc.account_id, **(base | fields))


def _unread_reason(person_id: str, rows: str) -> Reason:
    return Reason(
        code="rejected_row_unresolved",
        clause="3.g.ix, 3.h.viii, 3.i",
        message=f"rejected row(s) {rows} naming {person_id} could not be read; one may end access",
    )


def _orphan_reason(account: Account, correlation_attribute: str) -> Reason:
    if account.correlation:
        msg = f"{correlation_attribute}={account.correlation} matches no person in the feeds"
    else:
        msg = f"account has no {correlation_attribute}; it correlates to no person"
    return Reason(
        code="orphan",
        clause="3.e.viii, 3.j",
        message=msg,
        feed=FeedName.WORKERS,
        relies_on=ORPHAN_DRIVERS,
    )


def build_plan(inp: PlanInputs) -> Plan:
    """The plan, one phase after another (each phase is a function below): the feed
    guard's view of the rejected rows, the directory correlated to people, each person's
    decision turned into an action (or a hold), the orphans, the mass-disable guard and
    the operators' approvals it overrides, then the order."""
    guard = _FeedGuard(inp)
    state = _Planning(inp, guard)
    by_person, uncorrelated, enabled_count = _correlate(state)
    for person_id in sorted(inp.decisions):
        accounts = _accounts(by_person.pop(person_id, ()))  # freed as the plan goes
        _plan_person(state, person_id, accounts)
    _plan_orphans(state, uncorrelated)
    actions, held = _mass_disable_guard(state.actions, state.held, enabled_count, inp)
    approved = state.approved
    if approved:  # an approved action the guard then held is not carried out
        planned = {a.key for a in actions}
        approved = [k for k in approved if k.partition(":")[2] in planned]
    state.cache.rotate()
    return _ordered_plan(inp, actions, held, approved, state)


class _FeedGuard:
    """Which feeds an action may not rely on: the unhealthy ones, and for one person the
    feeds with a rejected row about them, their organization or a requester of theirs (a
    rejected row is never read as "no row"). Also the rows that could end access but
    could not be read, per person and per organization."""

    def __init__(self, inp: PlanInputs) -> None:
        feeds = inp.feeds
        self.unhealthy = feeds.unhealthy()
        self.workers: dict[str, Worker] = {w.person_id: w for w in feeds.workers}
        # Person ids compare the way the target's correlation attribute does (P1001 =
        # p1001 under caseIgnoreMatch): every lookup by person goes through this key.
        key = self.key = inp.mapping.correlation_key
        # Feeds with a rejected row per person (and per org, applied to the org's people).
        self.rejected_by_person: dict[str, set[FeedName]] = defaultdict(set)
        self.rejected_by_org: dict[str, set[FeedName]] = defaultdict(set)
        # rows that could end access, unread: person_id or org_id -> ["file line N", ...]
        self.unread_by_person: dict[str, list[str]] = defaultdict(list)
        self.unread_by_org: dict[str, list[str]] = defaultdict(list)
        for r in feeds.rejected:
            if not r.key:
                continue
            name = FeedName(r.feed)
            org_keyed = name in ORG_KEYED_FEEDS
            subject = r.key if org_keyed else key(r.key)
            (self.rejected_by_org if org_keyed else self.rejected_by_person)[subject].add(name)
            if name in ACCESS_ENDING_FEEDS:
                (self.unread_by_org if org_keyed else self.unread_by_person)[subject].append(
                    f"{r.file} line {r.line}"
                )
        # person id -> the keys of their requesters: one frozenset per distinct set (a
        # few per area), shared, not a set per person
        self.requesters_of: dict[str, frozenset[str]] = {}
        shared: dict[frozenset[str], frozenset[str]] = {}
        for q in feeds.requests:
            rid, have = key(q.requester_id), self.requesters_of.get(q.person_id, frozenset())
            if rid not in have:
                both = have | {rid}
                self.requesters_of[q.person_id] = shared.setdefault(both, both)

    def blocked(self, person_id: str | None) -> frozenset[FeedName]:
        if person_id is None:
            return self.unhealthy
        extra = set(self.rejected_by_person.get(self.key(person_id), ()))
        worker = self.workers.get(person_id)
        if worker is not None:
            extra |= self.rejected_by_org.get(worker.org_id, set())
        for rid in self.requesters_of.get(person_id, ()):
            if self.rejected_by_person.get(rid, set()) & REQUESTER_FEEDS:
                extra.add(FeedName.REQUESTERS)  # the requester check cannot be trusted
        return self.unhealthy | extra

    def unread(self, person_id: str, worker: Worker) -> list[str]:
        return self.unread_by_person.get(self.key(person_id), []) + self.unread_by_org.get(
            worker.org_id, []
        )


class _Planning:
    """The working state of one plan: what is planned, held, accepted, approved and
    reopened so far, and the accounts found in line (kept as stubs)."""

    def __init__(self, inp: PlanInputs, guard: _FeedGuard) -> None:
        self.inp = inp
        self.guard = guard
        self.mapping = inp.mapping
        self.manage_groups = bool(inp.mapping.groups)
        self.cache = inp.cache or _NoCache()
        self.key = guard.key
        self.workers = guard.workers
        self.orgs: dict[str, Organization] = {o.org_id: o for o in inp.feeds.organizations}
        # key -> person ids in feeds (tuples: one id each but for colliding ids)
        self.person_of: dict[str, tuple[str, ...]] = {}
        for pid in inp.decisions:
            k = self.key(pid)
            self.person_of[k] = (*self.person_of.get(k, ()), pid)
        # Accounts found in line while they stream past are kept as stubs (id, logon,
        # digest; their attributes are the shared ``_NO_ATTRIBUTES``): a 100k read then
        # never holds every account's attributes at once.
        self.settled: dict[str, str] = {}  # stub's account id -> digest of the account as read
        self.taken: set[str] = set()
        self.actions: list[Action] = []
        self.held: list[HeldAction] = []
        self.breaches: list[Breach] = []
        self.accepted: list[HeldAction] = []
        self.approved: list[str] = []
        self.reopened: list[Reopened] = []

    def on(self, acc: Account, op: Op, person_id: str | None, **fields: Any) -> Action:
        if _is_stub(acc):
            fields.setdefault("before", self.settled[acc.account_id])
        return _on(acc, op, person_id, **fields)

    def settle(self, snap: Account, pid: str) -> Account:
        """A stub for an enabled account of an entitled person that is already what the
        policy wants (the plan has nothing to do with it but count it); else ``snap``.
        Only when the logon ID is known without a proposal (no side effect on ``taken``)."""
        inp = self.inp
        decision = inp.decisions[pid]
        worker = self.workers.get(pid)
        if not (decision.entitled and snap.enabled and worker is not None):
            return snap
        if not (inp.known_logon_ids.get(pid) or snap.logon_id):
            return snap
        logon = _logon_for(inp, pid, snap, worker, self.orgs, decision=decision, taken=set())
        desired = self.cache.desired_only(
            decision, worker, self.orgs.get(worker.org_id), logon, self.mapping
        )
        if self.cache.diff(snap, desired, self.manage_groups):
            return snap
        stub = Account(snap.account_id, snap.correlation, snap.logon_id, True, _NO_ATTRIBUTES)
        self.settled[stub.account_id] = self.cache.digest(snap)
        return stub

    def hold(self, action: Action, code: str, message: str) -> None:
        """Hold ``action``, unless an operator's decision on it still stands (``misync
        held``): accepted goes to ``accepted``, approved passes every other guard."""
        h = HeldAction(action=action, code=code, message=message)
        d = self.inp.held_decisions.get(h.key)
        allowed = ACCEPTABLE if d is not None and d.verdict == "accept" else APPROVABLE
        if d is None or code not in allowed:
            self.held.append(h)
            return
        if d.digest is not None and d.digest != held_digest(h):
            self.reopened.append(
                Reopened(
                    h.key,
                    d.verdict,
                    f"what misync would do changed since it was {PAST[d.verdict]} by {d.by}",
                )
            )
            self.held.append(h)
        elif d.verdict == "accept" and d.until is not None and d.until <= self.inp.as_of:
            self.reopened.append(
                Reopened(h.key, d.verdict, f"accepted until {d.until.isoformat()}")
            )
            self.held.append(h)
        elif d.verdict == "accept":
            self.accepted.append(HeldAction(action, code, message, d))
        elif self.consider(action, waive=code):  # approved: every other guard still applies
            self.approved.append(h.key)

    def consider(self, action: Action, waive: str = "") -> bool:
        """Apply the feed guard and quarantine; keep (True) or hold."""
        blocked = self.guard.blocked(action.person_id)
        if action.key in self.inp.quarantined and waive != "quarantined":
            self.hold(action, "quarantined", f"{action.key} failed repeatedly and is quarantined")
            return False
        if action.op is Op.DISABLE:
            if not action.drivers:  # no reason that every feed it relies on supports
                names = ", ".join(sorted(frozenset().union(*(r.feeds for r in action.reasons))))
                self.hold(
                    action,
                    "feed_unhealthy",
                    f"every reason for this disable rests on an unusable feed ({names})",
                )
                return False
        else:
            bad = action.drivers & blocked
            if bad:
                names = ", ".join(sorted(bad))
                self.hold(
                    action, "feed_unhealthy", f"{action.op.value} held: unusable feed(s) {names}"
                )
                return False
        self.actions.append(action)
        return True

    def hold_unread(self, acc: Account, person_id: str, worker: Worker) -> None:
        """A row that could not be read may be a separation or a disable: hold."""
        unread = self.guard.unread(person_id, worker)
        if unread:
            rows = ", ".join(unread)
            self.hold(
                self.on(acc, Op.DISABLE, person_id, reasons=(_unread_reason(person_id, rows),)),
                "rejected_row",
                f"rejected row(s) {rows} may end {person_id}'s access; misync cannot "
                "tell, so it neither confirms nor removes it: correct the row(s)",
            )


def _is_stub(acc: Account) -> bool:
    """Whether ``acc`` is a stub ``_Planning.settle`` made (an account found in line)."""
    return acc.attributes is _NO_ATTRIBUTES


def _accounts(found: Account | tuple[Account, ...]) -> tuple[Account, ...]:
    """A person's accounts as ``_correlate`` keeps them: one account, or a tuple."""
    return found if isinstance(found, tuple) else (found,)


def _correlate(
    state: _Planning,
) -> tuple[dict[str, Account | tuple[Account, ...]], list[Account], int]:
    """The directory by person (the target's matching rule), the accounts no person
    matches, and the enabled count; fills ``state.taken`` with the logon IDs in use."""
    key = state.key
    # person id -> their account (one, mostly: no container each), or a tuple of them
    by_person: dict[str, Account | tuple[Account, ...]] = {}
    uncorrelated: list[Account] = []
    enabled_count = 0
    target_logons: set[str] = set()
    for snap in state.inp.accounts:
        enabled_count += snap.enabled
        if snap.logon_id:
            low = snap.logon_id.lower()  # the account's own string when already lower case
            target_logons.add(snap.logon_id if low == snap.logon_id else low)
        pids = state.person_of.get(key(snap.correlation), ()) if snap.correlation else ()
        if not pids:
            uncorrelated.append(snap)
        for pid in pids:  # several: the reader rejects colliding ids; never guess
            acc = state.settle(snap, pid) if len(pids) == 1 else snap
            have = by_person.get(pid)
            by_person[pid] = acc if have is None else (*_accounts(have), acc)
    state.taken = set(state.inp.taken_logon_ids) | target_logons
    return by_person, uncorrelated, enabled_count


def _plan_person(state: _Planning, person_id: str, accounts: Sequence[Account]) -> None:
    """One person's decision against their account: a duplicate is held, an entitled
    person's account is created, enabled or updated, anybody else's is disabled."""
    same = state.person_of[state.key(person_id)]
    if len(accounts) > 1 or len(same) > 1:
        _hold_ambiguous(state, person_id, accounts, same)
        return
    acc = accounts[0] if accounts else None
    decision = state.inp.decisions[person_id]
    if decision.entitled:
        _plan_entitled(state, person_id, decision, acc)
    elif acc is not None and acc.enabled:
        _plan_disable(state, person_id, decision, acc)


def _hold_ambiguous(
    state: _Planning, person_id: str, accounts: Sequence[Account], same: Sequence[str]
) -> None:
    mapping = state.mapping
    for dup_acc in accounts:
        if len(same) > 1:
            why = (
                f"person ids {', '.join(same)} are one {mapping.correlation_attribute} "
                f"under {mapping.correlation_match}"
            )
        else:
            why = (
                f"{len(accounts)} accounts carry {mapping.correlation_attribute}="
                f"{person_id} (under {mapping.correlation_match})"
            )
        state.hold(state.on(dup_acc, Op.UPDATE, person_id), "ambiguous_correlation", why)


def _plan_entitled(
    state: _Planning, person_id: str, decision: Decision, acc: Account | None
) -> None:
    """Create, enable or update the account of a person the policy entitles."""
    worker = state.workers.get(person_id)
    if worker is None:  # cannot happen for an entitled person; be safe
        return
    if acc is not None and _is_stub(acc):  # in line: only the unread-row hold
        state.hold_unread(acc, person_id, worker)
        return
    inp = state.inp
    logon = _logon_for(
        inp, person_id, acc, worker, state.orgs, decision=decision, taken=state.taken
    )
    desired, entitled_reason = state.cache.desired(
        decision, worker, state.orgs.get(worker.org_id), logon, state.mapping
    )
    reasons = (entitled_reason, *decision.flags)
    if acc is None:
        state.consider(
            Action(
                op=Op.CREATE,
                person_id=person_id,
                account_id=None,
                logon_id=logon,
                changes=creation_changes(desired, manage_groups=state.manage_groups),
                reasons=reasons,
                before=None,
                desired=desired,
                drivers=ALL_FEEDS,
            )
        )
    elif not acc.enabled:
        _plan_enable(state, person_id, acc, logon, desired, reasons)
    else:
        state.hold_unread(acc, person_id, worker)
        changes = state.cache.diff(acc, desired, state.manage_groups)
        if changes:
            state.consider(
                _on(
                    acc,
                    Op.UPDATE,
                    person_id,
                    logon_id=logon,
                    changes=changes,
                    reasons=(_update_reason(),),
                    desired=desired,
                    drivers=UPDATE_DRIVERS,
                )
            )


def _plan_enable(
    state: _Planning,
    person_id: str,
    acc: Account,
    logon: str,
    desired: DesiredAccount,
    reasons: tuple[Reason, ...],
) -> None:
    """Enable a disabled account of an entitled person, if misync disabled it."""
    inp = state.inp
    enable = _on(
        acc,
        Op.ENABLE,
        person_id,
        logon_id=logon,
        changes=state.cache.diff(acc, desired, state.manage_groups),
        reasons=reasons,
        desired=desired,
        drivers=ALL_FEEDS,
    )
    if inp.reenable_external or acc.account_id.lower() in inp.disabled_by_misync:
        state.consider(enable)
    else:  # someone else locked it (an incident?): never unlock it behind them
        state.hold(
            enable,
            "disabled_outside_misync",
            f"{acc.account_id} is disabled and misync did not disable it (no "
            "successful disable of it in the journal): someone else locked it, "
            "perhaps for an incident. misync re-enables only accounts it "
            "disabled; review it: `misync held approve` enables it once, "
            "`misync held accept` leaves it locked (or set "
            "apply.reenable_external_disables = true)",
        )


def _plan_disable(state: _Planning, person_id: str, decision: Decision, acc: Account) -> None:
    """Disable the enabled account of a person the policy does not entitle; only the
    reasons every feed they rely on supports (sound) set the deadline and a breach."""
    blocked = state.guard.blocked(person_id)
    sound = tuple(r for r in decision.reasons if not r.feeds & blocked)
    deadline = min((r.deadline for r in sound if r.deadline is not None), default=None)
    action = _on(
        acc,
        Op.DISABLE,
        person_id,
        reasons=decision.reasons + decision.flags,
        drivers=frozenset().union(*(r.feeds for r in sound)),
        evidenced=any(r.evidenced for r in sound),
        deadline=deadline,
    )
    state.consider(action)
    if deadline is not None:  # only reasons that can be trusted raise a breach
        _breach(state.breaches, person_id, acc, deadline, sound, state.inp)


def _plan_orphans(state: _Planning, uncorrelated: list[Account]) -> None:
    """Disable (or, report-only, hold) every enabled account no person matches."""
    inp, guard = state.inp, state.guard
    for stray in uncorrelated:
        if not stray.enabled:
            continue
        orphan = _on(
            stray,
            Op.DISABLE,
            None,
            reasons=(_orphan_reason(stray, state.mapping.correlation_attribute),),
            drivers=frozenset() if ORPHAN_DRIVERS & guard.unhealthy else ORPHAN_DRIVERS,
        )
        if stray.correlation and state.key(stray.correlation) in guard.rejected_by_person:
            state.hold(
                orphan,
                "feed_unhealthy",
                f"rows naming {stray.correlation} were rejected: an unreadable row is never "
                "read as 'no such person'",
            )
        elif inp.orphans == "report":
            state.hold(orphan, "orphan_report_only", "orphans are configured report-only")
        else:
            state.consider(orphan)


def _ordered_plan(
    inp: PlanInputs,
    actions: list[Action],
    held: list[HeldAction],
    approved: list[str],
    state: _Planning,
) -> Plan:
    """The sealed plan, in its deterministic order: disables first (revoking before
    granting), then updates, enables, creates; within an op by person then account."""
    actions.sort(key=lambda a: (OP_ORDER[a.op], a.person_id or "", a.account_id or ""))
    held.sort(key=lambda h: (h.code, h.action.person_id or "", h.action.account_id or ""))
    state.breaches.sort(key=lambda b: (b.deadline, b.account_id))
    counts = {s.value: 0 for s in Status}
    for d in inp.decisions.values():
        counts[d.status.value] += 1
    feeds = inp.feeds
    return Plan(
        as_of=inp.as_of,
        target=inp.target,
        actions=tuple(actions),
        held=tuple(held),
        accepted=tuple(sorted(state.accepted, key=lambda h: h.key)),
        approved=tuple(sorted(approved)),
        reopened=tuple(sorted(state.reopened, key=lambda r: r.key)),
        breaches=tuple(state.breaches),
        rejected=feeds.rejected,
        feeds=tuple(feeds.health[name] for name in FeedName if name in feeds.health),
        decisions=counts,
    )


def _logon_for(
    inp: PlanInputs,
    person_id: str,
    acc: Account | None,
    worker: Worker,
    orgs: Mapping[str, Organization],
    *,
    decision: Decision,
    taken: set[str],
) -> str:
    """The person's logon ID: remembered, else the existing account's, else a new proposal."""
    known = inp.known_logon_ids.get(person_id)
    if known:
        return known
    if acc is not None and acc.logon_id:
        return acc.logon_id
    fields = person_fields(decision, worker, orgs.get(worker.org_id), "")
    logon = propose_logon_id(
        inp.mapping.logon_template, fields, max_length=inp.mapping.logon_max_length, taken=taken
    )
    taken.add(logon)
    return logon


def _breach(
    breaches: list[Breach],
    person_id: str,
    acc: Account,
    deadline: datetime,
    reasons: tuple[Reason, ...],
    inp: PlanInputs,
) -> None:
    with_deadline = tuple(r for r in reasons if r.deadline is not None)
    if deadline <= inp.as_of:
        severity = "breach"
    elif deadline - inp.as_of <= inp.warning:
        severity = "warning"
    else:
        return
    breaches.append(
        Breach(person_id, acc.account_id, deadline, severity, with_deadline, acc.logon_id)
    )


def _mass_disable_guard(
    actions: list[Action], held: list[HeldAction], enabled_count: int, inp: PlanInputs
) -> tuple[list[Action], list[HeldAction]]:
    unexplained = [a for a in actions if a.op is Op.DISABLE and not a.evidenced]
    if not unexplained or inp.override_guard:
        return actions, held
    if inp.enabled_total is not None:
        enabled_count = inp.enabled_total
    share = len(unexplained) / enabled_count if enabled_count else 1.0
    if len(unexplained) <= inp.max_unexplained and share <= inp.max_share:
        return actions, held
    msg = (
        f"{len(unexplained)} disables without positive evidence ({share:.1%} of "
        f"{enabled_count} enabled accounts) exceed the guard (max {inp.max_unexplained} "
        f"or {inp.max_share:.1%}); review and re-run with --override-guard"
    )
    ids = {id(a) for a in unexplained}
    kept = [a for a in actions if id(a) not in ids]
    return kept, held + [HeldAction(a, "mass_disable_guard", msg) for a in unexplained]
