"""``misync plan`` and ``misync apply`` (with the question on a terminal)."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING, TextIO

import structlog

from connector.cli.common import UserError, alert_manager, isatty, view_limit
from connector.cli.common import notifier as requester_notifier
from connector.errors import ExitCode

if TYPE_CHECKING:
    from connector.app import Runtime
    from connector.archive import Recorder
    from connector.model.plan import Plan


def plan_command(rt: Runtime, args: argparse.Namespace, out: TextIO, run_id: str) -> int:
    """The dry run: the plan as text or JSON (``-o`` writes the reviewable file)."""
    from connector import archive, runs
    from connector.reconcile.render import render_plan
    from connector.reconcile.serialize import write_plan

    log = structlog.get_logger("misync.cli")
    as_of = args.as_of or rt.clock()
    # only a saved plan keeps what it read (the accounts, for the archive)
    recording = archive.recording() if args.out else nullcontext(None)
    with rt.store() as store, recording as rec:
        if args.out:  # a saved plan archives every input: the whole evaluation
            plan, _ = runs.make_plan(
                rt, store, as_of, override_guard=args.override_guard, full_scan=args.full_scan
            )
        else:  # may reuse the last whole plan's memo (connector.runs.memo)
            plan = runs.dry_plan(
                rt, store, as_of, override_guard=args.override_guard, full_scan=args.full_scan
            )
    if args.out:  # streamed: a large plan is never held as one string
        assert rec is not None
        inputs = _archive_inputs(rt, rec, plan, run_id)
        with args.out.open("w", encoding="utf-8") as f:
            write_plan(plan, f, inputs)
            f.write("\n")
    if args.format == "json":
        write_plan(plan, out)
        out.write("\n")
    else:
        out.write(render_plan(plan, limit=view_limit(args, plan), tz=rt.rules.tz))
    log.info("plan.made", checksum=plan.checksum, summary=plan.summary)
    if args.detailed_exitcode:
        if plan.held or any(not f.healthy for f in plan.feeds):
            return ExitCode.ATTENTION
        if plan.actions:
            return ExitCode.CHANGES
    return ExitCode.OK


def _archive_inputs(rt: Runtime, rec: Recorder, plan: Plan, plan_id: str) -> dict[str, str]:
    """``plan -o``: the inputs the plan was made from, into the archive as a saved
    plan's (``plans/PLAN_ID.json``, kept ``archive.keep_days``), under the state
    folder's lock (retention must not remove them while they are written); the
    ``inputs`` the plan file names. A run holding the state folder (a daemon cycle) is
    waited for up to ``state.lock_wait_seconds``; nothing archived and no file written
    if it still holds it then (exit 7) or the archive cannot be written (exit 3)."""
    from connector.archive import ArchiveStore, ArchiveWriteError
    from connector.archive.inputs import archive_run
    from connector.runs.planning import collector_paused
    from connector.state import state_lock

    folder = rt.settings.state.dir / "archive"
    try:
        with (
            state_lock(rt.settings.state.dir, wait_seconds=rt.settings.state.lock_wait_seconds),
            collector_paused(),
        ):
            digest = archive_run(
                ArchiveStore(folder),
                rec,
                run_id=plan_id,
                kind="plan",
                settings=rt.settings,
                rules=rt.rules,
                checksum=plan.checksum,
                scoped=False,
                at=rt.clock(),
                saved_plan=True,
            )
    except OSError as exc:
        raise ArchiveWriteError(
            f"{folder}: the plan's inputs could not be archived: {exc}; no plan file written"
        ) from exc
    assert digest is not None  # make_plan always notes its inputs
    structlog.get_logger("misync.cli").info("plan.archived", inputs=digest)
    return {"id": plan_id, "manifest": digest}


def apply_command(rt: Runtime, args: argparse.Namespace, out: TextIO, run_id: str) -> int:
    """Plan now (or take a reviewed plan) and carry it out, journaled and audited."""
    from connector import runs
    from connector.alerts.kinds import audit_altered
    from connector.audit import AuditIntegrityError, AuditWriteError
    from connector.reconcile.render import render_plan

    reviewed, planned_from = _reviewed_plan(args)
    shown = False  # the plan was printed before the question
    if reviewed is None and not args.yes and isatty(sys.stdin):
        reviewed = _ask_before_apply(rt, args, out)  # raises UserError on "no"
        shown = True
    from connector.progress import ApplyProgress

    progress = ApplyProgress(
        out if args.format == "text" else None,
        sys.stderr,
        render=lambda p: "" if shown else render_plan(p, limit=view_limit(args, p), tz=rt.rules.tz),
    )
    with alert_manager(rt) as alerts, requester_notifier(rt) as notifier:
        try:
            # PostgreSQL: one writer across the hosts (lead, act under this host's
            # leading daemon, or refuse: connector.runs.fence)
            with runs.command_fence(rt) as should_stop:
                source: runs.PlanSource = (
                    runs.FreshPlan(args.override_guard, full_scan=args.full_scan)
                    if reviewed is None
                    else runs.ReviewedPlan(
                        reviewed, full_scan=args.full_scan, planned_from=planned_from
                    )
                )
                result = runs.run_apply(
                    rt,
                    source,
                    run_id=run_id,
                    alerts=alerts,
                    observer=runs.Observers(progress, notifier),
                    should_stop=should_stop,
                )
        except runs.DriftError as exc:
            lines = "\n".join(f"  {d}" for d in exc.drifted)
            raise UserError(f"refused: {exc}\n{lines}".rstrip(), ExitCode.REFUSED) from exc
        except AuditIntegrityError as exc:  # found before any change to the directory
            alerts.send(audit_altered([str(exc)]))
            raise UserError(f"refused: {exc}", ExitCode.TAMPERED) from exc
        except AuditWriteError as exc:
            raise UserError(
                f"apply stopped: {exc}; outcomes already known are kept in the "
                "journal and the next run audits them; free space (or fix the state "
                "folder) and run again",
                ExitCode.AUDIT_WRITE,
            ) from exc
        finally:
            progress.close()
    from connector.progress import apply_result_json, render_apply_outcome

    if args.format == "json":
        out.write(apply_result_json(result) + "\n")
    else:
        out.write(render_apply_outcome(result))
    if result.report.stopped:
        left = sum(o.status == "not_attempted" for o in result.report.outcomes)
        print(
            f"misync: apply stopped early: {result.report.stopped}; {left} action(s) "
            "not attempted (journaled and audited); the next run resumes",
            file=sys.stderr,
        )
    return ExitCode.OK if result.status == "ok" else ExitCode.INCOMPLETE


def _reviewed_plan(args: argparse.Namespace) -> tuple[Plan | None, dict[str, str] | None]:
    """The reviewed plan of ``apply --plan FILE`` (checked against ``--checksum``) and
    the archived inputs the file names (``plan -o``), or None without ``--plan``."""
    from connector.reconcile import PlanFormatError
    from connector.reconcile.serialize import read_plan_file

    if not args.plan_file:
        if args.checksum:
            raise UserError("--checksum goes with --plan")
        return None, None
    try:
        reviewed, inputs = read_plan_file(
            args.plan_file.read_text(encoding="utf-8"), source=str(args.plan_file)
        )
    except OSError as exc:
        raise UserError(f"{args.plan_file}: cannot read plan: {exc.strerror}") from exc
    except PlanFormatError as exc:
        raise UserError(str(exc), ExitCode.REFUSED) from exc
    if args.checksum and args.checksum != reviewed.checksum:
        raise UserError(
            f"refused: {args.plan_file} is {reviewed.checksum}, not the approved {args.checksum}",
            ExitCode.REFUSED,
        )
    return reviewed, inputs


def _ask_before_apply(rt: Runtime, args: argparse.Namespace, out: TextIO) -> Plan:
    """``apply`` on a terminal: plan, print the plan, and ask before changing anything.

    The plan shown is the plan carried out: it is applied as a reviewed plan (the
    checks of ``apply --plan``: refused, exit 5, if the directory or what the policy
    gives changed while the question was open). The state lock is not held while a
    person reads, so the daemon's runs go on meanwhile. A plan with no actions is not
    asked about. Any answer but "yes" (end of input too) changes nothing: exit 11."""
    from connector import runs
    from connector.reconcile.render import render_plan

    with rt.store() as store:
        plan, _ = runs.make_plan(
            rt, store, rt.clock(), override_guard=args.override_guard, full_scan=args.full_scan
        )
    # with --format json standard output is for the JSON: the plan goes to the terminal
    screen = out if args.format == "text" else sys.stderr
    screen.write(render_plan(plan, limit=view_limit(args, plan), tz=rt.rules.tz))
    screen.flush()
    if not plan.actions:
        return plan
    held = f" ({len(plan.held)} held, not carried out)" if plan.held else ""
    sys.stderr.write(f"\ncarry out these {len(plan.actions)} changes{held}? type yes: ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if answer.strip().lower() != "yes":
        structlog.get_logger("misync.cli").info(
            "apply.declined", checksum=plan.checksum, actions=len(plan.actions)
        )
        raise UserError("nothing was changed (the answer was not yes)", ExitCode.DECLINED)
    return plan
