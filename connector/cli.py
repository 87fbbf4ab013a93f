"""The ``misync`` command: the parser, one function per command, and the edge where
errors become exit codes.

Exit codes are one table, ``connector.errors.ExitCode`` (``misync --help`` prints it;
the README repeats it). A :class:`~connector.errors.MisyncError` that reaches
:func:`main` exits with its ``exit_code`` and one line on standard error; anything else
is a bug (exit 1, traceback in the log).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import structlog

from connector import __version__
from connector.errors import ExitCode, MisyncError, exit_codes_help
from connector.logs import configure
from connector.reconcile.render import SUMMARY_VIEW_FIRST, SUMMARY_VIEW_OVER
from connector.state.errors import state_condition

if TYPE_CHECKING:
    from connector.alerts.manager import AlertManager
    from connector.alerts.notify import Notifier
    from connector.app import Runtime
    from connector.model.plan import Plan

DEFAULT_CONFIG = Path("/etc/misync/misync.toml")


class UserError(MisyncError):
    """A refusal worded for the person at the terminal (one line, no traceback), with the
    exit code the command's situation calls for."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.exit_code = code


def _instant(text: str) -> date | datetime:
    """An instant with offset, a local time without one, or a date (resolved in
    ``policy.timezone`` once the configuration is loaded: see ``_resolve_instant``)."""
    try:
        if len(text.strip()) == 10:
            return date.fromisoformat(text.strip())
        return datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a date or an ISO 8601 time: {text!r} (e.g. 2026-11-25, "
            "2026-11-25T17:00 or 2026-11-25T17:00-08:00)"
        ) from exc


def _resolve_instant(value: date | datetime, tz: tzinfo) -> datetime:
    """A date is the start of that day in ``tz``; a time without offset is a local time
    in ``tz``; a time with an offset is that instant."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=tz)
    return datetime.combine(value, time(0), tzinfo=tz)


INSTANT_HELP = (
    "a date (the start of that day), a local time (2026-11-25T17:00) in policy.timezone, "
    "or an ISO 8601 instant with offset"
)


def _audit_anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    digest = digest.strip().lower()
    if not seq.strip().isdigit() or int(seq) < 1 or len(digest) != 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not SEQ:HASH (SEQ >= 1, 64 hex digits)")
    try:
        bytes.fromhex(digest)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: the hash is not hexadecimal") from exc
    return int(seq), digest


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="misync",
        description="Keep the MIS directory in line with WorkSource Policy 1021.",
        epilog=exit_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"misync {__version__}")
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        help=f"TOML configuration (default: $MISYNC_CONFIG or {DEFAULT_CONFIG})",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plan = sub.add_parser("plan", help="dry run: what would change, and why")
    plan.add_argument("--as-of", type=_instant, help="evaluate at this instant: " + INSTANT_HELP)
    plan.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people (default) or the JSON plan",
    )
    view = plan.add_mutually_exclusive_group()
    view.add_argument(
        "--full",
        action="store_true",
        help="list every action even when the plan is large (the default above "
        f"{SUMMARY_VIEW_OVER} actions is the summary view)",
    )
    view.add_argument(
        "--summary",
        action="store_true",
        help=f"counts by op and reason code and the first {SUMMARY_VIEW_FIRST} of each, "
        "however small the plan",
    )
    plan.add_argument(
        "-o", "--out", type=Path, help="also write the JSON plan here (for apply --plan)"
    )
    plan.add_argument(
        "--override-guard",
        action="store_true",
        help="do not hold back unexplained disables (mass-disable guard)",
    )
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 9 when actions are held or feeds are not usable, 8 when the plan has "
        "actions, 0 when there is nothing to do",
    )

    apply = sub.add_parser("apply", help="carry out a plan (a fresh one, or a reviewed file)")
    apply.add_argument(
        "--plan",
        type=Path,
        dest="plan_file",
        help="apply exactly this reviewed JSON plan; refuse if the target drifted",
    )
    apply.add_argument(
        "--checksum",
        help="with --plan: the checksum the reviewer approved (sha256:...); refuse any other",
    )
    apply.add_argument(
        "--override-guard",
        action="store_true",
        help="carry out unexplained disables the mass-disable guard would hold",
    )
    apply.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people (default), or JSON: run id, status, per-action outcomes, plan",
    )
    apply.add_argument(
        "--full",
        action="store_true",
        help="list every planned action before applying, even when the plan is large",
    )
    apply.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="do not ask before carrying out the plan (apply asks only when standard input "
        "is a terminal)",
    )

    report = sub.add_parser(
        "report",
        help="write one self-contained HTML page to review a plan or a run",
        description="Write one self-contained HTML page (no network; open it in any "
        "browser): summary, deadlines and breaches, held actions, every action with its "
        "reasons and clauses, rejected rows, feed health, the plan checksum and as_of. "
        "By default it plans now; --plan renders a reviewed plan file, --run a past run "
        "from the audit trail.",
    )
    report.add_argument(
        "-o", "--out", type=Path, help="write the page here (default: standard output)"
    )
    report.add_argument(
        "--wda",
        metavar="WDA",
        help="only this Workforce Development Area: its people, their accounts, deadlines "
        "and rejected rows, nothing of other areas",
    )
    report_src = report.add_mutually_exclusive_group()
    report_src.add_argument(
        "--plan", type=Path, dest="plan_file", help="render this reviewed JSON plan file"
    )
    report_src.add_argument(
        "--run",
        metavar="RUN_ID",
        help="re-render a past run (its plan, outcomes and breaches) from the audit trail",
    )
    report_src.add_argument(
        "--as-of", type=_instant, help="plan as of this instant (default: now): " + INSTANT_HELP
    )
    report.add_argument(
        "--override-guard",
        action="store_true",
        help="show unexplained disables as actions, not held (as plan --override-guard)",
    )

    sub.add_parser(
        "run",
        help="the daemon: reconcile on a schedule, disable separated people within a "
        "minute, alert (foreground; systemd Type=notify)",
    )

    explain = sub.add_parser(
        "explain",
        help="why a person is (not) entitled, with clauses; or what happens to an account "
        "(by account id or logon ID, e.g. an orphan) and why",
    )
    explain.add_argument(
        "person_id",
        metavar="SUBJECT",
        help="a person id of the feeds (e.g. P1004), or an account id or logon ID",
    )
    explain.add_argument(
        "--as-of", type=_instant, help="decide at this instant (default: now): " + INSTANT_HELP
    )
    explain.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or JSON"
    )

    held = sub.add_parser(
        "held",
        help="held actions and operators' decisions on them: list, accept, approve, revoke",
    )
    hsub = held.add_subparsers(dest="held_command", required=True, metavar="SUBCOMMAND")
    hlist = hsub.add_parser(
        "list", help="every held action: key, code, person, account, why, since, decision"
    )
    hlist.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or JSON"
    )
    key_help = (
        "the held action's key (code:object, as listed), or its account id, person id or "
        "logon ID when that names one held action"
    )
    haccept = hsub.add_parser(
        "accept",
        help="leave it as it is: no longer incomplete nor alerted; reopens when what misync "
        "would do changes, or at --until",
    )
    haccept.add_argument("key", help=key_help)
    haccept.add_argument("--reason", required=True, help="why (audited)")
    haccept.add_argument("--until", type=_instant, help="reopen it then (" + INSTANT_HELP + ")")
    happrove = hsub.add_parser(
        "approve", help="carry it out once, at the next run, if that run plans the same action"
    )
    happrove.add_argument("key", help=key_help)
    happrove.add_argument("--reason", required=True, help="why (audited)")
    hrevoke = hsub.add_parser("revoke", help="withdraw an open accept or approval")
    hrevoke.add_argument("key", help=key_help)
    hrevoke.add_argument("--reason", required=True, help="why (audited)")

    quarantine = sub.add_parser(
        "quarantine", help="objects that kept failing and are held (aliases of `held`)"
    )
    qsub = quarantine.add_subparsers(dest="quarantine_command", required=True, metavar="SUBCOMMAND")
    qsub.add_parser("list", help="list quarantined objects and their last error")
    release = qsub.add_parser(
        "release",
        help="let the next run try this object once more (= held approve quarantined:KEY)",
    )
    release.add_argument("key", help="the account id (or person:ID for a create), as listed")
    release.add_argument(
        "--reason", default="quarantine release", help="why (audited; default: quarantine release)"
    )

    status = sub.add_parser(
        "status",
        help="last run, next runs, open breaches, held and quarantined objects, feed health, "
        "open alerts (from the state store; never touches the directory)",
    )
    status.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people (default) or JSON (keys in the README, section Health)",
    )

    config = sub.add_parser("config", help="configuration commands")
    csub = config.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = csub.add_parser(
        "check", help="validate the configuration, mapping, secrets and feeds layout"
    )
    check.add_argument(
        "--allow-missing-feeds",
        action="store_true",
        help="a feed folder or file that has not been delivered yet is a warning, not an "
        "error (systemd ExecStartPre before the first delivery)",
    )
    check.add_argument(
        "--connect",
        action="store_true",
        help="also connect and bind to the directory (never done otherwise)",
    )

    audit = sub.add_parser("audit", help="the tamper-evident audit trail")
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    verify = asub.add_parser("verify", help="check the hash chain and the head anchor")
    verify.add_argument(
        "--anchor",
        type=_audit_anchor,
        metavar="SEQ:HASH",
        help="also check that record SEQ has this hash (audit_seq:audit_head of a "
        "run.finished log event, kept outside the state folder)",
    )
    export = asub.add_parser("export", help="export records for auditors")
    export.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        default="csv",
        help="CSV with a header (default) or one JSON object per line",
    )
    export.add_argument(
        "--since", type=_instant, help="only records at or after this instant: " + INSTANT_HELP
    )
    export.add_argument(
        "--until", type=_instant, help="only records at or before this instant: " + INSTANT_HELP
    )
    export.add_argument("-o", "--out", type=Path, help="write here (default: standard output)")
    state = sub.add_parser("state", help="the state store (SQLite folder or PostgreSQL)")
    ssub = state.add_subparsers(dest="state_command", required=True, metavar="SUBCOMMAND")
    migrate = ssub.add_parser(
        "migrate",
        help="copy the SQLite state folder (state, journal, whole audit trail) into an "
        "empty PostgreSQL database",
    )
    migrate.add_argument("--to", required=True, metavar="URL", help="postgresql://USER@HOST/DB")
    migrate.add_argument("--password-file", type=Path, help="default: state.password_file")
    migrate.add_argument(
        "--sslmode",
        choices=("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
        help="default: state.sslmode",
    )
    migrate.add_argument("--ca-file", type=Path, help="default: state.ca_file")
    _config_option_everywhere(p)
    return p


def _config_option_everywhere(parser: argparse.ArgumentParser) -> None:
    """``-c`` is accepted after the subcommand too (``misync plan -c FILE``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if not any("-c" in a.option_strings for a in sub._actions):
                    sub.add_argument(
                        "-c",
                        "--config",
                        type=Path,
                        default=argparse.SUPPRESS,
                        help=f"TOML configuration (default: $MISYNC_CONFIG or {DEFAULT_CONFIG})",
                    )
                _config_option_everywhere(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_id = uuid.uuid4().hex[:12]
    log = structlog.get_logger("misync.cli")
    # every event of this command carries its run_id (apply reuses it for its run)
    with structlog.contextvars.bound_contextvars(run_id=run_id, command=args.command):
        try:
            return int(_dispatch(args, sys.stdout, run_id))
        except MisyncError as exc:
            message = one_line(exc)
            if structlog.is_configured():  # the config loaded: journald gets a JSON event
                log.error(
                    "command.refused",
                    exit_code=int(exc.exit_code),
                    error=type(exc).__name__,
                    message=message,
                )
            print(f"misync: {message}", file=sys.stderr)
            return int(exc.exit_code)
        except BrokenPipeError:
            return _closed_pipe()
        except KeyboardInterrupt:
            return 130
        except Exception as exc:  # a bug: one line for the operator, the traceback logged
            if structlog.is_configured():
                log.exception("command.crashed")
            else:
                traceback.print_exc()
            print(f"misync: internal error (a bug): {exc!r}; run {run_id}", file=sys.stderr)
            return int(ExitCode.BUG)


def one_line(exc: MisyncError) -> str:
    """What the person at the terminal reads: the error's own words, with the target's
    answer for a target error."""
    from connector.targets.base import TargetError

    if isinstance(exc, TargetError):
        return f"target: {exc}" + (f" ({exc.detail})" if exc.detail else "")
    return str(exc)


def _state_migrate(rt: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    from connector.state.migrate import MigrateError, migrate_command

    if rt.settings.state.url:
        raise UserError(
            f"state.url is set ({rt.settings.state.url}): state migrate copies the SQLite "
            "folder state.dir; run it with the configuration of the SQLite install"
        )
    try:
        result, where = migrate_command(rt.settings.state, args, rt.settings.audit.key())
    except MigrateError as exc:
        raise UserError(f"state migrate refused: {exc}", ExitCode.REFUSED) from exc
    for table, n in result.rows.items():
        out.write(f"  {table}: {n} rows\n")
    out.write(
        f"copied {rt.settings.state.dir} to {where}: audit trail {result.audit_records} "
        f"records, head {result.head_seq} {result.head_hash} (verified on the copy)\n"
        f'next: set [state] url = "{where}" in the configuration\n'
    )
    return ExitCode.OK


def _closed_pipe() -> int:
    """The reader went away (``misync audit export | head``): stop quietly, as Unix tools
    do. Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (tests): nothing to do
        pass
    return ExitCode.PIPE


def _config_path(args: argparse.Namespace) -> Path:
    if args.config is not None:
        return Path(args.config)
    env = os.environ.get("MISYNC_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def _load(args: argparse.Namespace) -> Runtime:
    from connector.app import Runtime
    from connector.settings import ConfigError, load_settings

    path = _config_path(args)
    settings = load_settings(path)  # ConfigError (exit 2) names the file's path
    configure(settings.log.level, settings.log.format)
    from connector.settings import config_warnings

    for warning in config_warnings(settings):  # every command says it, not only config check
        structlog.get_logger("misync.config").warning("config.insecure", message=warning)
    try:
        return Runtime(settings)
    except ConfigError as exc:  # a cross-field rule: name the configuration file too
        raise ConfigError(f"{path}: {exc}") from exc


def _dispatch(args: argparse.Namespace, out: TextIO, run_id: str) -> int:
    from connector import runs
    from connector.alerts.kinds import audit_altered
    from connector.audit import AuditIntegrityError, AuditWriteError
    from connector.reconcile import PlanFormatError, plan_from_json
    from connector.reconcile.render import render_plan
    from connector.reconcile.serialize import write_plan
    from connector.state import StateUnavailableError
    from connector.targets.base import TargetError

    rt = _load(args)
    log = structlog.get_logger("misync.cli")
    for name in ("as_of", "since", "until"):  # dates and local times are in policy.timezone
        if getattr(args, name, None) is not None:
            setattr(args, name, _resolve_instant(getattr(args, name), rt.rules.tz))
    if args.command in _USES_SECRETS:
        from connector.settings import check_secrets

        check_secrets(rt.settings)  # a missing, unreadable or empty secret: exit 2
    if args.command == "run":
        return _run_daemon(rt, args)
    try:
        if args.command == "plan":
            as_of = args.as_of or rt.clock()
            with rt.store() as store:
                plan, _ = runs.make_plan(rt, store, as_of, override_guard=args.override_guard)
            if args.out:  # streamed: a large plan is never held as one string
                with args.out.open("w", encoding="utf-8") as f:
                    write_plan(plan, f)
                    f.write("\n")
            if args.format == "json":
                write_plan(plan, out)
                out.write("\n")
            else:
                out.write(render_plan(plan, limit=_view_limit(args, plan), tz=rt.rules.tz))
            log.info("plan.made", checksum=plan.checksum, summary=plan.summary)
            if args.detailed_exitcode:
                if plan.held or any(not f.healthy for f in plan.feeds):
                    return ExitCode.ATTENTION
                if plan.actions:
                    return ExitCode.CHANGES
            return ExitCode.OK

        if args.command == "apply":
            reviewed = None
            if args.plan_file:
                try:
                    reviewed = plan_from_json(
                        args.plan_file.read_text(encoding="utf-8"), source=str(args.plan_file)
                    )
                except OSError as exc:
                    raise UserError(f"{args.plan_file}: cannot read plan: {exc.strerror}") from exc
                except PlanFormatError as exc:
                    raise UserError(str(exc), ExitCode.REFUSED) from exc
                if args.checksum and args.checksum != reviewed.checksum:
                    raise UserError(
                        f"refused: {args.plan_file} is {reviewed.checksum}, "
                        f"not the approved {args.checksum}",
                        ExitCode.REFUSED,
                    )
            elif args.checksum:
                raise UserError("--checksum goes with --plan")
            shown = False  # the plan was printed before the question
            if reviewed is None and not args.yes and _isatty(sys.stdin):
                reviewed = _ask_before_apply(rt, args, out)  # raises UserError on "no"
                shown = True
            from connector.progress import ApplyProgress

            progress = ApplyProgress(
                out if args.format == "text" else None,
                sys.stderr,
                render=lambda p: (
                    "" if shown else render_plan(p, limit=_view_limit(args, p), tz=rt.rules.tz)
                ),
            )
            with _alert_manager(rt) as alerts, _notifier(rt) as notifier:
                try:
                    result = runs.run_apply(
                        rt,
                        plan=reviewed,
                        override_guard=args.override_guard,
                        run_id=run_id,
                        alerts=alerts,
                        observer=runs.Observers(progress, notifier),
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

        if args.command == "report":
            return _report(rt, args, out)

        if args.command == "explain":
            return _explain(rt, args, out)

        if args.command == "status":
            return _status(rt, args, out)

        if args.command == "config":
            return _config_check(
                rt, out, allow_missing_feeds=args.allow_missing_feeds, connect=args.connect
            )

        if args.command == "held":
            return _held(rt, args, out)

        if args.command == "quarantine":
            with rt.store() as store:
                held = store.quarantined(rt.settings.apply.quarantine_after)
                if args.quarantine_command == "list":
                    for key, detail in sorted(held.items()):
                        out.write(f"{key}\t{detail}\n")
                    out.write(f"{len(held)} quarantined\n")
                    return ExitCode.OK
                if args.key not in held:
                    raise UserError(f"{args.key!r} is not quarantined")
            args.held_command, args.key = "approve", f"quarantined:{args.key}"
            return _held(rt, args, out)  # an alias: audited as an approval

        if args.command == "audit":
            from connector.audit import AuditError

            try:  # verify and export write nothing: an auditor's read-only copy will do
                trail = rt.audit(read_only=True)
            except AuditError as exc:
                raise UserError(str(exc), ExitCode.UNAVAILABLE) from exc
            with trail:
                if args.audit_command == "verify":
                    checked = trail.verify(anchor=args.anchor)
                    for problem in checked.problems:
                        out.write(f"  {problem}\n")
                    warnings = list(checked.warnings)
                    if rt.settings.audit.key_file is None and args.anchor is None:
                        from connector.audit import UNKEYED_WARNING

                        warnings.append(UNKEYED_WARNING)
                    for warning in warnings:
                        out.write(f"  warning: {warning}\n")
                    verdict = "intact" if checked.ok else "ALTERED"
                    out.write(
                        f"audit trail {verdict}: {checked.records} records, head "
                        f"{checked.head_seq} {checked.head_hash}\n"
                    )
                    return ExitCode.OK if checked.ok else ExitCode.TAMPERED
                sink = args.out.open("w", encoding="utf-8", newline="") if args.out else out
                try:
                    n = trail.export(sink, args.format, since=args.since, until=args.until)
                finally:
                    if args.out:
                        sink.close()
                print(f"misync: exported {n} audit records", file=sys.stderr)
                return ExitCode.OK
        if args.command == "state":
            return _state_migrate(rt, args, out)
    except (StateUnavailableError, TargetError) as exc:  # exit 3: nothing was changed
        log.error(
            "target.unavailable" if isinstance(exc, TargetError) else "state.unavailable",
            error=str(exc),
            detail=getattr(exc, "detail", ""),
            command=args.command,
        )
        raise
    except (sqlite3.Error, OSError) as exc:  # a read-only, full or damaged state folder
        condition = state_condition(exc, rt.settings.state.dir)
        if condition is None:
            raise  # not a condition of the state folder: a bug
        log.error("state.unavailable", error=condition, command=args.command)
        raise UserError(
            f"{condition}; the command stopped there (make the folder writable or free "
            "space, then run it again; audit verify and export work on a read-only copy)",
            ExitCode.UNAVAILABLE,
        ) from exc
    raise UserError(f"unknown command {args.command}")


def _held(rt: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    """``misync held list|accept|approve|revoke`` (and ``quarantine release``)."""
    import json

    from connector.audit import AuditIntegrityError, AuditWriteError
    from connector.runs import held as decisions

    log = structlog.get_logger("misync.cli")
    with rt.store() as store:
        entries = decisions.list_held(store, rt.settings.apply.quarantine_after)
        if args.held_command == "list":
            if args.format == "json":
                out.write(json.dumps([e.as_json() for e in entries], indent=2) + "\n")
            else:
                out.write(decisions.render_list(entries, rt.rules.tz))
            return ExitCode.OK
        by, at = decisions.operator(), rt.clock()
        try:
            entry = decisions.resolve(entries, args.key)
            with rt.audit() as audit:
                if args.held_command == "revoke":
                    d = decisions.revoke(store, audit, entry, reason=args.reason, by=by, at=at)
                    log.warning("held.revoked", key=entry.key, verdict=d.verdict, by=by)
                    out.write(f"revoked the {d.verdict} of {entry.key}\n")
                    return ExitCode.OK
                until = getattr(args, "until", None)
                d = decisions.decide(
                    store,
                    audit,
                    entry,
                    args.held_command,
                    reason=args.reason,
                    by=by,
                    at=at,
                    until=until,
                )
        except AuditIntegrityError as exc:  # nothing was decided
            raise UserError(f"refused: {exc}", ExitCode.TAMPERED) from exc
        except AuditWriteError as exc:  # nothing was decided
            raise UserError(f"refused: {exc}", ExitCode.AUDIT_WRITE) from exc
    log.warning(f"held.{d.verdict}", key=entry.key, by=by, reason=d.reason, until=str(until))
    if d.verdict == "accept":
        lapse = f" until {d.until.astimezone(rt.rules.tz).isoformat()}" if d.until else ""
        out.write(
            f"accepted {entry.key}{lapse}: left as it is; it reopens if what misync would do "
            "changes\n"
        )
    else:
        out.write(f"approved {entry.key}: the next run carries it out once, if it still plans it\n")
    return ExitCode.OK


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(callable(isatty) and isatty())
    except ValueError:  # closed
        return False


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
        plan, _ = runs.make_plan(rt, store, rt.clock(), override_guard=args.override_guard)
    # with --format json standard output is for the JSON: the plan goes to the terminal
    screen = out if args.format == "text" else sys.stderr
    screen.write(render_plan(plan, limit=_view_limit(args, plan), tz=rt.rules.tz))
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


def _explain(rt: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    import json

    from connector.reconcile.explain import (
        account_json,
        person_json,
        render_account,
        render_person,
    )
    from connector.runs.explain import PersonExplanation, explain

    with rt.store() as store:
        found = explain(rt, store, args.person_id, args.as_of or rt.clock())
    tz = rt.rules.tz
    if isinstance(found, PersonExplanation):
        parts = (found.person_id, found.decision, found.rejected, found.account, found.fate)
        if args.format == "json":
            out.write(json.dumps(person_json(*parts, tz=tz), indent=2) + "\n")
        else:
            out.write(render_person(*parts, tz=tz))
    elif args.format == "json":
        out.write(json.dumps(account_json(found), indent=2) + "\n")
    else:
        out.write(render_account(found))
    return ExitCode.OK


_USES_SECRETS = frozenset({"plan", "apply", "explain", "report", "run"})


def _view_limit(args: argparse.Namespace, plan: Plan) -> int | None:
    """None lists every action; a number gives the summary view with that many of each."""
    if getattr(args, "summary", False):
        return SUMMARY_VIEW_FIRST
    if getattr(args, "full", False) or len(plan.actions) <= SUMMARY_VIEW_OVER:
        return None
    return SUMMARY_VIEW_FIRST


def _report(rt: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    from connector.reconcile import PlanFormatError, plan_from_json
    from connector.report import render_html
    from connector.report.service import plan_report, run_report, write_html

    if args.run:
        report = run_report(rt, args.run, wda=args.wda)  # RunNotFoundError: exit 2
    else:
        reviewed = None
        if args.plan_file:
            try:
                reviewed = plan_from_json(
                    args.plan_file.read_text(encoding="utf-8"), source=str(args.plan_file)
                )
            except OSError as exc:
                raise UserError(f"{args.plan_file}: cannot read plan: {exc.strerror}") from exc
            except PlanFormatError as exc:
                raise UserError(str(exc)) from exc
        report = plan_report(
            rt,
            as_of=args.as_of,
            plan=reviewed,
            wda=args.wda,
            override_guard=args.override_guard,
        )
    if args.out:
        write_html(args.out, report)
        print(f"misync: report written to {args.out}", file=sys.stderr)
    else:
        out.write(render_html(report))
    return ExitCode.OK


@contextmanager
def _alert_manager(rt: Runtime) -> Iterator[AlertManager]:
    """The configured alert sinks behind the alert manager, with its own connections to the
    state store and the audit trail (closed when the command ends)."""
    from connector.alerts.manager import build_alert_sink

    with rt.store() as store, rt.audit() as audit:
        yield build_alert_sink(rt.settings, store, audit, clock=rt.clock)


@contextmanager
def _notifier(rt: Runtime) -> Iterator[Notifier | None]:
    """The 3.k notifier when ``[notifications] enabled``; it finishes sending on exit."""
    from connector.alerts.notify import Notifier

    n = rt.settings.notifications
    smtp = n.smtp or rt.settings.alerts.email
    if not n.enabled or smtp is None:
        yield None
        return
    with Notifier(n, smtp, tz=rt.rules.tz) as notifier:
        yield notifier


def _status(rt: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    import json

    from connector.health import collect_status, render_status

    with rt.store() as store:
        s = collect_status(rt.settings, store, rt.clock())
    out.write(json.dumps(s, indent=2) + "\n" if args.format == "json" else render_status(s))
    return ExitCode.OK


def _run_daemon(rt: Runtime, args: argparse.Namespace) -> int:
    from connector.daemon import Daemon
    from connector.settings import ConfigError

    def load(path: Path | None) -> Runtime:
        # a reload must not exit the process: problems come back as exceptions
        from connector.settings import check_secrets

        try:
            new = _load(argparse.Namespace(config=path))
            check_secrets(new.settings)  # a missing or empty secret file refuses it too
        except MisyncError as exc:
            raise ConfigError(str(exc)) from exc
        return new

    daemon = Daemon(  # a bad schedule or feed layout: exit 2
        rt,
        config_path=_config_path(args),
        load=load,
        alerts_for=_alert_manager,  # dedup, reminders, email, webhook ([alerts])
        observer_for=_notifier,  # 3.k notifications ([notifications])
    )
    from connector.health.metrics import start_metrics_server

    try:
        metrics = start_metrics_server(rt.settings, rt.clock)  # [metrics] listen, if set
    except OSError as exc:  # the address is taken or not ours
        raise UserError(f"metrics: {rt.settings.metrics.listen}: {exc.strerror}") from exc
    try:
        return daemon.run()
    finally:
        if metrics is not None:
            metrics.close()


def _config_check(
    rt: Runtime, out: TextIO, *, allow_missing_feeds: bool = False, connect: bool = False
) -> int:
    """Validate what can be validated without touching the directory (unless
    ``connect``: then bind and search once)."""
    from connector.daemon import check_schedule
    from connector.feeds import FeedLayout, check_headers, load_feed_layout
    from connector.feeds.layout import FeedLayoutError
    from connector.settings import ConfigError

    s = rt.settings
    problems: list[str] = []
    warnings: list[str] = []
    layout: FeedLayout | None = None
    try:
        layout = load_feed_layout(s.feeds.mapping)
    except FeedLayoutError as exc:
        problems.append(str(exc))
    if not s.feeds.dir.is_dir():
        missing = f"feeds.dir: {s.feeds.dir} is not a directory"
        (warnings if allow_missing_feeds and not s.feeds.dir.exists() else problems).append(missing)
    elif layout is not None:
        for p in check_headers(s.feeds, layout):  # each file exists, with its columns
            if allow_missing_feeds and p.endswith(": feed file not found"):
                warnings.append(f"{p} (not delivered yet)")
            else:
                problems.append(p)
    try:
        check_schedule(s.daemon, s.policy.tz)
    except ConfigError as exc:
        problems.append(str(exc))
    from connector.settings import check_secrets, config_warnings

    try:
        check_secrets(s)  # missing, unreadable or empty
    except ConfigError as exc:
        problems.append(str(exc))
    from connector.alerts.manager import config_problems

    problems += config_problems(s)  # alert and notification secrets, templates, metrics
    if connect and not problems:
        from connector.targets.base import IncrementalTarget, TargetError, no_mark_warning

        try:
            target = rt.target()
            try:
                target.find("misync-config-check")  # binds, then one search in the scope
                # the daemon's incremental cycles need a mark (LDAP: modifyTimestamp)
                if isinstance(target, IncrementalTarget) and target.high_water_mark() is None:
                    warnings.append(no_mark_warning(target.description))
            finally:
                target.close()
        except TargetError as exc:
            # the adapter names what failed: the URL, or the URL, bind DN and password file
            problems.append(f"target: {exc}" + (f" ({exc.detail})" if exc.detail else ""))
        else:
            out.write(f"  directory connection OK: {target.description}\n")
    if connect and not problems and s.state.url:
        from connector.state import StateUnavailableError
        from connector.state.postgres import connect_settings

        try:
            connect_settings(s.state).close()  # logs in; creates nothing
        except StateUnavailableError as exc:
            problems.append(str(exc))
        else:
            out.write(f"  state database connection OK: {s.state.url}\n")
    for w in warnings:
        out.write(f"  warning: {w}\n")
    for p in problems:
        out.write(f"  {p}\n")
    for warning in config_warnings(s):
        out.write(f"  WARNING: {warning}\n")
    if s.audit.key_file is None:
        from connector.audit import UNKEYED_WARNING

        out.write(f"  warning: {UNKEYED_WARNING}\n")
    if problems:
        out.write(f"configuration has {len(problems)} problem(s)\n")
        return ExitCode.USAGE
    out.write(
        f"configuration OK: target {s.target.kind} via mapping {rt.mapping.name}; "
        f"feeds in {s.feeds.dir}; state in {s.state.where}\n"
    )
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
