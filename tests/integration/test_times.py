"""One way to write a time (issue 13 item 12): every output shown to people (plan,
explain, status, apply, the HTML report, alert emails) and the JSON outputs write an
instant in ``policy.timezone`` (America/Los_Angeles here), to the second, with its offset.
The clock has microseconds, as a real one does. Demo world, real slapd, real SMTP relay.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from connector import app
from connector.cli import main
from tests.conftest import ROOT
from tests.integration.test_alerts_e2e import demo as demo  # the demo world, pinned clock
from tests.integration.test_alerts_e2e import write_config
from tests.integration.test_end_to_end import NOW

pytestmark = pytest.mark.slapd

INSTANT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d[0-9:.,]*(?:Z|[+-]\d\d:?\d\d)?")
# shown to people: policy.timezone, to the second, the zone's offset (PST -08:00, PDT -07:00)
SHOWN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-0[78]:00")
# JSON: ISO 8601 to the second with an offset (a plan's own instants may be in UTC)
JSON = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")


def _cli(world: dict[str, Any], capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["-c", str(world["cfg"]), *args])
    out = capsys.readouterr().out
    assert code in (0, 4), out
    return out


def _applied(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    _cli(world, capsys, "apply")


def _emails(world: dict[str, Any], capsys: pytest.CaptureFixture[str], kind: str | None) -> str:
    """The bodies of the alert emails of ``kind`` (None: the 3.k notifications)."""
    _applied(world, capsys)
    world["notifier_done"]()
    bodies = [m.get_content() for _, _, m in world["smtp"].messages if m["X-Misync-Kind"] == kind]
    assert bodies, kind
    return "\n".join(bodies)


def _report(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    out = world["tmp"] / "report.html"
    _cli(world, capsys, "report", "-o", str(out))
    return out.read_text(encoding="utf-8")


OUTPUTS: dict[str, Callable[[dict[str, Any], pytest.CaptureFixture[str]], str]] = {
    "plan text": lambda w, c: _cli(w, c, "plan"),
    "plan json": lambda w, c: _cli(w, c, "plan", "--format", "json"),
    "explain text": lambda w, c: _cli(w, c, "explain", "P1004"),
    "explain json": lambda w, c: _cli(w, c, "explain", "P1004", "--format", "json"),
    "apply text": lambda w, c: _cli(w, c, "apply"),
    "apply json": lambda w, c: _cli(w, c, "apply", "--format", "json"),
    "breach opened email": lambda w, c: _emails(w, c, "breach.open"),
    "breach closed email": lambda w, c: _emails(w, c, "breach.closed"),
    "requester alert email": lambda w, c: _emails(w, c, "requester.separated"),
    "status text": lambda w, c: (_applied(w, c), _cli(w, c, "status"))[1],
    "status json": lambda w, c: (_applied(w, c), _cli(w, c, "status", "--format", "json"))[1],
    "html report": _report,
    "3.k notification email": lambda w, c: _emails(w, c, None),
}


@pytest.fixture
def world(
    demo: dict[str, Any],
    smtp_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    monkeypatch.setattr(app, "now", lambda: NOW + timedelta(microseconds=123456))
    with (demo["feeds"] / "separations.csv").open("a", encoding="utf-8") as f:
        f.write("R900,LWDB04,2026-11-24T17:00:00-08:00,retirement\n")  # an alert with a time
    templates = demo["tmp"] / "templates"  # the shipped ones, each saying when it was decided
    shutil.copytree(ROOT / "connector" / "alerts" / "templates", templates)
    for t in templates.glob("*.txt"):
        t.write_text(t.read_text(encoding="utf-8") + "\nas of $as_of\n", encoding="utf-8")
    cfg = write_config(
        demo["tmp"],
        demo["scope"],
        demo["feeds"],
        f"""
[notifications]
enabled = true
templates = "{templates}"

[notifications.smtp]
host = "{smtp_server.host}"
port = {smtp_server.port}
starttls = false
sender = "mis-access@esd.example.gov"

[alerts.email]
host = "{smtp_server.host}"
port = {smtp_server.port}
starttls = false
sender = "misync@esd.example.gov"
to = ["itsd-mis@esd.example.gov"]
""",
    )

    def notifier_done() -> None:  # the notifier sends from its own thread, then waits
        deadline = time.monotonic() + 60
        while not any(m["X-Misync-Kind"] is None for _, _, m in smtp_server.messages):
            assert time.monotonic() < deadline, "no notification arrived"
            time.sleep(0.05)

    return {**demo, "cfg": cfg, "smtp": smtp_server, "notifier_done": notifier_done}


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_every_output_writes_times_one_way(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], name: str
) -> None:
    text = OUTPUTS[name](world, capsys)
    found = INSTANT.findall(text)
    assert found, f"{name}: no time in\n{text}"
    rule = JSON if name.endswith(" json") else SHOWN
    wrong = sorted({t for t in found if not rule.fullmatch(t)})
    assert not wrong, f"{name}: {wrong}"


def test_a_breach_reads_the_same_opened_and_closed(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _applied(world, capsys)
    deadlines = {
        m["X-Misync-Kind"]: re.search(r"^deadline: (.*)$", m.get_content(), re.M)
        for _, _, m in world["smtp"].messages
        if (m["X-Misync-Key"] or "").startswith("uid=dpatel,")
    }
    opened, closed = deadlines["breach.open"], deadlines["breach.closed"]
    assert opened is not None and closed is not None
    assert opened.group(1).strip() == closed.group(1).strip() == "2026-11-22T00:00:00-08:00"
    # the JSON plan keeps the offset, to the second
    plan = json.loads(_cli(world, capsys, "plan", "--format", "json"))
    assert plan["as_of"] == "2026-11-25T17:00:00+00:00"  # no microseconds
