"""What independent testing found in the field (issue 6), on a real slapd through the
`misync` command: identifiers that differ only in case, request statuses a form
writes, invalid email addresses, LDAP URL forms, explain on rejected rows and orphans.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ldap3
import pytest

from tests.integration.test_end_to_end import (  # the demo world on a real slapd
    demo,
    entry,
    pinned_now,
    plan_json,
    run,
)

pytestmark = pytest.mark.slapd

__all__ = ["demo", "pinned_now"]  # fixtures, used by name


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _people_with(scope: Any, attr: str, value: str) -> list[str]:
    ldap = scope.settings
    conn = ldap3.Connection(
        ldap3.Server(ldap.url), ldap.bind_dn, ldap.bind_password(), auto_bind=True
    )
    try:
        conn.search(scope.people_dn, f"({attr}={value})", ldap3.LEVEL, attributes=["uid"])
        return sorted(e.entry_dn for e in conn.entries)
    finally:
        conn.unbind()


# -- 10. an invalid email address is rejected, never provisioned ---------------------------


def test_invalid_email_is_rejected_with_its_place_and_never_written(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    feeds: Path = demo["feeds"]
    _edit(feeds / "workers.csv", "ana.ortiz@example.org", "not-an-email")  # P1001, a create
    _edit(feeds / "workers.csv", "erin.walsh@esd.example.gov", "erin walsh@esd")  # P1005, update

    plan = plan_json(demo, capsys)
    bad = {(r["file"], r["line"], r["column"], r["value"]) for r in plan["rejected"]}
    assert ("workers.csv", 2, "email", "not-an-email") in bad
    assert ("workers.csv", 6, "email", "erin walsh@esd") in bad
    reason = next(r["reason"] for r in plan["rejected"] if r["value"] == "not-an-email")
    assert "not a valid email address" in reason

    code, _ = run(demo, "apply", capsys=capsys)
    assert code == 4  # the two people are held, the rest is done
    scope = demo["scope"]
    assert entry(scope, "aortiz") is None
    assert _people_with(scope, "mail", "not-an-email") == []
    ewalsh = entry(scope, "ewalsh")
    assert ewalsh is not None and ewalsh["mail"] == ["erin.walsh@esd.example.gov"]
    assert entry(scope, "blee") is not None  # P1002, unaffected, was created
    out = json.dumps(plan)
    assert "erin walsh@esd" not in json.dumps([a["changes"] for a in plan["actions"]]), out


# -- 9. request statuses: only approved acts; the others are read and ignored ---------------


def test_denied_request_is_ignored_and_does_not_hold_a_create(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    requests = demo["feeds"] / "requests.csv"
    requests.write_text(
        requests.read_text(encoding="utf-8")
        # P1002 asked for another profile; the form says denied: it does nothing
        + "REQ-013,change,P1002,R900,2026-11-10T09:00:00-08:00,2026-11-11,denied,"
        "supervisor,Renton,,,,P2002\n"
        # P1001's disable was cancelled: it does nothing either
        + "REQ-014,disable,P1001,R900,2026-11-10T09:00:00-08:00,2026-11-11,cancelled,"
        ",,,,,P2001\n"
        # not a status at all: rejected, naming the place; P1006 (no account) is held
        + "REQ-015,change,P1006,R900,2026-11-10T09:00:00-08:00,2026-11-11,aproved,"
        "supervisor,Renton,,,,P2002\n",
        encoding="utf-8",
    )
    plan = plan_json(demo, capsys)
    rejected = [(r["file"], r["line"], r["column"], r["value"]) for r in plan["rejected"]]
    assert ("requests.csv", 16, "status", "aproved") in rejected
    assert not [r for r in plan["rejected"] if r["line"] in (14, 15)]
    ops = {a["person_id"]: a["op"] for a in plan["actions"]}
    assert ops.get("P1001") == "create"
    assert ops.get("P1002") == "create"
    assert not [h for h in plan["held"] if h["action"]["person_id"] in ("P1001", "P1002")]

    code, _ = run(demo, "apply", capsys=capsys)
    assert code == 0
    blee = entry(demo["scope"], "blee")
    assert blee is not None and blee["employeeType"] == ["case-manager"]  # not the denied one
    aortiz = entry(demo["scope"], "aortiz")
    assert aortiz is not None and "pwdAccountLockedTime" not in aortiz
