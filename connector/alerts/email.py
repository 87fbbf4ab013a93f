"""The email alert sink: one message per alert over SMTP (stdlib ``smtplib``).

The relay is ``[alerts.email]``: STARTTLS (default) or implicit TLS, optional login with
the password read from a secret file, recipients per severity or one list. The SMTP
plumbing (``SmtpRelay``) is shared with the notifications of policy 3.k.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import structlog

from connector.alerts.port import Alert, Severity, routing_severity
from connector.errors import ExitCode, MisyncError
from connector.settings import ConfigError, EmailAlertSettings, SmtpSettings

_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class DeliveryError(MisyncError):
    """A sink could not deliver; the alert manager logs it and retries later."""

    exit_code = ExitCode.UNAVAILABLE
    temporary = True


class SmtpRelay:
    """Sends ``EmailMessage``s through one configured relay; raises ``DeliveryError``."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def _context(self) -> ssl.SSLContext:
        s = self.settings
        ctx = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        if not s.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def send(self, message: EmailMessage) -> None:
        s = self.settings
        try:
            password = s.password()  # read at send time: a rotated credential just works
        except ConfigError as exc:
            raise DeliveryError(str(exc)) from exc
        try:
            smtp: smtplib.SMTP
            if s.ssl:
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            with smtp:
                if s.starttls and not s.ssl:
                    smtp.starttls(context=self._context())  # SMTPNotSupportedError if absent
                if password is not None:
                    smtp.login(s.username, password)
                refused = smtp.send_message(message)
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            # never the password: smtplib errors carry the server's reply, not our secret
            raise DeliveryError(f"smtp {s.host}:{s.port}: {exc}") from exc
        if refused:
            raise DeliveryError(f"smtp {s.host}:{s.port} refused {sorted(refused)}")


def alert_message(alert: Alert, sender: str, to: list[str], prefix: str) -> EmailMessage:
    """The email for one alert: subject names severity, state and kind; the body lists
    every field (ids and dates only, never names or secrets). A closing message names
    what it closes: ``INFO closed: feed.unhealthy workers``."""
    state = str(alert.fields.get("alert_state", "event"))
    label = {"open": "", "event": ""}.get(state, f" {state}")
    what: str = alert.kind
    if state == "closed" and alert.fields.get("closes"):
        what = str(alert.fields["closes"])
    elif state == "digest" and alert.fields.get("digest_of"):
        what = f"{alert.fields.get('count', '')} more {alert.fields['digest_of']}"
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    subject = f"{prefix} {alert.severity.value.upper()}{label}: {what}"
    if state != "digest":
        subject += f" {alert.key}"
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="misync")
    msg["X-Misync-Kind"] = alert.kind
    msg["X-Misync-Key"] = alert.key
    lines = [
        alert.summary,
        "",
        f"kind:     {alert.kind}",
        f"severity: {alert.severity.value}",
        f"key:      {alert.key}",
        f"state:    {state}",
    ]
    for name, value in sorted(alert.fields.items()):
        if name != "alert_state":
            lines.append(f"{name}: {_text(value)}")
    lines += ["", "-- misync (WorkSource Policy 1021 connector); see `misync status`."]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


class EmailAlertSink:
    """Alerts by email. ``deliver`` raises ``DeliveryError``; ``send`` logs instead."""

    name = "email"

    def __init__(self, settings: EmailAlertSettings) -> None:
        self.settings = settings
        self.relay = SmtpRelay(settings)
        self._log = structlog.get_logger("misync.alert")

    def wants(self, alert: Alert) -> bool:
        return _RANK[routing_severity(alert)] >= _RANK[Severity(self.settings.min_severity)]

    def deliver(self, alert: Alert) -> None:
        s = self.settings
        to = s.recipients(routing_severity(alert).value)  # a close: whoever got the open
        self.relay.send(alert_message(alert, s.sender, to, s.subject_prefix))

    def send(self, alert: Alert) -> None:
        try:
            self.deliver(alert)
        except DeliveryError as exc:
            self._log.error(
                "alert.delivery_failed", sink=self.name, kind=alert.kind, error=str(exc)
            )
