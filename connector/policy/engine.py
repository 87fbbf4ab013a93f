"""Policy 1021, evaluated for one person at one instant. Pure: no I/O, no clock.

Time rules (SPEC.md; details in docs/DECISIONS.md): date ranges include both days in
``rules.tz``; ``terminated_on`` takes effect at the start of its day; a roster
``separated_on`` at the end of its day; a request's ``effective_on`` at the start of
its day; signed/approved/completed dates count when on or before the local date of
``at``.

Every failing condition is listed (not only the first), each with its clause and its
evidence; ``evidenced`` marks losses a feed row positively shows.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from connector.model.decisions import Decision, Grant, Reason, Status
from connector.model.feeds import FeedName, FeedSet
from connector.model.records import (
    AccessRequest,
    Contract,
    ContractType,
    Nda,
    Organization,
    OrgKind,
    RequestAction,
    RequesterDesignation,
    RequestStatus,
    Separation,
    SourceRef,
    Training,
    Worker,
    WorkerStatus,
)
from connector.policy.clauses import CLAUSES, RELIES_ON
from connector.policy.rules import PolicyRules
from connector.timefmt import when as written


@functools.lru_cache(maxsize=4096)  # a few hundred distinct days: one object each
def day_start(d: date, tz: ZoneInfo) -> datetime:
    """The first instant of local day ``d`` (DST-safe)."""
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def _reason(
    code: str,
    message: str,
    *,
    clause: str | None = None,
    feed: FeedName | None = None,
    source: SourceRef | None = None,
    evidenced: bool = False,
    since: datetime | None = None,
    deadline: datetime | None = None,
) -> Reason:
    return Reason(
        code,
        clause or CLAUSES[code][0],
        message,
        feed,
        source,
        evidenced,
        since,
        deadline,
        RELIES_ON.get(code, frozenset()),
    )


def after(instant: datetime, delta: timedelta, tz: ZoneInfo) -> datetime:
    """``instant + delta`` in elapsed time (24 h is 24 h across a DST change), shown in
    ``policy.timezone`` with that zone's offset *at the result* (a deadline after the
    November change reads -08:00, not the -07:00 of a separation made before it)."""
    return (instant.astimezone(UTC) + delta).astimezone(tz)


T = TypeVar("T")


def _group(rows: tuple[T, ...], key: Callable[[T], str]) -> dict[str, tuple[T, ...]]:
    out: dict[str, list[T]] = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return {k: tuple(v) for k, v in out.items()}


@dataclass(frozen=True)
class PolicyIndex:
    """The feeds grouped by person, organization and requester; built once per run."""

    orgs: Mapping[str, Organization]
    contracts: Mapping[str, tuple[Contract, ...]]
    workers: Mapping[str, Worker]
    separations: Mapping[str, tuple[Separation, ...]]
    training: Mapping[str, tuple[Training, ...]]
    ndas: Mapping[str, tuple[Nda, ...]]
    designations: Mapping[str, tuple[RequesterDesignation, ...]]
    requests: Mapping[str, tuple[AccessRequest, ...]]
    people: tuple[str, ...]
    _org_cache: dict[tuple[str, datetime], tuple[Reason, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, feeds: FeedSet) -> PolicyIndex:
        people = (
            {w.person_id for w in feeds.workers}
            | {r.person_id for r in feeds.requests}
            | {s.person_id for s in feeds.separations}
        )
        return cls(
            orgs={o.org_id: o for o in feeds.organizations},
            contracts=_group(feeds.contracts, lambda r: r.org_id),
            workers={w.person_id: w for w in feeds.workers},
            separations=_group(feeds.separations, lambda r: r.person_id),
            training=_group(feeds.training, lambda r: r.person_id),
            ndas=_group(feeds.ndas, lambda r: r.person_id),
            designations=_group(feeds.requesters, lambda r: r.person_id),
            requests=_group(feeds.requests, lambda r: r.person_id),
            people=tuple(sorted(people)),
        )


def roster_separation(w: Worker | None, tz: ZoneInfo) -> datetime | None:
    """When a roster row's separation takes effect: the end of ``separated_on``."""
    if w is None or w.status is not WorkerStatus.SEPARATED or w.separated_on is None:
        return None
    return day_start(w.separated_on + timedelta(days=1), tz)


def separation_of(
    person_id: str, idx: PolicyIndex, tz: ZoneInfo, at: datetime
) -> tuple[datetime, SourceRef, FeedName] | None:
    """The newest separation that has taken effect by ``at``, from separations.csv and the
    roster together (a row dated in the future does not hide one already in effect)."""
    events = [
        (s.separated_at, s.source, FeedName.SEPARATIONS)
        for s in idx.separations.get(person_id, ())
        if s.separated_at <= at
    ]
    w = idx.workers.get(person_id)
    roster = roster_separation(w, tz)
    if w is not None and roster is not None and roster <= at:
        events.append((roster, w.source, FeedName.WORKERS))
    return max(events, key=lambda e: e[0]) if events else None


def requester_problem(req: AccessRequest, wda: str, idx: PolicyIndex, tz: ZoneInfo) -> str | None:
    """Why ``req``'s requester could not submit it for a person in ``wda``; None if valid."""
    rid = req.requester_id
    desig = idx.designations.get(rid, ())
    submitted = req.submitted_at.astimezone(tz).date()
    if not desig:
        return f"requester {rid} is not a designated MIS Access Requester"
    matching = [d for d in desig if d.wda in (wda, "*")]
    if not matching:
        wdas = ", ".join(sorted({d.wda for d in desig}))
        return f"requester {rid} is designated for {wdas}, not {wda or 'the person’s WDA'}"
    in_force = [
        d
        for d in matching
        if d.starts_on <= submitted and (d.ends_on is None or submitted <= d.ends_on)
    ]
    if not in_force:
        d = matching[0]
        span = f"{d.starts_on}..{d.ends_on or ''}"
        return f"requester {rid}'s designation ({span}, {d.source}) was not in force on {submitted}"
    sep = separation_of(rid, idx, tz, req.submitted_at)
    if sep is not None and all(day_start(d.starts_on, tz) < sep[0] for d in in_force):
        # separated after every designation in force began; a designation that starts
        # after the separation shows the requester came back and was designated again
        return f"requester {rid} had separated at {written(sep[0], tz)} ({sep[1]})"
    return None


def contract_end(c: Contract, tz: ZoneInfo) -> datetime | None:
    ends = [day_start(c.ends_on + timedelta(days=1), tz)] if c.ends_on else []
    if c.terminated_on:
        ends.append(day_start(c.terminated_on, tz))
    return min(ends) if ends else None


def _in_force(c: Contract, at: datetime, tz: ZoneInfo) -> bool:
    end = contract_end(c, tz)
    return day_start(c.starts_on, tz) <= at and (end is None or at < end)


def _ended(c: Contract, code: str, what: str, at: datetime, rules: PolicyRules) -> Reason | None:
    """The contract's end (or termination) once it has come, with its deadline."""
    tz = rules.tz
    end = contract_end(c, tz)
    if end is None or at < end:
        return None
    terminated = c.terminated_on is not None and end == day_start(c.terminated_on, tz)
    verb = "was terminated" if terminated else "ended"
    last = c.terminated_on if terminated else c.ends_on
    return _reason(
        code,
        f"{what} {c.contract_id} {verb} {last} ({c.source})",
        feed=FeedName.CONTRACTS,
        source=c.source,
        evidenced=True,
        since=end,
        deadline=after(end, rules.contract_grace, rules.tz),
    )


def _wioa_reasons(
    org_id: str, contracts: tuple[Contract, ...], at: datetime, rules: PolicyRules
) -> list[Reason]:
    """3.a.i: an effective, signed WIOA services contract."""
    tz = rules.tz
    today = at.astimezone(tz).date()
    wioa = [c for c in contracts if c.type is ContractType.WIOA_SERVICES]
    if any(c.signed_on and c.signed_on <= today and _in_force(c, at, tz) for c in wioa):
        return []
    if not wioa:
        return [
            _reason(
                "no_wioa_contract",
                f"organization {org_id} has no WIOA services contract in contracts.csv",
                feed=FeedName.CONTRACTS,
            )
        ]
    out: list[Reason] = []
    for c in wioa:
        r = _ended(c, "wioa_contract_ended", "WIOA services contract", at, rules)
        if r is None and at < day_start(c.starts_on, tz):
            r = _reason(
                "wioa_contract_not_started",
                f"WIOA services contract {c.contract_id} starts {c.starts_on} ({c.source})",
                feed=FeedName.CONTRACTS,
                source=c.source,
            )
        if r is None:
            r = _reason(
                "wioa_contract_unsigned",
                f"WIOA services contract {c.contract_id} is not signed ({c.source})",
                feed=FeedName.CONTRACTS,
                source=c.source,
                evidenced=True,
            )
        out.append(r)
    return _latest_end_only(out)


def _data_sharing_problems(c: Contract, at: datetime, rules: PolicyRules) -> list[Reason]:
    """What keeps one data-sharing contract from being effective (3.a.ii, 3.b, 3.c, 3.e.vii)."""
    today = at.astimezone(rules.tz).date()
    r = _ended(c, "data_sharing_ended", "data-sharing contract", at, rules)
    if r is not None:
        return [r]
    if at < day_start(c.starts_on, rules.tz):
        return [
            _reason(
                "data_sharing_not_started",
                f"data-sharing contract {c.contract_id} starts {c.starts_on} ({c.source})",
                feed=FeedName.CONTRACTS,
                source=c.source,
            )
        ]
    probs: list[Reason] = []
    kw: dict[str, Any] = {"feed": FeedName.CONTRACTS, "source": c.source, "evidenced": True}
    if not (c.signed_on and c.signed_on <= today):
        probs.append(
            _reason(
                "data_sharing_unsigned",
                f"data-sharing contract {c.contract_id} is not signed ({c.source})",
                **kw,
            )
        )
    if not c.business_case.strip():
        probs.append(
            _reason(
                "data_sharing_no_business_case",
                f"data-sharing contract {c.contract_id} states no business case ({c.source})",
                **kw,
            )
        )
    missing = [
        who
        for who, d in (
            ("Security Administrator", c.security_admin_approved_on),
            ("Contracts Office", c.contracts_office_approved_on),
            ("Data Owner", c.data_owner_approved_on),
        )
        if not (d and d <= today)
    ]
    if missing:
        probs.append(
            _reason(
                "data_sharing_unapproved",
                f"data-sharing contract {c.contract_id} "
                f"lacks approval by {', '.join(missing)} ({c.source})",
                **kw,
            )
        )
    return probs


def _contract_reasons(
    org_id: str, idx: PolicyIndex, at: datetime, rules: PolicyRules
) -> tuple[Reason, ...]:
    """Conditions 3.a.i, 3.a.ii, 3.b, 3.c, 3.e.vii for one organization (cached per run)."""
    contracts = idx.contracts.get(org_id, ())
    out = _wioa_reasons(org_id, contracts, at, rules)
    ds = [c for c in contracts if c.type is ContractType.DATA_SHARING]
    if not ds:
        out.append(
            _reason(
                "no_data_sharing_contract",
                f"organization {org_id} has no MIS data-sharing contract in contracts.csv",
                feed=FeedName.CONTRACTS,
            )
        )
        return tuple(out)
    all_probs = [_data_sharing_problems(c, at, rules) for c in ds]
    if all(all_probs):  # no data-sharing contract is effective
        out += _latest_end_only([r for probs in all_probs for r in probs])
    return tuple(out)


def _latest_end_only(reasons: list[Reason]) -> list[Reason]:
    """Of several ended contracts of one type, the one that ended last sets ``since`` and
    the deadline; the older ones were superseded (renewed) and stay as evidence only."""
    ended = [r for r in reasons if r.deadline is not None]
    if len(ended) <= 1:
        return reasons
    last = max(ended, key=lambda r: r.deadline or r.since or datetime.min.replace(tzinfo=UTC))
    return [
        r if r is last or r.deadline is None else dataclasses.replace(r, since=None, deadline=None)
        for r in reasons
    ]


def _valid_from(c: Contract, tz: ZoneInfo) -> datetime | None:
    """When a contract first met every condition (start, signature and, for data
    sharing, business case and three approvals); None if it never has."""
    needed = [c.starts_on, c.signed_on]
    if c.type is ContractType.DATA_SHARING:
        if not c.business_case.strip():
            return None
        needed += [
            c.security_admin_approved_on,
            c.contracts_office_approved_on,
            c.data_owner_approved_on,
        ]
    if any(d is None for d in needed):
        return None
    return day_start(max(d for d in needed if d is not None), tz)


def _coverage_gap(
    org_id: str, idx: PolicyIndex, since: datetime, at: datetime, rules: PolicyRules
) -> str | None:
    """restore_on_cure=False: was any contract condition uncovered between ``since`` and ``at``?"""
    tz = rules.tz
    for ctype in ContractType:
        spans = sorted(
            (max(valid_from, since), contract_end(c, tz) or at)
            for c in idx.contracts.get(org_id, ())
            if c.type is ctype and (valid_from := _valid_from(c, tz)) is not None
        )
        cursor = since
        for start, end in spans:
            if start > cursor:
                gap = f"{written(cursor, tz)}..{written(start, tz)}"
                return f"no {ctype.value} contract covered {gap}"
            cursor = max(cursor, end)
        if cursor < at:
            return f"no {ctype.value} contract covered {written(cursor, tz)}..{written(at, tz)}"
    return None


@dataclass(frozen=True, slots=True)
class _Person:
    """Who is evaluated: their roster row, organization and separation at ``at``."""

    person_id: str
    worker: Worker | None
    org_id: str
    org: Organization | None
    sep: tuple[datetime, SourceRef, FeedName] | None

    @property
    def is_esd(self) -> bool:
        return self.org is not None and self.org.kind is OrgKind.ESD

    @property
    def wda(self) -> str:
        return self.org.wda if self.org else ""

    @property
    def sep_at(self) -> datetime | None:
        return self.sep[0] if self.sep else None

    @classmethod
    def of(cls, person_id: str, idx: PolicyIndex, at: datetime, tz: ZoneInfo) -> _Person:
        worker = idx.workers.get(person_id)
        seps = idx.separations.get(person_id, ())
        newest = max(seps, key=lambda r: r.separated_at) if seps else None
        org_id = worker.org_id if worker else (newest.org_id if newest else "")
        return cls(
            person_id, worker, org_id, idx.orgs.get(org_id), separation_of(person_id, idx, tz, at)
        )


@dataclass
class _Grants:
    """The walk over one person's approved requests, in order of effect (3.i, 3.k).

    A request acts only on what was submitted before it: a disable ends a grant whose add
    requests were all submitted before the disable, and cancels such an add that takes
    effect later; an add submitted after a disable is not touched by it. A separation
    ends every grant whose add requests were submitted before it took effect (rehire
    needs an add submitted after the separation).
    """

    sep_at: datetime | None
    grant: Grant | None = None
    grant_submitted: datetime | None = None  # newest submission among the grant's adds
    ended: Reason | None = None
    invalid_add: list[Reason] = field(default_factory=list)
    disables: list[tuple[datetime, Reason]] = field(default_factory=list)  # in effect so far
    profile: str = ""
    offices: tuple[str, ...] = ()
    sep_ended: bool = False
    flags: list[Reason] = field(default_factory=list)

    def end_by_separation(self, upto: datetime) -> None:
        if (
            self.grant is not None
            and self.grant_submitted is not None
            and self.sep_at is not None
            and self.grant_submitted < self.sep_at <= upto
        ):
            self.grant, self.grant_submitted, self.sep_ended = None, None, True

    def add(self, q: AccessRequest, eff: datetime, problem: str | None) -> None:
        src: dict[str, Any] = {"feed": FeedName.REQUESTS, "source": q.source}
        certs = [
            n
            for n, ok in (
                ("training", q.cert_training),
                ("profile approval", q.cert_profile_approved),
                ("NDA", q.cert_nda),
            )
            if not ok
        ]
        if problem or certs:
            self._invalid_add(q, problem, certs, src)
            return
        if self.grant is None:
            cancelled = [r for sub, r in self.disables if sub > q.submitted_at]
            if cancelled:  # a disable submitted after this add has taken effect
                self.ended, self.invalid_add = cancelled[-1], []
                return
            if self.sep_at is not None and q.submitted_at < self.sep_at:
                self.sep_ended, self.invalid_add = True, []  # requested before the separation
                return
            self.grant = Grant(q.request_id, eff, q.source)
            self.ended, self.sep_ended, self.invalid_add = None, False, []
        self.grant_submitted = max(self.grant_submitted or q.submitted_at, q.submitted_at)
        self.profile, self.offices = q.profile or self.profile, q.offices or self.offices

    def _invalid_add(
        self, q: AccessRequest, problem: str | None, certs: list[str], src: dict[str, Any]
    ) -> None:
        bad: list[Reason] = []
        if problem:
            bad.append(
                _reason(
                    "add_request_invalid_requester",
                    f"add request {q.request_id}: {problem} ({q.source})",
                    **src,
                )
            )
        if certs:
            bad.append(
                _reason(
                    "add_request_uncertified",
                    f"add request {q.request_id} does not certify {', '.join(certs)} ({q.source})",
                    evidenced=True,
                    **src,
                )
            )
        if self.grant is not None:
            self.flags.append(
                _reason(
                    "add_invalid_ignored",
                    f"add request {q.request_id} ignored: {bad[0].message}",
                    **src,
                )
            )
        else:
            self.invalid_add = bad

    def change(self, q: AccessRequest, problem: str | None) -> None:
        if problem:
            self.flags.append(
                _reason(
                    "change_invalid_requester",
                    f"change request {q.request_id} ignored: {problem} ({q.source})",
                    feed=FeedName.REQUESTS,
                    source=q.source,
                )
            )
            return
        if self.grant is not None:
            self.profile, self.offices = q.profile or self.profile, q.offices or self.offices

    def disable(
        self, q: AccessRequest, eff: datetime, problem: str | None, rules: PolicyRules
    ) -> None:
        """Carried out whoever sent it (losing access is the safe side)."""
        src: dict[str, Any] = {"feed": FeedName.REQUESTS, "source": q.source}
        if problem:
            self.flags.append(
                _reason(
                    "disable_invalid_requester",
                    f"disable request {q.request_id}: {problem} ({q.source})",
                    **src,
                )
            )
        if eff - q.submitted_at < rules.late_notice:
            hours = (eff - q.submitted_at).total_seconds() / 3600
            when = f"{hours:.0f} h before" if hours >= 0 else f"{-hours:.0f} h after"
            self.flags.append(
                _reason(
                    "late_notice_disable",
                    f"disable request {q.request_id} submitted {when} it took effect ({q.source})",
                    **src,
                )
            )
        end = _reason(
            "disabled_by_request",
            f"disable request {q.request_id} took effect {q.effective_on} ({q.source})",
            evidenced=True,
            since=eff,
            # SPEC "Deadlines": the start of the effective date plus the same short
            # grace as a contract end, so a disable carried out at its instant (a
            # daemon's timed job, a run made seconds after midnight) is no breach.
            # A request submitted after that start (late notice, flagged above)
            # cannot be acted on before it exists: its grace runs from submission.
            deadline=after(max(eff, q.submitted_at), rules.contract_grace, rules.tz),
            **src,
        )
        self.disables.append((q.submitted_at, end))
        if self.grant is None or self.grant_submitted is None:
            return
        if q.submitted_at > self.grant_submitted:
            self.grant, self.grant_submitted, self.ended = None, None, end
        else:
            self.flags.append(
                _reason(
                    "disable_superseded",
                    f"disable request {q.request_id} ({q.source}) was submitted "
                    f"before add request {self.grant.request_id}'s grant was last "
                    "requested; the later add stands",
                    **src,
                )
            )

    def reasons(self, person_id: str) -> list[Reason]:
        """Why there is no grant in force (nothing when there is one)."""
        if self.grant is not None:
            return []
        if self.ended is not None:
            return [self.ended]
        out = list(self.invalid_add)
        if not self.invalid_add and not self.sep_ended:
            out.append(
                _reason(
                    "no_add_request",
                    f"no approved add request for {person_id} is in force",
                    feed=FeedName.REQUESTS,
                )
            )
        if self.disables:  # an approved disable in effect is evidence on its own, whatever
            out.append(self.disables[-1][1])  # else could not be checked (3.i, 3.k)
        return out


def _requests(person: _Person, idx: PolicyIndex, at: datetime, rules: PolicyRules) -> _Grants:
    """The grant in force at ``at`` (3.i, 3.k), from the approved requests in effect."""
    tz = rules.tz
    approved = sorted(
        (
            q
            for q in idx.requests.get(person.person_id, ())
            if q.status is RequestStatus.APPROVED
            and q.submitted_at <= at
            and day_start(q.effective_on, tz) <= at
        ),
        key=lambda q: (day_start(q.effective_on, tz), q.submitted_at, q.source.line),
    )
    walk = _Grants(person.sep_at)
    for q in approved:
        eff = day_start(q.effective_on, tz)
        walk.end_by_separation(eff)
        problem = requester_problem(q, person.wda, idx, tz)
        if q.action is RequestAction.ADD:
            walk.add(q, eff, problem)
        elif q.action is RequestAction.CHANGE:
            walk.change(q, problem)
        else:
            walk.disable(q, eff, problem, rules)
    walk.end_by_separation(at)
    return walk


def _employment(
    person: _Person, grant: Grant | None, at: datetime, rules: PolicyRules
) -> list[Reason]:
    """3.g.ix, 3.h.viii, 3.g.vi. A separation not followed by an add request submitted
    after it, or a roster that still says "separated" (HR has not recorded the rehire
    yet), fails the person."""
    worker = person.worker
    roster_sep = roster_separation(worker, rules.tz)
    shown = person.sep if grant is None else None
    if shown is None and worker is not None and roster_sep is not None and roster_sep <= at:
        shown = (roster_sep, worker.source, FeedName.WORKERS)
    if shown is not None:
        return [
            _reason(
                "separated",
                f"separated {written(shown[0], rules.tz)} ({shown[1]})",
                clause="3.g.ix" if person.is_esd else "3.h.viii",
                feed=shown[2],
                source=shown[1],
                evidenced=True,
                since=shown[0],
                deadline=after(shown[0], rules.separation_deadline, rules.tz),
            )
        ]
    if worker is None:
        return [
            _reason(
                "not_on_roster",
                f"{person.person_id} is not on the HR roster (workers.csv)",
                feed=FeedName.WORKERS,
            )
        ]
    return []


def _organization(
    person: _Person, idx: PolicyIndex, at: datetime, rules: PolicyRules
) -> list[Reason]:
    """3.e.viii, and the contracts: 3.a.i, 3.a.ii, 3.b, 3.c, 3.e.vii (ESD is exempt)."""
    org, org_id = person.org, person.org_id
    out: list[Reason] = []
    if org is None:
        out.append(
            _reason(
                "org_unknown",
                f"organization {org_id or '(none)'} is not in organizations.csv",
                feed=FeedName.ORGANIZATIONS,
                source=person.worker.source if person.worker else None,
            )
        )
    elif org.kind is OrgKind.OTHER:
        out.append(
            _reason(
                "org_ineligible",
                f"organization {org.org_id} ({org.name}) is of kind 'other' ({org.source})",
                feed=FeedName.ORGANIZATIONS,
                source=org.source,
                evidenced=True,
            )
        )
    if org_id and not person.is_esd:
        key = (org_id, at)
        cached = idx._org_cache.get(key)
        if cached is None:
            cached = _contract_reasons(org_id, idx, at, rules)
            idx._org_cache[key] = cached
        out += cached
    return out


def _training(person_id: str, idx: PolicyIndex, today: date, rules: PolicyRules) -> list[Reason]:
    """3.a.iii: a state-approved MIS course; program training does not count."""
    approved_courses = {c.strip().lower() for c in rules.approved_courses}
    rows = idx.training.get(person_id, ())
    if any(t.course.strip().lower() in approved_courses and t.completed_on <= today for t in rows):
        return []
    others = sorted({t.course for t in rows if t.course.strip().lower() not in approved_courses})
    note = f"; {', '.join(others)} is program training and does not count" if others else ""
    return [
        _reason(
            "training_missing",
            f"no state-approved MIS training "
            f"({', '.join(sorted(rules.approved_courses))}) completed{note}",
            feed=FeedName.TRAINING,
        )
    ]


def _nda(
    person: _Person,
    grant: Grant | None,
    signed: list[Nda],
    at: datetime,
    rules: PolicyRules,
) -> tuple[list[Reason], list[Reason]]:
    """3.g.iv / 3.h.v, 3.i.iii: (reasons, flags). An NDA signed late cures the lapse."""
    if signed:
        return [], []
    clause = ("3.g.iv" if person.is_esd else "3.h.v") + ", 3.i.iii"
    if grant is None:
        return [_reason("nda_missing", "no NDA signed", clause=clause, feed=FeedName.NDAS)], []
    grace_end = grant.started_at + rules.nda_grace
    if at < grace_end:
        return [], [
            _reason(
                "nda_within_grace",
                f"no NDA yet; grace ends {written(grace_end, rules.tz)}",
                clause=clause,
                feed=FeedName.NDAS,
            )
        ]
    return [
        _reason(
            "nda_missing",
            f"no NDA signed; the {rules.nda_grace.days}-day grace "
            f"after grant {grant.request_id} ended {written(grace_end, rules.tz)}",
            clause=clause,
            feed=FeedName.NDAS,
            since=grace_end,
            deadline=after(grace_end, rules.lapse_deadline, rules.tz),
        )
    ], []


def _lapse(
    person: _Person,
    grant: Grant,
    signed: list[Nda],
    idx: PolicyIndex,
    at: datetime,
    rules: PolicyRules,
) -> list[Reason]:
    """``restore_on_cure = False``: a lapse since the grant started suspends for good."""
    lapse = None
    first_nda = min((n.signed_on for n in signed), default=None)
    grace_end_day = (grant.started_at + rules.nda_grace).astimezone(rules.tz).date()
    if first_nda is not None and first_nda > grace_end_day:
        lapse = f"the NDA was signed {first_nda}, after the grace ended {grace_end_day}"
    elif person.org_id and not person.is_esd:
        lapse = _coverage_gap(person.org_id, idx, grant.started_at, at, rules)
    if not lapse:
        return []
    return [
        _reason(
            "lapse_not_restored",
            f"access lapsed since grant {grant.request_id} ({lapse}); restore_on_cure is off",
            clause="3.a",
            evidenced=True,
        )
    ]


def evaluate(person_id: str, idx: PolicyIndex, at: datetime, rules: PolicyRules) -> Decision:
    """The decision for one person at ``at``: one section of the policy at a time, every
    failing condition listed with its clause and evidence."""
    today = at.astimezone(rules.tz).date()
    person = _Person.of(person_id, idx, at, rules.tz)
    walk = _requests(person, idx, at, rules)
    grant = walk.grant
    signed = [n for n in idx.ndas.get(person_id, ()) if n.signed_on <= today]
    nda_reasons, nda_flags = _nda(person, grant, signed, at, rules)
    reasons = [
        *walk.reasons(person_id),
        *_employment(person, grant, at, rules),
        *_organization(person, idx, at, rules),
        *_training(person_id, idx, today, rules),
        *nda_reasons,
    ]
    if grant is not None and not rules.restore_on_cure and not reasons:
        reasons += _lapse(person, grant, signed, idx, at, rules)
    reasons.sort(key=lambda r: (r.clause, r.code, r.message))
    if grant is not None:
        status = Status.SUSPENDED if reasons else Status.ENTITLED
    else:
        status = Status.ENDED if (walk.ended is not None or walk.sep_ended) else Status.NONE
    flags = (*walk.flags, *nda_flags)
    return Decision(person_id, at, status, tuple(reasons), flags, grant, walk.profile, walk.offices)


def evaluate_all(feeds: FeedSet, at: datetime, rules: PolicyRules) -> dict[str, Decision]:
    """Decisions for everyone in the roster, the requests and the separations."""
    idx = PolicyIndex.build(feeds)
    return {pid: evaluate(pid, idx, at, rules) for pid in idx.people}
