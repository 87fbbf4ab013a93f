"""Area monitors (Policy 1021 3.e.ii, 3.h.viii; issue 16 item 6): each Local Workforce
Development Board can name who monitors its area (``[areas.WDA7] email = [...]``), and
the alerts about that area's people are mailed to them too.

What goes to an area, and only to it:

- ``breach.open`` and ``deadline.warning`` about a person of the area, and their closes
  (``breach.closed``, the sweep's ``alert.closed``): a close goes to the areas its open
  went to (stored with the open alert), whatever the feeds say by then;
- ``separation.disabled``: a separated person's account was disabled (area mail only;
  the statewide sinks have the operation in the audit trail and the run report);
- the manager's end-of-run digest of those kinds, split per area: an area's digest
  counts and names only its own keys;
- once a day (``[alerts] area_digest_at``, policy.timezone), one digest per area of what
  is still open for it; per-alert reminders are not sent to areas (the daily digest is
  their reminder).

Where a person's event belongs (``AreaIndex.of``): the area of their organization
(``connector.reconcile.areas``: the roster's, else the newest separation's); for a
separation-driven event also the area of every organization their separation rows name,
so the area a mover left sees its local separated user.

Each area is one ``Deliverer`` behind the ``AlertManager`` (named ``area:<WDA>``), so
dedup, the digest limit, the retry of missed deliveries and the rule that a close goes
to whoever got the open are the manager's, unchanged. An area message names its area,
carries the alert's ids and dates only, and points at that area's page (``misync report
--wda W``, with ``--run RUN`` for a run's event), never the statewide one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from connector.alerts.email import DeliveryError, SmtpRelay
from connector.alerts.kinds import AlertKind
from connector.alerts.port import Alert, Severity
from connector.model.feeds import FeedSet
from connector.settings import EmailAlertSettings
from connector.state import AlertRow
from connector.timefmt import when

K = AlertKind
#: kinds about one person that go to the monitors of the person's areas
AREA_KINDS = frozenset({K.BREACH_OPEN, K.DEADLINE_WARNING, K.BREACH_CLOSED, K.SEPARATION_DISABLED})
#: of those, the ones only areas get (the statewide sinks do not)
AREA_ONLY = frozenset({K.SEPARATION_DISABLED})
#: open alerts an area's daily digest lists
DAILY = (K.BREACH_OPEN, K.DEADLINE_WARNING)
#: reason codes that make an event separation-driven (also placed where the person left)
SEPARATION_CODES = frozenset({"separated"})
#: fields that point at statewide pages or other areas: never in an area message
_STATEWIDE_FIELDS = frozenset(
    {"report", "see", "areas", "by_area", "by_area_count", "keys", "alert_state"}
)
_RELAY_PAUSE = 60.0  # seconds a failed relay is not tried again by the other areas
_DAILY_SHOWN = 50  # open alerts listed in a daily digest (the area's page lists all)
AREA_SINK = "area:"  # an area's sink is named area:<WDA>
DIGEST_META = "areas.daily_digest"  # state meta: the local day the last daily digest went
_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class AreaIndex:
    """Which areas a person's events belong to, as the feeds of the last run say."""

    current: Mapping[str, str]  # person -> WDA of their organization (Areas.people)
    # person -> WDAs of the organizations their separation rows name (Areas.left)
    separated_from: Mapping[str, frozenset[str]]

    def of(self, person_id: str | None, *, separation: bool) -> tuple[str, ...]:
        if not person_id:
            return ()
        out: list[str] = sorted(self.separated_from.get(person_id, ())) if separation else []
        now = self.current.get(person_id)
        if now and now not in out:
            out.append(now)
        return tuple(out)


#: builds the index from a run's feeds (``connector.cli.common.area_placement``)
Placement = Callable[[FeedSet], AreaIndex]


def event_areas(alert: Alert, index: AreaIndex | None) -> tuple[str, ...] | None:
    """The areas ``alert`` is about; None for a kind areas never get."""
    if alert.kind not in AREA_KINDS:
        return None
    if index is None:
        return ()
    codes = {c.strip() for c in str(alert.fields.get("reasons") or "").split(",")}
    pid = alert.fields.get("person_id")
    return index.of(str(pid) if pid else None, separation=bool(codes & SEPARATION_CODES))


def area_only(alert: Alert) -> bool:
    """An alert (or a digest of alerts) that only the areas' sinks and the log get."""
    if alert.kind == K.ALERT_DIGEST:
        return alert.fields.get("digest_of") in AREA_ONLY
    return alert.kind in AREA_ONLY


class _Relay:
    """The ``[alerts.email]`` relay, shared by every area: after a failure the other
    areas fail fast for a minute (their deliveries are retried by the next reminder
    pass) instead of each waiting out the relay's timeout."""

    def __init__(self, settings: EmailAlertSettings) -> None:
        self._smtp = SmtpRelay(settings)
        self._failed_at: float | None = None

    def send(self, message: EmailMessage) -> None:
        if self._failed_at is not None and time.monotonic() - self._failed_at < _RELAY_PAUSE:
            raise DeliveryError("the alert relay failed less than a minute ago; retried later")
        try:
            self._smtp.send(message)
        except DeliveryError:
            self._failed_at = time.monotonic()
            raise
        self._failed_at = None


class AreaDeliverer:
    """The monitors of one area: a ``Deliverer`` for the ``AlertManager``."""

    def __init__(self, wda: str, to: Sequence[str], email: EmailAlertSettings, relay: _Relay):
        self.wda = wda
        self.name = f"{AREA_SINK}{wda}"
        self.to = list(to)
        self.email = email
        self.relay = relay

    def wants(self, alert: Alert) -> bool:
        if alert.fields.get("alert_state") == "reminder":
            return False  # the area's daily digest is its reminder
        if alert.kind == K.ALERT_DIGEST:
            return bool(_by_area(alert).get(self.wda))
        return self.wda in (alert.fields.get("areas") or ())

    def deliver(self, alert: Alert) -> None:
        self.relay.send(area_message(alert, self.wda, self.email.sender, self.to, self.prefix))

    @property
    def prefix(self) -> str:
        return f"{self.email.subject_prefix} {self.wda}"


def _by_area(alert: Alert) -> Mapping[str, Sequence[str]]:
    value = alert.fields.get("by_area")
    return value if isinstance(value, Mapping) else {}


def area_message(alert: Alert, wda: str, sender: str, to: list[str], prefix: str) -> EmailMessage:
    """The email of one alert to one area's monitors: the statewide message's subject
    and ids, its links replaced by the area's page, a digest cut to the area's keys."""
    f = dict(alert.fields)
    state = str(f.get("alert_state", "event"))
    summary = alert.summary
    if alert.kind == K.ALERT_DIGEST:
        keys = list(_by_area(alert).get(wda, ()))
        counts = f.get("by_area_count")
        f["count"] = counts.get(wda, len(keys)) if isinstance(counts, Mapping) else len(keys)
        summary = (
            f"{f['count']} more {f.get('digest_of')} alerts for {wda}"
            + (f" in run {f['run_id']}" if f.get("run_id") else "")
            + ": "
            + ", ".join(keys)
            + (", ..." if f["count"] > len(keys) else "")
        )
        f["accounts"] = keys
        f.pop("states", None)  # statewide counts
    label = {"open": "", "event": ""}.get(state, f" {state}")
    what: str = alert.kind
    if state == "closed" and f.get("closes"):
        what = str(f["closes"])
    elif alert.kind == K.ALERT_DIGEST:
        what = f"{f['count']} more {f.get('digest_of')}"
    subject = f"{prefix} {alert.severity.value.upper()}{label}: {what}"
    if alert.kind != K.ALERT_DIGEST:
        subject += f" {alert.key}"
    run = f.get("run_id")
    page = f"misync report --run {run} --wda {wda}" if run else f"misync report --wda {wda}"
    lines = [
        summary,
        "",
        f"area:     {wda}",
        f"kind:     {alert.kind}",
        f"severity: {alert.severity.value}",
        f"key:      {alert.key if alert.kind != K.ALERT_DIGEST else ''}".rstrip(),
        f"state:    {state}",
    ]
    lines += [f"{n}: {_text(v)}" for n, v in sorted(f.items()) if n not in _STATEWIDE_FIELDS]
    lines += [
        "",
        f"The area's page: `{page}` (only {wda}'s people).",
        "-- misync (WorkSource Policy 1021 connector), to the monitors of " + wda + ".",
    ]
    body = "\n".join(lines) + "\n"
    return _message(sender, to, subject, body, kind=alert.kind, key=alert.key, wda=wda)


def _message(
    sender: str, to: list[str], subject: str, body: str, *, kind: str, key: str, wda: str
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="misync")
    msg["X-Misync-Kind"] = kind
    msg["X-Misync-Key"] = key
    msg["X-Misync-Area"] = wda
    msg.set_content(body)
    return msg


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def area_deliverers(
    areas: Mapping[str, Sequence[str]], email: EmailAlertSettings
) -> list[AreaDeliverer]:
    """One deliverer per configured area, sharing the ``[alerts.email]`` relay."""
    relay = _Relay(email)
    return [AreaDeliverer(wda, to, email, relay) for wda, to in sorted(areas.items())]


# -- the daily digest -----------------------------------------------------------------


def digest_due(now: datetime, at: str, tz: tzinfo | None, last: str | None) -> str | None:
    """The local day whose digest is due at ``now`` (its time ``at``, "HH:MM", has passed
    and it was not sent yet), else None."""
    local = now.astimezone(tz) if tz is not None else now
    hour, minute = (int(p) for p in at.split(":"))
    if (local.hour, local.minute) < (hour, minute):
        return None
    day = local.date().isoformat()
    return None if last == day else day


def daily_digests(
    rows: Iterable[AlertRow],
    deliverers: Iterable[AreaDeliverer],
    *,
    day: str,
    tz: tzinfo | None,
) -> list[tuple[AreaDeliverer, Alert]]:
    """Per area with anything open for it (a breach, a deadline warning): one digest
    alert listing them, oldest first, pointing at the area's page."""
    open_rows = sorted(
        (r for r in rows if r.kind in DAILY and r.closed_at is None), key=lambda r: r.opened_at
    )
    out: list[tuple[AreaDeliverer, Alert]] = []
    for d in deliverers:
        mine = [r for r in open_rows if d.wda in (r.fields.get("areas") or ())]
        if not mine:
            continue
        breaches = sum(r.kind == K.BREACH_OPEN for r in mine)
        warnings = len(mine) - breaches
        more = len(mine) - _DAILY_SHOWN
        lines = [
            f"{r.kind} {r.key} (person {r.fields.get('person_id') or '-'}, deadline "
            f"{r.fields.get('deadline', '-')}, open since {when(r.opened_at, tz)})"
            for r in mine[:_DAILY_SHOWN]
        ]
        out.append(
            (
                d,
                Alert(
                    K.ALERT_DIGEST,
                    max((Severity(r.severity) for r in mine), key=_RANK.__getitem__),
                    f"daily:{d.wda}:{day}",
                    f"{d.wda} on {day}: {breaches} breach{'es' if breaches != 1 else ''} and "
                    f"{warnings} deadline warning{'s' if warnings != 1 else ''} open",
                    {
                        "alert_state": "daily",
                        "day": day,
                        "open": lines + ([f"... and {more} more"] if more > 0 else []),
                    },
                ),
            )
        )
    return out


def daily_message(d: AreaDeliverer, alert: Alert) -> EmailMessage:
    f = alert.fields
    lines = [
        alert.summary,
        "",
        f"area: {d.wda}",
        f"day:  {f['day']}",
        "",
        *[f"- {line}" for line in f["open"]],
        "",
        f"The area's page: `misync report --wda {d.wda}` (only {d.wda}'s people).",
        f"-- misync (WorkSource Policy 1021 connector), to the monitors of {d.wda}.",
    ]
    subject = f"{d.prefix} daily digest {f['day']}: {alert.summary.split(': ', 1)[1]}"
    body = "\n".join(lines) + "\n"
    return _message(d.email.sender, d.to, subject, body, kind=alert.kind, key=alert.key, wda=d.wda)
