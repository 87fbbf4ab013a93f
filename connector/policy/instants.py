"""When access will end next: the instants at which Policy 1021 takes access away
from someone without any feed changing. Pure: no I/O, no clock.

The daemon schedules one job for the earliest of these instants and, when it fires,
runs a targeted disable for the people due (``connector.runs.run_targeted``), so a dated
change is carried out at its instant rather than at the next full run:

- an approved disable request: the start of its ``effective_on`` (or its submission,
  if it is submitted later than that);
- a separation dated in the future (separations.csv ``separated_at``; the roster's
  ``separated_on`` at the end of that day);
- a contract's end: ``ends_on`` (end of day) or ``terminated_on`` (start of day), for
  every person of the contract's organization;
- the end of an NDA grace period, for a person entitled within the grace.

Each candidate instant is a *possible* change: at the instant the policy is evaluated
again and only those who are then not entitled are disabled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from connector.model.decisions import Decision
from connector.model.feeds import FeedSet
from connector.model.records import RequestAction, RequestStatus
from connector.policy.engine import contract_end, day_start, roster_separation
from connector.policy.rules import PolicyRules


@dataclass(frozen=True, slots=True)
class DueChange:
    """At ``at``, these people may lose access (``why``: one short reason per person)."""

    at: datetime
    people: frozenset[str]
    why: tuple[str, ...]


def next_instants(
    feeds: FeedSet,
    decisions: Mapping[str, Decision],
    at: datetime,
    rules: PolicyRules,
    *,
    limit: int = 100,
) -> list[DueChange]:
    """The next ``limit`` instants strictly after ``at`` at which access may end, in
    order, each with the people concerned. ``decisions`` are those made at ``at``."""
    tz = rules.tz
    due: dict[datetime, set[str]] = defaultdict(set)
    why: dict[datetime, list[str]] = defaultdict(list)

    def add(when: datetime, person_id: str, reason: str) -> None:
        if when > at:
            due[when].add(person_id)
            why[when].append(f"{person_id}: {reason}")

    for q in feeds.requests:
        if q.action is RequestAction.DISABLE and q.status is RequestStatus.APPROVED:
            add(
                max(day_start(q.effective_on, tz), q.submitted_at),
                q.person_id,
                f"disable request {q.request_id} effective {q.effective_on}",
            )
    for s in feeds.separations:
        add(s.separated_at, s.person_id, f"separation at {s.separated_at.isoformat()}")
    by_org: dict[str, list[str]] = defaultdict(list)
    for w in feeds.workers:
        by_org[w.org_id].append(w.person_id)
        end = roster_separation(w, tz)
        if end is not None:
            add(end, w.person_id, f"roster separation on {w.separated_on}")
    for c in feeds.contracts:
        end = contract_end(c, tz)
        if end is not None and end > at:
            for pid in by_org.get(c.org_id, ()):
                add(end, pid, f"contract {c.contract_id} ends")
    for pid, d in decisions.items():
        if d.grant is not None and any(f.code == "nda_within_grace" for f in d.flags):
            add(_after(d.grant.started_at, rules.nda_grace), pid, "NDA grace ends")
    return [DueChange(when, frozenset(due[when]), tuple(why[when])) for when in sorted(due)[:limit]]


def _after(instant: datetime, delta: timedelta) -> datetime:
    return instant + delta  # same arithmetic as the engine's NDA check (grant + grace)
