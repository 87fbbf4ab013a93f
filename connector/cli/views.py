"""``misync explain``, ``misync report`` and ``misync status``: read, never change."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, TextIO

from connector.cli.common import UserError
from connector.errors import ExitCode

if TYPE_CHECKING:
    from connector.app import Runtime

def explain_command(rt: Runtime, args: argparse.Namespace, out: TextIO, run_id: str) -> int:
    import json

    from connector.reconcile.explanation import (
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


def report_command(rt: Runtime, args: argparse.Namespace, out: TextIO, run_id: str) -> int:
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


def status_command(rt: Runtime, args: argparse.Namespace, out: TextIO, run_id: str) -> int:
    import json

    from connector.health import collect_status, render_status

    with rt.store() as store:
        s = collect_status(rt.settings, store, rt.clock())
    out.write(json.dumps(s, indent=2) + "\n" if args.format == "json" else render_status(s))
    return ExitCode.OK
