"""structlog configuration for the ``misync`` process: JSON lines on stderr (journald),
readable console lines when stderr is a terminal (``[log] format = "auto"``).

Only the CLI calls ``configure``; library code just asks ``structlog.get_logger()``.
Events carry ids (person_id, account_id, run_id), never secrets and no names or emails.

Libraries that log through the standard ``logging`` module (APScheduler: "maximum number
of running instances reached", "Run time of job ... was missed") go through the same
renderer, so the JSON log has no plain-text lines: their event is ``library.log`` (one
stable name to filter on), with ``logger`` naming the library and ``message`` its
words. They log at WARNING and above only (APScheduler's INFO lines are one per job
execution: noise every poll).
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


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler on whatever ``sys.stderr`` is at the time of writing."""

    def __init__(self) -> None:
        super().__init__(_Stderr())


_HANDLER_NAME = "misync-structlog"


def configure(level: str = "info", fmt: str = "auto") -> None:
    fmt = resolve_format(fmt)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    _route_stdlib(shared, renderer, max(_LEVELS[level], logging.WARNING))
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def _library_event(
    logger: object, name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """A library's log line: a stable event name, its words as ``message``."""
    event["message"] = event.pop("event", "")
    event["event"] = "library.log"
    return event


def _route_stdlib(
    shared: list[structlog.typing.Processor], renderer: structlog.typing.Processor, level: int
) -> None:
    """stdlib ``logging`` records (APScheduler and other libraries) rendered as structlog
    events on stderr; one handler on the root logger, replaced when configured again."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _library_event],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler.setLevel(level)
    root.addHandler(handler)
