"""Review checks over the feeds that change no decision but need a person (pure).

``separated_requesters``: a designated MIS Access Requester who has separated but whose
designation is still in force. Grants they requested while valid stand (SPEC), and
requests they submit after the separation are refused by the engine; but the
designation itself should be ended by whoever designated them (3.e.v: monitor and
verify the employment status of Access Requesters; 3.g.i, 3.h.i: designation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from connector.model.feeds import FeedName, FeedSet
from connector.model.records import SourceRef
from connector.policy.engine import PolicyIndex, day_start, separation_of
from connector.timefmt import when

CLAUSE = "3.e.v, 3.g.i, 3.h.i"


@dataclass(frozen=True, slots=True)
class SeparatedRequester:
    person_id: str
    wda: str
    separated_at: datetime
    separation: SourceRef  # the roster or separations row that shows it
    designation: SourceRef  # the requesters.csv row still in force
    clause: str = CLAUSE

    @property
    def message(self) -> str:
        return (
            f"requester {self.person_id} separated {when(self.separated_at, None)} "
            f"({self.separation}) but is still designated for {self.wda} ({self.designation})"
        )


def separated_requesters(feeds: FeedSet, at: datetime, tz: ZoneInfo) -> list[SeparatedRequester]:
    """Requesters separated by ``at`` with a designation in force at ``at`` that began
    before the separation (one that starts after it is a re-designation, valid).

    Nothing is reported while the roster, the separations or the designations feed is
    unusable: a partial feed proves nothing."""
    if feeds.unhealthy() & {FeedName.WORKERS, FeedName.SEPARATIONS, FeedName.REQUESTERS}:
        return []
    idx = PolicyIndex.build(feeds)
    today = at.astimezone(tz).date()
    found: list[SeparatedRequester] = []
    for pid, designations in sorted(idx.designations.items()):
        sep = separation_of(pid, idx, tz, at)
        if sep is None:
            continue
        for d in designations:
            in_force = d.starts_on <= today and (d.ends_on is None or today <= d.ends_on)
            if in_force and day_start(d.starts_on, tz) <= sep[0]:
                at_local = sep[0].astimezone(tz)  # shown in policy.timezone (connector.timefmt)
                found.append(SeparatedRequester(pid, d.wda, at_local, sep[1], d.source))
    return found
