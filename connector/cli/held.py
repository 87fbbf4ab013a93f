"""``misync held`` (operators' decisions on held actions) and its ``quarantine``
aliases."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

import structlog

from connector.cli.common import UserError
from connector.errors import ExitCode

if TYPE_CHECKING:
    from connector.app import Runtime


def held_command(rt: Runtime, args: argparse.Namespace, out: TextIO, run_id: str = "") -> int:
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


def quarantine_command(rt: Runtime, args: argparse.Namespace, out: TextIO, run_id: str) -> int:
    """``quarantine list`` and ``quarantine release KEY`` (an audited ``held approve``)."""
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
    return held_command(rt, args, out, run_id)  # an alias: audited as an approval
