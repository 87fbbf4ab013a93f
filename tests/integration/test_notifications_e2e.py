"""Notifications (3.k) end to end: a real apply on slapd with the demo feeds tells each
Access Requester (and the user) by email, through a real SMTP server on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from connector.cli import main
from tests.integration.test_alerts_e2e import demo, write_config  # noqa: F401

pytestmark = pytest.mark.slapd

RITA, SAM = "rita.alvarez@example.org", "sam.okafor@esd.example.gov"


def test_apply_notifies_the_requester_and_the_user(
    demo: dict[str, Any],  # noqa: F811
    smtp_server: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = write_config(
        demo["tmp"],
        demo["scope"],
        demo["feeds"],
        f"""
[notifications]
enabled = true
notify_user = true
cc = ["mis-access@esd.example.gov"]

[notifications.smtp]
host = "{smtp_server.host}"
port = {smtp_server.port}
starttls = false
sender = "mis-access@esd.example.gov"
""",
    )
    assert main(["-c", str(cfg), "apply"]) == 0
    capsys.readouterr()
    got = {(tuple(rcpt), m["Subject"]): m for _, rcpt, m in smtp_server.messages}
    to_requesters = sorted(s for (r, s) in got if r[0] in (RITA, SAM))
    assert to_requesters == [
        "MIS access added for Ana María Ortiz (P1001), request REQ-001",
        "MIS access added for Ben Lee (P1002), request REQ-002",
        "MIS access changed for Erin Walsh (P1005), request REQ-006",
        "MIS access disabled for Carla Nguyen (P1003)",
        "MIS access disabled for Dev Patel (P1004)",
        "MIS access disabled for Hank Ruiz (P1008)",
        "MIS access enabled again for Grace Kim (P1007)",
    ]
    change = got[((SAM, "mis-access@esd.example.gov"), to_requesters[2])]
    body = change.get_content().replace("\r\n", "\n")
    assert "As requested in REQ-006" in body and "logon ID ewalsh" in body
    assert "offices now: Seattle Downtown, Olympia" in body
    assert change["From"] == "mis-access@esd.example.gov"
    disabled = got[((RITA, "mis-access@esd.example.gov"), to_requesters[5])]
    text = disabled.get_content()
    assert "Request on file: REQ-010" in text and "3.i" in text
    assert ((RITA, "mis-access@esd.example.gov"), to_requesters[0]) in got
    # the users: one each (the orphan account has no person and no notice)
    users = sorted(r[0] for (r, _s) in got if r[0] not in (RITA, SAM))
    assert users == sorted(
        [
            "ana.ortiz@example.org",
            "ben.lee@example.org",
            "carla.nguyen@example.org",
            "dev.patel@example.org",
            "erin.walsh@esd.example.gov",
            "grace.kim@example.org",
            "hank.ruiz@example.org",
        ]
    )
    assert len(smtp_server.messages) == 14

    n = len(smtp_server.messages)
    assert main(["-c", str(cfg), "apply"]) == 0  # nothing carried out: nobody is told
    assert len(smtp_server.messages) == n


def test_notifications_are_off_by_default(
    demo: dict[str, Any],  # noqa: F811
    smtp_server: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = write_config(
        demo["tmp"],
        demo["scope"],
        demo["feeds"],
        f"""
[alerts.email]
host = "{smtp_server.host}"
port = {smtp_server.port}
starttls = false
to = ["itsd@x"]
min_severity = "critical"
""",
    )
    assert main(["-c", str(cfg), "apply"]) == 0
    capsys.readouterr()
    assert all(rcpt == ["itsd@x"] for _, rcpt, _m in smtp_server.messages)


def test_a_dead_relay_never_holds_up_the_changes(
    demo: dict[str, Any],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = write_config(
        demo["tmp"],
        demo["scope"],
        demo["feeds"],
        """
[notifications]
enabled = true

[notifications.smtp]
host = "127.0.0.1"
port = 9
starttls = false
timeout = 5
""",
    )
    assert main(["-c", str(cfg), "apply"]) == 0
    err = capsys.readouterr().err
    assert err.count('"notification.failed"') == 7  # logged, one per change; run ok
    assert '"operation.ok"' in err
