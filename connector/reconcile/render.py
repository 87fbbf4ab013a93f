"""Human-readable renderings of a plan and of a decision (``--format text``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import TypeVar

from connector.model.decisions import Decision, Reason
from connector.model.plan import Action, Breach, HeldAction, Op, Plan
from connector.timefmt import when

T = TypeVar("T")


def _reason_line(r: Reason) -> str:
    return f"{r.clause}: {r.message}  [{r.code}]"


def human_duration(d: timedelta) -> str:
    """``3 d 9 h``, ``2 h 5 min``, ``12 min`` (sign ignored)."""
    minutes = int(abs(d).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"


def account_label(account_id: str | None, logon_id: str | None) -> str:
    """How an account is named to people: its id with its logon ID beside it (a SCIM id
    is opaque; the userName is what an operator knows)."""
    if account_id is None:
        return f"new {logon_id or '?'}"
    if logon_id and logon_id.lower() not in account_id.lower():
        return f"{account_id} ({logon_id})"
    return account_id


def _when(value: datetime, tz: tzinfo | None) -> str:
    return when(value, tz)


def _action_lines(a: Action, indent: str = "  ", tz: tzinfo | None = None) -> list[str]:
    who = a.person_id or "(no person)"
    lines = [f"{indent}{a.op.value.upper():8} {who:12} {account_label(a.account_id, a.logon_id)}"]
    lines += [f"{indent}    because {_reason_line(r)}" for r in a.reasons]
    for c in a.changes:
        old = ", ".join(c.old) or "-"
        new = ", ".join(c.new) or "-"
        lines.append(f"{indent}    {c.name}: {old} -> {new}")
    if a.deadline is not None:
        lines.append(f"{indent}    deadline {_when(a.deadline, tz)}")
    return lines


def _breach_line(b: Breach, as_of: datetime, tz: tzinfo | None) -> str:
    codes = ", ".join(r.code for r in b.reasons)
    gap = as_of - b.deadline
    late = (
        f"overdue by {human_duration(gap)}"
        if b.severity == "breach"
        else (f"due in {human_duration(gap)}")
    )
    return (
        f"  {b.severity.upper():8} {b.person_id or '-':12} "
        f"{account_label(b.account_id, b.logon_id)} deadline {_when(b.deadline, tz)}, "
        f"{late} ({codes})"
    )


def _more(n: int, what: str) -> str:
    return f"  ... and {n} more {what} (--full lists them all; or --format json, misync report)"


SUMMARY_VIEW_OVER = 200  # plans with more actions default to the summary view
SUMMARY_VIEW_FIRST = 10  # ... which lists the first this many of each op


def render_plan(plan: Plan, *, limit: int | None = None, tz: tzinfo | None = None) -> str:
    """The plan for people. ``limit`` gives the summary view: counts by op and by reason
    code, then the first ``limit`` actions of each op (and of each other list).
    ``tz`` (policy.timezone) is the zone instants are shown in."""
    s = plan.summary
    out = [
        f"misync plan {plan.checksum}",
        f"as of {_when(plan.as_of, tz)}  target {plan.target}",
        "summary: " + ", ".join(f"{k} {v}" for k, v in s.items()),
        "decisions: " + ", ".join(f"{k} {v}" for k, v in plan.decisions.items()),
    ]
    bad_feeds = [f for f in plan.feeds if not f.healthy]
    if bad_feeds:
        out.append("")
        out.append("FEEDS NOT USABLE (actions they drive are held):")
        out += [f"  {f.feed.value}: {f.state.value}: {f.detail}" for f in bad_feeds]
    out.append("")
    out += _actions_text(plan, len(bad_feeds), limit, tz)
    out += _decisions_text(plan, limit, tz)
    out += _deadlines_text(plan, limit, tz)
    if plan.rejected:
        out.append("")
        out.append(f"REJECTED ROWS ({len(plan.rejected)}):")
        out += _first(plan.rejected, limit, "rejected rows", lambda r: [f"  {r}"])
    return "\n".join(out) + "\n"


def _first(
    items: Sequence[T], limit: int | None, what: str, lines: Callable[[T], list[str]]
) -> list[str]:
    """The lines of every item (of the first ``limit`` in the summary view, then how many
    more there are)."""
    shown = items if limit is None else items[:limit]
    out = [line for item in shown for line in lines(item)]
    if len(shown) < len(items):
        out.append(_more(len(items) - len(shown), what))
    return out


def _actions_text(plan: Plan, bad_feeds: int, limit: int | None, tz: tzinfo | None) -> list[str]:
    """The actions (all, or the summary view by op), or why there are none: never "no
    changes" when something is not being done or cannot be judged."""
    if not plan.actions:
        if plan.held or bad_feeds:
            why = []
            if plan.held:
                why.append(f"{len(plan.held)} held for review")
            if bad_feeds:
                why.append(f"{bad_feeds} feed(s) not usable")
            return [
                "NO ACTION CAN BE CARRIED OUT, AND THE DIRECTORY MAY NOT MATCH POLICY 1021: "
                + "; ".join(why)
                + "."
            ]
        if plan.accepted:
            return [
                f"No changes to carry out; {len(plan.accepted)} held action(s) left as they "
                "are by an operator's decision (ACCEPTED below)."
            ]
        return ["No changes: the directory matches Policy 1021."]
    if limit is None:
        out = [f"ACTIONS ({len(plan.actions)}):"]
        for a in plan.actions:
            out += _action_lines(a, tz=tz)
        return out
    out = [
        f"ACTIONS ({len(plan.actions)}), summary view: counts by op and reason, "
        f"the first {limit} of each (--full lists them all):"
    ]
    for op in Op:
        of_op = [a for a in plan.actions if a.op is op]
        if not of_op:
            continue
        codes = Counter(r.code for a in of_op for r in a.reasons)
        out.append(
            f"  {op.value.upper()} {len(of_op)}; by reason: "
            + ", ".join(f"{c} {n}" for c, n in codes.most_common())
        )
        for a in of_op[:limit]:
            out += _action_lines(a, indent="    ", tz=tz)
        if len(of_op) > limit:
            out.append("  " + _more(len(of_op) - limit, f"{op.value} actions"))
    return out


def _decisions_text(plan: Plan, limit: int | None, tz: tzinfo | None) -> list[str]:
    """Operators' decisions (approved, reopened, accepted) and what is held."""
    out: list[str] = []
    if plan.approved:
        out += [
            "",
            f"APPROVED ({len(plan.approved)}): held, carried out once by an operator's decision",
        ]
        out += [f"  {k}" for k in plan.approved]
    if plan.reopened:
        out += ["", f"REOPENED ({len(plan.reopened)}): decisions that no longer hold"]
        out += [f"  {r.key}: {r.why}" for r in plan.reopened]
    if plan.held:
        out += ["", f"HELD ({len(plan.held)}): not carried out"]
        out += _first(
            plan.held,
            limit,
            "held actions",
            lambda h: [
                f"  [{h.code}] {h.message}",
                *_action_lines(h.action, indent="    ", tz=tz),
            ],
        )
    if plan.accepted:
        out += [
            "",
            f"ACCEPTED ({len(plan.accepted)}): held, left as they are by an operator's "
            "decision (`misync held list`)",
        ]

        def accepted(h: HeldAction) -> list[str]:
            d = h.decision
            by = f" by {d.by}: {d.reason}" if d is not None else ""
            until = f" (until {_when(d.until, tz)})" if d is not None and d.until else ""
            return [f"  [{h.code}] {h.key}: accepted{by}{until}"]

        out += _first(plan.accepted, limit, "accepted holds", accepted)
    return out


def _deadlines_text(plan: Plan, limit: int | None, tz: tzinfo | None) -> list[str]:
    """Breaches (most overdue first), then pre-breach warnings."""
    out: list[str] = []
    for severity, title, what in (
        ("breach", "BREACHES (past the deadline, most overdue first)", "breaches"),
        ("warning", "WARNINGS (deadline within policy.warning_hours)", "warnings"),
    ):
        items = sorted(
            (b for b in plan.breaches if b.severity == severity), key=lambda b: b.deadline
        )
        if not items:
            continue
        out += ["", f"{title}: {len(items)}"]
        out += _first(items, limit, what, lambda b: [_breach_line(b, plan.as_of, tz)])
    return out


def render_decision(d: Decision, tz: tzinfo | None = None) -> str:
    out = [f"person {d.person_id}: {d.status.value.upper()} as of {when(d.as_of, tz)}"]
    if d.grant is not None:
        out.append(
            f"  grant {d.grant.request_id} from {when(d.grant.started_at, tz)} ({d.grant.source})"
        )
    if d.profile or d.offices:
        out.append(f"  profile {d.profile or '-'}; offices {', '.join(d.offices) or '-'}")
    if d.reasons:
        out.append("  failing conditions:")
        for r in d.reasons:
            out.append(f"    {_reason_line(r)}")
            if r.deadline is not None:
                out.append(f"        deadline {when(r.deadline, tz)}")
    else:
        out.append("  every condition of Policy 1021 holds")
    if d.flags:
        out.append("  for review:")
        out += [f"    {_reason_line(r)}" for r in d.flags]
    return "\n".join(out) + "\n"
