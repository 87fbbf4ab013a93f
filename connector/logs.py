"""structlog configuration for the ``misync`` process: JSON lines on stderr (journald),
readable console lines when stderr is a terminal (``[log] format = "auto"``).

Only the CLI calls ``configure``; library code just asks ``structlog.get_logger()``.
Events carry ids (person_id, account_id, run_id), never secrets and no names or emails.
"""

from __future__ import annotations

import logging
import sys

import structlog


class _Stderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing (not at configure time)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def resolve_format(fmt: str, stream: object = None) -> str:
    """``auto`` is ``console`` when the log goes to a terminal, else ``json``."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream if stream is not None else sys.stderr, "isatty", None)
    try:
        return "console" if callable(isatty) and isatty() else "json"
    except ValueError:  # a closed stream
        return "json"


def configure(level: str = "info", fmt: str = "auto") -> None:
    fmt = resolve_format(fmt)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
