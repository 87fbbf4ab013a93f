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
    from connector.runs.explain import PersonExplanation, explain, explain_at
    from connector.timefmt import when

    tz = rt.rules.tz
    at = None
    if getattr(args, "at", None) is not None:  # history: a past run's archived inputs
        at = explain_at(rt, args.person_id, args.at)
        found = at.found
        if args.format == "text":
            out.write(
                f"As decided by run {at.run_id} ({at.kind}) at {when(at.as_of, tz)},"
                " from its archived inputs:\n"
            )
    else:
        with rt.store() as store:
            found = explain(rt, store, args.person_id, args.as_of or rt.clock())
    if isinstance(found, PersonExplanation):
        parts = (found.person_id, found.decision, found.rejected, found.account, found.fate)
        if args.format == "json":
            body = person_json(*parts, tz=tz)
            if at is not None:
                body["run"] = {"run_id": at.run_id, "kind": at.kind, "as_of": at.as_of.isoformat()}
            out.write(json.dumps(body, indent=2) + "\n")
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
            full_scan=args.full_scan,
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
