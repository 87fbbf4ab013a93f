"""The judge: the health of a feed that was read whole (empty, shrunk, stale or OK).

EMPTY (no accepted row; only ``separations`` may be empty) > SHRUNK (rows fell by more
than ``shrink_share`` and by at least ``shrink_min_rows`` since the last good run) >
STALE (older than ``max_age_hours``). Stale and shrunk feeds keep their records
(disables may cite them) but drive nothing themselves.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from connector.model.feeds import FeedName, FeedState
from connector.settings import FeedsSettings

MAY_BE_EMPTY = frozenset({FeedName.SEPARATIONS})


def judge(
    name: FeedName,
    file: str,
    rows: int,
    previous: int | None,
    modified: datetime | None,
    *,
    now: datetime,
    s: FeedsSettings,
) -> tuple[FeedState, str]:
    """The state of a feed read whole with ``rows`` accepted rows, and why ("" when OK).
    ``previous``: its rows at the last good run; ``modified``: its mtime."""
    if rows == 0 and name not in MAY_BE_EMPTY:
        return FeedState.EMPTY, f"{file}: no usable rows; an empty feed is never read as 'nobody'"
    if (
        previous is not None
        and rows < previous * (1 - s.shrink_share)
        and previous - rows >= s.shrink_min_rows
    ):
        return FeedState.SHRUNK, (
            f"{file}: {rows} rows, down from {previous} at the last good run "
            f"(more than {s.shrink_share:.0%} fewer)"
        )
    if (
        s.max_age_hours > 0
        and modified is not None
        and now - modified > timedelta(hours=s.max_age_hours)
    ):
        age = (now - modified).total_seconds() / 3600
        return FeedState.STALE, f"{file}: last modified {age:.0f} h ago (max {s.max_age_hours:g} h)"
    return FeedState.OK, ""
