"""Human-readable renderings of a plan and of a decision (``--format text``)."""

from __future__ import annotations

from connector.model.decisions import Decision, Reason
from connector.model.plan import Action, Plan


def _reason_line(r: Reason) -> str:
    return f"{r.clause}: {r.message}  [{r.code}]"


def _action_lines(a: Action, indent: str = "  ") -> list[str]:
    who = a.person_id or "(no person)"
    acct = a.account_id or f"new {a.logon_id}"
    lines = [f"{indent}{a.op.value.upper():8} {who:12} {acct}"]
    lines += [f"{indent}    because {_reason_line(r)}" for r in a.reasons]
    for c in a.changes:
        old = ", ".join(c.old) or "-"
        new = ", ".join(c.new) or "-"
        lines.append(f"{indent}    {c.name}: {old} -> {new}")
    if a.deadline is not None:
        lines.append(f"{indent}    deadline {a.deadline.isoformat()}")
    return lines


def render_plan(plan: Plan) -> str:
    s = plan.summary
    out = [
        f"misync plan {plan.checksum}",
        f"as of {plan.as_of.isoformat()}  target {plan.target}",
        "summary: " + ", ".join(f"{k} {v}" for k, v in s.items()),
        "decisions: " + ", ".join(f"{k} {v}" for k, v in plan.decisions.items()),
    ]
    bad_feeds = [f for f in plan.feeds if not f.healthy]
    if bad_feeds:
        out.append("")
        out.append("FEEDS NOT USABLE (actions they drive are held):")
        out += [f"  {f.feed.value}: {f.state.value}: {f.detail}" for f in bad_feeds]
    out.append("")
    if plan.actions:
        out.append(f"ACTIONS ({len(plan.actions)}):")
        for a in plan.actions:
            out += _action_lines(a)
    else:
        out.append("No changes: the directory matches Policy 1021.")
    if plan.held:
        out.append("")
        out.append(f"HELD ({len(plan.held)}): not carried out")
        for h in plan.held:
            out.append(f"  [{h.code}] {h.message}")
            out += _action_lines(h.action, indent="    ")
    if plan.breaches:
        out.append("")
        out.append(f"DEADLINES ({len(plan.breaches)}):")
        for b in plan.breaches:
            codes = ", ".join(r.code for r in b.reasons)
            out.append(
                f"  {b.severity.upper():8} {b.person_id or '-':12} {b.account_id} "
                f"deadline {b.deadline.isoformat()} ({codes})"
            )
    if plan.rejected:
        out.append("")
        out.append(f"REJECTED ROWS ({len(plan.rejected)}):")
        out += [f"  {r}" for r in plan.rejected]
    return "\n".join(out) + "\n"


def render_decision(d: Decision) -> str:
    out = [f"person {d.person_id}: {d.status.value.upper()} as of {d.as_of.isoformat()}"]
    if d.grant is not None:
        out.append(
            f"  grant {d.grant.request_id} from {d.grant.started_at.isoformat()} ({d.grant.source})"
        )
    if d.profile or d.offices:
        out.append(f"  profile {d.profile or '-'}; offices {', '.join(d.offices) or '-'}")
    if d.reasons:
        out.append("  failing conditions:")
        for r in d.reasons:
            out.append(f"    {_reason_line(r)}")
            if r.deadline is not None:
                out.append(f"        deadline {r.deadline.isoformat()}")
    else:
        out.append("  every condition of Policy 1021 holds")
    if d.flags:
        out.append("  for review:")
        out += [f"    {_reason_line(r)}" for r in d.flags]
    return "\n".join(out) + "\n"
