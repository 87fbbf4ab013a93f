"""`misync status`: the last run and its outcome, the next scheduled runs, open breaches
with their deadlines, held and quarantined objects, feed health (as of the last run) and
open alerts. Read-only, from the state store."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from connector.settings import Settings
from connector.state import RunRow, Store
from connector.state.rows import LeaderRow
from connector.timefmt import when_or_none


def _run(r: RunRow | None, tz: tzinfo) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "run_id": r.run_id,
        "kind": r.kind,
        "status": r.status or "running",
        "as_of": when_or_none(r.as_of, tz),
        "started_at": when_or_none(r.started_at, tz),
        "finished_at": when_or_none(r.finished_at, tz),
        "summary": r.summary,
    }


def leader_status(
    row: LeaderRow | None, now: datetime, tz: tzinfo, *, pid: int | None = None
) -> dict[str, Any] | None:
    """Who leads the daemons sharing a PostgreSQL state (None on SQLite: one host).
    ``role`` is this host's: ``leader`` if the leader runs here (and, with ``pid``, is
    that process), else ``standby``. ``lease_ok``: the leader renewed its lease in
    time (False: it is paused, hung or gone, and a standby will take over)."""
    if row is None:
        return None
    here = row.host == socket.gethostname() and (pid is None or row.pid == pid)
    return {
        "role": "leader" if here else "standby",
        "host": row.host,
        "pid": row.pid,
        "epoch": row.epoch,
        "since": when_or_none(row.since, tz),
        "renewed_at": when_or_none(row.renewed_at, tz),
        "lease_seconds": row.lease_seconds,
        "lease_ok": (now - row.renewed_at).total_seconds() <= row.lease_seconds,
    }


def collect_status(settings: Settings, store: Store, now: datetime) -> dict[str, Any]:
    runs = store.runs(limit=200)
    finished = [r for r in runs if r.finished_at is not None]
    ok = next((r for r in finished if r.status == "ok"), None)
    alerts = store.open_alerts()
    failures = store.failures()
    threshold = settings.apply.quarantine_after
    tz = settings.policy.tz  # every instant in policy.timezone, to the second

    def _iso(value: datetime | None) -> str | None:
        return when_or_none(value, tz)

    # before the first full run nothing is recorded: "no breaches" would be a false 0
    recorded = store.full_run_finished()
    return {
        "as_of": _iso(now),
        "recorded": recorded,
        "state_dir": str(settings.state.dir),
        "leader": leader_status(store.leader(), now, tz),
        "last_run": _run(finished[0] if finished else None, tz),
        "last_success": _run(ok, tz),
        "running": [_run(r, tz) for r in runs if r.finished_at is None],
        "schedule": [
            {"job": job, "next_at": _iso(at)} for job, at in sorted(store.schedule().items())
        ],
        "breaches": [
            {
                "account_id": b.account_id,
                "person_id": b.person_id,
                "deadline": _iso(b.deadline),
                "overdue_hours": round((now - b.deadline).total_seconds() / 3600, 1),
                "reasons": b.reasons,
                "opened_at": _iso(b.opened_at),
            }
            for b in sorted(store.open_breaches().values(), key=lambda b: b.deadline)
        ]
        if recorded
        else None,
        "held": [
            {"key": a.key, "summary": a.summary, "since": _iso(a.opened_at)}
            for a in alerts
            if a.kind == "operation.held"
        ],
        # holds an operator accepted (``misync held accept``): left as they are, so they
        # neither make a run incomplete nor alert
        "accepted": [
            {
                "key": d.key,
                "by": d.by,
                "reason": d.reason,
                "at": d.at.isoformat(),
                "until": _iso(d.until),
            }
            for d in store.held_decisions()
            if d.verdict == "accept"
        ],
        "quarantined": [
            {"key": k, "failures": n, "last_failure": _iso(at), "detail": detail}
            for k, (n, at, detail) in sorted(failures.items())
            if n >= threshold
        ],
        "feeds": [
            {
                "feed": f.feed,
                "state": f.state,
                "rows": f.rows,
                "rejected": f.rejected,
                "detail": f.detail,
                "modified_at": _iso(f.modified_at),
                "age_hours": round((now - f.modified_at).total_seconds() / 3600, 1)
                if f.modified_at
                else None,
                "checked_at": _iso(f.checked_at),
                "run_id": f.run_id,
            }
            for f in store.feed_health()
        ],
        "alerts": [
            {
                "kind": a.kind,
                "key": a.key,
                "severity": a.severity,
                "summary": a.summary,
                "opened_at": _iso(a.opened_at),
                "reminders": a.reminders,
                "undelivered": list(a.undelivered),
            }
            for a in alerts
        ],
        # what the next dry run may reuse (connector.runs.memo)
        "plan_memo": _memo(store.memo_meta(), _iso),
        # what the last daemon cycle found that costs or hides something (issue 13.15)
        "warnings": [w for w in [store.snapshot_meta().get("no_mark", "")] if w],
    }


def _memo(
    meta: dict[str, str], iso: Callable[[datetime | None], str | None]
) -> dict[str, Any] | None:
    if "made_at" not in meta:
        return None
    return {
        "whole_plan_at": iso(datetime.fromisoformat(meta["made_at"])),
        "valid_until": iso(datetime.fromisoformat(meta["until"])),
        "settled_accounts": int(meta.get("settled", "0")),
        "named_people": len(json.loads(meta.get("open", "[]"))),
    }


def render_status(s: dict[str, Any]) -> str:
    """The text of ``misync status``: runs, then what needs a person, then the feeds and
    the alerts."""
    out = _leader_text(s.get("leader"))
    out += _runs_text(s)
    out += _attention_text(s)
    out.append("feeds (as of the last run):" if s["feeds"] else "feeds: not read yet")
    for f in s["feeds"]:
        age = f" age {f['age_hours']} h" if f["age_hours"] is not None else ""
        detail = f" ({f['detail']})" if f["detail"] else ""
        out.append(f"  {f['feed']}: {f['state']}, {f['rows']} rows{age}{detail}")
    memo = s.get("plan_memo")
    if memo:
        out.append(
            f"plan memo (for dry runs): the whole plan of {memo['whole_plan_at']}, valid "
            f"until {memo['valid_until']} while the feeds are unchanged: "
            f"{memo['settled_accounts']} accounts settled, {memo['named_people']} people named"
        )
    else:
        out.append("plan memo (for dry runs): none (a dry run reads and evaluates every feed)")
    out.append(f"open alerts: {len(s['alerts'])}")
    out += [f"  [{a['severity']}] {a['kind']} {a['key']}: {a['summary']}" for a in s["alerts"]]
    out += [f"warning: {w}" for w in s.get("warnings", ())]
    return "\n".join(out) + "\n"


def _leader_text(leader: dict[str, Any] | None) -> list[str]:
    if leader is None:
        return []
    lease = "" if leader["lease_ok"] else " (lease ran out: a standby takes over)"
    return [
        f"role: {leader['role']} (this host); leader: {leader['host']} pid {leader['pid']}, "
        f"epoch {leader['epoch']}, since {leader['since']}, renewed {leader['renewed_at']}" + lease
    ]


def _runs_text(s: dict[str, Any]) -> list[str]:
    out: list[str] = []
    last = s["last_run"]
    if last is None:
        out.append("last run: none yet")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(last["summary"].items()) if v)
        out.append(
            f"last run: {last['run_id']} ({last['kind']}) {last['status']} at "
            f"{last['finished_at']}" + (f": {counts}" if counts else "")
        )
    good = s["last_success"]
    out.append(f"last success: {good['finished_at'] if good else 'never'}")
    out += [f"running: {r['run_id']} ({r['kind']}) since {r['started_at']}" for r in s["running"]]
    out.append("next runs:" if s["schedule"] else "next runs: none scheduled (daemon not running?)")
    out += [f"  {j['job']}: {j['next_at'] or 'paused'}" for j in s["schedule"]]
    return out


def _attention_text(s: dict[str, Any]) -> list[str]:
    """Breaches, held, accepted and quarantined objects."""
    out: list[str] = []
    if s["breaches"] is None:
        out.append(
            "open breaches: not recorded yet (no full run has finished); "
            "`misync plan` shows the deadlines and breaches as of now"
        )
    else:
        out.append(f"open breaches: {len(s['breaches'])}")
    out += [
        f"  {b['account_id']} ({b['person_id']}): deadline {b['deadline']}, "
        f"{b['overdue_hours']} h overdue ({b['reasons']})"
        for b in s["breaches"] or ()
    ]
    out.append(f"held: {len(s['held'])}")
    out += [f"  {h['summary']}" for h in s["held"]]
    accepted = s.get("accepted", [])
    out.append(f"accepted: {len(accepted)}" + (" (left as they are)" if accepted else ""))
    for a in accepted:
        until = f" until {a['until']}" if a["until"] else ""
        out.append(f"  {a['key']}: accepted by {a['by']} at {a['at']}{until}: {a['reason']}")
    out.append(f"quarantined: {len(s['quarantined'])}")
    out += [
        f"  {q['key']}: {q['failures']} failures, last {q['last_failure']}: {q['detail']}"
        for q in s["quarantined"]
    ]
    return out
