"""Operator-facing output without servers: the summary view of a large plan, the live
progress line on a terminal, the progress events elsewhere, the log format choice,
configuration warnings."""

from __future__ import annotations

import io
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from connector.executor import ActionOutcome
from connector.logs import resolve_format
from connector.model.accounts import Change, ChangeKind
from connector.model.decisions import Reason
from connector.model.plan import Action, Op, Plan
from connector.progress import ApplyProgress
from connector.reconcile.render import render_plan
from connector.settings import Settings, config_warnings

AS_OF = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)


def _create(i: int) -> Action:
    return Action(
        op=Op.CREATE,
        person_id=f"P{i:05d}",
        account_id=None,
        logon_id=f"u{i}",
        changes=tuple(Change(ChangeKind.ATTRIBUTE, f"a{k}", (), ("v",)) for k in range(12)),
        reasons=(Reason("entitled", "3.a, 3.i", "every condition holds"),),
        before=None,
    )


def test_3000_creates_summary_view_is_short_and_the_full_listing_stays() -> None:
    plan = Plan(AS_OF, "t", tuple(_create(i) for i in range(3000)))
    summary = render_plan(plan, limit=10)
    full = render_plan(plan)
    assert len(full.splitlines()) > 40_000
    assert len(summary.splitlines()) < 200
    assert "CREATE 3000; by reason: entitled 3000" in summary
    assert "... and 2990 more create actions" in summary
    assert "P00009" in summary and "P00010" not in summary


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _outcome(i: int, status: str = "ok") -> ActionOutcome:
    return ActionOutcome(_create(i), status, f"uid=u{i}", 1, "" if status == "ok" else "boom")


def test_progress_on_a_terminal_is_a_live_line_with_rate_and_eta() -> None:
    ticks = iter([0.0] + [1.0 + i for i in range(10)])
    err, out = _Tty(), io.StringIO()
    p = ApplyProgress(out, err, render=lambda _: "THE PLAN\n", clock=lambda: next(ticks))
    p.planned(Plan(AS_OF, "t", tuple(_create(i) for i in range(4))))
    assert out.getvalue().startswith("THE PLAN\n")  # the plan before anything is done
    assert err.getvalue() == ""
    for i in range(4):
        p.outcome(_outcome(i, "failed" if i == 1 else "ok"))
    p.close()
    text = err.getvalue()
    assert "\r  applied 1/4 (1.0/s, ETA 3 s)" in text
    assert "\r  applied 4/4, 1 failed (1.0/s, ETA 0 s)" in text
    assert text.endswith("\n")


def test_progress_elsewhere_is_a_log_event_every_n_actions() -> None:
    ticks = iter([0.0] + [0.01 * i for i in range(1, 300)])
    p = ApplyProgress(None, io.StringIO(), render=str, every_actions=100, clock=lambda: next(ticks))
    with capture_logs() as logs:
        p.planned(Plan(AS_OF, "t", tuple(_create(i) for i in range(250))))
        for i in range(250):
            p.outcome(_outcome(i))
    done = [e["done"] for e in logs if e["event"] == "apply.progress"]
    assert done == [100, 200, 250]


@pytest.mark.parametrize(
    ("fmt", "tty", "expected"),
    [
        ("auto", True, "console"),
        ("auto", False, "json"),
        ("json", True, "json"),
        ("console", False, "console"),
    ],
)
def test_log_format_follows_the_terminal(fmt: str, tty: bool, expected: str) -> None:
    assert resolve_format(fmt, _Tty() if tty else io.StringIO()) == expected


@pytest.mark.parametrize(
    ("target", "warned"),
    [
        ({"kind": "ldap", "ldap": {"url": "ldap://127.0.0.1:389", "base_dn": "o=x"}}, False),
        ({"kind": "ldap", "ldap": {"url": "ldap://localhost/", "base_dn": "o=x"}}, False),
        ({"kind": "ldap", "ldap": {"url": "ldap://[::1]:389", "base_dn": "o=x"}}, False),
        ({"kind": "ldap", "ldap": {"url": "ldap://dir.example.org", "base_dn": "o=x"}}, True),
        (
            {
                "kind": "ldap",
                "ldap": {"url": "ldap://dir.example.org", "base_dn": "o=x", "start_tls": True},
            },
            False,
        ),
        (
            {
                "kind": "ldap",
                "ldap": {"url": "ldaps://dir.example.org", "base_dn": "o=x", "verify_tls": False},
            },
            True,
        ),
        ({"kind": "scim", "scim": {"base_url": "https://idm.example.org/scim/v2"}}, False),
        ({"kind": "scim", "scim": {"base_url": "http://idm.example.org/scim/v2"}}, True),
        ({"kind": "scim", "scim": {"base_url": "http://127.0.0.1:8080/scim/v2"}}, False),
        (
            {
                "kind": "scim",
                "scim": {"base_url": "https://idm.example.org/scim/v2", "verify_tls": False},
            },
            True,
        ),
    ],
)
def test_transport_warnings(target: dict[str, object], warned: bool) -> None:
    assert bool(config_warnings(Settings.model_validate({"target": target}))) is warned


def test_pyproject_license_is_an_spdx_expression() -> None:
    """A license table is deprecated by setuptools (a warning on every install)."""
    body = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert isinstance(body["project"]["license"], str)
    assert not any("License ::" in c for c in body["project"].get("classifiers", []))


def test_library_warnings_reach_the_json_log_as_json_events(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """APScheduler logs through stdlib ``logging``: its warnings are JSON events like
    misync's own (not plain text lines in journald), its per-execution INFO lines stay
    out."""
    import json
    import logging

    from connector.logs import configure

    configure("info", "json")
    capsys.readouterr()
    aps = logging.getLogger("apscheduler.scheduler")
    aps.info("Running job %s", "watch")
    aps.warning(
        'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
        "Daemon._job_watch",
        1,
    )
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    assert event["level"] == "warning" and event["logger"] == "apscheduler.scheduler"
    assert event["event"] == "library.log"  # one stable name; the library's words as message
    assert "maximum number of running instances reached (1)" in event["message"]
    assert "timestamp" in event
