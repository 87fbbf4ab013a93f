"""The email sink against a real SMTP server on loopback (aiosmtpd), and the JSON
webhook sink against `responses`: recipients, subject, body, the documented payload,
retries with backoff."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from connector.alerts import Alert, Severity
from connector.alerts.email import DeliveryError, EmailAlertSink
from connector.alerts.manager import build_alert_sink
from connector.alerts.webhook import WebhookAlertSink
from connector.settings import EmailAlertSettings, Settings, WebhookAlertSettings
from connector.state import StateStore

AT = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
BREACH = Alert(
    "breach.open",
    Severity.CRITICAL,
    "uid=dpatel,ou=people,dc=mis",
    "uid=dpatel,ou=people,dc=mis is still enabled past its deadline 2026-11-21T16:00:00-08:00",
    {
        "alert_state": "open",
        "account_id": "uid=dpatel,ou=people,dc=mis",
        "person_id": "P1004",
        "deadline": "2026-11-21T16:00:00-08:00",
        "reasons": "separated",
    },
)


def email_settings(server: Any, **kw: Any) -> EmailAlertSettings:
    base: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "starttls": False,
        "sender": "misync@esd.example.gov",
        "to": ["itsd-mis@esd.example.gov"],
        "to_critical": ["itsd-mis@esd.example.gov", "security-admin@esd.example.gov"],
    }
    return EmailAlertSettings(**{**base, **kw})


def test_email_reaches_the_smtp_server_with_recipients_subject_and_body(
    smtp_server: Any,
) -> None:
    sink = EmailAlertSink(email_settings(smtp_server))
    sink.deliver(BREACH)
    sink.deliver(Alert("operation.held", Severity.WARNING, "k", "held (feed_unhealthy)", {}))
    smtp_server.wait_for(2)
    (frm, rcpt, msg), (_, rcpt2, msg2) = smtp_server.messages
    assert frm == "misync@esd.example.gov"
    assert rcpt == ["itsd-mis@esd.example.gov", "security-admin@esd.example.gov"]
    assert msg["Subject"] == "[misync] CRITICAL: breach.open uid=dpatel,ou=people,dc=mis"
    body = msg.get_content().replace("\r\n", "\n")  # as read off the wire
    assert body.startswith(BREACH.summary + "\n")
    assert "person_id: P1004\n" in body
    assert "deadline: 2026-11-21T16:00:00-08:00\n" in body
    assert rcpt2 == ["itsd-mis@esd.example.gov"]  # a warning: the general list
    assert msg2["Subject"] == "[misync] WARNING: operation.held k"


def test_starttls_required_but_not_offered_is_refused_not_sent_in_clear(
    smtp_server: Any,
) -> None:
    sink = EmailAlertSink(email_settings(smtp_server, starttls=True))
    with pytest.raises(DeliveryError, match="STARTTLS"):
        sink.deliver(BREACH)
    assert smtp_server.messages == []


def test_login_password_comes_from_the_secret_file_and_never_into_the_error(
    smtp_server: Any, tmp_path: Path
) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret-value\n", encoding="utf-8")
    sink = EmailAlertSink(email_settings(smtp_server, username="misync", password_file=secret))
    # aiosmtpd refuses AUTH over a plain connection: the error names the relay, not the secret
    with pytest.raises(DeliveryError) as info:
        sink.deliver(BREACH)
    assert "s3cret" not in str(info.value)
    missing = EmailAlertSink(
        email_settings(smtp_server, username="misync", password_file=tmp_path / "nope")
    )
    with pytest.raises(DeliveryError, match="cannot read secret file"):
        missing.deliver(BREACH)


def test_email_to_a_dead_relay_is_a_delivery_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    sink = EmailAlertSink(
        EmailAlertSettings(host="127.0.0.1", port=port, starttls=False, to=["a@b"], timeout=5)
    )
    with pytest.raises(DeliveryError, match=r"smtp 127\.0\.0\.1"):
        sink.deliver(BREACH)


HOOK = "http://127.0.0.1:9/hooks/misync"


def webhook(tmp_path: Path, sleeps: list[float], **kw: Any) -> WebhookAlertSink:
    token = tmp_path / "hook-token"
    token.write_text("tok-123\n", encoding="utf-8")
    s = WebhookAlertSettings(url=HOOK, token_file=token, backoff_seconds=0.5, **kw)
    return WebhookAlertSink(s, sleep=sleeps.append, clock=lambda: AT)


@responses.activate
def test_webhook_posts_the_documented_json(tmp_path: Path) -> None:
    responses.post(HOOK, status=204)
    webhook(tmp_path, []).deliver(BREACH)
    (call,) = responses.calls
    assert call.request.headers["Authorization"] == "Bearer tok-123"
    assert call.request.headers["Content-Type"] == "application/json"
    assert json.loads(call.request.body) == {
        "schema": "misync.alert/1",
        "source": "misync",
        "kind": "breach.open",
        "severity": "critical",
        "state": "open",
        "key": "uid=dpatel,ou=people,dc=mis",
        "summary": BREACH.summary,
        "fields": {
            "account_id": "uid=dpatel,ou=people,dc=mis",
            "person_id": "P1004",
            "deadline": "2026-11-21T16:00:00-08:00",
            "reasons": "separated",
        },
        "sent_at": "2026-11-25T17:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("answers", "delivered", "calls", "sleeps"),
    [
        ([503, 502, 200], True, 3, [0.5, 1.0]),  # 5xx: retried with doubling backoff
        ([429, 200], True, 2, [0.5]),
        ([requests.Timeout(), 200], True, 2, [0.5]),
        ([requests.ConnectionError(), 500, 500, 500], False, 4, [0.5, 1.0, 2.0]),
        ([400], False, 1, []),  # a permanent refusal is not retried
    ],
)
@responses.activate
def test_webhook_retries_5xx_and_timeouts_with_backoff(
    tmp_path: Path, answers: list[Any], delivered: bool, calls: int, sleeps: list[float]
) -> None:
    for a in answers:
        if isinstance(a, int):
            responses.post(HOOK, status=a)
        else:
            responses.post(HOOK, body=a)
    slept: list[float] = []
    sink = webhook(tmp_path, slept)
    if delivered:
        sink.deliver(BREACH)
    else:
        with pytest.raises(DeliveryError):
            sink.deliver(BREACH)
    assert len(responses.calls) == calls
    assert slept == sleeps


@responses.activate
def test_configured_sinks_all_receive_a_breach_once(smtp_server: Any, tmp_path: Path) -> None:
    responses.post(HOOK, status=200)
    responses.add_passthru("http://127.0.0.1")  # nothing else is mocked
    settings = Settings.model_validate(
        {
            "target": {"ldap": {"base_dn": "ou=people,dc=x"}},
            "state": {"dir": str(tmp_path)},
            "alerts": {
                "email": {
                    "host": smtp_server.host,
                    "port": smtp_server.port,
                    "starttls": False,
                    "to": ["itsd@x"],
                },
                "webhook": {"url": HOOK},
            },
        }
    )
    with StateStore(tmp_path / "state.sqlite3") as store:
        mgr = build_alert_sink(settings, store, None, clock=lambda: AT)
        assert [s.name for s in mgr.sinks] == ["log", "email", "webhook"]
        mgr.send(BREACH)
        mgr.send(BREACH)
    smtp_server.wait_for(1)
    assert len(smtp_server.messages) == 1
    assert len(responses.calls) == 1


def test_starttls_and_login_with_the_password_file(tmp_path: Path) -> None:
    """A relay that requires STARTTLS and AUTH: the sink upgrades (verifying the relay's
    certificate against ca_file), logs in with the secret file's password, and sends."""
    import socket
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    from tests.security.certs import TestCA

    ca = TestCA(tmp_path / "ca")
    issued = ca.issue("smtp", ["127.0.0.1"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(issued.cert, issued.key)
    seen: list[tuple[list[str], bytes]] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            seen.append((list(envelope.rcpt_tos), envelope.original_content))
            return "250 OK"

    def auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"misync",
            b"s3cret-value",
        )
        return AuthResult(success=ok)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        authenticator=auth,
        auth_require_tls=True,
    )
    controller.start()
    try:
        secret = tmp_path / "smtp-password"
        secret.write_text("s3cret-value\n", encoding="utf-8")
        settings = EmailAlertSettings(
            host="127.0.0.1",
            port=port,
            starttls=True,
            ca_file=ca.ca_file,
            username="misync",
            password_file=secret,
            to=["itsd@esd.example.gov"],
        )
        EmailAlertSink(settings).deliver(BREACH)
    finally:
        controller.stop()
    assert len(seen) == 1
    assert seen[0][0] == ["itsd@esd.example.gov"]
    assert b"breach.open" in seen[0][1]


def test_each_close_goes_to_whoever_got_its_open_named_and_never_buried(
    smtp_server: Any, tmp_path: Path
) -> None:
    """A roster incident: the workers feed is unusable (CRITICAL, to the security
    address) and 30 accounts get a deadline warning; the fast path fails too. When it
    is over, the critical closes reach the security address on their own, named in the
    subject, even with ``min_severity = "warning"``; the per-account closes go as one
    digest that names what they close."""
    from datetime import timedelta

    from connector.alerts.kinds import run_failed, run_succeeded
    from connector.alerts.manager import AlertManager

    sink = EmailAlertSink(email_settings(smtp_server, min_severity="warning"))
    with StateStore(tmp_path / "state.sqlite3") as store:
        mgr = AlertManager(store, [sink], reminder=timedelta(hours=4), digest_after=3)
        mgr.run_started("r1")
        for i in range(30):
            mgr.send(Alert("deadline.warning", Severity.WARNING, f"uid=u{i}", "soon", {}))
        mgr.send(Alert("feed.unhealthy", Severity.CRITICAL, "workers", "half a roster", {}))
        mgr.run_finished("r1")
        mgr.send(run_failed("fastpath", "r2", "ldap down"))
        smtp_server.wait_for(3 + 1 + 1 + 1)
        opened = len(smtp_server.messages)
        mgr.run_started("r3")  # a full run that no longer raises any of them
        mgr.send(run_succeeded("fastpath", "r3"))
        mgr.run_finished("r3")
        smtp_server.wait_for(opened + 2 + 3 + 1)
    got = {str(m["Subject"]): rcpt for _, rcpt, m in smtp_server.messages[opened:]}
    critical = ["itsd-mis@esd.example.gov", "security-admin@esd.example.gov"]
    assert got["[misync] INFO closed: feed.unhealthy workers"] == critical
    assert got["[misync] INFO closed: run.failed run:fastpath"] == critical
    closes = [s for s in got if s.startswith("[misync] INFO closed: deadline.warning uid=u")]
    assert len(closes) == 3
    assert all(got[s] == ["itsd-mis@esd.example.gov"] for s in closes)
    assert got["[misync] INFO digest: 27 more closes of deadline.warning"] == [
        "itsd-mis@esd.example.gov"
    ]
    assert len(got) == 6, sorted(got)
