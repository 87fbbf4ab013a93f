"""One error root and one exit-code table (connector/errors.py): every exception class
misync defines derives from MisyncError (none from ValueError or RuntimeError, which
would turn a real bug into "usage error"); each carries its exit code; the command's
edge exits with it; the README's table lists the same codes."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import connector
from connector import cli
from connector.audit import AuditIntegrityError, AuditWriteError
from connector.errors import MEANING, ExitCode, MisyncError, exit_codes_help
from connector.feeds.layout import FeedLayoutError
from connector.mapping import MappingError
from connector.reconcile.serialize import PlanFormatError
from connector.runs.planning import DriftError
from connector.settings import ConfigError, SecretError
from connector.state import StateBusyError, StateUnavailableError
from connector.targets.base import TargetUnavailableError, TemporaryTargetError

ROOT = Path(__file__).resolve().parents[2]


def _defined_exceptions() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(connector.__path__, "connector."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra (psycopg, prometheus-client) not installed
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


def test_every_exception_misync_defines_has_the_one_root() -> None:
    found = _defined_exceptions()
    assert len(found) > 20
    strays = [f"{c.__module__}.{c.__qualname__}" for c in found if not issubclass(c, MisyncError)]
    assert strays == []
    builtin = [
        c.__qualname__ for c in found if issubclass(c, ValueError | RuntimeError | LookupError)
    ]
    assert builtin == []  # `except ValueError` must never mean "the user's mistake"


@pytest.mark.parametrize(
    ("error", "code", "temporary"),
    [
        (ConfigError("x"), ExitCode.USAGE, False),
        (SecretError("x"), ExitCode.USAGE, False),
        (MappingError("x"), ExitCode.USAGE, False),
        (FeedLayoutError("x"), ExitCode.USAGE, False),
        (PlanFormatError("x"), ExitCode.USAGE, False),
        (TargetUnavailableError("x"), ExitCode.UNAVAILABLE, False),
        (TemporaryTargetError("x"), ExitCode.UNAVAILABLE, True),
        (StateUnavailableError("x"), ExitCode.UNAVAILABLE, True),
        (DriftError("x", []), ExitCode.REFUSED, False),
        (AuditIntegrityError("x"), ExitCode.TAMPERED, False),
        (StateBusyError("x"), ExitCode.BUSY, True),
        (AuditWriteError("x"), ExitCode.AUDIT_WRITE, False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_each_error_carries_its_exit_code_to_the_command_edge(
    error: MisyncError,
    code: ExitCode,
    temporary: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (error.exit_code, error.temporary) == (code, temporary)

    def dispatch(*_: object) -> int:
        raise error

    monkeypatch.setattr(cli, "_dispatch", dispatch)
    assert cli.main(["status"]) == code
    last = capsys.readouterr().err.splitlines()[-1]  # after a JSON event, if logging is set
    assert last.startswith("misync: ") and last.endswith("x")


def test_a_value_error_from_inside_a_command_is_a_bug_not_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def dispatch(*_: object) -> int:
        raise ValueError("a real bug")

    monkeypatch.setattr(cli, "_dispatch", dispatch)
    assert cli.main(["status"]) == ExitCode.BUG
    assert "internal error (a bug)" in capsys.readouterr().err


def test_one_table_in_the_help_and_the_readme() -> None:
    assert set(MEANING) == set(ExitCode)
    text = exit_codes_help()
    for code in ExitCode:
        assert re.search(rf"^  {code.value}\s", text, re.M), code
    assert cli.build_parser().epilog == text
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    assert {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)} == {c.value for c in ExitCode}
