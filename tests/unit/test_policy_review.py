"""Review checks over the feeds: a requester still designated after separating."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime

import pytest

from connector.model import FeedHealth, FeedName, FeedState
from connector.model.records import RequesterDesignation, Separation, WorkerStatus
from connector.policy.review import separated_requesters
from tests.unit.test_policy import AT, LA, base, src, worker


def designation(starts: date, ends: date | None = None) -> RequesterDesignation:
    return RequesterDesignation("R1", "WDA-04", "LWDB director", starts, ends, src("requesters", 2))


SEP = Separation(
    "R1", "CBO1", datetime(2026, 11, 20, 17, 0, tzinfo=LA), "retired", src("separations", 2)
)


@pytest.mark.parametrize(
    ("changes", "flagged"),
    [
        ({}, False),  # not separated
        ({"separations": (SEP,)}, True),
        (
            {
                "workers": (
                    worker(),
                    worker("R1", status=WorkerStatus.SEPARATED, separated_on=date(2026, 11, 1)),
                )
            },
            True,
        ),
        (
            {
                "separations": (SEP,),
                "requesters": (designation(date(2025, 1, 1), date(2026, 11, 21)),),
            },
            False,
        ),  # ended
        (
            {"separations": (SEP,), "requesters": (designation(date(2026, 11, 22)),)},
            False,
        ),  # re-designated after
        (
            {
                "separations": (
                    dataclasses.replace(SEP, separated_at=datetime(2026, 12, 1, tzinfo=LA)),
                )
            },
            False,
        ),  # future
        (
            {
                "separations": (SEP,),
                "health": {
                    FeedName.SEPARATIONS: FeedHealth(
                        FeedName.SEPARATIONS, "s.csv", FeedState.SHRUNK, 1, 0
                    )
                },
            },
            False,  # a partial feed proves nothing
        ),
    ],
)
def test_separated_requester_still_designated(changes: dict[str, object], flagged: bool) -> None:
    feeds = dataclasses.replace(base(), **changes)  # type: ignore[arg-type]
    found = separated_requesters(feeds, AT, LA)
    assert [r.person_id for r in found] == (["R1"] if flagged else [])
    if flagged:
        assert found[0].clause == "3.e.v, 3.g.i, 3.h.i"
        assert "still designated for WDA-04 (requesters.csv line 2)" in found[0].message
