"""``misync audit access --at INSTANT``: who had access to MIS then, and why.

From the archived inputs of the last run that read the whole directory at or before
the instant (connector.archive; ``connector.runs.explain.replayed_at``, which checks
them against the trail): every account enabled as that run read it, the person it
belongs to, that person's area, the decision the run made (status, grant, reason
codes) and what the run did about the account (its planned action, or the hold)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from connector.errors import MisyncError
from connector.report.model import areas_of
from connector.report.service import UnknownAreaError
from connector.runs.explain import replayed_at

if TYPE_CHECKING:
    from connector.app import Runtime


class NoRunArchivedError(MisyncError):
    """No run that read the whole directory is archived at or before the instant (exit 2)."""


@dataclass(frozen=True, slots=True)
class AccessRow:
    account_id: str
    logon_id: str
    person_id: str  # "" for an account no person in the feeds owns
    wda: str
    status: str  # the run's decision on the person ("" without one)
    grant: str  # the request that granted access ("" without one)
    reasons: str  # failing conditions' codes, space-separated
    action: str  # what the run did about the account: an op, "held:CODE", or ""


@dataclass(frozen=True)
class AccessAt:
    run_id: str
    kind: str
    as_of: datetime
    rows: tuple[AccessRow, ...]


def access_at(rt: Runtime, instant: datetime, wda: str | None = None) -> AccessAt:
    at = replayed_at(rt, instant, lambda m, _people: not m["scoped"])
    if at is None:
        raise NoRunArchivedError(
            f"no run that read the whole directory is archived at or before"
            f" {instant.isoformat()} (runs before the archive, or pruned after"
            " archive.keep_days)"
        )
    run_id, as_of, kind, r = at
    key = r.mapping.correlation_key
    areas = areas_of(r.feeds)
    if wda is not None and wda not in set(areas.orgs.values()):
        known = ", ".join(sorted(set(areas.orgs.values()))) or "none"
        raise UnknownAreaError(
            f"--wda {wda}: no organization was in that WDA then (known: {known})"
        )
    people = {key(p): p for p in r.decisions}
    done: dict[str, str] = {}
    for h in r.plan.held:
        if h.action.account_id:
            done[h.action.account_id.lower()] = f"held:{h.code}"
    for a in r.plan.actions:
        if a.account_id:
            done[a.account_id.lower()] = a.op.value
    rows: list[AccessRow] = []
    for account in sorted(r.accounts, key=lambda x: x.account_id.lower()):
        if not account.enabled:
            continue
        pid = people.get(key(account.correlation)) if account.correlation else None
        area = areas.people.get(pid, "") if pid else ""
        d = r.decisions.get(pid) if pid else None
        # a mover's account is also the area's they separated from (connector.reconcile.areas)
        if wda is not None and wda not in (areas.of_decision(d) if d else {area}):
            continue
        rows.append(
            AccessRow(
                account.account_id,
                account.logon_id or "",
                pid or "",
                area,
                d.status.value if d else "",
                d.grant.request_id if d and d.grant else "",
                " ".join(x.code for x in d.reasons) if d else "",
                done.get(account.account_id.lower(), ""),
            )
        )
    return AccessAt(run_id, kind, as_of, tuple(rows))
