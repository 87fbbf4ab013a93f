"""Human-readable renderings of a plan and of a decision (``--format text``)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, tzinfo

from connector.model.decisions import Decision, Reason
from connector.model.plan import Action, Breach, DirectoryRead, Op, Plan
from connector.timefmt import when


def reason_line(r: Reason) -> str:
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
    lines += [f"{indent}    because {reason_line(r)}" for r in a.reasons]
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


def describe_read(r: DirectoryRead, tz: tzinfo | None = None) -> str:
    """How the plan read the directory, in one line (the text plan, the HTML report)."""
    if r.warm:
        return (
            f"directory: warm read at {_when(r.read_at, tz)}: the stored snapshot "
            f"(last full scan {_when(r.full_scan_at, tz)}) and the {r.entries} entries "
            f"changed since its mark ({r.accounts} accounts); an account deleted or moved "
            "out of scope since that full scan is seen by the next full scan (--full-scan)"
        )
    return f"directory: full scan at {_when(r.read_at, tz)} ({r.accounts} accounts): {r.reason}"


def describe_memo(r: DirectoryRead, tz: tzinfo | None = None) -> str:
    """Whether a dry run reused the plan memo (connector.runs.memo), in one line ("" when
    it did not try: a run that applies, a full scan)."""
    if r.memo_at is not None:
        return (
            f"feeds and policy: the files are those of the whole plan of "
            f"{_when(r.memo_at, tz)} (its memo): {r.replanned} people evaluated and planned "
            f"again, {r.reused} accounts left as that plan found them"
        )
    if r.memo_unused:
        return f"feeds and policy: every feed read and evaluated (the plan memo: {r.memo_unused})"
    return ""


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
    if plan.read is not None:
        out.append(describe_read(plan.read, tz))
        memo = describe_memo(plan.read, tz)
        if memo:
            out.append(memo)
    bad_feeds = [f for f in plan.feeds if not f.healthy]
    if bad_feeds:
        out.append("")
        out.append("FEEDS NOT USABLE (actions they drive are held):")
        out += [f"  {f.feed.value}: {f.state.value}: {f.detail}" for f in bad_feeds]
    out.append("")
    if plan.actions:
        out += _actions_section(plan, limit, tz)
    else:
        out.append(_no_actions_line(plan, len(bad_feeds)))
    if plan.approved:
        out.append("")
        out.append(
            f"APPROVED ({len(plan.approved)}): held, carried out once by an operator's decision"
        )
        out += [f"  {k}" for k in plan.approved]
    if plan.reopened:
        out.append("")
        out.append(f"REOPENED ({len(plan.reopened)}): decisions that no longer hold")
        out += [f"  {r.key}: {r.why}" for r in plan.reopened]
    out += _held_section(plan, limit, tz)
    out += _accepted_section(plan, limit, tz)
    out += _breaches_section(plan, limit, tz)
    if plan.rejected:
        out.append("")
        out.append(f"REJECTED ROWS ({len(plan.rejected)}):")
        rows = plan.rejected if limit is None else plan.rejected[:limit]
        out += [f"  {r}" for r in rows]
        if len(rows) < len(plan.rejected):
            out.append(_more(len(plan.rejected) - len(rows), "rejected rows"))
    return "\n".join(out) + "\n"


def _actions_section(plan: Plan, limit: int | None, tz: tzinfo | None) -> list[str]:
    """Every action, or (``limit``) counts by op and reason and the first of each op."""
    out: list[str] = []
    if limit is None:
        out.append(f"ACTIONS ({len(plan.actions)}):")
        for a in plan.actions:
            out += _action_lines(a, tz=tz)
        return out
    out.append(
        f"ACTIONS ({len(plan.actions)}), summary view: counts by op and reason, "
        f"the first {limit} of each (--full lists them all):"
    )
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


def _no_actions_line(plan: Plan, bad_feeds: int) -> str:
    """Why a plan with no action has none: never "no changes" when something is not
    being done, or cannot be judged."""
    if plan.held or bad_feeds:
        why = []
        if plan.held:
            why.append(f"{len(plan.held)} held for review")
        if bad_feeds:
            why.append(f"{bad_feeds} feed(s) not usable")
        return (
            "NO ACTION CAN BE CARRIED OUT, AND THE DIRECTORY MAY NOT MATCH POLICY 1021: "
            + "; ".join(why)
            + "."
        )
    if plan.accepted:
        return (
            f"No changes to carry out; {len(plan.accepted)} held action(s) left as they are "
            "by an operator's decision (ACCEPTED below)."
        )
    return "No changes: the directory matches Policy 1021."


def _held_section(plan: Plan, limit: int | None, tz: tzinfo | None) -> list[str]:
    if not plan.held:
        return []
    out = ["", f"HELD ({len(plan.held)}): not carried out"]
    held = plan.held if limit is None else plan.held[:limit]
    for h in held:
        out.append(f"  [{h.code}] {h.message}")
        out += _action_lines(h.action, indent="    ", tz=tz)
    if len(held) < len(plan.held):
        out.append(_more(len(plan.held) - len(held), "held actions"))
    return out


def _accepted_section(plan: Plan, limit: int | None, tz: tzinfo | None) -> list[str]:
    if not plan.accepted:
        return []
    out = [
        "",
        f"ACCEPTED ({len(plan.accepted)}): held, left as they are by an operator's decision "
        "(`misync held list`)",
    ]
    left = plan.accepted if limit is None else plan.accepted[:limit]
    for h in left:
        d = h.decision
        by = f" by {d.by}: {d.reason}" if d is not None else ""
        until = f" (until {_when(d.until, tz)})" if d is not None and d.until else ""
        out.append(f"  [{h.code}] {h.key}: accepted{by}{until}")
    if len(left) < len(plan.accepted):
        out.append(_more(len(plan.accepted) - len(left), "accepted holds"))
    return out


def _breaches_section(plan: Plan, limit: int | None, tz: tzinfo | None) -> list[str]:
    out: list[str] = []
    for severity, title in (
        ("breach", "BREACHES (past the deadline, most overdue first)"),
        ("warning", "WARNINGS (deadline within policy.warning_hours)"),
    ):
        items = sorted(
            (b for b in plan.breaches if b.severity == severity), key=lambda b: b.deadline
        )
        if not items:
            continue
        out.append("")
        out.append(f"{title}: {len(items)}")
        shown = items if limit is None else items[:limit]
        out += [_breach_line(b, plan.as_of, tz) for b in shown]
        if len(shown) < len(items):
            out.append(
                _more(
                    len(items) - len(shown), f"{severity}es" if severity == "breach" else "warnings"
                )
            )
    return out


def decision_head(d: Decision, tz: tzinfo | None = None) -> list[str]:
    """The first lines of a decision for people: status, grant, profile and offices."""
    out = [f"person {d.person_id}: {d.status.value.upper()} as of {when(d.as_of, tz)}"]
    if d.grant is not None:
        out.append(
            f"  grant {d.grant.request_id} from {when(d.grant.started_at, tz)} ({d.grant.source})"
        )
    if d.profile or d.offices:
        out.append(f"  profile {d.profile or '-'}; offices {', '.join(d.offices) or '-'}")
    return out


def render_decision(d: Decision, tz: tzinfo | None = None) -> str:
    out = decision_head(d, tz)
    if d.reasons:
        out.append("  failing conditions:")
        for r in d.reasons:
            out.append(f"    {reason_line(r)}")
            if r.deadline is not None:
                out.append(f"        deadline {when(r.deadline, tz)}")
    else:
        out.append("  every condition of Policy 1021 holds")
    if d.flags:
        out.append("  for review:")
        out += [f"    {reason_line(r)}" for r in d.flags]
    return "\n".join(out) + "\n"
