"""The command line as an operator meets it (issue 9): nothing that misleads, progress on
long runs, results in JSON, quiet pipes, loud warnings, small things people trip on.

Real slapd (and scim2-server for logon ids beside SCIM ids); the real ``misync`` binary
where the process boundary matters (closed pipes)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connector.cli import build_parser, main
from connector.cli import common as cli_common
from tests.integration.test_contract import World
from tests.integration.test_contract import world as world
from tests.integration.test_end_to_end import by_person, plan_json, run

pytestmark = pytest.mark.slapd
MISYNC = Path(sys.executable).with_name("misync")
FEEDS = (
    "organizations",
    "contracts",
    "workers",
    "separations",
    "training",
    "ndas",
    "requesters",
    "requests",
)


def events(stderr: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


# --- 1. a feed outage never reads as success ------------------------------------------


def test_a_total_feed_outage_is_never_no_changes(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for f in demo["feeds"].glob("*.csv"):
        f.unlink()
    code, out = run(demo, "plan", capsys=capsys)
    assert code == 0
    assert "No changes" not in out
    assert "NO ACTION CAN BE CARRIED OUT" in out and "FEEDS NOT USABLE" in out
    assert run(demo, "plan", "--detailed-exitcode", capsys=capsys)[0] == 9
    code, out = run(demo, "apply", capsys=capsys)
    assert code == 4  # not "ok": nothing could be judged
    assert "INCOMPLETE" in out and "feeds not usable" in out


def test_held_actions_have_their_own_detailed_exit_code(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(demo, "plan", "--detailed-exitcode", capsys=capsys)[0] == 8  # actions
    (demo["feeds"] / "contracts.csv").unlink()  # P1003's disable is held
    assert run(demo, "plan", "--detailed-exitcode", capsys=capsys)[0] == 9
    run(demo, "apply", capsys=capsys)
    (demo["feeds"] / "contracts.csv").write_text("", encoding="utf-8")


# --- 2, 3. apply shows the plan first, progress, then the outcome; JSON results --------


def test_apply_prints_the_plan_then_progress_then_the_outcome(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(demo, "apply", capsys=capsys)
    assert code == 0
    plan_at = out.index("misync plan sha256:")
    applying = out.index("applying 8 action(s)...")
    outcome = out.index("applied run ")
    assert plan_at < applying < outcome
    assert re.search(r"applied run [0-9a-f]{12}: OK \(ok 8\)\n", out)
    logged = [e["event"] for e in events(demo["last_err"])]
    assert "apply.started" in logged and "apply.progress" in logged
    assert logged.index("apply.started") < logged.index("apply.progress")
    last = [e for e in events(demo["last_err"]) if e["event"] == "apply.progress"][-1]
    assert (last["done"], last["total"], last["failed"]) == (8, 8, 0)


def test_apply_json_has_the_run_id_every_outcome_and_the_status(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (demo["feeds"] / "contracts.csv").unlink()  # P1003 held; creates held (no contracts)
    code, out = run(demo, "apply", "--format", "json", capsys=capsys)
    assert code == 4
    body = json.loads(out)
    assert re.fullmatch(r"[0-9a-f]{12}", body["run_id"])
    assert body["status"] == "incomplete"
    outcome = {(r["op"], r["person_id"]): r["outcome"] for r in body["outcomes"]}
    assert outcome[("disable", "P1004")] == "ok"
    assert outcome[("disable", "P1003")] == "held"
    held = next(r for r in body["outcomes"] if r["person_id"] == "P1003")
    assert held["error"].startswith("feed_unhealthy")
    assert body["counts"]["ok"] == sum(1 for r in body["outcomes"] if r["outcome"] == "ok")
    assert body["plan"]["checksum"].startswith("sha256:")
    assert "misync plan" not in out  # JSON only on stdout


def test_apply_json_reports_a_failed_action_with_its_error(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    workers = demo["feeds"] / "workers.csv"
    # mail is IA5String in the LDAP schema: slapd refuses a non-ASCII value
    workers.write_text(workers.read_text().replace("ben.lee@example.org", "bén.lee@example.org"))
    code, out = run(demo, "apply", "--format", "json", capsys=capsys)
    assert code == 4
    body = json.loads(out)
    failed = [r for r in body["outcomes"] if r["outcome"] == "failed"]
    assert [r["person_id"] for r in failed] == ["P1002"]
    assert failed[0]["error"]
    assert body["status"] == "incomplete"


# --- 4. a closed pipe ------------------------------------------------------------------


@pytest.mark.parametrize("args", [["explain", "P1004"], ["audit", "export"]])
def test_a_closed_pipe_exits_quietly(demo: dict[str, Any], args: list[str]) -> None:
    proc = subprocess.Popen(
        [str(MISYNC), "-c", str(demo["config"]), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before misync writes (`| head` at its worst)
    _, err = proc.communicate(timeout=120)
    text = err.decode()
    assert "Traceback" not in text and "internal error" not in text, text
    assert "Exception ignored" not in text, text
    assert proc.returncode == 141


# --- 5. secrets and transport -----------------------------------------------------------


def _set_password_file(demo: dict[str, Any], path: Path) -> None:
    cfg = demo["config"]
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(
        re.sub(r'password_file = "[^"]*"', f'password_file = "{path}"', text), encoding="utf-8"
    )


@pytest.mark.parametrize("command", [["config", "check"], ["plan"], ["apply"], ["explain", "P1"]])
def test_a_missing_password_file_is_exit_2_everywhere(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    _set_password_file(demo, demo["tmp"] / "nope")
    code, out = run(demo, *command, capsys=capsys)
    assert code == 2
    assert "nope" in out + demo["last_err"]


def test_an_empty_or_exposed_password_file(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    secret = demo["tmp"] / "empty-password"
    secret.write_text("\n", encoding="utf-8")
    secret.chmod(0o600)
    _set_password_file(demo, secret)
    code, out = run(demo, "config", "check", capsys=capsys)
    assert code == 2 and "is empty" in out
    assert run(demo, "plan", capsys=capsys)[0] == 2

    secret.write_text(demo["scope"].settings.password_file.read_text(), encoding="utf-8")
    secret.chmod(0o644)
    code, out = run(demo, "config", "check", capsys=capsys)
    assert code == 0
    assert "WARNING: target.ldap.password_file" in out and "chmod 600" in out
    code, _ = run(demo, "plan", capsys=capsys)  # every run says it too
    warned = [e for e in events(demo["last_err"]) if e["event"] == "config.insecure"]
    assert warned and "others" in warned[0]["message"]
    secret.chmod(0o600)
    code, out = run(demo, "config", "check", capsys=capsys)
    assert "WARNING" not in out


@pytest.mark.parametrize(
    ("block", "says"),
    [
        ('url = "ldap://192.0.2.10:389/"', "plain ldap://"),
        ('url = "ldaps://192.0.2.10"\nverify_tls = false', "verify_tls = false"),
        ('url = "ldap://192.0.2.10"\nstart_tls = true\nverify_tls = false', "verify_tls = false"),
    ],
)
def test_insecure_transport_is_warned_loudly(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str], block: str, says: str
) -> None:
    cfg = demo["config"]
    text = re.sub(r'url = "[^"]*"', block, cfg.read_text(encoding="utf-8"))
    cfg.write_text(text, encoding="utf-8")
    _, out = run(demo, "config", "check", capsys=capsys)
    assert "WARNING" in out and says in out, out


def test_loopback_plain_ldap_is_not_warned(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(demo, "config", "check", capsys=capsys)
    assert code == 0 and "WARNING" not in out


# --- 6. large plans ---------------------------------------------------------------------


def test_a_large_plan_defaults_to_the_summary_view(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_common, "SUMMARY_VIEW_OVER", 5)  # the demo's 8 actions are "large"
    monkeypatch.setattr(cli_common, "SUMMARY_VIEW_FIRST", 1)
    _, out = run(demo, "plan", capsys=capsys)
    assert "summary view" in out
    assert "DISABLE 4; by reason:" in out and "separated 1" in out
    assert "... and 3 more disable actions" in out
    _, full = run(demo, "plan", "--full", capsys=capsys)
    assert "summary view" not in full
    assert all(p in full for p in ("P1001", "P1002", "P1003", "P1004", "P1008"))
    assert len(full.splitlines()) > len(out.splitlines())


# --- 7. logon ids beside SCIM ids ---------------------------------------------------------


@pytest.mark.parametrize("world", ["scim"], indirect=True)
def test_scim_plans_name_the_user_name_beside_the_id(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["-c", str(world.config), "plan"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if re.match(r"\s+(DISABLE|UPDATE|ENABLE|BREACH)", ln)]
    assert lines
    for line in lines:  # "<opaque id> (<userName>)"
        assert re.search(r" [0-9a-f-]{8,} \([a-z0-9]+\)", line), line
    assert "(dpatel)" in out


# --- 8. small things --------------------------------------------------------------------


def test_config_after_the_subcommand(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "-c", str(demo["config"]), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["checksum"]
    assert main(["audit", "verify", "-c", str(demo["config"])]) == 0
    assert "audit trail intact" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("given", "as_of"),
    [
        ("2026-11-25", "2026-11-25T00:00:00-08:00"),
        ("2026-11-25T09:30", "2026-11-25T09:30:00-08:00"),
        ("2026-07-01T09:30", "2026-07-01T09:30:00-07:00"),
        ("2026-11-25T17:00:00+00:00", "2026-11-25T17:00:00+00:00"),
    ],
)
def test_as_of_accepts_dates_and_local_times_in_the_policy_zone(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str], given: str, as_of: str
) -> None:
    assert plan_json(demo, capsys, "--as-of", given)["as_of"] == as_of


def test_every_option_has_help_and_help_lists_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    def walk(p: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    missing += walk(sub, f"{path} {name}")
            elif not a.help:
                missing.append(f"{path} {'/'.join(a.option_strings) or a.dest}")
        return missing

    assert walk(build_parser(), "misync") == []
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for code in range(10):
        assert re.search(rf"^\s+{code}\s+\S", text, re.M), code


def test_an_unreachable_directory_says_what_it_waits_for(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = demo["config"]
    cfg.write_text(
        re.sub(r'url = "[^"]*"', f'url = "ldap://127.0.0.1:{port}"', cfg.read_text()),
        encoding="utf-8",
    )
    code, _ = run(demo, "plan", capsys=capsys)
    assert code == 3
    waiting = [e for e in events(demo["last_err"]) if e["event"] == "target.connecting"]
    assert waiting and f"ldap://127.0.0.1:{port}" in waiting[0]["message"]
    assert "timeout" in waiting[0]["message"]


def test_plan_breaches_and_warnings_agree_with_the_summary(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 6 item 12: 2 h before P1004's deadline it is a warning, not a breach."""
    body = plan_json(demo, capsys, "--as-of", "2026-11-21T22:00")
    assert len(body["breaches"]) == body["summary"]["breaches"]
    assert len(body["warnings"]) == body["summary"]["warnings"] == 1
    assert {b["severity"] for b in body["breaches"]} == {"breach"}
    assert body["warnings"][0]["person_id"] == "P1004"
    assert body["warnings"][0]["deadline"] == "2026-11-22T00:00:00-08:00"
    _, out = run(demo, "plan", "--as-of", "2026-11-21T22:00", capsys=capsys)
    warnings = out[out.index("WARNINGS") :]
    assert "P1004" in warnings and "due in 2 h 0 min" in warnings
    assert "P1004" not in out[out.index("BREACHES") : out.index("WARNINGS")]
    assert by_person(body)


def test_on_a_terminal_logs_are_console_lines_and_apply_shows_a_live_counter(
    demo: dict[str, Any],
) -> None:
    """stderr on a real pseudo-terminal: readable log lines, not JSON, and the live
    progress line rewritten in place; stdout (a pipe) still gets the plan and outcome."""
    import os
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(MISYNC), "-c", str(demo["config"]), "apply"],
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not data:
            break
        chunks.append(data)
    out, _ = proc.communicate(timeout=120)
    os.close(leader)
    err = b"".join(chunks).decode()
    assert proc.returncode == 0, err
    assert "applied run" in out.decode()
    assert not any(line.lstrip().startswith("{") for line in err.splitlines())
    assert "run.finished" in err and "[info" in err  # structlog's console renderer
    assert re.search(r"\r  applied 8/8 \(\d+\.\d/s, ETA 0 s\)", err), err[-500:]


# --- issue 13.11: audit export for auditors --------------------------------------------


def test_audit_export_filters_by_person_and_carries_objects(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    import csv
    import io

    assert run(demo, "apply", capsys=capsys)[0] == 0
    code, out = run(demo, "audit", "export", capsys=capsys)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    p1004 = [r for r in rows if r["person_id"] == "P1004" and r["kind"] == "operation"]
    assert [(r["op"], r["outcome"], r["account_id"]) for r in p1004] == [
        ("disable", "ok", f"uid=dpatel,{demo['scope'].people_dn}")
    ]
    assert "separated" in p1004[0]["reason_codes"].split()
    assert re.fullmatch(r"[0-9a-f]{12}", p1004[0]["run_id"])
    breaches = {(r["person_id"], r["outcome"]) for r in rows if r["kind"] == "breach"}
    assert breaches == {(p, s) for p in ("P1003", "P1004", "P1008") for s in ("open", "closed")}
    code, out = run(demo, "audit", "export", "--format", "jsonl", capsys=capsys)
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == len(rows)
    assert all(isinstance(r["data"], dict) for r in records)
    (op,) = [r for r in records if r["kind"] == "operation" and r["data"]["person_id"] == "P1004"]
    assert op["data"]["outcome"] == "ok" and op["hash"] == p1004[0]["hash"]
    assert run(demo, "audit", "verify", capsys=capsys)[0] == 0


# --- issue 13.8: apply asks on a terminal ------------------------------------------------


def _apply_process(
    demo: dict[str, Any], tty: bool, *extra: str
) -> tuple[subprocess.Popen[bytes], int | None]:
    """``misync apply`` as a real process, its standard input a pseudo-terminal (``tty``)
    or /dev/null; returns the process and the pty's master end (None without one)."""
    import os

    master: int | None = None
    if tty:
        master, slave = os.openpty()
        stdin: int = slave
    else:
        stdin = subprocess.DEVNULL
    proc = subprocess.Popen(
        [str(MISYNC), "-c", str(demo["config"]), "apply", *extra],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if tty:
        os.close(slave)
    return proc, master


def _finish(
    proc: subprocess.Popen[bytes], master: int | None, answer: str | None
) -> tuple[int, str, str]:
    """Wait for the question (when an answer is given), type the answer, collect output."""
    import os
    import threading
    import time

    err: list[bytes] = []
    assert proc.stderr is not None and proc.stdout is not None
    stderr = proc.stderr
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: stderr.read1(4096), b"")))
    reader.start()
    if answer is not None:
        assert master is not None
        deadline = time.monotonic() + 120
        while b"type yes" not in b"".join(err):
            assert proc.poll() is None, b"".join(err).decode()
            assert time.monotonic() < deadline, "apply never asked"
            time.sleep(0.05)
        os.write(master, answer.encode() + b"\n")
    out = proc.stdout.read()  # to the end: the process exits (or the test times out)
    code = proc.wait(timeout=120)
    reader.join(timeout=30)
    if master is not None:
        os.close(master)
    return code, out.decode(), b"".join(err).decode()


@pytest.mark.parametrize(
    ("tty", "extra", "answer", "code", "changed"),
    [
        pytest.param(True, [], "no", 11, False, id="terminal-no"),
        pytest.param(True, [], "", 11, False, id="terminal-empty-answer"),
        pytest.param(True, [], "yes", 0, True, id="terminal-yes"),
        pytest.param(True, ["--yes"], None, 0, True, id="terminal-flag-yes"),
        pytest.param(False, [], None, 0, True, id="not-a-terminal"),
    ],
)
def test_apply_asks_on_a_terminal(
    demo: dict[str, Any],
    tty: bool,
    extra: list[str],
    answer: str | None,
    code: int,
    changed: bool,
) -> None:
    from tests.integration.test_end_to_end import entry

    scope = demo["scope"]
    proc, master = _apply_process(demo, tty, *extra)
    got, out, err = _finish(proc, master, answer)
    assert got == code, out + err
    asked = re.search(r"carry out these (\d+) changes\? type yes: ", err)
    assert (asked is not None) == (answer is not None), err
    if asked:  # the plan was printed before the question, the count is the plan's
        assert out.index("misync plan sha256:") == 0
        assert int(asked.group(1)) == len(
            re.findall(r"^  (CREATE|UPDATE|DISABLE|ENABLE) ", out, re.M)
        )
    assert (entry(scope, "aortiz") is not None) is changed  # P1001's create
    locked = "pwdAccountLockedTime" in (entry(scope, "dpatel") or {})  # P1004's disable
    assert locked is changed
    if not changed:
        assert "nothing was changed" in err
        assert "applied run" not in out
        return
    assert re.search(r"applied run [0-9a-f]{12}: OK", out), out + err
    if answer == "yes":  # the plan shown is printed once, not again after the answer
        assert out.count("misync plan sha256:") == 1
        # now nothing is left to do: nothing to ask, on a terminal too (it would hang)
        proc, master = _apply_process(demo, True)
        got, out, err = _finish(proc, master, None)
        assert got == 0, out + err
        assert "type yes" not in err and "applied run" in out


def test_apply_carries_out_only_the_plan_it_showed(demo: dict[str, Any]) -> None:
    """The question is open while the directory changes: "yes" approved the plan shown,
    which no longer holds, so nothing is carried out (exit 5, as apply --plan)."""
    import os
    import time

    import ldap3

    from tests.integration.test_end_to_end import entry

    scope = demo["scope"]
    proc, master = _apply_process(demo, True, "--format", "json")
    assert proc.stderr is not None and master is not None
    seen = b""
    deadline = time.monotonic() + 120
    while b"type yes" not in seen:
        assert time.monotonic() < deadline and proc.poll() is None, seen.decode()
        seen += proc.stderr.read1(4096)
    assert b"misync plan sha256:" in seen  # with --format json the plan goes to the terminal
    ldap = scope.settings
    with ldap3.Connection(
        ldap3.Server(ldap.url), ldap.bind_dn, ldap.bind_password(), auto_bind=True
    ) as conn:
        conn.modify(
            f"uid=ewalsh,{scope.people_dn}", {"employeeType": [(ldap3.MODIFY_REPLACE, ["x"])]}
        )
    os.write(master, b"yes\n")
    out, err = proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode == 5, out.decode() + err.decode()
    assert b"drifted" in err and b"ewalsh" in err
    assert entry(scope, "aortiz") is None  # nothing of the plan was carried out
