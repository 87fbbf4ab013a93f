"""What ``misync apply`` shows while it works: the plan first, then progress, then the
outcome (a :class:`connector.runs.RunObserver`; the daemon has its own observer).

On a terminal, progress is one live line (done/total, rate, ETA) rewritten in place on
stderr; otherwise (journald, a pipe) it is an ``apply.progress`` log event every
``every_actions`` actions or ``every_seconds`` seconds, whichever comes first.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import IO, Any

import structlog

from connector.executor import ActionOutcome
from connector.model.decisions import Decision
from connector.model.feeds import FeedSet
from connector.model.plan import Action, Plan
from connector.reconcile.render import account_label
from connector.reconcile.serialize import plan_to_dict
from connector.runs import ApplyResult

_HOUR, _MINUTE = 3600, 60  # seconds
_REDRAW_SECONDS = 0.1  # the live line is redrawn at most ten times a second


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= _HOUR:
        return f"{seconds // _HOUR} h {seconds % _HOUR // _MINUTE:02d} min"
    if seconds >= _MINUTE:
        return f"{seconds // _MINUTE} min {seconds % _MINUTE:02d} s"
    return f"{seconds} s"


class ApplyProgress:
    """A ``RunObserver``: prints the plan before anything is carried out, then progress.

    ``out`` gets the plan (None for ``--format json``: the JSON comes at the end);
    ``err`` gets the live line when it is a terminal."""

    def __init__(
        self,
        out: IO[str] | None,
        err: IO[str],
        *,
        render: Callable[[Plan], str],
        every_actions: int = 100,
        every_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._err = err
        self._render = render
        self._tty = _isatty(err)
        self._every_actions = every_actions
        self._every_seconds = every_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # outcomes arrive on the executor's worker threads, which do not see the caller's
        # context variables: bind them (run_id, command) now
        self._log = structlog.get_logger("misync.apply").bind(
            **structlog.contextvars.get_contextvars()
        )
        self.total = 0
        self.done = 0
        self.failed = 0
        self._started = 0.0
        self._last_shown = 0.0
        self._last_logged_done = 0
        self._line = False

    # RunObserver ------------------------------------------------------------------

    def evaluated(self, feeds: FeedSet, decisions: Mapping[str, Decision], as_of: datetime) -> None:
        return None  # progress starts with the plan

    def planned(self, plan: Plan) -> None:
        self.total = len(plan.actions)
        if self._out is not None:
            self._out.write(self._render(plan))
            self._out.write(
                f"\napplying {self.total} action(s)"
                + (f"; {len(plan.held)} held, not carried out" if plan.held else "")
                + "...\n"
            )
            self._out.flush()
        self._started = self._last_shown = self._clock()
        self._log.info("apply.started", total=self.total, held=len(plan.held))

    def outcome(self, outcome: ActionOutcome) -> None:
        with self._lock:
            self.done += 1
            if outcome.status != "ok":
                self.failed += 1
            now = self._clock()
            finished = self.done >= self.total
            if self._tty:
                if finished or now - self._last_shown >= _REDRAW_SECONDS:
                    self._show(now)
            elif (
                finished
                or self.done - self._last_logged_done >= self._every_actions
                or now - self._last_shown >= self._every_seconds
            ):
                self._log.info("apply.progress", **self.snapshot(now))
                self._last_logged_done = self.done
                self._last_shown = now

    # ------------------------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, Any]:
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        left = self.total - self.done
        return {
            "done": self.done,
            "total": self.total,
            "failed": self.failed,
            "rate_per_s": round(rate, 1),
            "eta_s": round(left / rate) if rate > 0 else None,
        }

    def _show(self, now: float) -> None:
        snap = self.snapshot(now)
        eta = "" if snap["eta_s"] is None else f", ETA {_eta(snap['eta_s'])}"
        failed = f", {self.failed} failed" if self.failed else ""
        line = (
            f"\r  applied {self.done}/{self.total}{failed} ({snap['rate_per_s']:.1f}/s{eta})\x1b[K"
        )
        self._err.write(line)
        self._err.flush()
        self._line = True
        self._last_shown = now

    def close(self) -> None:
        """End the live line (call once the run is over, whatever happened)."""
        with self._lock:
            if self._line:
                self._err.write("\n")
                self._err.flush()
                self._line = False


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(callable(isatty) and isatty())
    except ValueError:
        return False


# --- the outcome ------------------------------------------------------------------------


def outcomes(result: ApplyResult) -> list[dict[str, Any]]:
    """One entry per planned and held action: ``ok``, ``failed`` (with the error),
    ``held`` (with why), ``accepted`` (held, left as it is by an operator) or ``not
    attempted`` (the run stopped before it). ``code`` is the machine-readable why, as in
    the action's audit record: a failure's code (``not_effective``, ``stopped``,
    ``internal``...), a held action's code (``disabled_outside_misync``,
    ``quarantined``...), None for ``ok``."""
    by_key = {o.action.key: o for o in result.report.outcomes}

    def entry(
        a: Action, outcome: str, error: str = "", attempts: int = 0, code: str = ""
    ) -> dict[str, Any]:
        return {
            "op": a.op.value,
            "key": a.key,
            "person_id": a.person_id,
            "account_id": a.account_id,
            "logon_id": a.logon_id,
            "outcome": outcome,
            "code": code or None,
            "error": error or None,
            "attempts": attempts,
        }

    rows: list[dict[str, Any]] = []
    for a in result.plan.actions:
        o = by_key.get(a.key)
        if o is None:
            rows.append(entry(a, "not attempted"))
        elif o.status == "ok":
            e = entry(a, "ok", "", o.attempts)
            e["account_id"] = o.account_id or a.account_id
            rows.append(e)
        elif o.status == "failed":
            rows.append(entry(a, "failed", o.detail, o.attempts, o.code))
        else:  # e.g. a circuit breaker's "not_attempted"
            rows.append(entry(a, o.status.replace("_", " "), o.detail, o.attempts, o.code))
    rows += [
        entry(h.action, "held", f"{h.code}: {h.message}", code=h.code) for h in result.plan.held
    ]
    rows += [  # held, left as they are by an operator's decision (``misync held accept``)
        entry(
            h.action,
            "accepted",
            f"{h.code}: accepted by {h.decision.by}: {h.decision.reason}",
            code=h.code,
        )
        for h in result.plan.accepted
        if h.decision is not None
    ]
    return rows


def apply_result_json(result: ApplyResult) -> str:
    rows = outcomes(result)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    body = {
        "run_id": result.run_id,
        "status": result.status,
        "counts": counts,
        "outcomes": rows,
        "plan": plan_to_dict(result.plan),
    }
    return json.dumps(body, indent=2, ensure_ascii=False)


def render_apply_outcome(result: ApplyResult) -> str:
    rows = outcomes(result)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    order = ("ok", "failed", "held", "accepted", "not attempted")
    text = ", ".join(f"{k} {counts[k]}" for k in order if counts.get(k)) or "nothing to do"
    lines = [f"\napplied run {result.run_id}: {result.status.upper()} ({text})"]
    bad_feeds = [f for f in result.plan.feeds if not f.healthy]
    if bad_feeds:
        lines.append(
            "  feeds not usable: "
            + ", ".join(f"{f.feed.value} ({f.state.value})" for f in bad_feeds)
            + "; what they drive was not done"
        )
    for r in rows:
        if r["outcome"] != "ok":
            who = account_label(r["account_id"], r["logon_id"])
            line = f"  {r['outcome'].upper()} {r['op']} {who}: {r['error'] or ''}"
            lines.append(line.rstrip(" :"))
    return "\n".join(lines) + "\n"
