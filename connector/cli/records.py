"""``misync audit verify|export`` (read-only: an auditor's copy will do) and ``misync
state migrate``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, TextIO

from connector.cli.common import UserError
from connector.errors import ExitCode

if TYPE_CHECKING:
    from connector.app import Runtime


def audit_command(rt: Runtime, args: argparse.Namespace, out: TextIO, run_id: str) -> int:
    """Verify the hash chain and its anchors, export the records, or replay runs."""
    if args.audit_command == "replay":
        from connector.cli.replay import replay_command

        return replay_command(rt, args, out)
    if args.audit_command == "access":
        from connector.cli.replay import access_command

        return access_command(rt, args, out)
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


def state_command(rt: Runtime, args: argparse.Namespace, out: TextIO, run_id: str) -> int:
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
