"""The policy knobs (built from settings by the app; no pydantic here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class PolicyRules:
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("America/Los_Angeles"))
    approved_courses: frozenset[str] = frozenset({"MIS Basic"})
    nda_grace: timedelta = timedelta(days=14)
    separation_deadline: timedelta = timedelta(hours=24)
    contract_grace: timedelta = timedelta(hours=1)
    lapse_deadline: timedelta = timedelta(hours=24)
    late_notice: timedelta = timedelta(hours=24)
    restore_on_cure: bool = True
