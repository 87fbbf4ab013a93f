"""The exit codes of ``misync`` and the root of every error misync raises on purpose.

``ExitCode`` is the one table of exit codes: ``misync --help`` prints it, the README
repeats it (a test keeps the two in step), and the command's edge
(``connector.cli.main``) turns any :class:`MisyncError` into its ``exit_code`` and one
line on standard error. Anything that is not a ``MisyncError`` reaching that edge is a
bug: exit 1 with the traceback logged.

Each error class says how it is to be handled (as kopf's errors carry their delay):
``exit_code`` for a command, ``temporary`` for a daemon job (the same call may succeed
later: a busy state folder, a directory that stopped answering), so nothing above
catches ``ValueError`` or ``RuntimeError`` to mean "the user's mistake".
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What ``misync`` exits with. The text of each is :data:`MEANING`."""

    OK = 0
    BUG = 1
    USAGE = 2
    UNAVAILABLE = 3
    INCOMPLETE = 4
    REFUSED = 5
    TAMPERED = 6
    BUSY = 7
    CHANGES = 8
    ATTENTION = 9
    AUDIT_WRITE = 10
    DECLINED = 11
    PIPE = 141


MEANING: dict[ExitCode, str] = {
    ExitCode.OK: "success; plan --detailed-exitcode: nothing to do",
    ExitCode.BUG: "internal error (a bug; the log has the traceback)",
    ExitCode.USAGE: "usage, configuration or input error (one line naming the file and the "
    "field; secret files included)",
    ExitCode.UNAVAILABLE: "the target could not be read (nothing was changed), or the state "
    "folder or database could not be read or written (read-only, full, damaged, "
    "unreachable: the command stopped there)",
    ExitCode.INCOMPLETE: "apply finished, but some actions failed or were held (a hold an "
    "operator accepted does not count), or feeds were not usable; or it stopped early "
    "(circuit breaker, run deadline) and the rest is recorded as not attempted: the next "
    "run resumes; audit replay: a run's inputs were pruned or never archived",
    ExitCode.REFUSED: "apply --plan refused: the plan was altered or the target drifted; "
    "state migrate refused",
    ExitCode.TAMPERED: "audit verify: the trail was altered; apply, held: the trail does not "
    "match its anchor, so nothing was done; audit replay: an archived input is missing or "
    "altered, or the rebuilt plan differs from the trail's",
    ExitCode.BUSY: "another misync run holds the state folder, or another host's daemon "
    "leads; nothing was done",
    ExitCode.CHANGES: "plan --detailed-exitcode: the plan has actions",
    ExitCode.ATTENTION: "plan --detailed-exitcode: actions are held or feeds are not usable "
    "(review needed; takes precedence over 8)",
    ExitCode.AUDIT_WRITE: "the audit trail could not be written (the message names the cause, "
    "e.g. a full disk); outcomes already known stay in the journal and the next run "
    "audits them first",
    ExitCode.DECLINED: 'apply on a terminal: the answer to "carry out these N changes?" was '
    "not yes; nothing was changed",
    ExitCode.PIPE: "the reader closed standard output (misync audit export | head): stopped "
    "quietly, as Unix tools do",
}


def exit_codes_help(width: int = 88) -> str:
    """The table for ``misync --help``."""
    import textwrap

    lines = ["exit codes:"]
    for code in ExitCode:
        body = textwrap.wrap(MEANING[code], width - 7)
        lines.append(f"  {code.value:<4} {body[0]}")
        lines += [f"       {more}" for more in body[1:]]
    return "\n".join(lines) + "\n"


class MisyncError(Exception):
    """Root of every error misync raises on purpose.

    ``exit_code``: what a command exits with when this reaches it. ``temporary``: the
    same call may succeed later, unchanged (the daemon retries; a command says so).
    """

    exit_code: ExitCode = ExitCode.USAGE
    temporary: bool = False
