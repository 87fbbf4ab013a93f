"""The ``misync`` command line: every subcommand and option, with its help, and the
instants and anchors the options take."""

from __future__ import annotations

import argparse
from datetime import date, datetime, time, tzinfo
from pathlib import Path
from typing import TypeAlias

from connector import __version__
from connector.cli.common import DEFAULT_CONFIG
from connector.errors import exit_codes_help
from connector.reconcile.render import SUMMARY_VIEW_FIRST, SUMMARY_VIEW_OVER

_ISO_DATE_LEN = len("2026-12-04")
_SHA256_HEX_LEN = 64


def _instant(text: str) -> date | datetime:
    """An instant with offset, a local time without one, or a date (resolved in
    ``policy.timezone`` once the configuration is loaded: see ``_resolve_instant``)."""
    try:
        if len(text.strip()) == _ISO_DATE_LEN:
            return date.fromisoformat(text.strip())
        return datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a date or an ISO 8601 time: {text!r} (e.g. 2026-11-25, "
            "2026-11-25T17:00 or 2026-11-25T17:00-08:00)"
        ) from exc


def resolve_instant(value: date | datetime, tz: tzinfo) -> datetime:
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
    if not seq.strip().isdigit() or int(seq) < 1 or len(digest) != _SHA256_HEX_LEN:
        raise argparse.ArgumentTypeError(f"{text!r} is not SEQ:HASH (SEQ >= 1, 64 hex digits)")
    try:
        bytes.fromhex(digest)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: the hash is not hexadecimal") from exc
    return int(seq), digest


# where each subcommand's parser is added (``ArgumentParser.add_subparsers``)
_Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


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
    _add_plan(sub)
    _add_apply(sub)
    _add_report(sub)
    _add_run(sub)
    _add_explain(sub)
    _add_held(sub)
    _add_quarantine(sub)
    _add_status(sub)
    _add_config(sub)
    _add_audit(sub)
    _add_state(sub)
    _config_option_everywhere(p)
    return p


FULL_SCAN_HELP = (
    "read the whole directory, not the stored snapshot and what changed since it (a warm "
    "read, used when the snapshot's last full scan is at most plan.warm_max_age_seconds old "
    "and nothing gives a doubt)"
)


def _add_plan(sub: _Subcommands) -> None:
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
    plan.add_argument("--full-scan", action="store_true", help=FULL_SCAN_HELP)
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 9 when actions are held or feeds are not usable, 8 when the plan has "
        "actions, 0 when there is nothing to do",
    )


def _add_apply(sub: _Subcommands) -> None:
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
    apply.add_argument("--full-scan", action="store_true", help=FULL_SCAN_HELP)
    apply.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="do not ask before carrying out the plan (apply asks only when standard input "
        "is a terminal)",
    )


def _add_report(sub: _Subcommands) -> None:
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
    report.add_argument("--full-scan", action="store_true", help=FULL_SCAN_HELP)


def _add_run(sub: _Subcommands) -> None:
    sub.add_parser(
        "run",
        help="the daemon: reconcile on a schedule, disable separated people within a "
        "minute, alert (foreground; systemd Type=notify)",
    )


def _add_explain(sub: _Subcommands) -> None:
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
    when = explain.add_mutually_exclusive_group()
    when.add_argument(
        "--as-of",
        type=_instant,
        help="decide now, on today's feeds, as at this instant (a what-if; default: now): "
        + INSTANT_HELP,
    )
    when.add_argument(
        "--at",
        type=_instant,
        help="the decision as misync made it then: from the archived inputs of the last "
        "run at or before this instant (which run is said): " + INSTANT_HELP,
    )
    explain.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or JSON"
    )


def _add_held(sub: _Subcommands) -> None:
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


def _add_quarantine(sub: _Subcommands) -> None:
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


def _add_status(sub: _Subcommands) -> None:
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


def _add_config(sub: _Subcommands) -> None:
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


def _add_audit(sub: _Subcommands) -> None:
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
    replay = asub.add_parser(
        "replay",
        help="rebuild a run's plan from its archived inputs alone and check its checksum "
        "against the trail",
    )
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the run to replay")
    which.add_argument("--all", action="store_true", help="every run still archived")
    access = asub.add_parser(
        "access",
        help="who had access at an instant, and why: the enabled accounts as the last full "
        "run at or before it read them, from its archived inputs",
    )
    access.add_argument("--at", type=_instant, required=True, help="the instant: " + INSTANT_HELP)
    access.add_argument("--wda", help="only the people of this Workforce Development Area")
    access.add_argument(
        "--format",
        choices=("csv", "json"),
        default="csv",
        help="CSV with a header (default), or JSON",
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


def _add_state(sub: _Subcommands) -> None:
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
