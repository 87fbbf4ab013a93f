"""The ``misync`` command: the edge where errors become exit codes, and one function per
command (``connector/cli/``: the parser, the shared loading, then plan/apply, the views,
held actions, the audit records and the service).

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
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

import structlog

from connector.cli.common import USES_SECRETS, UserError, load_runtime
from connector.cli.parser import build_parser, resolve_instant
from connector.errors import ExitCode, MisyncError
from connector.state.errors import state_condition

if TYPE_CHECKING:
    from connector.app import Runtime

__all__ = ["UserError", "build_parser", "main"]

Command = Callable[["Runtime", argparse.Namespace, TextIO, str], int]


def _commands() -> dict[str, Command]:
    """Each subcommand's function (imported when the command runs: `misync --help` stays
    light)."""
    from connector.cli import held, plan, records, service, views

    return {
        "plan": plan.plan_command,
        "apply": plan.apply_command,
        "report": views.report_command,
        "explain": views.explain_command,
        "status": views.status_command,
        "config": service.config_command,
        "run": service.run_command,
        "held": held.held_command,
        "quarantine": held.quarantine_command,
        "audit": records.audit_command,
        "state": records.state_command,
    }


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


def _dispatch(args: argparse.Namespace, out: TextIO, run_id: str) -> int:
    """Load the configuration, resolve the instants, check the secrets, run the command;
    a state folder that cannot be read or written is exit 3, not a bug."""
    from connector.state import StateUnavailableError
    from connector.targets.base import TargetError

    rt = load_runtime(args)
    log = structlog.get_logger("misync.cli")
    for name in ("as_of", "since", "until"):  # dates and local times are in policy.timezone
        if getattr(args, name, None) is not None:
            setattr(args, name, resolve_instant(getattr(args, name), rt.rules.tz))
    if args.command in USES_SECRETS:
        from connector.settings import check_secrets

        check_secrets(rt.settings)  # a missing, unreadable or empty secret: exit 2
    command = _commands().get(args.command)
    if command is None:
        raise UserError(f"unknown command {args.command}")
    if args.command == "run":  # the daemon handles its own conditions
        return command(rt, args, out, run_id)
    try:
        return command(rt, args, out, run_id)
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
