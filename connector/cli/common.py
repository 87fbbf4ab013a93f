"""What every command shares: the refusal worded for the terminal, finding and loading
the configuration, the view limit of a plan, and the alert and notification sinks a run
reports to."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from connector.errors import ExitCode, MisyncError
from connector.logs import configure
from connector.reconcile.render import SUMMARY_VIEW_FIRST, SUMMARY_VIEW_OVER

if TYPE_CHECKING:
    from connector.alerts.areas import AreaIndex
    from connector.alerts.manager import AlertManager
    from connector.alerts.notify import RequesterNotifier
    from connector.app import Runtime
    from connector.model.feeds import FeedSet
    from connector.model.plan import Plan

DEFAULT_CONFIG = Path("/etc/misync/misync.toml")


class UserError(MisyncError):
    """A refusal worded for the person at the terminal (one line, no traceback), with the
    exit code the command's situation calls for."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.exit_code = code


def config_path(args: argparse.Namespace) -> Path:
    if args.config is not None:
        return Path(args.config)
    env = os.environ.get("MISYNC_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def load_runtime(args: argparse.Namespace) -> Runtime:
    from connector.app import Runtime
    from connector.settings import ConfigError, load_settings

    path = config_path(args)
    settings = load_settings(path)  # ConfigError (exit 2) names the file's path
    configure(settings.log.level, settings.log.format)
    from connector.settings import config_warnings

    for warning in config_warnings(settings):  # every command says it, not only config check
        structlog.get_logger("misync.config").warning("config.insecure", message=warning)
    try:
        return Runtime(settings)
    except ConfigError as exc:  # a cross-field rule: name the configuration file too
        raise ConfigError(f"{path}: {exc}") from exc


def isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(callable(isatty) and isatty())
    except ValueError:  # closed
        return False


USES_SECRETS = frozenset({"plan", "apply", "explain", "report", "run"})


def view_limit(args: argparse.Namespace, plan: Plan) -> int | None:
    """None lists every action; a number gives the summary view with that many of each."""
    if getattr(args, "summary", False):
        return SUMMARY_VIEW_FIRST
    if getattr(args, "full", False) or len(plan.actions) <= SUMMARY_VIEW_OVER:
        return None
    return SUMMARY_VIEW_FIRST


@contextmanager
def alert_manager(rt: Runtime) -> Iterator[AlertManager]:
    """The configured alert sinks behind the alert manager, with its own connections to the
    state store and the audit trail (closed when the command ends)."""
    from connector.alerts.manager import build_alert_sink

    with rt.store() as store, rt.audit() as audit:
        yield build_alert_sink(rt.settings, store, audit, clock=rt.clock, placement=area_placement)


def area_placement(feeds: FeedSet) -> AreaIndex:
    """Where a person's alerts go (``[areas.W]`` monitors, connector.alerts.areas): the
    area of their organization, and for a separation also the area of every organization
    their separation rows name. The one place alerts are placed: it is the pages'
    placement (connector.reconcile.areas), so a page and its alerts agree."""
    from connector.alerts.areas import AreaIndex
    from connector.reconcile.areas import areas_of

    areas = areas_of(feeds)
    return AreaIndex(current=areas.people, separated_from=areas.left)


@contextmanager
def notifier(rt: Runtime) -> Iterator[RequesterNotifier | None]:
    """The 3.k notifier when ``[notifications] enabled``; it finishes sending on exit."""
    from connector.alerts.notify import RequesterNotifier

    n = rt.settings.notifications
    smtp = n.smtp or rt.settings.alerts.email
    if not n.enabled or smtp is None:
        yield None
        return
    with RequesterNotifier(n, smtp, tz=rt.rules.tz) as notifier:
        yield notifier
