"""Area monitors end to end (issue 16 item 6): `misync apply` on a real slapd, alert
email to a real SMTP server on loopback (aiosmtpd), three areas with monitors.

The world is the demo's, spread over three areas: CBO1 (P1002, P1006, P1008) is in
WDA-07, CBO2 (P1003, and P1004, who separated from CBO1 and now works for CBO2: a mover)
in WDA-08, everyone else in WDA-04. The run has three breaches and disables them:
P1003 (contract ended, WDA-08), P1004 (separated from CBO1: WDA-07, the area left, and
WDA-08, the one they are in now) and P1008 (disable request, WDA-07). WDA-04 has none.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector import app
from connector.cli import main
from tests.conftest import demo_seed_ldif, ldap_scope_on
from tests.integration.test_alerts_e2e import write_config

pytestmark = pytest.mark.slapd

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"
NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
STATEWIDE = "itsd-mis@esd.example.gov"
MONITORS = {
    "WDA-04": ["wda04-monitor@lwdb04.example.org"],
    "WDA-07": ["wda07-monitor@lwdb07.example.org", "wda07-lead@lwdb07.example.org"],
    "WDA-08": ["wda08-monitor@lwdb08.example.org"],
}
#: what each area's monitors must receive, exactly once each (subject after the prefix)
EXPECTED = {
    "WDA-04": set(),
    "WDA-07": {
        "CRITICAL: breach.open uid=dpatel",
        "CRITICAL: breach.open uid=hruiz",
        "INFO closed: breach.open uid=dpatel",
        "INFO closed: breach.open uid=hruiz",
        "INFO: separation.disabled uid=dpatel",
    },
    "WDA-08": {
        "CRITICAL: breach.open uid=cnguyen",
        "CRITICAL: breach.open uid=dpatel",
        "INFO closed: breach.open uid=cnguyen",
        "INFO closed: breach.open uid=dpatel",
        "INFO: separation.disabled uid=dpatel",
    },
}
#: the people of each area (given and family names, logon ids, person ids)
PEOPLE = {
    "WDA-04": ["P1001", "P1005", "P1007", "P1009", "P1010", "ewalsh", "gkim", "Ortiz", "Walsh"],
    "WDA-07": ["P1002", "P1006", "P1008", "hruiz", "Ruiz", "Osei"],
    "WDA-08": ["P1003", "cnguyen", "Nguyen"],
}


def three_areas(feeds: Path) -> None:
    """The demo feeds, spread over WDA-04, WDA-07 and WDA-08 (see the module's doc)."""
    shutil.copytree(DEMO / "feeds", feeds)
    orgs = (feeds / "organizations.csv").read_text(encoding="utf-8")
    orgs = orgs.replace(
        "CBO1,Goodwill Career Partners,wioa_contractor,WDA-04",
        "CBO1,Goodwill Career Partners,wioa_contractor,WDA-07",
    )
    orgs = orgs.replace(
        "CBO2,Riverside Career Services,wioa_contractor,WDA-04",
        "CBO2,Riverside Career Services,wioa_contractor,WDA-08",
    )
    (feeds / "organizations.csv").write_text(orgs, encoding="utf-8")
    workers = (feeds / "workers.csv").read_text(encoding="utf-8")
    moved = "P1004,CBO2,Dev,Patel,dev.patel@example.org,Auburn,P2003,active,"
    workers = workers.replace(
        "P1004,CBO1,Dev,Patel,dev.patel@example.org,Renton,P2002,separated,2026-11-20", moved
    )
    assert moved in workers
    (feeds / "workers.csv").write_text(workers, encoding="utf-8")
    with (feeds / "requesters.csv").open("a", encoding="utf-8") as f:  # R900 serves all three
        f.write("R900,WDA-07,LWDB07 Executive Director,2024-01-01,\n")
        f.write("R900,WDA-08,LWDB08 Executive Director,2024-01-01,\n")


def email_toml(smtp: Any, *, areas: bool) -> str:
    text = f"""
[alerts.email]
host = "{smtp.host}"
port = {smtp.port}
starttls = false
sender = "misync@esd.example.gov"
to = ["{STATEWIDE}"]
"""
    if areas:
        for wda, to in MONITORS.items():
            quoted = ", ".join(f'"{a}"' for a in to)
            text += f'\n[areas."{wda}"]\nemail = [{quoted}]\n'
    return text


def world(tmp: Path, scope: Any, slapd: Any, smtp: Any, *, areas: bool) -> Path:
    slapd.add_ldif(demo_seed_ldif(scope))
    three_areas(tmp / "feeds")
    return write_config(tmp, scope, tmp / "feeds", email_toml(smtp, areas=areas))


def subject(m: Any) -> str:
    """A subject with the test's own LDAP branch left out (two worlds, two branches)."""
    return re.sub(r",ou=t\d+,", ",", " ".join(str(m["Subject"]).split()))


def inbox(smtp: Any, address: str, start: int = 0) -> list[Any]:
    return [m for _, rcpt, m in smtp.messages[start:] if address in rcpt]


def test_each_area_gets_its_own_events_once_and_the_statewide_mail_is_unchanged(
    tmp_path: Path,
    slapd: Any,
    smtp_server: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app, "now", lambda: NOW)
    # the same world without [areas]: what the statewide address got before
    before = tmp_path / "before"
    before.mkdir()
    cfg = world(before, ldap_scope_on(slapd, before), slapd, smtp_server, areas=False)
    assert main(["-c", str(cfg), "apply"]) == 0
    statewide_before = Counter(subject(m) for m in inbox(smtp_server, STATEWIDE))
    assert len(smtp_server.messages) == sum(statewide_before.values())
    mark = len(smtp_server.messages)

    tmp = tmp_path / "areas"
    tmp.mkdir()
    cfg = world(tmp, ldap_scope_on(slapd, tmp), slapd, smtp_server, areas=True)
    assert main(["-c", str(cfg), "apply"]) == 0
    capsys.readouterr()
    # the statewide address gets what it got before, and nothing area-only
    assert Counter(subject(m) for m in inbox(smtp_server, STATEWIDE, mark)) == (statewide_before)
    for wda, to in MONITORS.items():
        for address in to:
            got = [subject(m).split(",")[0] for m in inbox(smtp_server, address, mark)]
            prefix = f"[misync] {wda} "
            assert all(s.startswith(prefix) for s in got), (address, got)
            # exactly its messages, each once
            assert sorted(s.removeprefix(prefix) for s in got) == sorted(EXPECTED[wda]), (
                wda,
                got,
            )
        # nothing about another area's people: no id, logon id or name of theirs
        for m in inbox(smtp_server, to[0], mark):
            text = str(m["Subject"]) + m.get_content()
            for other, words in PEOPLE.items():
                if other != wda:
                    assert not [w for w in words if w in text], (wda, other, text)
            # the area's page, never the statewide run page
            assert f"--wda {wda}" in text and "reports/run-" not in text, text
            assert m["X-Misync-Area"] == wda
    # an area message goes to that area's monitors only (one envelope per area)
    area_rcpts = {a for to in MONITORS.values() for a in to}
    for _, rcpt, m in smtp_server.messages[mark:]:
        if set(rcpt) & area_rcpts:
            assert set(rcpt) == set(MONITORS[m["X-Misync-Area"]]), (rcpt, m["Subject"])
    # the mover's breach is in both areas; its body says which area, ids only
    dpatel = next(
        m
        for m in inbox(smtp_server, MONITORS["WDA-07"][0], mark)
        if "CRITICAL: breach.open uid=dpatel," in subject(m)
    )
    body = dpatel.get_content()
    assert "area:     WDA-07" in body and "person_id: P1004" in body and "separated" in body
    assert "Patel" not in body and "dev.patel" not in body

    # a re-run has nothing new: no message to anyone
    n = len(smtp_server.messages)
    assert main(["-c", str(cfg), "apply"]) == 0
    assert len(smtp_server.messages) == n

    # WDA-04: a warning that is about to become a breach, then the breach, then its close
    warning_becomes_breach(tmp, cfg, smtp_server, monkeypatch, capsys)


def warning_becomes_breach(
    tmp: Path,
    cfg: Path,
    smtp: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """P1005 (ESD01, WDA-04) separated 22 h ago: the deadline is 2 h away, and the
    disable is held (the account is quarantined, it kept failing). WDA-04's monitors get
    the warning; 3 h later the breach (the warning closes silently); once the disable is
    retried and done, the close and the separation carried out. One message each, to
    WDA-04 only."""
    from connector.settings import load_settings
    from connector.state import StateStore

    sep = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)  # NOW - 22 h: the deadline is NOW + 2 h
    with (tmp / "feeds" / "separations.csv").open("a", encoding="utf-8") as f:
        f.write(f"P1005,ESD01,{sep.isoformat()},resignation\n")
    ewalsh = f"uid=ewalsh,{load_settings(cfg).target.ldap.base_dn}"
    with StateStore(tmp / "state" / "state.sqlite3") as store:
        for _ in range(3):
            store.record_failure(ewalsh, NOW, "unwillingToPerform")

    def step(at: datetime, *argv: str) -> dict[str, list[str]]:
        monkeypatch.setattr(app, "now", lambda: at)
        mark = len(smtp.messages)
        main(["-c", str(cfg), *argv])
        capsys.readouterr()
        return {
            wda: [subject(m).split(",")[0] for m in inbox(smtp, to[0], mark)]
            for wda, to in MONITORS.items()
        }

    p = "[misync] WDA-04 "
    assert step(NOW, "apply") == {
        "WDA-04": [p + "WARNING: deadline.warning uid=ewalsh"],
        "WDA-07": [],
        "WDA-08": [],
    }
    assert step(NOW, "apply") == {w: [] for w in MONITORS}  # still open: nothing again
    later = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # the deadline has passed
    assert step(later, "apply") == {
        "WDA-04": [p + "CRITICAL: breach.open uid=ewalsh"],
        "WDA-07": [],
        "WDA-08": [],
    }
    # the daemon's reminder pass: the statewide address gets the reminders; WDA-04 gets
    # none, but its daily digest (09:00 in Los Angeles is past area_digest_at), once
    from connector.app import Runtime
    from connector.cli.common import alert_manager

    mark = len(smtp.messages)
    next_day = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
    with alert_manager(Runtime(load_settings(cfg))) as manager:
        manager.remind(next_day)
        manager.remind(next_day)
    daily = {wda: [subject(m) for m in inbox(smtp, to[0], mark)] for wda, to in MONITORS.items()}
    assert daily == {
        "WDA-04": [p + "daily digest 2026-11-26: 1 breach and 0 deadline warnings open"],
        "WDA-07": [],
        "WDA-08": [],
    }
    body = inbox(smtp, MONITORS["WDA-04"][0], mark)[0].get_content()
    assert "- breach.open uid=ewalsh," in body and "(person P1005," in body
    assert "misync report --wda WDA-04" in body
    assert [s for s in (subject(m) for m in inbox(smtp, STATEWIDE, mark)) if "reminder" in s]

    assert step(later, "held", "approve", ewalsh, "--reason", "fixed") == {w: [] for w in MONITORS}
    got = step(later, "apply")
    assert sorted(got["WDA-04"]) == [
        p + "INFO closed: breach.open uid=ewalsh",
        p + "INFO: separation.disabled uid=ewalsh",
    ], got
    assert got["WDA-07"] == got["WDA-08"] == []


def test_config_check_names_the_line_of_a_bad_address_and_warns_of_an_unknown_area(
    tmp_path: Path,
    ldap_scope: Any,
    slapd: Any,
    smtp_server: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = world(tmp_path, ldap_scope, slapd, smtp_server, areas=True)
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(text + '\n[areas.WDA-99]\nemail = ["nobody@lwdb99.example.org"]\n')
    assert main(["-c", str(cfg), "config", "check"]) == 0
    out = capsys.readouterr().out
    assert (
        f"warning: areas.WDA-99: no row of {tmp_path / 'feeds' / 'organizations.csv'} has "
        "wda 'WDA-99'; its monitors get nothing (known: WDA-04, WDA-07, WDA-08)"
    ) in out
    assert "areas.WDA-07" not in out

    bad = text.replace('"wda07-lead@lwdb07.example.org"', '"wda07-lead(at)lwdb07"')
    cfg.write_text(bad, encoding="utf-8")
    line = next(n for n, ln in enumerate(bad.splitlines(), 1) if "wda07-lead" in ln)
    assert main(["-c", str(cfg), "config", "check"]) == 2
    err = capsys.readouterr()
    said = err.out + err.err
    assert f"{cfg}: line {line}: areas.WDA-07.email: " in said, said
    assert "item 2, 'wda07-lead(at)lwdb07', is not an email address" in said
