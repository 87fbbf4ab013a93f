"""The daemon keeps the plan memo after its reconciles, and an admin's dry run reuses
it (connector.runs.memo): the daemon as a real process on the real clock, ``misync
plan`` as the admin runs it. A separation written after the memo is in the dry run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_daemon import (
    LA,
    TIMEOUT,
    Daemon,
    append_row,
    write_config,
    write_world,
)
from tests.integration.test_daemon import start_daemon as start_daemon  # the fixture

pytestmark = pytest.mark.slapd


def dry_run(cfg: Path, *extra: str, at: datetime | None = None) -> dict[str, Any]:
    """``misync plan --format json`` as an admin runs it, beside the daemon (``at``: the
    instant, so that two plans can be compared by checksum)."""
    when = ["--as-of", at.isoformat()] if at is not None else []
    cmd = [sys.executable, "-m", "connector.cli", "-c", str(cfg), "plan", "--format", "json"]
    out = subprocess.run(
        [*cmd, *when, *extra],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout))


def test_a_dry_run_reuses_the_daemons_memo_and_sees_a_new_separation(
    tmp_path: Path, ldap_scope: Any, start_daemon: Callable[..., Daemon]
) -> None:
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, 6)
    # reconciles every 2 s; no feed watching (the separation below waits for the dry run)
    write_config(
        cfg, feeds, state, ldap_scope, reconcile_interval_seconds=2, watch_interval_seconds=3600
    )
    d = start_daemon(cfg, state)
    # the first reconcile creates everyone; the next one finds them in line and keeps a
    # memo in which they are all settled
    kept = d.wait_event(lambda e: e.get("event") == "memo.kept" and e.get("settled", 0) >= 6)
    assert kept["named"] == 0, kept

    status = subprocess.run(
        [sys.executable, "-m", "connector.cli", "-c", str(cfg), "status"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    ).stdout
    assert "plan memo (for dry runs): the whole plan of" in status, status
    assert "6 accounts settled, 0 people named" in status, status
    at = datetime.now(LA)
    idle = dry_run(cfg, at=at)
    memo = idle["read"]["memo"]
    assert "whole_plan_at" in memo, idle["read"]
    assert memo["accounts_reused"] >= 6 and memo["people_planned"] == 0, memo
    assert idle["actions"] == [], idle["actions"]
    assert idle["checksum"] == dry_run(cfg, "--full-scan", at=at)["checksum"]
    assert "memo" not in dry_run(cfg, "--full-scan")["read"]

    # the daemon stops; a separation lands; the admin's dry run must not take the memo
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(TIMEOUT) == 0
    sep_at = datetime.now(LA) - timedelta(minutes=5)
    append_row(feeds / "separations.csv", f"{ids[0]},LWDB04,{sep_at.isoformat()},resignation")
    after = dry_run(cfg)
    assert "feeds" in after["read"]["memo"]["unused"], after["read"]
    disables = [a for a in after["actions"] if a["op"] == "disable"]
    assert [a["person_id"] for a in disables] == [ids[0]], after["actions"]
    # the daemon again: its reconcile disables them and keeps a new memo, which the
    # next dry run reuses: nothing left to do
    d = start_daemon(cfg, state)
    d.wait_event(
        lambda e: e.get("event") == "run.finished" and e.get("summary", {}).get("disable_ok")
    )
    d.wait_event(lambda e: e.get("event") == "memo.kept" and e.get("named") == 0)
    at = datetime.now(LA)
    settled = dry_run(cfg, at=at)
    assert "whole_plan_at" in settled["read"]["memo"], settled["read"]
    assert settled["actions"] == []
    assert settled["checksum"] == dry_run(cfg, "--full-scan", at=at)["checksum"]
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(TIMEOUT) == 0
