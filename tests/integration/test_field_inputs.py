"""What independent testing found in the field (issue 6), on a real slapd through the
`misync` command: identifiers that differ only in case, request statuses a form
writes, invalid email addresses, LDAP URL forms, explain on rejected rows and orphans.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
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


# -- 5. one person, one account: person ids compare as the directory compares them ----------


def _set(scope: Any, uid: str, attr: str, value: str) -> None:
    ldap = scope.settings
    conn = ldap3.Connection(
        ldap3.Server(ldap.url), ldap.bind_dn, ldap.bind_password(), auto_bind=True
    )
    try:
        assert conn.modify(
            f"uid={uid},{scope.people_dn}", {attr: [(ldap3.MODIFY_REPLACE, [value])]}
        ), conn.result
    finally:
        conn.unbind()


def _add_person(scope: Any, uid: str, employee_number: str) -> None:
    ldap = scope.settings
    conn = ldap3.Connection(
        ldap3.Server(ldap.url), ldap.bind_dn, ldap.bind_password(), auto_bind=True
    )
    try:
        assert conn.add(
            f"uid={uid},{scope.people_dn}",
            ["inetOrgPerson"],
            {"uid": uid, "cn": uid, "sn": uid, "employeeNumber": employee_number},
        ), conn.result
    finally:
        conn.unbind()


def test_an_account_whose_id_differs_only_in_case_is_the_persons_account(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """slapd matches employeeNumber with caseIgnoreMatch: ``p1005`` and ``P１００７``
    (full-width digits) are P1005's and P1007's accounts, updated and enabled, never
    disabled as orphans next to a second, new account."""
    scope = demo["scope"]
    _set(scope, "ewalsh", "employeeNumber", "p1005")
    _set(scope, "gkim", "employeeNumber", "P\uff11\uff10\uff10\uff17")

    plan = plan_json(demo, capsys)
    ops = {(a["op"], a["person_id"], a["account_id"]) for a in plan["actions"]}
    ewalsh, gkim = (f"uid={u},{scope.people_dn}" for u in ("ewalsh", "gkim"))
    assert ("update", "P1005", ewalsh) in ops
    assert ("enable", "P1007", gkim) in ops
    assert not [
        a for a in plan["actions"] if a["account_id"] in (ewalsh, gkim) and a["op"] == "disable"
    ]
    assert not [
        a for a in plan["actions"] if a["op"] == "create" and a["person_id"] in ("P1005", "P1007")
    ]

    code, _ = run(demo, "apply", capsys=capsys)
    assert code == 0
    assert _people_with(scope, "employeeNumber", "P1005") == [ewalsh]  # one account, in line
    assert _people_with(scope, "employeeNumber", "P1007") == [gkim]
    e = entry(scope, "ewalsh")
    assert e is not None and e["employeeNumber"] == ["P1005"] and "pwdAccountLockedTime" not in e
    g = entry(scope, "gkim")
    assert g is not None and "pwdAccountLockedTime" not in g
    assert plan_json(demo, capsys)["actions"] == []


def test_reviewed_create_is_refused_when_an_account_with_the_id_in_another_case_appears(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = demo["tmp"] / "plan.json"
    assert run(demo, "plan", "-o", str(path), capsys=capsys)[0] == 0
    reviewed = json.loads(path.read_text())
    assert {"create"} == {a["op"] for a in reviewed["actions"] if a["person_id"] == "P1002"}
    _add_person(demo["scope"], "ben-lee", "p1002")  # made by hand meanwhile

    code, _ = run(demo, "apply", "--plan", str(path), capsys=capsys)
    assert code == 5
    assert "P1002: an account now exists" in demo["last_err"]
    assert entry(demo["scope"], "blee") is None


def test_feed_ids_that_the_directory_cannot_tell_apart_are_rejected(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    training = demo["feeds"] / "training.csv"
    training.write_text(
        training.read_text(encoding="utf-8") + "p1002,MIS Basic,2025-10-01\n", encoding="utf-8"
    )
    lines = training.read_text(encoding="utf-8").count("\n")
    plan = plan_json(demo, capsys)
    clash = [r for r in plan["rejected"] if "same person id" in r["reason"]]
    assert {(r["file"], r["line"], r["column"], r["value"]) for r in clash} >= {
        ("training.csv", lines, "person_id", "p1002"),
        ("workers.csv", 3, "person_id", "P1002"),
    }
    assert all("caseIgnoreMatch" in r["reason"] for r in clash)
    assert not [a for a in plan["actions"] if a["person_id"] in ("P1002", "p1002")]
    assert run(demo, "apply", capsys=capsys)[0] == 0  # nobody to hold: no account, no decision
    assert entry(demo["scope"], "blee") is None
    assert _people_with(demo["scope"], "employeeNumber", "P1002") == []


@pytest.mark.parametrize(
    ("stored", "probe", "one_key"),
    [
        ("P1001", "p1001", True),
        ("Jos\u00e9", "JOSE\u0301", True),  # NFC and NFD, and case
        ("P\uff11001", "P1001", True),  # a full-width digit (NFKC)
        ("A  B", "a b", True),  # insignificant spaces
        ("\ufb01x", "FIX", True),  # a ligature
        ("K\u212a", "kk", True),  # the Kelvin sign
        ("stra\u00dfe", "STRASSE", True),  # misync folds more than OpenLDAP here: the safe side
        ("P1001", "P1002", False),
        ("P1001", "P10O1", False),
    ],
)
def test_id_key_folds_at_least_what_slapd_matches(
    ldap_scope: Any, stored: str, probe: str, one_key: bool
) -> None:
    """Every pair slapd's employeeNumber (caseIgnoreMatch) finds equal has one key; a
    key may join more than the server (then misync holds or rejects: the safe side)."""
    from connector.model.identity import IdMatch, id_key

    _add_person(ldap_scope, "probe", stored)
    server_equal = bool(
        _people_with(ldap_scope, "employeeNumber", ldap3.utils.conv.escape_filter_chars(probe))
    )
    ours_equal = id_key(IdMatch.CASE_IGNORE, stored) == id_key(IdMatch.CASE_IGNORE, probe)
    assert ours_equal == one_key
    assert ours_equal or not server_equal


# -- 8. RFC 4516 LDAP URLs: what config check accepts, the run accepts ---------------------


class _Ipv6Relay:
    """[::1]:port -> slapd on 127.0.0.1: slapd listens on IPv4 only in the fixture."""

    def __init__(self, port: int) -> None:
        self._to = port
        self._listen = socket.socket(socket.AF_INET6)
        self._listen.bind(("::1", 0))
        self._listen.listen(8)
        self.port = self._listen.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listen.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._to))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listen.close()


def _set_url(demo: dict[str, Any], url: str) -> None:
    cfg: Path = demo["config"]
    text = cfg.read_text(encoding="utf-8")
    old = next(line for line in text.splitlines() if line.startswith("url = "))
    cfg.write_text(text.replace(old, f'url = "{url}"'), encoding="utf-8")


@pytest.mark.parametrize(
    "form",
    [
        "ldap://127.0.0.1:{port}/",  # a trailing slash
        "LDAP://127.0.0.1:{port}/dc=mis,dc=test",  # a DN part (the scope is base_dn)
        "ldap://127.0.0.1:{port}/??",  # empty attributes and scope parts
        "ldap://[::1]:{v6}/",  # an IPv6 literal
    ],
)
def test_rfc4516_url_forms_pass_config_check_and_run(
    demo: dict[str, Any], slapd: Any, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    relay = _Ipv6Relay(slapd.port)
    try:
        _set_url(demo, form.format(port=slapd.port, v6=relay.port))
        code, out = run(demo, "config", "check", capsys=capsys)
        assert code == 0, out
        code, out = run(demo, "plan", capsys=capsys)
        assert code == 0, out + demo["last_err"]
        code, out = run(demo, "apply", capsys=capsys)
        assert code == 0, out + demo["last_err"]
        assert entry(demo["scope"], "aortiz") is not None
    finally:
        relay.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ldap://127.0.0.1:389x/", "the port must be a number from 1 to 65535"),
        ("ldap://127.0.0.1:389/dc=x?uid?sub", "set target.ldap.base_dn, filter and scope instead"),
        ("https://127.0.0.1/", "an LDAP URL starts with ldap:// or ldaps://"),
        ("ldap:///dc=x", "the URL names no host"),
    ],
)
def test_bad_ldap_url_is_a_configuration_error(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str], url: str, problem: str
) -> None:
    _set_url(demo, url)
    for command in (("config", "check"), ("plan",)):
        code, _ = run(demo, *command, capsys=capsys)
        assert code == 2
        assert "target.ldap.url" in demo["last_err"] and problem in demo["last_err"]


# -- 11. explain cites rejected rows as rejected, and explains an orphan -------------------


def test_explain_cites_a_rejected_training_row_as_rejected(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """P1010's training row has an impossible date: not 'no training'."""
    code, out = run(demo, "explain", "P1010", capsys=capsys)
    assert code == 0, demo["last_err"]
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "[no_training]" in line or "training" in line)
    assert (
        "but training.csv line 11, column completed_on (about P1010) was rejected: not a date"
        in ("\n".join(lines[at : at + 3]))
    ), out
    code, out = run(demo, "explain", "P1010", "--format", "json", capsys=capsys)
    body = json.loads(out)
    cited = [c for r in body["reasons"] for c in r["rejected_rows"]]
    assert any(c.startswith("training.csv line 11, column completed_on") for c in cited)
    assert [(r["file"], r["line"], r["column"]) for r in body["rejected"]] == [
        ("training.csv", 11, "completed_on")
    ]


def test_explain_an_unreadable_roster_row_is_not_a_missing_requester(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """P1002's roster row cannot be read (a bad status): every reason that rests on the
    roster says so, none reads it as 'not on the roster' or an undesignated requester."""
    _edit(
        demo["feeds"] / "workers.csv",
        "P1002,CBO1,Ben,Lee,ben.lee@example.org,Renton,P2002,active,",
        "P1002,CBO1,Ben,Lee,ben.lee@example.org,Renton,P2002,retired,",
    )
    code, out = run(demo, "explain", "P1002", "--format", "json", capsys=capsys)
    assert code == 0, demo["last_err"]
    body = json.loads(out)
    assert body["reasons"], body
    roster = "workers.csv line 3, column status (about P1002) was rejected"
    for reason in body["reasons"]:
        if "workers" in reason.get("relies_on", []) or reason.get("feed") == "workers":
            assert any(c.startswith(roster) for c in reason["rejected_rows"]), reason
    assert all(r["rejected_rows"] for r in body["reasons"]), body["reasons"]
    code, text = run(demo, "explain", "P1002", capsys=capsys)
    assert f"but {roster}" in text
    assert "rejected rows about P1002" in text


def test_explain_an_orphan_by_account_id_and_by_logon_id(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    scope = demo["scope"]
    dn = f"uid=oldtemp,{scope.people_dn}"
    for subject in (dn, "oldtemp", "OLDTEMP"):
        code, out = run(demo, "explain", subject, capsys=capsys)
        assert code == 0, demo["last_err"]
        assert (
            out.splitlines()[0] == f"account {dn} (enabled), logon ID oldtemp, employeeNumber=P9999"
        )
        assert "an orphan" in out
        assert "plan: disable in the plan" in out
        assert "matches no person in the feeds  [orphan]" in out
    code, out = run(demo, "explain", "oldtemp", "--format", "json", capsys=capsys)
    body = json.loads(out)
    assert (body["orphan"], body["op"], body["account"]["correlation"]) == (
        True,
        "disable",
        "P9999",
    )
    assert [r["code"] for r in body["reasons"]] == ["orphan"]
    # an account that belongs to a person is explained as that person's
    code, out = run(demo, "explain", "ewalsh", capsys=capsys)
    assert code == 0 and out.startswith("person P1005:")
    assert run(demo, "explain", "nobody-at-all", capsys=capsys)[0] == 2
    assert "no account in the target's managed scope" in demo["last_err"]


def test_explain_an_orphan_named_by_a_rejected_row(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The orphan's employeeNumber is named by a rejected roster row: it is held, and
    explain says which row."""
    workers = demo["feeds"] / "workers.csv"
    workers.write_text(
        workers.read_text(encoding="utf-8")
        + "P9999,CBO1,Old,Temp,old.temp@example.org,Renton,P2002,active,2026-13-01\n",
        encoding="utf-8",
    )
    code, out = run(demo, "explain", "oldtemp", capsys=capsys)
    assert code == 0, demo["last_err"]
    assert out.startswith("person P9999: appears only in rejected rows")
    assert "workers.csv line 14, column separated_on (about P9999) was rejected" in out
    assert f"account: uid=oldtemp,{demo['scope'].people_dn}, enabled" in out
