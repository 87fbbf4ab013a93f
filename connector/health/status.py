"""`misync status`: the last run and its outcome, the next scheduled runs, open breaches
with their deadlines, held and quarantined objects, feed health (as of the last run) and
open alerts. Read-only, from the state store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connector.settings import Settings
from connector.state import RunRow, Store


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _run(r: RunRow | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "run_id": r.run_id,
        "kind": r.kind,
        "status": r.status or "running",
        "as_of": _iso(r.as_of),
        "started_at": _iso(r.started_at),
        "finished_at": _iso(r.finished_at),
        "summary": r.summary,
    }


def collect_status(settings: Settings, store: Store, now: datetime) -> dict[str, Any]:
    runs = store.runs(limit=200)
    finished = [r for r in runs if r.finished_at is not None]
    ok = next((r for r in finished if r.status == "ok"), None)
    alerts = store.open_alerts()
    failures = store.failures()
    threshold = settings.apply.quarantine_after
    return {
        "as_of": now.isoformat(),
        "state_dir": str(settings.state.dir),
        "last_run": _run(finished[0] if finished else None),
        "last_success": _run(ok),
        "running": [_run(r) for r in runs if r.finished_at is None],
        "schedule": [
            {"job": job, "next_at": _iso(at)} for job, at in sorted(store.schedule().items())
        ],
        "breaches": [
            {
                "account_id": b.account_id,
                "person_id": b.person_id,
                "deadline": b.deadline.isoformat(),
                "overdue_hours": round((now - b.deadline).total_seconds() / 3600, 1),
                "reasons": b.reasons,
                "opened_at": b.opened_at.isoformat(),
            }
            for b in sorted(store.open_breaches().values(), key=lambda b: b.deadline)
        ],
        "held": [
            {"key": a.key, "summary": a.summary, "since": a.opened_at.isoformat()}
            for a in alerts
            if a.kind == "operation.held"
        ],
        "quarantined": [
            {"key": k, "failures": n, "last_failure": at.isoformat(), "detail": detail}
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
                "checked_at": f.checked_at.isoformat(),
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
                "opened_at": a.opened_at.isoformat(),
                "reminders": a.reminders,
                "undelivered": list(a.undelivered),
            }
            for a in alerts
        ],
    }


def render_status(s: dict[str, Any]) -> str:
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
    for r in s["running"]:
        out.append(f"running: {r['run_id']} ({r['kind']}) since {r['started_at']}")
    out.append("next runs:" if s["schedule"] else "next runs: none scheduled (daemon not running?)")
    for j in s["schedule"]:
        out.append(f"  {j['job']}: {j['next_at'] or 'paused'}")
    out.append(f"open breaches: {len(s['breaches'])}")
    for b in s["breaches"]:
        out.append(
            f"  {b['account_id']} ({b['person_id']}): deadline {b['deadline']}, "
            f"{b['overdue_hours']} h overdue ({b['reasons']})"
        )
    out.append(f"held: {len(s['held'])}")
    for h in s["held"]:
        out.append(f"  {h['summary']}")
    out.append(f"quarantined: {len(s['quarantined'])}")
    for q in s["quarantined"]:
        out.append(
            f"  {q['key']}: {q['failures']} failures, last {q['last_failure']}: {q['detail']}"
        )
    out.append("feeds (as of the last run):" if s["feeds"] else "feeds: not read yet")
    for f in s["feeds"]:
        age = f" age {f['age_hours']} h" if f["age_hours"] is not None else ""
        detail = f" ({f['detail']})" if f["detail"] else ""
        out.append(f"  {f['feed']}: {f['state']}, {f['rows']} rows{age}{detail}")
    out.append(f"open alerts: {len(s['alerts'])}")
    for a in s["alerts"]:
        out.append(f"  [{a['severity']}] {a['kind']} {a['key']}: {a['summary']}")
    return "\n".join(out) + "\n"
