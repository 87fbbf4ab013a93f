"""Alerts end to end: `misync apply` on a real slapd with the demo feeds, alert email to a
real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector import app
from connector.cli import main
from connector.state import StateStore
from tests.configs import ldap_toml
from tests.conftest import demo_seed_ldif

pytestmark = pytest.mark.slapd

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"
NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)


def write_config(tmp: Path, scope: Any, feeds: Path, extra: str) -> Path:
    ldap = scope.settings
    cfg = tmp / "misync.toml"
    cfg.write_text(
        f"""
{ldap_toml(feeds=feeds, url=ldap.url, bind_dn=ldap.bind_dn, password_file=ldap.password_file, base_dn=scope.people_dn, group_base_dn=scope.groups_dn)}

[guard]
max_unexplained_share = 0.5

[apply]
backoff_seconds = 0
reenable_external_disables = true  # as config/demo/misync.toml: the story's P1007 lock

[state]
dir = "{tmp / "state"}"
{extra}
""",
        encoding="utf-8",
    )
    return cfg


@pytest.fixture
def demo(
    tmp_path: Path, ldap_scope: Any, slapd: Any, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.setattr(app, "now", lambda: NOW)
    slapd.add_ldif(demo_seed_ldif(ldap_scope))
    feeds = tmp_path / "feeds"
    shutil.copytree(DEMO / "feeds", feeds)
    return {"tmp": tmp_path, "scope": ldap_scope, "feeds": feeds}


def test_apply_emails_breaches_once_and_their_closing(
    demo: dict[str, Any], smtp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # the requester R900 separated yesterday but is still designated for WDA-04
    with (demo["feeds"] / "separations.csv").open("a", encoding="utf-8") as f:
        f.write("R900,LWDB04,2026-11-24T17:00:00-08:00,retirement\n")
    cfg = write_config(
        demo["tmp"],
        demo["scope"],
        demo["feeds"],
        f"""
[alerts.email]
host = "{smtp_server.host}"
port = {smtp_server.port}
starttls = false
sender = "misync@esd.example.gov"
to = ["itsd-mis@esd.example.gov"]
to_critical = ["itsd-mis@esd.example.gov", "security-admin@esd.example.gov"]
""",
    )
    assert main(["-c", str(cfg), "apply"]) == 0
    capsys.readouterr()
    by_subject = {m["Subject"]: (rcpt, m) for _, rcpt, m in smtp_server.messages}
    opened = sorted(s for s in by_subject if "CRITICAL: breach.open" in s)
    closed = sorted(s for s in by_subject if "closed: breach.open" in s)
    # P1003 (contract ended), P1004 (separated), P1008 (disable request) were past deadline
    assert [s.split()[-1].split(",")[0] for s in opened] == [
        "uid=cnguyen",
        "uid=dpatel",
        "uid=hruiz",
    ]
    rcpt, msg = by_subject[opened[1]]
    assert rcpt == ["itsd-mis@esd.example.gov", "security-admin@esd.example.gov"]
    body = msg.get_content()
    assert "person_id: P1004" in body and "reasons: separated" in body
    assert len(closed) == 3  # each was disabled by this run: one closing message each
    assert any("INFO closed: breach.open uid=dpatel" in s for s in closed)
    for s in closed:  # each close goes to whoever got its CRITICAL open
        assert by_subject[s][0] == rcpt
    req = [s for s in by_subject if "requester.separated R900" in s]
    assert req == ["[misync] WARNING: requester.separated R900"]
    assert "still designated for WDA-04" in by_subject[req[0]][1].get_content()

    n = len(smtp_server.messages)
    assert main(["-c", str(cfg), "apply"]) == 0  # nothing new: no email at all
    assert len(smtp_server.messages) == n
    with StateStore(demo["tmp"] / "state" / "state.sqlite3") as store:
        assert [(a.kind, a.key) for a in store.open_alerts()] == [("requester.separated", "R900")]
    # the alert records interleave with the run's own: the chain still verifies
    capsys.readouterr()
    assert main(["-c", str(cfg), "audit", "verify"]) == 0
    assert "audit trail intact" in capsys.readouterr().out


def test_a_dead_relay_never_fails_the_run(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(
        demo["tmp"],
        demo["scope"],
        demo["feeds"],
        """
[alerts.email]
host = "127.0.0.1"
port = 9
starttls = false
to = ["itsd@x"]
timeout = 5
""",
    )
    assert main(["-c", str(cfg), "apply"]) == 0
    err = capsys.readouterr().err
    assert err.count('"alert.delivery_failed"') == 1  # once, then skipped for the run
    with StateStore(demo["tmp"] / "state" / "state.sqlite3") as store:
        runs = store.runs()
        assert runs[0].status == "ok"


def test_status_after_an_apply(demo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    cfg = write_config(demo["tmp"], demo["scope"], demo["feeds"], "")
    assert main(["-c", str(cfg), "status"]) == 0
    text = capsys.readouterr().out
    assert "last run: none yet" in text
    # the plan shows three breaches: before the first run, status never says 0 (13.10)
    assert main(["-c", str(cfg), "plan", "--format", "json"]) == 0
    planned = json.loads(capsys.readouterr().out)["summary"]["breaches"]
    assert planned == 3
    assert "open breaches: 0" not in text
    assert "open breaches: not recorded yet (no full run has finished)" in text
    assert "`misync plan` shows" in text
    assert main(["-c", str(cfg), "status", "--format", "json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert (before["recorded"], before["breaches"]) == (False, None)
    assert main(["-c", str(cfg), "apply"]) == 0
    capsys.readouterr()
    assert main(["-c", str(cfg), "status", "--format", "json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["last_run"]["status"] == "ok"
    assert s["last_run"]["summary"]["disable"] == 4
    assert s["last_success"]["run_id"] == s["last_run"]["run_id"]
    assert s["recorded"] is True
    assert s["breaches"] == []  # all three were disabled by the run
    assert sorted((f["feed"], f["state"]) for f in s["feeds"]) == sorted(
        (name, "ok")
        for name in (
            "contracts",
            "ndas",
            "organizations",
            "requesters",
            "requests",
            "separations",
            "training",
            "workers",
        )
    )
    assert main(["-c", str(cfg), "status"]) == 0
    text = capsys.readouterr().out
    assert f"last run: {s['last_run']['run_id']} (apply) ok" in text
    assert "open breaches: 0\n" in text  # recorded now: a true 0
    assert "  workers: ok, 12 rows" in text


def test_config_check_finds_alert_and_notification_problems(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = demo["tmp"]
    templates = tmp / "templates"
    shutil.copytree(ROOT / "connector" / "alerts" / "templates", templates)
    (templates / "update.txt").write_text("no subject line\n$person_id\n", encoding="utf-8")
    cfg = write_config(
        tmp,
        demo["scope"],
        demo["feeds"],
        f"""
[alerts.email]
host = "127.0.0.1"
username = "misync"
password_file = "{tmp / "missing-smtp-password"}"
to = ["itsd@x"]

[alerts.webhook]
url = "https://hooks.example/misync"
token_file = "{tmp / "missing-token"}"

[notifications]
enabled = true
templates = "{templates}"
""",
    )
    assert main(["-c", str(cfg), "config", "check"]) == 2
    out = capsys.readouterr().out
    assert (
        f"alerts.email: smtp password: cannot read secret file {tmp / 'missing-smtp-password'}"
        in out
    )
    assert f"alerts.webhook.token: cannot read secret file {tmp / 'missing-token'}" in out
    assert (
        f"notifications.templates: {templates / 'update.txt'} line 1: must start with 'Subject:'"
        in out
    )
    assert "configuration has 3 problem(s)" in out

    (tmp / "missing-smtp-password").write_text("pw\n", encoding="utf-8")
    (tmp / "missing-smtp-password").chmod(0o600)
    (tmp / "missing-token").write_text("tok\n", encoding="utf-8")
    (tmp / "missing-token").chmod(0o600)
    shutil.copy(ROOT / "connector" / "alerts" / "templates" / "update.txt", templates)
    assert main(["-c", str(cfg), "config", "check"]) == 0, capsys.readouterr().out


def test_feed_hold_and_guard_trip_alert_once_and_close_when_fixed(
    demo: dict[str, Any],
    smtp_server: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
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
""",
    )
    ndas = demo["feeds"] / "ndas.csv"
    kept = ndas.read_text(encoding="utf-8")
    ndas.unlink()  # the NDA feed did not arrive
    monkeypatch.setenv("MISYNC_GUARD__MAX_UNEXPLAINED_DISABLES", "0")
    monkeypatch.setenv("MISYNC_GUARD__MAX_UNEXPLAINED_SHARE", "0")

    def subjects() -> list[str]:
        return sorted(m["Subject"] for _, _, m in smtp_server.messages)

    main(["-c", str(cfg), "apply"])
    main(["-c", str(cfg), "apply"])  # the same holds again: no new email
    capsys.readouterr()
    first = subjects()
    assert "[misync] CRITICAL: feed.unhealthy ndas" in first
    assert "[misync] CRITICAL: guard.tripped mass_disable_guard" in first
    held = [s for s in first if "operation.held" in s]  # one per cause, not per account
    assert held == [
        "[misync] WARNING: operation.held feed_unhealthy",
        "[misync] WARNING: operation.held mass_disable_guard",
    ]
    assert len([s for s in first if "feed.unhealthy" in s]) == 1

    ndas.write_text(kept, encoding="utf-8")  # the feed arrives; the orphan is reviewed
    assert main(["-c", str(cfg), "apply", "--override-guard"]) == 0
    capsys.readouterr()
    closed = [s for s in subjects() if "INFO closed: " in s]
    assert "[misync] INFO closed: feed.unhealthy ndas" in closed
    assert "[misync] INFO closed: guard.tripped mass_disable_guard" in closed
    assert any(s.endswith(" mass_disable_guard") for s in closed)
    assert "[misync] INFO closed: operation.held mass_disable_guard" in closed
    assert "[misync] INFO closed: operation.held feed_unhealthy" in closed
    with StateStore(demo["tmp"] / "state" / "state.sqlite3") as store:
        assert store.open_alerts() == []


def test_a_roster_incident_is_a_few_emails_and_each_close_reaches_its_open(
    demo: dict[str, Any],
    smtp_server: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Half the roster goes missing (a truncated workers.csv), then comes back. The
    accounts held for that one cause are one ``operation.held`` alert with a count, the
    keys and the report page, not one email per account; every close goes to the
    recipients of its open (the critical list for the critical ones), named."""
    cfg = write_config(
        demo["tmp"],
        demo["scope"],
        demo["feeds"],
        f"""
[alerts.email]
host = "{smtp_server.host}"
port = {smtp_server.port}
starttls = false
sender = "misync@esd.example.gov"
to = ["itsd-mis@esd.example.gov"]
to_critical = ["security-admin@esd.example.gov"]
""",
    )
    monkeypatch.setenv("MISYNC_GUARD__MAX_UNEXPLAINED_DISABLES", "2")
    assert main(["-c", str(cfg), "apply"]) == 0
    before = len(smtp_server.messages)
    workers = demo["feeds"] / "workers.csv"
    full = workers.read_text(encoding="utf-8")
    lines = full.splitlines()
    gone = [
        ln.split(",")[0]
        for ln in lines[1:]
        if ln.split(",")[0] in {"P1001", "P1002", "P1003", "P1005", "P1006", "P1009", "P1010"}
    ]
    workers.write_text(
        "\n".join(ln for ln in lines if ln.split(",")[0] not in gone) + "\n", encoding="utf-8"
    )
    main(["-c", str(cfg), "apply"])
    main(["-c", str(cfg), "apply"])  # the incident goes on: nothing new
    incident = smtp_server.messages[before:]
    subjects = {str(m["Subject"]): rcpt for _, rcpt, m in incident}
    held = [s for s in subjects if "operation.held" in s]
    assert held == ["[misync] WARNING: operation.held mass_disable_guard"], sorted(subjects)
    body = next(m for _, _, m in incident if "operation.held" in str(m["Subject"])).get_content()
    fields = dict(ln.split(": ", 1) for ln in body.splitlines() if ": " in ln)
    keys = fields["keys"].split(", ")
    assert int(fields["count"]) == len(keys) == 3, body  # the enabled accounts of `gone`
    assert "report: " in body and "run-" in body and "misync report --run" in body
    assert len(incident) <= 4, sorted(subjects)

    workers.write_text(full, encoding="utf-8")  # the roster is whole again
    mark = len(smtp_server.messages)
    assert main(["-c", str(cfg), "apply"]) == 0
    capsys.readouterr()
    closes = {str(m["Subject"]): rcpt for _, rcpt, m in smtp_server.messages[mark:]}
    for opened, rcpt in subjects.items():
        kind_key = opened.split(": ", 1)[1]
        closed = f"[misync] INFO closed: {kind_key}"
        assert closes.get(closed) == rcpt, (opened, sorted(closes))
    assert len(closes) == len(subjects)
