"""Which accounts a whole plan left alone, and which a later plan must plan again.

A plan is a pure function of its inputs. An account the plan left alone (no action,
hold, acceptance or breach names it or its person) is left alone by any later plan made
from the same feeds, rules, mapping and settings, before the first instant a decision
can change (``connector.policy.horizon``), as long as the account, its person's logon ID
and the people it correlates to are what they were: the planner looks at such an
account only through its own person (its decision, its roster row, its logon ID).

``settle`` picks those accounts out of a whole plan (``Settled``, kept by the plan memo,
connector.runs.memo); ``residual`` splits a later view of the directory into the
accounts still settled (nothing to plan) and the rest, with the people to evaluate
again: everyone the plan named, and everyone a changed, new or missing account
correlates to. Planning the rest with those people gives the whole plan's actions.

The rules, each conservative (an account that might not be settled is planned again):

- an account is settled only if nothing in the plan names it or anyone it correlates
  to, it is its person's only account, its correlation names at most one person, and
  (for an entitled person) its logon ID is known without a proposal (a proposal
  takes an ID from the pool the creates draw from);
- at a later plan it stays settled only if its digest (of its row as read) is the
  same, and its person's logon ID in the store is the same; a settled account that
  changed puts back the person it correlated to as well as the one it correlates to
  now (a moved correlation leaves the first without an account);
- a settled account missing from the later view puts its person back in the plan.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from connector.model.decisions import Decision
from connector.model.plan import Plan


@dataclass(frozen=True, slots=True)
class Seen:
    """An account as a plan read it: its id (lower case), correlation, logon ID, and a
    digest of everything read of it."""

    account_id: str
    correlation: str | None
    logon_id: str | None
    digest: str


@dataclass(frozen=True, slots=True)
class Settled:
    """An account a whole plan left alone: its digest, the person it correlates to
    ("" for nobody) and that person's logon ID in the store then ("" for none)."""

    digest: str
    person_id: str
    logon: str

    def row(self) -> str:
        return f"{self.digest}\x1f{self.person_id}\x1f{self.logon}"

    @classmethod
    def from_row(cls, text: str) -> Settled:
        digest, person_id, logon = text.split("\x1f")
        return cls(digest, person_id, logon)


def named_in(plan: Plan) -> tuple[set[str], set[str]]:
    """The accounts (lower-cased ids) and the people a plan names: in an action, a hold,
    an acceptance or a breach."""
    accounts: set[str] = set()
    people: set[str] = set()
    actions = [*plan.actions, *(h.action for h in plan.held), *(h.action for h in plan.accepted)]
    for a in actions:
        if a.account_id:
            accounts.add(a.account_id.lower())
        if a.person_id:
            people.add(a.person_id)
    for b in plan.breaches:
        accounts.add(b.account_id.lower())
        if b.person_id:
            people.add(b.person_id)
    return accounts, people


def settle(
    plan: Plan,
    seen: Iterable[Seen],
    decisions: Mapping[str, Decision],
    known_logons: Mapping[str, str],
    key: Callable[[str], str],
) -> tuple[dict[str, Settled], set[str]]:
    """The accounts ``plan`` left alone (lower-cased id -> ``Settled``), and the
    correlation keys of the people it named (the ones any later plan plans again)."""
    named_accounts, named_people = named_in(plan)
    open_keys = {key(p) for p in named_people}
    person_of: dict[str, list[str]] = {}
    for pid in decisions:
        person_of.setdefault(key(pid), []).append(pid)
    views = list(seen)
    holders: dict[str, int] = {}
    for s in views:
        if s.correlation:
            k = key(s.correlation)
            holders[k] = holders.get(k, 0) + 1
    settled: dict[str, Settled] = {}
    for s in views:
        if s.account_id in named_accounts:
            continue
        pid = ""
        if s.correlation:
            k = key(s.correlation)
            pids = person_of.get(k, [])
            if k in open_keys or holders[k] > 1 or len(pids) > 1:
                continue
            if pids:
                pid = pids[0]
                if decisions[pid].entitled and not (known_logons.get(pid) or s.logon_id):
                    continue  # its logon ID would be a proposal
        settled[s.account_id] = Settled(s.digest, pid, known_logons.get(pid, "") if pid else "")
    return settled, open_keys


@dataclass(frozen=True, slots=True)
class Residual:
    """A later view split by ``residual``."""

    keys: frozenset[str]  # correlation keys of the people to plan again
    changed: tuple[str, ...]  # accounts (lower-cased ids) not settled any more, or new
    missing: tuple[str, ...]  # settled accounts not in the view
    reused: int  # accounts still settled (not planned again)


def residual(
    view: Mapping[str, tuple[str | None, str]],
    settled: Mapping[str, Settled],
    open_keys: Iterable[str],
    known_logons: Mapping[str, str],
    key: Callable[[str], str],
) -> Residual:
    """Split a view of the directory (lower-cased id -> (correlation, digest)) against
    what a whole plan settled: the accounts to plan again, the settled ones missing,
    and the people to plan again (by correlation key): those the plan named, those of
    every account to plan again (whom it correlates to now, and whom it did when it was
    settled), and those of every settled account missing."""
    keys = set(open_keys)
    changed: list[str] = []
    for lid, (correlation, digest) in view.items():
        s = settled.get(lid)
        if (
            s is None
            or s.digest != digest
            or (s.person_id and known_logons.get(s.person_id, "") != s.logon)
        ):
            changed.append(lid)
            if correlation:
                keys.add(key(correlation))
            if s is not None and s.person_id:  # the person it correlated to (it may not now)
                keys.add(key(s.person_id))
    missing = [lid for lid in settled if lid not in view]
    for lid in missing:
        if settled[lid].person_id:
            keys.add(key(settled[lid].person_id))
    return Residual(frozenset(keys), tuple(changed), tuple(missing), len(view) - len(changed))
