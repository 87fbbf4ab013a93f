"""Which Workforce Development Area (WDA) each item of a plan belongs to (pure).

Policy 1021 makes each Local Workforce Development Board monitor its own area (3.e.ii,
3.h.viii). An area's report page, and the alerts sent to its monitors, carry exactly
the items this module places in it; an item placed in no area is on the statewide page
only. One function per question, so that the report and an alert router give the same
answer:

- :meth:`Areas.of_person`: a person's current area: their organization's ``wda``, the
  organization of their roster row, else of their newest separation row, else the
  ``org_id`` column of a rejected roster or separation row about them.
- :meth:`Areas.of_item`: an item about a person resting on some reasons (an action, a
  deadline, a decision): the person's current area, plus the area of the organization
  of every separation (or roster) row its reasons cite. A mover who separated from an
  organization in WDA7 and now works in WDA8 has their separation-driven disable and
  breach on both pages: WDA7's local separated user, WDA8's person.
- :meth:`Areas.of_action`, :meth:`Areas.of_breach`, :meth:`Areas.of_decision`: the
  same for those items; :meth:`Areas.of_held` (held and accepted actions) adds the area
  of every rejected row about the person, for a hold a rejected row causes.
- :meth:`Areas.of_separated_person`: a person's separation-driven item when only the
  person is known (an alert router's question): their current area and the area of
  every organization they separated from.
- :meth:`Areas.of_rejection`: a rejected row, by its own columns that say the area (an
  organization row's ``wda``, a roster or separation row's ``org_id``, a requester
  designation's ``wda``, a contract row's ``org_id``), else by its subject (the person
  or organization it names).
- :meth:`Areas.feed_rows`: how many accepted rows of each feed are the area's.

Orphan accounts (no person) and rows whose area cannot be read are in no area.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from connector.model.decisions import Decision, Reason
from connector.model.feeds import ORG_KEYED_FEEDS, FeedName, FeedSet, Rejection
from connector.model.plan import Action, Breach, HeldAction, HeldCode, Plan
from connector.model.records import WorkerStatus

#: Held codes a rejected row about the person can cause (the planner's feed guard).
ROW_CAUSED = frozenset({HeldCode.REJECTED_ROW, HeldCode.FEED_UNHEALTHY})
#: A requester designation for every area (ESD central office) is no one area's.
EVERY_AREA = "*"


@dataclass(frozen=True, slots=True)
class Person:
    """Who a person is, for a page that names its own people: their name and their
    current organization (from the roster; a person only in the separations feed has
    the organization they separated from and no name)."""

    person_id: str
    name: str
    org_id: str
    org_name: str
    wda: str


@dataclass(frozen=True, slots=True)
class Areas:
    """Which WDA each person, organization and row belongs to (from one set of feeds).

    ``people`` and ``orgs`` are the current areas (person -> WDA, org -> WDA);
    ``evidence`` the person and organization of each roster and separation row by
    ``(file, line)`` (what a reason's ``source`` cites); ``rejected`` the area of each
    rejected row by ``(file, line, key)``, read from its own columns when the feeds
    were read (a plan file or an audit record does not carry them); ``row_areas`` the
    areas of the rejected rows about each person; ``directory`` each person's name and
    organization; ``rows`` the accepted rows of each feed per area."""

    people: Mapping[str, str]
    orgs: Mapping[str, str]
    evidence: Mapping[tuple[str, int], tuple[str, str]] = field(default_factory=dict)
    rejected: Mapping[tuple[str, int, str], str] = field(default_factory=dict)
    directory: Mapping[str, Person] = field(default_factory=dict)
    org_names: Mapping[str, str] = field(default_factory=dict)
    rows: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # feed -> WDA -> n
    row_areas: Mapping[str, frozenset[str]] = field(default_factory=dict)  # person -> WDAs
    left: Mapping[str, frozenset[str]] = field(default_factory=dict)  # person -> WDAs left

    # --- people and organizations --------------------------------------------------

    def of_person(self, person_id: str | None) -> str | None:
        """The person's current area; None for no person or a person no feed places."""
        return self.people.get(person_id) if person_id else None

    def of_org(self, org_id: str | None) -> str | None:
        return self.orgs.get(org_id) if org_id else None

    def _cited_org(self, person_id: str, r: Reason) -> str | None:
        """The organization of the roster or separation row ``r`` cites, if that row is
        ``person_id``'s (a plan placed by other feeds than its own may cite a line that
        is now someone else's: that line is never taken for theirs)."""
        if r.source is None:
            return None
        row = self.evidence.get((r.source.file, r.source.line))
        return row[1] if row is not None and row[0] == person_id else None

    def of_reasons(self, person_id: str, reasons: Iterable[Reason]) -> frozenset[str]:
        """The areas of the organizations of ``person_id``'s separation and roster rows
        that ``reasons`` cite as evidence (the area a person separated from)."""
        out = set()
        for r in reasons:
            wda = self.of_org(self._cited_org(person_id, r))
            if wda:
                out.add(wda)
        return frozenset(out)

    def separated_from(self, person_id: str, reasons: Iterable[Reason]) -> tuple[str, ...]:
        """The organizations of ``person_id``'s separation rows ``reasons`` cite."""
        out: list[str] = []
        for r in reasons:
            org = self._cited_org(person_id, r) if r.code == "separated" else None
            if org and org not in out:
                out.append(org)
        return tuple(out)

    def of_separated_person(self, person_id: str | None) -> frozenset[str]:
        """The areas of a person's separation-driven item when only the person is known
        (an alert about a separation carried out): their current area and the area of
        every organization their separation rows (and a separated roster row) name.
        Given the item's reasons, :meth:`of_item` is narrower: only the separation cited."""
        if not person_id:
            return frozenset()
        current = self.of_person(person_id)
        left = self.left.get(person_id, frozenset())
        return left | {current} if current else left

    # --- items -----------------------------------------------------------------------

    def of_item(self, person_id: str | None, reasons: Iterable[Reason] = ()) -> frozenset[str]:
        """The areas of an item about ``person_id`` resting on ``reasons``: the person's
        current area and the area of every organization whose separation (or roster)
        row the reasons cite. Empty for an orphan (no person)."""
        if not person_id:
            return frozenset()
        current = self.of_person(person_id)
        cited = self.of_reasons(person_id, reasons)
        return cited | {current} if current else cited

    def of_action(self, a: Action) -> frozenset[str]:
        return self.of_item(a.person_id, a.reasons)

    def of_breach(self, b: Breach) -> frozenset[str]:
        """A deadline breach or warning: the areas of the person and of the separation
        it is about (the area the person left sees its local separated user)."""
        return self.of_item(b.person_id, b.reasons)

    def of_decision(self, d: Decision) -> frozenset[str]:
        return self.of_item(d.person_id, (*d.reasons, *d.flags))

    def of_held(self, h: HeldAction) -> frozenset[str]:
        """A held (or accepted) action: as an action, plus, for a hold a rejected row
        can cause, the area of every rejected row about the person (a rejected
        separation row from a WDA7 organization holds the person's disable on WDA7's
        page too)."""
        out = self.of_action(h.action)
        pid = h.action.person_id
        if pid and h.code in ROW_CAUSED:
            out |= self.row_areas.get(pid, frozenset())
        return out

    def of_rejection(self, r: Rejection) -> str | None:
        """A rejected row's area: from its own columns (an organization or requester
        row's ``wda``, a roster or separation row's ``org_id``, a contract's
        ``org_id``), else from its subject (the person's current area); None when
        nothing on the row says (the statewide page has it)."""
        placed = self.rejected.get((r.file, r.line, r.key))
        if placed:
            return placed
        return _own_area(self, r)

    # --- counts ----------------------------------------------------------------------

    def feed_rows(self, feed: str, wda: str) -> int:
        """Accepted rows of ``feed`` that are ``wda``'s."""
        return self.rows.get(feed, {}).get(wda, 0)

    def who(self, person_id: str | None) -> Person | None:
        return self.directory.get(person_id) if person_id else None


def _own_area(areas: Areas, r: Rejection) -> str | None:
    if r.wda and r.wda != EVERY_AREA:
        return r.wda
    if r.org:
        wda = areas.of_org(r.org)
        if wda:
            return wda
    if not r.key:
        return None
    if FeedName(r.feed) in ORG_KEYED_FEEDS:
        return areas.of_org(r.key)
    return areas.of_person(r.key)


def areas_of(feeds: FeedSet) -> Areas:
    """Place every person, organization and row of ``feeds`` (see the module docstring).

    A person's current area is their organization's: the roster row's, else the newest
    separation row's (the rule the policy engine's requester check uses), else the
    ``org_id`` of a rejected roster or separation row about them."""
    orgs = {o.org_id: o.wda for o in feeds.organizations}
    org_names = {o.org_id: o.name for o in feeds.organizations}
    people: dict[str, str] = {}
    directory: dict[str, Person] = {}
    evidence: dict[tuple[str, int], tuple[str, str]] = {}
    for r in feeds.rejected:  # the weakest evidence of where a person is: a rejected row
        person_row = FeedName(r.feed) in (FeedName.WORKERS, FeedName.SEPARATIONS)
        if person_row and r.key and r.org in orgs:
            people.setdefault(r.key, orgs[r.org])
            directory.setdefault(r.key, Person(r.key, "", r.org, org_names[r.org], orgs[r.org]))
    left: dict[str, set[str]] = defaultdict(set)
    for s in sorted(feeds.separations, key=lambda s: s.separated_at):
        evidence[(s.source.file, s.source.line)] = (s.person_id, s.org_id)
        if s.org_id in orgs:
            left[s.person_id].add(orgs[s.org_id])
        if s.org_id in orgs:
            people[s.person_id] = orgs[s.org_id]
            directory[s.person_id] = Person(
                s.person_id, "", s.org_id, org_names[s.org_id], orgs[s.org_id]
            )
    for w in feeds.workers:
        evidence[(w.source.file, w.source.line)] = (w.person_id, w.org_id)
        wda = orgs.get(w.org_id, "")
        if wda and w.status is WorkerStatus.SEPARATED:
            left[w.person_id].add(wda)
        if wda:
            people[w.person_id] = wda
        directory[w.person_id] = Person(
            w.person_id,
            f"{w.given_name} {w.family_name}".strip(),
            w.org_id,
            org_names.get(w.org_id, ""),
            wda,
        )
    partial = Areas(people, orgs)
    rejected: dict[tuple[str, int, str], str] = {}
    row_areas: dict[str, set[str]] = defaultdict(set)
    for r in feeds.rejected:
        placed = _own_area(partial, r)
        if placed is None:
            continue
        rejected[(r.file, r.line, r.key)] = placed
        if r.key and FeedName(r.feed) not in ORG_KEYED_FEEDS:
            row_areas[r.key].add(placed)
    return Areas(
        people=people,
        orgs=orgs,
        evidence=evidence,
        rejected=rejected,
        directory=directory,
        org_names=org_names,
        rows=_rows(feeds, orgs, people),
        row_areas={p: frozenset(w) for p, w in row_areas.items()},
        left={p: frozenset(w) for p, w in left.items()},
    )


def _rows(
    feeds: FeedSet, orgs: Mapping[str, str], people: Mapping[str, str]
) -> dict[str, dict[str, int]]:
    """Accepted rows of each feed per area: by the row's own area column (organizations,
    requesters), its organization (contracts, roster, separations), else its person's
    current area (training, NDAs, requests). A row no area claims is counted nowhere."""
    counts: dict[str, Counter[str]] = {
        FeedName.ORGANIZATIONS.value: Counter(o.wda for o in feeds.organizations),
        FeedName.CONTRACTS.value: Counter(orgs.get(c.org_id, "") for c in feeds.contracts),
        FeedName.WORKERS.value: Counter(orgs.get(w.org_id, "") for w in feeds.workers),
        FeedName.SEPARATIONS.value: Counter(orgs.get(s.org_id, "") for s in feeds.separations),
        FeedName.TRAINING.value: Counter(people.get(t.person_id, "") for t in feeds.training),
        FeedName.NDAS.value: Counter(people.get(n.person_id, "") for n in feeds.ndas),
        FeedName.REQUESTERS.value: Counter(d.wda for d in feeds.requesters),
        FeedName.REQUESTS.value: Counter(people.get(q.person_id, "") for q in feeds.requests),
    }
    return {
        feed: {w: n for w, n in c.items() if w and w != EVERY_AREA} for feed, c in counts.items()
    }


def known_areas(areas: Areas) -> list[str]:
    """Every area some organization is in (an accepted row's, or a rejected one's)."""
    return sorted(set(areas.orgs.values()) | set(areas.rejected.values()))


def scope_to_wda(
    plan: Plan,
    wda: str,
    areas: Areas,
    decisions: Mapping[str, Decision] | None = None,
) -> Plan:
    """The part of ``plan`` that is ``wda``'s, and nothing else, with the area's counts.

    Actions, held and accepted actions, deadlines, rejected rows and decisions are kept
    when this module places them in ``wda``. Feed health keeps each file's state (a
    stale roster holds the area's actions too) with the area's accepted and rejected
    rows in place of the whole file's. Orphans and rows whose area cannot be read are
    on the statewide report only. ``decisions``: everyone's, counted for the area (none
    given: no counts)."""
    rejected = tuple(r for r in plan.rejected if areas.of_rejection(r) == wda)
    rejected_in = Counter(r.feed for r in rejected)
    counts: dict[str, int] = {}
    if decisions is not None:
        counts = dict(
            Counter(
                d.status.value for d in decisions.values() if wda in areas.of_decision(d)
            ).most_common()
        )
    actions = tuple(a for a in plan.actions if wda in areas.of_action(a))
    held = tuple(h for h in plan.held if wda in areas.of_held(h))
    accepted = tuple(h for h in plan.accepted if wda in areas.of_held(h))
    keys = {a.key for a in actions} | {h.action.key for h in (*held, *accepted)}
    return dataclasses.replace(
        plan,
        actions=actions,
        held=held,
        accepted=accepted,
        approved=tuple(k for k in plan.approved if k.partition(":")[2] in keys),
        reopened=tuple(r for r in plan.reopened if r.key.partition(":")[2] in keys),
        breaches=tuple(b for b in plan.breaches if wda in areas.of_breach(b)),
        rejected=rejected,
        feeds=tuple(
            dataclasses.replace(
                f, rows=areas.feed_rows(f.feed.value, wda), rejected=rejected_in[f.feed.value]
            )
            for f in plan.feeds
        ),
        decisions=counts,
    )
