"""How misync writes an instant, everywhere it is shown or exported (issue 13.12).

One rule: ISO 8601 in ``policy.timezone``, to the second, with that zone's offset at the
instant itself (``2026-11-22T00:00:00-08:00``, ``2026-07-01T01:00:00-07:00``). Text for
people (plan, explain, status, apply), the HTML report, alert summaries and fields,
emails and the JSON outputs all use it, so one instant reads the same wherever it
appears, and a JSON reader still has the offset. Pure: no I/O.

What is not shown but recorded keeps its own form: the audit trail's record stamps
(``at``, UTC, hashed as written) and the state store's columns.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo


def when(value: datetime, tz: tzinfo | None) -> str:
    """``value`` in ``tz`` (None: in its own zone), to the second, with its offset. A
    naive ``value`` is taken as UTC (the state store's convention)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if tz is not None:
        value = value.astimezone(tz)
    return value.isoformat(timespec="seconds")


def when_or_none(value: datetime | None, tz: tzinfo | None) -> str | None:
    return None if value is None else when(value, tz)
