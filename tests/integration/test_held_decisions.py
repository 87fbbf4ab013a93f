"""Operators' decisions on held actions (issue 13 item 7), end to end on a real slapd.

The demo world with the default ``apply.reenable_external_disables = false``: gkim
(P1007) is entitled but her account was locked by someone misync has no record of, so
her enable is held as ``disabled_outside_misync``. Before ``misync held``, that one hold
kept every apply at exit 4 and ``status`` at "last success: never" for good
(``test_external_disables``). Now an operator decides, audited with who and why:

- ``held accept`` leaves it locked: the next apply exits 0, raises no
  ``operation.held`` alert, and ``status`` shows the last success and the accepted
  hold; it reopens when what misync would do to her account changes, or at ``--until``;
- ``held approve`` carries the enable out once at the next run (read back on slapd),
  then the approval is closed with its outcome;
- ``held revoke`` withdraws a decision; a bad key or a code that may not be decided is
  exit 2 with a clear message;
- the daemon (a real process) runs ok, with the alert closed, once the hold is accepted.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connector import app
from connector.cli import main
from connector.state import StateStore
from tests.integration.test_daemon import (
    TIMEOUT,
    ldap_enabled,
    start_daemon,
    until,
    write_config,
    write_world,
)
from tests.integration.test_end_to_end import demo, entry, pinned_now, run
from tests.integration.test_external_disables import _default_config, _held, _lock

pytestmark = pytest.mark.slapd
__all__ = ["demo", "pinned_now", "start_daemon"]  # fixtures, used by name

KEY_PREFIX = "disabled_outside_misync:uid=gkim,"


@pytest.fixture
def world(demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    _default_config(demo)
    monkeypatch.delenv("SUDO_USER", raising=False)
    return demo


def _apply(demo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code, out = run(demo, "apply", "--format", "json", capsys=capsys)
    assert out, demo["last_err"]
    return code, json.loads(out)


def _held_list(demo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    code, out = run(demo, "held", "list", "--format", "json", capsys=capsys)
    assert code == 0, demo["last_err"]
    return list(json.loads(out))


def _gkim(demo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    (found,) = [h for h in _held_list(demo, capsys) if h["key"].startswith(KEY_PREFIX)]
    return found


def _audit(demo: dict[str, Any], kind: str = "held") -> list[dict[str, Any]]:
    db = sqlite3.connect(demo["tmp"] / "state" / "audit.sqlite3")
    try:
        rows = db.execute("select data from records where kind = ? order by seq", (kind,))
        return [json.loads(r[0]) for r in rows]
    finally:
        db.close()


def _open_alerts(demo: dict[str, Any]) -> set[tuple[str, str]]:
    db = sqlite3.connect(demo["tmp"] / "state" / "state.sqlite3")
    try:
        rows = db.execute("select kind, key from alerts where closed_at is null")
        return {(r[0], r[1]) for r in rows}
    finally:
        db.close()


def _status(demo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out = run(demo, "status", "--format", "json", capsys=capsys)
    assert code == 0
    return dict(json.loads(out))


def _locked(demo: dict[str, Any]) -> bool:
    gkim = entry(demo["scope"], "gkim")
    assert gkim is not None
    return bool(gkim.get("pwdAccountLockedTime"))


def test_accept_ends_the_held_forever_and_reopens_when_the_action_changes(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = _apply(world, capsys)
    assert code == 4 and _held(result) == {"P1007": "disabled_outside_misync"}
    assert _status(world, capsys)["last_success"] is None
    held = _gkim(world, capsys)
    assert held["code"] == "disabled_outside_misync"
    assert (held["person_id"], held["logon_id"], held["op"]) == ("P1007", "gkim", "enable")
    assert held["account_id"].startswith("uid=gkim,")
    assert "someone else locked it" in held["reason"]
    assert held["since"] and held["decision"] is None and held["state"] == "held"
    assert any(k == "operation.held" for k, _ in _open_alerts(world))

    code, out = run(world, "held", "accept", "gkim", "--reason", "locked for INC-42", capsys=capsys)
    assert code == 0, world["last_err"]
    assert f"accepted {held['key']}" in out
    decision = _gkim(world, capsys)["decision"]
    assert (decision["verdict"], decision["by"]) == ("accept", getpass.getuser())
    assert decision["reason"] == "locked for INC-42"

    assert _gkim(world, capsys)["state"] == "accepted"
    code, text = run(world, "plan", "--detailed-exitcode", capsys=capsys)
    assert code == 0  # nothing to do, nothing to review
    assert "ACCEPTED (1)" in text and "accepted by " in text and "locked for INC-42" in text
    assert "HELD" not in text and "No changes to carry out" in text
    # explain says what will happen to her: held, and left as it is by that decision
    code, text = run(world, "explain", "P1007", capsys=capsys)
    assert code == 0
    assert "ACCEPTED by " in text and "locked for INC-42" in text and "left as it is" in text
    assert "nothing to do" not in text
    code, out = run(world, "explain", "P1007", "--format", "json", capsys=capsys)
    accepted = json.loads(out)["plan"]["accepted"]
    assert [(a["code"], a["reason"]) for a in accepted] == [
        ("disabled_outside_misync", "locked for INC-42")
    ]

    # the next run: ok, nothing alerted, the account left locked, status says so
    code, result = _apply(world, capsys)
    assert code == 0, result["plan"]["held"]
    assert result["status"] == "ok" and result["plan"]["held"] == []
    assert [h["key"] for h in result["plan"]["accepted"]] == [held["key"]]
    assert _locked(world)
    assert not any(k == "operation.held" for k, _ in _open_alerts(world))
    status = _status(world, capsys)
    assert status["last_success"] is not None
    assert status["last_success"]["run_id"] == result["run_id"]
    assert [a["key"] for a in status["accepted"]] == [held["key"]]
    assert status["accepted"][0]["by"] == getpass.getuser()
    assert held["key"] not in {h["key"] for h in status["held"]}
    page = world["tmp"] / "run.html"
    assert run(world, "report", "--run", result["run_id"], "-o", str(page), capsys=capsys)[0] == 0
    html = page.read_text(encoding="utf-8")
    assert "1 held action(s) accepted" in html and "accepted by " in html
    code, text = run(world, "status", capsys=capsys)
    assert "last success: never" not in text and "accepted: 1" in text
    assert _gkim(world, capsys)["state"] == "accepted"
    # still accepted at the run after: a decision holds until what it is about changes
    assert _apply(world, capsys)[0] == 0

    # her roster email changes: misync would now also rewrite her mail, so it reopens
    workers: Path = world["feeds"] / "workers.csv"
    workers.write_text(
        workers.read_text(encoding="utf-8").replace(
            "grace.kim@example.org", "grace.kim@wdc.example.org"
        ),
        encoding="utf-8",
    )
    code, result = _apply(world, capsys)
    assert code == 4 and _held(result) == {"P1007": "disabled_outside_misync"}
    assert [r["key"] for r in result["plan"]["reopened"]] == [held["key"]]
    assert _gkim(world, capsys)["decision"] is None
    assert [(r["event"], r["by"]) for r in _audit(world)] == [
        ("accept", getpass.getuser()),
        ("reopened", "misync"),
    ]
    assert "what misync would do changed" in _audit(world)[-1]["reason"]
    assert _locked(world)


def test_accept_until_a_date_reopens_then(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _apply(world, capsys)[0] == 4
    # an --until already past is refused
    past = ("held", "accept", "gkim", "--reason", "x", "--until", "2026-11-24")
    assert run(world, *past, capsys=capsys)[0] == 2
    assert "not in the future" in world["last_err"]
    code, out = run(
        world, "held", "accept", "gkim", "--reason", "until the review",
        "--until", "2026-11-26", capsys=capsys,
    )  # fmt: skip
    assert code == 0, world["last_err"]
    assert "until 2026-11-26T00:00:00-08:00" in out
    assert _apply(world, capsys)[0] == 0

    monkeypatch.setattr(app, "now", lambda: datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    code, result = _apply(world, capsys)
    assert code == 4 and _held(result).get("P1007") == "disabled_outside_misync"
    (reopened,) = result["plan"]["reopened"]
    assert "accepted until 2026-11-26" in reopened["why"]
    assert [r["event"] for r in _audit(world)] == ["accept", "reopened"]
    assert _audit(world)[0]["until"] is not None


def test_approve_carries_the_enable_out_once(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _apply(world, capsys)[0] == 4
    monkeypatch.setenv("SUDO_USER", "jdoe")  # run through sudo: the person, not root
    code, out = run(world, "held", "approve", "P1007", "--reason", "INC-42 closed", capsys=capsys)
    assert code == 0, world["last_err"]
    assert "approved disabled_outside_misync:uid=gkim," in out
    # approving twice is refused: the first one is still to be carried out
    assert run(world, "held", "approve", "P1007", "--reason", "again", capsys=capsys)[0] == 2
    assert "already approved (by jdoe" in world["last_err"]

    code, result = _apply(world, capsys)
    assert code == 0, result
    assert ("enable", "P1007", "ok") in {
        (o["op"], o["person_id"], o["outcome"]) for o in result["outcomes"]
    }
    assert not _locked(world)  # read back on slapd: unlocked
    events = [(r["event"], r["by"], r.get("outcome")) for r in _audit(world)]
    assert events == [("approve", "jdoe", None), ("carried_out", "misync", "ok")]
    assert all(h["decision"] is None for h in _held_list(world, capsys))

    # once: locked again by security, it is held again, not re-enabled behind them
    _lock(world["scope"], "gkim", True)
    code, result = _apply(world, capsys)
    assert code == 4 and _held(result) == {"P1007": "disabled_outside_misync"}
    assert _locked(world)


def test_revoke_and_bad_keys(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert _apply(world, capsys)[0] == 4
    for args, message in [
        (("accept", "nobody", "--reason", "x"), "no held action 'nobody'"),
        (("approve", "uid=nobody,dc=x", "--reason", "x"), "no held action"),
        (("revoke", "gkim", "--reason", "x"), "has no open decision to revoke"),
        (("accept", "gkim", "--reason", "  "), "--reason must say why"),
    ]:
        assert run(world, "held", *args, capsys=capsys)[0] == 2, args
        assert message in world["last_err"], (args, world["last_err"])
        assert "Traceback" not in world["last_err"]
    assert run(world, "held", "approve", "gkim", "--reason", "ok", capsys=capsys)[0] == 0
    code, out = run(world, "held", "revoke", "gkim", "--reason", "not yet", capsys=capsys)
    assert code == 0 and "revoked the approve of disabled_outside_misync:" in out
    code, result = _apply(world, capsys)
    assert code == 4 and _held(result) == {"P1007": "disabled_outside_misync"}
    assert _locked(world)
    assert [(r["event"], r["reason"]) for r in _audit(world)] == [
        ("approve", "ok"),
        ("revoked", "not yet"),
    ]
    code, text = run(world, "held", "list", capsys=capsys)
    assert code == 0 and "1 held, 0 accepted, 0 approved" in text and "gkim" in text


def test_a_hold_that_is_gone_closes_its_decision(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone enables gkim by hand: misync no longer holds anything about her, so the
    full run closes the accept as resolved (audited) and the list is empty."""
    assert _apply(world, capsys)[0] == 4
    assert run(world, "held", "accept", "gkim", "--reason", "INC-9", capsys=capsys)[0] == 0
    _lock(world["scope"], "gkim", False)
    assert _apply(world, capsys)[0] == 0
    assert _held_list(world, capsys) == []
    assert [(r["event"], r["by"]) for r in _audit(world)] == [
        ("accept", getpass.getuser()),
        ("resolved", "misync"),
    ]


def test_a_quarantined_object_is_a_held_action(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """``quarantine`` in the same vocabulary: listed by ``held list`` (code
    ``quarantined``), retried once by ``held approve``, an approval like any other."""
    from connector.settings import load_settings
    from connector.state import StateStore

    now = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    with StateStore(load_settings(world["config"]).state.db) as store:
        for _ in range(3):
            store.record_failure("person:P1001", now, "objectClassViolation")
    (q,) = [h for h in _held_list(world, capsys) if h["code"] == "quarantined"]
    assert q["key"] == "quarantined:person:P1001" and "objectClassViolation" in q["reason"]
    assert run(world, "held", "approve", "P1001", "--reason", "schema fixed", capsys=capsys)[0] == 0
    result = _apply(world, capsys)[1]
    assert ("create", "P1001", "ok") in {
        (o["op"], o["person_id"], o["outcome"]) for o in result["outcomes"]
    }
    assert result["plan"]["approved"] == ["quarantined:person:P1001"]
    assert [r["event"] for r in _audit(world)] == ["approve", "carried_out"]
    assert entry(world["scope"], "aortiz") is not None
    assert os.environ.get("SUDO_USER") is None


def test_the_daemon_runs_ok_once_the_hold_is_accepted(
    tmp_path: Path, ldap_scope: Any, start_daemon: Any
) -> None:
    """``misync run`` as a real process: an account locked outside misync makes every
    reconcile incomplete and raises ``operation.held``; once an operator accepts it (with
    the CLI, while the daemon runs), the next reconcile is ok and the alert is closed."""
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, 2)
    write_config(cfg, feeds, state, ldap_scope, reconcile_interval_seconds=2)
    d = start_daemon(cfg, state)
    first = d.wait_event(lambda e: e.get("event") == "run.finished")
    assert first["status"] == "ok" and first["summary"]["create_ok"] == 2, first
    uid = _uid_of(ldap_scope, ids[1])
    _lock(ldap_scope, uid, True)  # a security administrator locks her, outside misync

    def finished(status: str, after: int) -> dict[str, Any]:
        return d.wait_event(
            lambda e: e.get("event") == "run.finished" and e.get("status") == status, after=after
        )

    finished("incomplete", 0)
    d.wait_event(lambda e: e.get("event") == "operation.held" and e.get("alert") is True)
    demo = {"config": cfg, "tmp": tmp_path}
    assert _status_of(demo)["last_run"]["status"] == "incomplete"

    code = main(["-c", str(cfg), "held", "accept", ids[1], "--reason", "INC-7 lock"])
    assert code == 0
    mark = len(d.events())
    ok = finished("ok", mark)
    assert ok["summary"].get("accepted") == 1
    assert until(lambda: not any(k == "operation.held" for k, _ in _open_alerts(demo)))
    later = d.events()[mark:]
    assert not [e for e in later if e.get("event") == "operation.held" and e.get("alert")]
    assert ldap_enabled(ldap_scope, ids[1]) is False  # left as it is
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(TIMEOUT) == 0


def _uid_of(scope: Any, person_id: str) -> str:
    s = scope.settings
    with ldap3.Connection(ldap3.Server(s.url), s.bind_dn, s.bind_password(), auto_bind=True) as c:
        c.search(s.base_dn, f"(employeeNumber={person_id})", attributes=["uid"])
        return str(c.entries[0].uid)


def _status_of(demo: dict[str, Any]) -> dict[str, Any]:
    from connector.health.status import collect_status
    from connector.settings import load_settings

    settings = load_settings(demo["config"])
    with StateStore(settings.state.db) as store:
        return collect_status(settings, store, datetime.now(UTC))
