"""Notifications (Policy 1021, 3.k): when an add, change or disable has been carried out,
the Access Requester (and, if configured, the user) is told by email.

``RequesterNotifier`` is a run observer: the run hands it every outcome after the outcome
is journaled and audited; it queues one email per recipient and a background thread sends
them, so a slow or dead relay never holds up a change. Failures are logged
(``notification.failed``) and never fail the run. Templates are plain text files in
``connector/alerts/templates/`` (or ``[notifications] templates``): the first line is
``Subject: ...``, the rest is the body; ``$name`` placeholders are filled in (see
``fields``).

Who is told: the requester of the request behind the change, read from the same feeds
the run evaluated: for a create or an enable, the add request that started the grant;
for an update, the newest approved change request in effect (else the grant's add);
for a disable, the newest approved disable request in effect, else the requester of
the add request that granted the access (a separation or a contract end has no disable
form; that requester is still the one responsible for the user). Email addresses come
from the roster (workers.csv). Orphans (no person) are not notified.
"""

from __future__ import annotations

import queue
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import structlog

from connector.alerts.email import DeliveryError, SmtpRelay
from connector.errors import MisyncError
from connector.executor import ActionOutcome
from connector.model.decisions import Decision
from connector.model.feeds import FeedSet
from connector.model.plan import Op, Plan
from connector.model.records import AccessRequest, RequestAction, RequestStatus, Worker
from connector.settings import NotificationsSettings, SmtpSettings
from connector.timefmt import when

TEMPLATES = Path(__file__).with_name("templates")
_STOP = object()
_RELAY_DOWN_AFTER = 3  # failed sends in a row: the relay is down, skip the rest
_WORDS = {
    Op.CREATE: "added",
    Op.ENABLE: "enabled again",
    Op.UPDATE: "changed",
    Op.DISABLE: "disabled",
}


class NotificationTemplateError(MisyncError):
    """A notification template is missing or malformed (names the file)."""


@dataclass(frozen=True, slots=True)
class Template:
    subject: string.Template
    body: string.Template
    path: Path

    @classmethod
    def load(cls, path: Path) -> Template:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise NotificationTemplateError(
                f"{path}: cannot read template: {exc.strerror}"
            ) from exc
        first, _, body = text.partition("\n")
        if not first.startswith("Subject:"):
            raise NotificationTemplateError(f"{path} line 1: must start with 'Subject:'")
        return cls(string.Template(first[8:].strip()), string.Template(body.lstrip("\n")), path)

    def render(self, values: Mapping[str, str]) -> tuple[str, str]:
        try:
            return self.subject.substitute(values), self.body.substitute(values)
        except (KeyError, ValueError) as exc:
            raise NotificationTemplateError(
                f"{self.path}: unknown or bad placeholder {exc}"
            ) from exc


def load_templates(folder: Path | None) -> dict[Op, Template]:
    """One template per operation and role: ``create.txt``... (to the requester) and
    ``user-create.txt``... (to the user)."""
    root = folder or TEMPLATES
    return {op: Template.load(root / f"{op.value}.txt") for op in Op}


def load_user_templates(folder: Path | None) -> dict[Op, Template]:
    root = folder or TEMPLATES
    return {op: Template.load(root / f"user-{op.value}.txt") for op in Op}


@dataclass(frozen=True, slots=True)
class Notice:
    person_id: str
    op: str
    role: str  # "requester" | "user"
    request_id: str
    message: EmailMessage


class RequesterNotifier:
    """A ``RunObserver`` that emails 3.k notifications; use as a context manager (the exit
    waits up to ``flush_timeout`` seconds for the queue to drain)."""

    def __init__(
        self,
        settings: NotificationsSettings,
        smtp: SmtpSettings,
        *,
        clock: object = None,
        flush_timeout: float = 60.0,
        tz: tzinfo | None = None,
    ) -> None:
        self.settings = settings
        self.tz = tz  # $as_of in policy.timezone (connector.timefmt)
        self.relay = SmtpRelay(smtp)
        self.sender = smtp.sender
        self.templates = load_templates(settings.templates)
        self.user_templates = (
            load_user_templates(settings.templates) if settings.notify_user else {}
        )
        self.flush_timeout = flush_timeout
        self._log = structlog.get_logger("misync.notify")
        self._feeds: FeedSet | None = None
        self._decisions: Mapping[str, Decision] = {}
        self._as_of: datetime | None = None
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self.sent: list[Notice] = []

    # -- the run observer ---------------------------------------------------------------

    def evaluated(self, feeds: FeedSet, decisions: Mapping[str, Decision], as_of: datetime) -> None:
        self._feeds, self._decisions, self._as_of = feeds, decisions, as_of

    def planned(self, plan: Plan) -> None:
        return None

    def outcome(self, outcome: ActionOutcome) -> None:
        if outcome.status != "ok" or outcome.action.person_id is None or self._feeds is None:
            return
        try:
            for notice in self._notices(outcome):
                self._start()
                self._queue.put(notice)
        except Exception:  # noqa: BLE001 -- a notification problem never touches the run; logged with its traceback
            self._log.exception(
                "notification.failed",
                person_id=outcome.action.person_id,
                op=outcome.action.op.value,
            )

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> RequesterNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(self.flush_timeout)
        if self._thread.is_alive():
            self._log.error("notification.unsent", pending=self._queue.qsize())
        self._thread = None

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._worker, name="misync-notify", daemon=True)
            self._thread.start()

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, Notice)
            log = self._log.bind(
                person_id=item.person_id, op=item.op, role=item.role, request_id=item.request_id
            )
            if (
                self._failures >= _RELAY_DOWN_AFTER
            ):  # the relay is down: do not wait on it each time
                log.error(
                    "notification.failed",
                    error=f"skipped: the relay failed {_RELAY_DOWN_AFTER} times",
                )
                continue
            try:
                self.relay.send(item.message)
            except DeliveryError as exc:
                self._failures += 1
                log.error("notification.failed", error=str(exc))
            else:
                self._failures = 0
                self.sent.append(item)
                log.info("notification.sent")

    # -- who and what -------------------------------------------------------------------

    def _notices(self, outcome: ActionOutcome) -> list[Notice]:
        a = outcome.action
        pid = a.person_id
        assert pid is not None
        assert self._feeds is not None
        workers = {w.person_id: w for w in self._feeds.workers}
        request = self._request_behind(a.op, pid)
        person = workers.get(pid)
        values = self._values(outcome, person, request)
        notices: list[Notice] = []
        requester = workers.get(request.requester_id) if request else None
        if requester is None or not requester.email:
            self._log.warning(
                "notification.no_recipient",
                person_id=pid,
                op=a.op.value,
                request_id=request.request_id if request else None,
                role="requester",
            )
        else:
            to = [requester.email]
            notices.append(
                self._notice(
                    self.templates[a.op], values, to, pid, a.op, role="requester", request=request
                )
            )
        if self.settings.notify_user and person is not None and person.email:
            notices.append(
                self._notice(
                    self.user_templates[a.op],
                    values,
                    [person.email],
                    pid,
                    a.op,
                    role="user",
                    request=request,
                )
            )
        return notices

    def _notice(
        self,
        template: Template,
        values: Mapping[str, str],
        to: list[str],
        pid: str,
        op: Op,
        *,
        role: str,
        request: AccessRequest | None,
    ) -> Notice:
        subject, body = template.render(values)
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(to)
        if self.settings.cc and role == "requester":
            msg["Cc"] = ", ".join(self.settings.cc)
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="misync")
        msg.set_content(body)
        return Notice(pid, op.value, role, request.request_id if request else "", msg)

    def _request_behind(self, op: Op, pid: str) -> AccessRequest | None:
        assert self._feeds is not None
        assert self._as_of is not None
        as_of = self._as_of
        mine = [
            r
            for r in self._feeds.requests
            if r.person_id == pid and r.status is RequestStatus.APPROVED and r.submitted_at <= as_of
        ]
        by_id = {r.request_id: r for r in mine}
        decision = self._decisions.get(pid)
        grant = by_id.get(decision.grant.request_id) if decision and decision.grant else None

        def newest(action: RequestAction) -> AccessRequest | None:
            tz = as_of.tzinfo
            found = [
                r
                for r in mine
                if r.action is action and r.effective_on <= as_of.astimezone(tz).date()
            ]
            return max(found, key=lambda r: r.submitted_at) if found else None

        if op is Op.DISABLE:
            return newest(RequestAction.DISABLE) or grant or newest(RequestAction.ADD)
        if op is Op.UPDATE:
            change = newest(RequestAction.CHANGE)
            if change is not None and (grant is None or change.submitted_at >= grant.submitted_at):
                return change
        return grant or newest(RequestAction.ADD)

    def _values(
        self, outcome: ActionOutcome, person: Worker | None, request: AccessRequest | None
    ) -> dict[str, str]:
        a = outcome.action
        decision = self._decisions.get(a.person_id or "")
        changes = "\n".join(
            f"  - {c.name}: {', '.join(c.old) or '(none)'} -> {', '.join(c.new) or '(none)'}"
            for c in a.changes
        )
        reasons = "\n".join(f"  - {r.clause}: {r.message}" for r in a.reasons)
        return {
            "op": a.op.value,
            "done": _WORDS[a.op],
            "person_id": a.person_id or "",
            "given_name": person.given_name if person else "",
            "family_name": person.family_name if person else "",
            "logon_id": a.logon_id or "",
            "account_id": outcome.account_id or "",
            "request_id": request.request_id if request else "(none)",
            "request_action": request.action.value if request else "",
            "requester_id": request.requester_id if request else "",
            "profile": decision.profile if decision else "",
            "offices": ", ".join(decision.offices) if decision else "",
            "changes": changes or "  (none)",
            "reasons": reasons or "  (none)",
            "as_of": when(self._as_of, self.tz) if self._as_of else "",
        }
