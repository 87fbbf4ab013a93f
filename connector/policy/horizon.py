"""How long a set of decisions stays what the policy gives, with the feeds unchanged.

The engine is a pure function of the feeds and the instant ``at``. With the feeds
fixed, ``at`` enters only through comparisons with instants built from the feed rows:
a row's own instant (``separated_at``, ``submitted_at``), the start of a row's local
day or of the day after (``starts_on``, ``ends_on``, ``effective_on``, a roster
``separated_on``), "today" (a date compared with the local date of ``at``), each
shifted by at most the policy's durations (NDA grace, deadlines, grace hours); and the
feed reader compares ``at`` with each file's age. ``valid_until`` returns the first such
threshold after ``as_of``, over every date and instant in every row (found by type, so a
new field is covered without a change here) and every sum of up to two durations: a
superset of the instants at which a decision can change. Until then the decisions of
``as_of`` are the decisions of any later instant, and the incremental cycle may reuse
them. With ``restore_on_cure`` off a reason names the instant of evaluation itself, so
nothing is reused (``valid_until`` returns ``as_of``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import combinations_with_replacement

from connector.model.feeds import FeedSet
from connector.policy.engine import day_start
from connector.policy.rules import PolicyRules


def _values(feeds: FeedSet) -> Iterator[object]:
    for f in dataclasses.fields(feeds):
        rows = getattr(feeds, f.name)
        if f.name == "health":
            rows = rows.values()
        if not isinstance(rows, Iterable):
            continue
        for row in rows:
            if dataclasses.is_dataclass(row):
                for g in dataclasses.fields(row):
                    yield getattr(row, g.name)


def valid_until(
    feeds: FeedSet, as_of: datetime, rules: PolicyRules, *, max_feed_age: timedelta | None
) -> datetime:
    """The first instant after ``as_of`` at which a decision (or a feed's freshness)
    may change; ``as_of`` itself when nothing may be reused."""
    if not rules.restore_on_cure:
        return as_of
    base = [
        rules.nda_grace,
        rules.separation_deadline,
        rules.contract_grace,
        rules.lapse_deadline,
        rules.late_notice,
    ]
    if max_feed_age is not None:
        base.append(max_feed_age)
    shifts = {timedelta(0), *base, *(a + b for a, b in combinations_with_replacement(base, 2))}
    widest = max(shifts)
    tz = rules.tz
    today = as_of.astimezone(tz).date()
    instants: set[datetime] = {day_start(today + timedelta(days=1), tz)}  # "today" moves
    oldest = today - timedelta(days=widest.days + 2)
    for v in _values(feeds):
        if isinstance(v, datetime):
            if v + widest + timedelta(days=1) > as_of:
                instants.add(v)
        elif isinstance(v, date) and v >= oldest:
            instants.add(day_start(v, tz))
            instants.add(day_start(v + timedelta(days=1), tz))
    horizon: datetime | None = None
    for x in instants:
        xu = x.astimezone(UTC)
        for d in shifts:
            for t in (x + d, xu + d):  # wall-clock and elapsed arithmetic: both are used
                if t > as_of and (horizon is None or t < horizon):
                    horizon = t
    return horizon if horizon is not None else as_of + min(s for s in shifts if s)
