"""``misync run`` (the daemon) and ``misync config check``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from connector.cli.common import UserError, alert_manager, config_path, load_runtime, notifier
from connector.errors import ExitCode, MisyncError

if TYPE_CHECKING:
    from connector.app import Runtime
    from connector.feeds import FeedLayout


def run_command(rt: Runtime, args: argparse.Namespace, out: TextIO, run_id: str) -> int:
    from connector.daemon import Daemon
    from connector.settings import ConfigError

    def load(path: Path | None) -> Runtime:
        # a reload must not exit the process: problems come back as exceptions
        from connector.settings import check_secrets

        try:
            new = load_runtime(argparse.Namespace(config=path))
            check_secrets(new.settings)  # a missing or empty secret file refuses it too
        except MisyncError as exc:
            raise ConfigError(str(exc)) from exc
        return new

    daemon = Daemon(  # a bad schedule or feed layout: exit 2
        rt,
        config_path=config_path(args),
        load=load,
        alerts_for=alert_manager,  # dedup, reminders, email, webhook ([alerts])
        observer_for=notifier,  # 3.k notifications ([notifications])
    )
    from connector.health.metrics import start_metrics_server

    try:
        metrics = start_metrics_server(rt.settings, rt.clock)  # [metrics] listen, if set
    except OSError as exc:  # the address is taken or not ours
        raise UserError(f"metrics: {rt.settings.metrics.listen}: {exc.strerror}") from exc
    try:
        return daemon.run()
    finally:
        if metrics is not None:
            metrics.close()


def config_command(rt: Runtime, args: argparse.Namespace, out: TextIO, run_id: str) -> int:
    """``misync config check``: validate what can be validated without touching the
    directory (unless ``--connect``: then bind and search once, and log in to a
    PostgreSQL state)."""
    from connector.settings import config_warnings

    s = rt.settings
    problems, warnings = _file_problems(rt, allow_missing_feeds=args.allow_missing_feeds)
    if args.connect and not problems:
        problems, warnings = _connection_problems(rt, out, problems, warnings)
    for w in warnings:
        out.write(f"  warning: {w}\n")
    for p in problems:
        out.write(f"  {p}\n")
    for warning in config_warnings(s):
        out.write(f"  WARNING: {warning}\n")
    if s.audit.key_file is None:
        from connector.audit import UNKEYED_WARNING

        out.write(f"  warning: {UNKEYED_WARNING}\n")
    if problems:
        out.write(f"configuration has {len(problems)} problem(s)\n")
        return ExitCode.USAGE
    out.write(
        f"configuration OK: target {s.target.kind} via mapping {rt.mapping.name}; "
        f"feeds in {s.feeds.dir}; state in {s.state.where}\n"
    )
    return ExitCode.OK


def _file_problems(rt: Runtime, *, allow_missing_feeds: bool) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the files: the feed layout and folder, every feed's
    columns, the schedule, every secret file, the alert and notification paths."""
    from connector.alerts.manager import config_problems
    from connector.daemon import check_schedule
    from connector.feeds import check_headers, load_feed_layout
    from connector.feeds.layout import FeedLayoutError
    from connector.settings import ConfigError, check_secrets

    s = rt.settings
    problems: list[str] = []
    warnings: list[str] = []
    layout: FeedLayout | None = None
    try:
        layout = load_feed_layout(s.feeds.mapping)
    except FeedLayoutError as exc:
        problems.append(str(exc))
    if not s.feeds.dir.is_dir():
        missing = f"feeds.dir: {s.feeds.dir} is not a directory"
        (warnings if allow_missing_feeds and not s.feeds.dir.exists() else problems).append(missing)
    elif layout is not None:
        for p in check_headers(s.feeds, layout):  # each file exists, with its columns
            if allow_missing_feeds and p.endswith(": feed file not found"):
                warnings.append(f"{p} (not delivered yet)")
            else:
                problems.append(p)
    try:
        check_schedule(s.daemon, s.policy.tz)  # a crontab APScheduler cannot read
    except ConfigError as exc:
        problems.append(str(exc))
    try:
        check_secrets(s)  # missing, unreadable or empty
    except ConfigError as exc:
        problems.append(str(exc))
    problems += config_problems(s)  # alert and notification secrets, templates, metrics
    if s.areas and layout is not None and s.feeds.dir.is_dir():
        warnings += _unknown_areas(rt, layout)
    return problems, warnings


def _unknown_areas(rt: Runtime, layout: FeedLayout) -> list[str]:
    """``[areas.W]`` sections whose W is in no row of the organizations feed: their
    monitors would get nothing (a typo, or an area not delivered yet)."""
    from connector.feeds import read_feed
    from connector.model.feeds import FeedName, FeedState

    s = rt.settings
    records, state, detail = read_feed(s.feeds, FeedName.ORGANIZATIONS, layout)
    file = s.feeds.dir / layout.files[FeedName.ORGANIZATIONS]
    if state is not FeedState.OK:
        return [f"areas: {file} cannot be read to check the area names: {detail}"]
    known = {o.wda for o in records}
    return [
        f"areas.{name}: no row of {file} has wda {name!r}; its monitors get nothing "
        f"(known: {', '.join(sorted(known)) or 'none'})"
        for name in sorted(s.areas)
        if name not in known
    ]


def _connection_problems(
    rt: Runtime, out: TextIO, problems: list[str], warnings: list[str]
) -> tuple[list[str], list[str]]:
    """Bind to the directory and search once (and log in to a PostgreSQL state)."""
    from connector.targets.base import IncrementalTarget, TargetError, no_mark_warning

    s = rt.settings
    try:
        target = rt.target()
        try:
            target.find("misync-config-check")  # binds, then one search in the scope
            # the daemon's incremental cycles need a mark (LDAP: modifyTimestamp)
            if isinstance(target, IncrementalTarget) and target.high_water_mark() is None:
                warnings = [*warnings, no_mark_warning(target.description)]
        finally:
            target.close()
    except TargetError as exc:
        # the adapter names what failed: the URL, or the URL, bind DN and password file
        return [*problems, f"target: {exc}" + (f" ({exc.detail})" if exc.detail else "")], warnings
    out.write(f"  directory connection OK: {target.description}\n")
    if s.state.url:
        from connector.state import StateUnavailableError
        from connector.state.postgres import connect_settings

        try:
            connect_settings(s.state).close()  # logs in; creates nothing
        except StateUnavailableError as exc:
            return [*problems, str(exc)], warnings
        out.write(f"  state database connection OK: {s.state.url}\n")
    return problems, warnings
