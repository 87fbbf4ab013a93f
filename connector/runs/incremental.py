"""The daemon's fast path in the changed rows: evaluate again only the people whose
separation or roster rows changed since the last run's evaluation.

``FeedDeltas`` is kept by the daemon across runs. After a run that evaluated the feeds
(``offer``) and finished (``resolved``: every decision it made that may take access
away is recorded), it keeps that evaluation as the *baseline*, with the bytes of the
separations and roster files it parsed and the policy's index of the feeds by person.
When the watcher then reports a change, ``evaluate`` reads only the changed lines of
those two files (connector.feeds.delta), re-evaluates only the people on them (every
other row of theirs is in the baseline), and gives an ``Evaluation`` equal to what
``connector.runs.planning.evaluate`` would give at that instant: the same records, the
same rejected rows, the same health, the same decisions (the untouched people's
decisions are the baseline's objects, as the incremental reconcile cycle reuses an
evaluation: their ``as_of`` is the baseline's).

It declines (returns None: the caller reads and evaluates the feeds whole, as before)
whenever it cannot vouch for that:

- no baseline: the daemon just started, reloaded, or the last run failed or was a
  timed run (which records only its own people), or a feed was unusable then;
- the instant is past the baseline's horizon (``connector.policy.horizon``: a date or
  deadline may have changed someone's decision without a feed change), or before it;
- a feed other than the separations and the roster changed (an organization,
  contract, requester designation or request row can change many people at once);
- anything ``connector.feeds.delta`` refuses (still being written, header changed,
  too many lines changed, a row that is not one CSV record, a duplicate key...);
- a changed row names a designated requester (a requester's separation can invalidate
  the requests they submitted for other people), or, where the target folds person ids
  (``caseIgnoreMatch``...), a person id the baseline did not decide about (a new
  spelling could collide with another feed's: the full read rejects both).

Each decline is logged (``fastpath.full_read`` with the reason).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from connector.app import Runtime
from connector.feeds import load_feed_layout
from connector.feeds.delta import Delta, NoDelta, Version, read_delta
from connector.feeds.judge import judge
from connector.feeds.settle import unchanged_since
from connector.model.decisions import Decision
from connector.model.feeds import FeedHealth, FeedName, FeedSet, Rejection
from connector.model.identity import IdMatch
from connector.policy.engine import PolicyIndex
from connector.policy.engine import evaluate as evaluate_person
from connector.policy.horizon import valid_until
from connector.runs.planning import Evaluation, RejectionLog, horizon, record_read
from connector.state import Store

#: the feeds read row by row (keyed by person); a change anywhere else reads them whole
DELTA_FEEDS: tuple[FeedName, ...] = (FeedName.SEPARATIONS, FeedName.WORKERS)


@dataclass(frozen=True)
class Baseline:
    """An evaluation whose decisions the state store has seen, ready to be updated."""

    evaluation: Evaluation
    versions: Mapping[FeedName, Version]
    index: PolicyIndex
    until: datetime  # its decisions hold (feeds unchanged) until then
    requesters: frozenset[str]  # designated requesters
    rejected: Mapping[FeedName, tuple[Rejection, ...]]  # per feed, in line order


@dataclass(frozen=True)
class Incremental:
    """What ``FeedDeltas.evaluate`` gives: the whole evaluation and the people whose
    rows changed (the only ones whose decision may differ from the baseline's)."""

    evaluation: Evaluation
    touched: frozenset[str]
    changed_lines: int
    index: PolicyIndex  # the feeds by person, as they are now

    def feeds_about(self, people: Iterable[str]) -> FeedSet:
        """The rows about ``people`` (their roster, separation, training and NDA rows and
        their requests), with every organization, contract and requester designation,
        every rejected row and every feed's health: all a plan for them looks up (the
        planner's lookups are by person), without a pass over everyone's rows."""
        idx = self.index
        ps = list(people)

        def rows(by_person: Mapping[str, tuple[Any, ...]]) -> tuple[Any, ...]:
            return tuple(r for p in ps for r in by_person.get(p, ()))

        return dataclasses.replace(
            self.evaluation.feeds,
            workers=tuple(idx.workers[p] for p in ps if p in idx.workers),
            separations=rows(idx.separations),
            training=rows(idx.training),
            ndas=rows(idx.ndas),
            requests=rows(idx.requests),
        )


def _max_age(rt: Runtime) -> timedelta | None:
    hours = rt.settings.feeds.max_age_hours
    return timedelta(hours=hours) if hours else None


def _by_feed(rejected: Iterable[Rejection]) -> dict[FeedName, tuple[Rejection, ...]]:
    out: dict[FeedName, list[Rejection]] = {name: [] for name in FeedName}
    for r in rejected:
        out[FeedName(r.feed)].append(r)
    return {name: tuple(rows) for name, rows in out.items()}


class FeedDeltas:
    """The baseline of the daemon's incremental fast path (see the module docstring).
    Thread-safe; the daemon calls it under its run lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base: Baseline | None = None
        self._offered: tuple[Evaluation, dict[FeedName, bytes]] | None = None
        self._made: tuple[Evaluation, Baseline] | None = None  # by ``evaluate``, not yet run
        self._log = structlog.get_logger("misync.fastpath")

    # -- the baseline ----------------------------------------------------------------------

    def offer(self, rt: Runtime, ev: Evaluation) -> None:
        """A run has just evaluated the feeds (``ev``): keep the bytes it parsed of the
        separations and roster files (read again now; kept only if they are still the
        bytes it parsed). It becomes the baseline once the run has ``resolved``."""
        made = self._made
        if made is not None and made[0] is ev:
            with self._lock:
                self._offered = (ev, {})
            return
        base = self._base
        if base is not None and base.evaluation is ev:  # the same evaluation, reused
            with self._lock:
                self._offered = (ev, {})
            return
        data: dict[FeedName, bytes] = {}
        for name in DELTA_FEEDS:
            h = ev.feeds.health.get(name)
            if h is None or h.stamp is None or not h.healthy:
                break
            try:
                raw = Path(h.stamp.path).read_bytes()
            except OSError:
                break
            if hashlib.sha256(raw).hexdigest() != h.stamp.digest:
                break  # changed since the run read it: no baseline
            data[name] = raw
        with self._lock:
            self._offered = (ev, data) if len(data) == len(DELTA_FEEDS) else None
            self._made = None

    def resolved(self, rt: Runtime) -> None:
        """The run that made the offered evaluation finished: it is the baseline now."""
        with self._lock:
            offered, made = self._offered, self._made
            self._offered, self._made = None, None
        if offered is None:
            self.forget()
            return
        ev, data = offered
        if made is not None and made[0] is ev:
            base: Baseline | None = made[1]
        elif self._base is not None and self._base.evaluation is ev:
            base = self._base
        else:
            base = self._prepare(rt, ev, data)
        with self._lock:
            self._base = base

    def forget(self) -> None:
        """No baseline: the next fast path reads the feeds whole (after a failed or
        timed run, a reload)."""
        with self._lock:
            self._base, self._offered, self._made = None, None, None

    @staticmethod
    def _prepare(rt: Runtime, ev: Evaluation, data: Mapping[FeedName, bytes]) -> Baseline | None:
        """The baseline of a whole evaluation: the policy's index and horizon (one pass
        over the feeds, after the run that read them)."""
        feeds = ev.feeds
        if feeds.unhealthy() or set(feeds.health) != set(FeedName) or not data:
            return None
        rejected = _by_feed(feeds.rejected)
        versions = {}
        for name in DELTA_FEEDS:
            stamp = feeds.health[name].stamp
            assert stamp is not None
            versions[name] = Version(data[name], stamp, feeds.records(name), rejected[name])
        return Baseline(
            ev,
            versions,
            PolicyIndex.build(feeds),
            horizon(rt, ev),  # computed once per evaluation (the reconcile's, often)
            frozenset(d.person_id for d in feeds.requesters),
            rejected,
        )

    # -- the incremental evaluation ----------------------------------------------------------

    def evaluate(
        self,
        rt: Runtime,
        store: Store,
        as_of: datetime,
        *,
        rejections: RejectionLog | None = None,
    ) -> Incremental | None:
        """The evaluation at ``as_of`` from the baseline and the changed rows; None when
        the feeds must be read whole (logged with the reason)."""
        base = self._base
        if base is None:
            self._log.info("fastpath.full_read", reason="no baseline evaluation")
            return None
        try:
            result, made = _update(rt, store, base, as_of)
        except NoDelta as exc:
            self._log.info("fastpath.full_read", reason=str(exc))
            return None
        with self._lock:
            self._made = (result.evaluation, made)
        record_read(store, result.evaluation.feeds, rejections)
        self._log.info(
            "fastpath.incremental",
            people=len(result.touched),
            changed_lines=result.changed_lines,
        )
        return result


def _update(
    rt: Runtime, store: Store, base: Baseline, as_of: datetime
) -> tuple[Incremental, Baseline]:
    """``FeedDeltas.evaluate``'s work; NoDelta when the feeds must be read whole."""
    ev = base.evaluation
    if not ev.as_of <= as_of < base.until:
        raise NoDelta("the instant is past the last evaluation's horizon")
    s = rt.settings.feeds
    layout = load_feed_layout(s.mapping)
    deadline = time.monotonic() + s.settle_max_seconds
    deltas: dict[FeedName, Delta] = {}
    for name in FeedName:
        path = s.dir / layout.files[name]
        if name in DELTA_FEEDS:
            d = read_delta(
                name,
                path,
                layout=layout,
                settings=s,
                old=base.versions[name],
                unique_holders=base.index.workers if name is FeedName.WORKERS else None,
                deadline=deadline,
            )
            if d is not None:
                deltas[name] = d
            continue
        h = ev.feeds.health[name]
        try:
            st = path.stat()
        except OSError:
            raise NoDelta(f"{path.name} is gone") from None
        if not unchanged_since(h.stamp, path, st):
            raise NoDelta(f"{path.name} changed (only separations and roster rows are read by row)")
    touched = frozenset().union(*(d.touched for d in deltas.values()))
    if touched & base.requesters:
        raise NoDelta("a changed row names a designated requester")
    if rt.mapping.correlation_match is not IdMatch.EXACT:
        new = sorted(p for p in touched if p not in ev.decisions)
        if new:
            raise NoDelta(f"a changed row names a person the last evaluation did not: {new[0]}")
    feeds = _feeds(rt, store, base, deltas, as_of)
    index = _index(base.index, deltas, touched)
    decisions: dict[str, Decision] = dict(ev.decisions)
    for pid in touched:
        if pid in index.workers or pid in index.separations or pid in index.requests:
            decisions[pid] = evaluate_person(pid, index, as_of, rt.rules)
        else:
            decisions.pop(pid, None)
    new_ev = Evaluation(as_of, feeds, decisions)
    # the horizon: the baseline's, or sooner if a changed row brings a nearer instant
    added = FeedSet(
        workers=deltas[FeedName.WORKERS].parsed if FeedName.WORKERS in deltas else (),
        separations=deltas[FeedName.SEPARATIONS].parsed if FeedName.SEPARATIONS in deltas else (),
        health={name: feeds.health[name] for name in deltas},
    )
    until = min(base.until, valid_until(added, as_of, rt.rules, max_feed_age=_max_age(rt)))
    new_ev.memo["horizon"] = until  # sooner than a pass over every row might say: safe
    versions = {
        name: deltas[name].version if name in deltas else base.versions[name]
        for name in DELTA_FEEDS
    }
    rejected = {
        name: deltas[name].version.rejected if name in deltas else base.rejected[name]
        for name in FeedName
    }
    requesters = base.requesters
    made = Baseline(new_ev, versions, index, until, requesters, rejected)
    lines = sum(d.changed_lines for d in deltas.values())
    return Incremental(new_ev, touched, lines, index), made


def _feeds(
    rt: Runtime, store: Store, base: Baseline, deltas: Mapping[FeedName, Delta], as_of: datetime
) -> FeedSet:
    """The FeedSet a full read would give now: the changed files' records and
    rejections, every feed judged again (as ``read_feeds`` does) at ``as_of``."""
    s = rt.settings.feeds
    old = base.evaluation.feeds
    previous = {FeedName(k): v for k, v in store.last_good_feed_rows().items()}
    health: dict[FeedName, FeedHealth] = {}
    rejected: list[Rejection] = []
    for name in FeedName:
        h = old.health[name]
        if name in deltas:
            d = deltas[name]
            rows, rej = len(d.version.records), d.version.rejected
            h = dataclasses.replace(
                h,
                rows=rows,
                rejected=len(rej),
                modified_at=d.modified,
                digest=d.version.stamp.digest,
                stamp=d.version.stamp,
            )
        else:
            rej = base.rejected[name]
        state, detail = judge(
            name, h.file, h.rows, previous.get(name), h.modified_at, now=as_of, s=s
        )
        health[name] = dataclasses.replace(h, state=state, detail=detail)
        rejected += rej
    changed = {name.value: d.version.records for name, d in deltas.items()}
    return dataclasses.replace(old, rejected=tuple(rejected), health=health, **changed)


def _index(
    old: PolicyIndex, deltas: Mapping[FeedName, Delta], touched: frozenset[str]
) -> PolicyIndex:
    """The policy's index with the touched people's roster and separation rows as they
    are now (their other rows, and everyone else's, as they were)."""
    workers = dict(old.workers)
    separations = dict(old.separations)
    for name, d in deltas.items():
        fresh: dict[str, list[Any]] = {}
        for r in d.parsed:
            fresh.setdefault(r.person_id, []).append(r)
        if name is FeedName.WORKERS:
            for pid in d.touched:
                w = workers.get(pid)
                if w is not None and w.source.line in d.gone:
                    del workers[pid]
                for r in fresh.get(pid, ()):
                    workers[pid] = r  # one each: a duplicate is refused (connector.feeds.delta)
        else:
            for pid in d.touched:
                rows = [r for r in separations.get(pid, ()) if r.source.line not in d.gone]
                rows += fresh.get(pid, [])
                rows.sort(key=lambda r: r.source.line)
                if rows:
                    separations[pid] = tuple(rows)
                else:
                    separations.pop(pid, None)
    return dataclasses.replace(
        old, workers=workers, separations=separations, people=(), _org_cache={}
    )
