"""The archive of each run's inputs and ``misync audit replay`` end to end on slapd:
apply the demo world, then change the feeds and the directory; the run's plan is
rebuilt from the archive alone with the checksum the trail recorded; one altered
archived byte fails the replay with exit 6 (``TAMPERED``)."""

from __future__ import annotations

import dataclasses
import json
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector import app
from connector.app import Runtime
from connector.archive import ArchiveStore, inputs
from connector.cli import main
from connector.daemon import Daemon
from connector.errors import ExitCode
from connector.model.accounts import Account
from connector.reconcile import plan_from_json
from connector.runs import ApplyResult, IncrementalCycle, ReviewedPlan, Run, run_apply
from connector.runs.cycle import CyclePlanner
from connector.runs.targeted import run_targeted
from connector.settings import load_settings
from connector.state import state_lock
from tests.integration import test_end_to_end as e2e
from tests.integration.test_daemon import LA, append_row, write_config, write_world

# the demo world of test_end_to_end (slapd seeded, demo feeds, instant pinned)
demo, pinned_now, run = e2e.demo, e2e.pinned_now, e2e.run

pytestmark = pytest.mark.slapd


def _plan_record(
    demo: dict[str, Any], run_id: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    code, out = run(demo, "audit", "export", "--format", "jsonl", capsys=capsys)
    assert code == 0, out
    for line in out.splitlines():
        r = json.loads(line)
        if r["kind"] == "plan" and r["run_id"] == run_id:
            data = r["data"]
            return dict(json.loads(data) if isinstance(data, str) else data)
    raise AssertionError(f"no plan record for {run_id}")


def _page(demo: dict[str, Any], capsys: pytest.CaptureFixture[str], run_id: str) -> str:
    out = Path(demo["tmp"]) / "page.html"
    code, _ = run(demo, "report", "--run", run_id, "--wda", "WDA-04", "-o", str(out), capsys=capsys)
    assert code == 0, demo["last_err"]
    return out.read_text(encoding="utf-8")


def _apply(demo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    code, out = run(demo, "apply", "--format", "json", capsys=capsys)
    assert code == 0, out
    return str(json.loads(out)["run_id"])


def test_replay_rebuilds_the_plan_from_the_archive_alone(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = Path(demo["tmp"]) / "state" / "archive"
    code, _ = run(demo, "plan", capsys=capsys)
    assert not archive.exists()  # a dry run archives nothing

    run_id = _apply(demo, capsys)
    record = _plan_record(demo, run_id, capsys)
    assert record["inputs"]  # the trail vouches for the archive
    blobs = [p for p in (archive / "objects").rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in blobs)
    page = _page(demo, capsys, run_id)
    assert "P1002" in page

    # the world moves on: a feed changes, another goes, the directory is changed by apply
    feeds = Path(demo["feeds"])
    workers = feeds / "workers.csv"
    workers.write_text(workers.read_text(encoding="utf-8").replace("Seattle", "Tacoma"))
    (feeds / "ndas.csv").unlink()
    orgs = feeds / "organizations.csv"  # CBO1 (P1002's) moves to another area
    orgs.write_text(
        orgs.read_text(encoding="utf-8").replace(
            "Partners,wioa_contractor,WDA-04", "Partners,wioa_contractor,WDA-05"
        )
    )
    # the run's page for its area is the same as on the day: people placed by the
    # archived feeds, not by today's
    assert _page(demo, capsys, run_id) == page
    monkeypatch.setattr(app, "now", lambda: e2e.NOW + timedelta(hours=1))
    second = _apply_any(demo, capsys)
    blobs2 = [p for p in (archive / "objects").rglob("*") if p.is_file()]
    size2 = sum(p.stat().st_size for p in blobs2)
    assert size2 - size < size  # unchanged feeds and account buckets are not stored again

    code, out = run(demo, "audit", "replay", run_id, capsys=capsys)
    assert code == ExitCode.OK, out
    assert f"checksum {record['checksum']} matches the trail" in out

    code, out = run(demo, "audit", "replay", "--all", capsys=capsys)
    assert code == ExitCode.OK, out
    assert run_id in out and second in out

    # explain --at: the decision of that day, from that run's archived inputs
    half = (e2e.NOW + timedelta(minutes=30)).isoformat()
    code, then = run(demo, "explain", "P1001", "--at", half, capsys=capsys)
    assert code == 0, then
    assert then.startswith(f"As decided by run {run_id} (apply) at ")
    code, later = run(demo, "explain", "P1001", "--at", "2026-11-25T18:30:00Z", capsys=capsys)
    assert code == 0, later
    assert later.startswith(f"As decided by run {second} (apply) at ")
    # audit access --at: who had access then, and why, from the same archive
    code, out = run(demo, "audit", "access", "--at", half, "--format", "json", capsys=capsys)
    assert code == 0, demo["last_err"]
    access = json.loads(out)
    assert access["run"]["run_id"] == run_id
    rows = {r["person_id"]: r for r in access["accounts"]}
    assert "P1001" not in rows  # no account yet when that run read the directory
    assert (rows["P1004"]["status"], rows["P1004"]["action"]) == ("ended", "disable")
    code, out = run(demo, "audit", "access", "--at", "2026-11-25T18:30:00Z", capsys=capsys)
    assert code == 0, demo["last_err"]
    assert out.startswith("account_id,logon_id,person_id,wda,status,grant,reasons,action\n")
    aortiz = next(line for line in out.splitlines() if ",aortiz," in line)
    assert ",P1001,WDA-04,suspended,REQ-001,nda_missing,held:feed_unhealthy" in aortiz
    assert f"as run {second} (apply) read them" in demo["last_err"]

    # that day the NDA feed was there: entitled, the evidence row cited from the archive
    assert "person P1001: ENTITLED" in then and "(requests.csv line 2)" in then
    assert "plan: CREATE new aortiz" in then
    assert "person P1001: SUSPENDED" in later and "nda_missing" in later
    code, now = run(demo, "explain", "P1001", capsys=capsys)  # today's feeds: no NDA feed
    assert code == 0 and "ENTITLED" not in now
    code, _ = run(demo, "explain", "P1001", "--at", "2026-11-24T00:00:00Z", capsys=capsys)
    assert code == ExitCode.USAGE and "no run archived at or before" in demo["last_err"]

    # one altered byte in an archived feed file: integrity failure, never replayed
    manifest = json.loads(
        zlib.decompress(
            (archive / "objects" / record["inputs"][:2] / record["inputs"][2:]).read_bytes()
        )
    )
    blob = manifest["feeds"]["workers"]["blob"]
    path = archive / "objects" / blob[:2] / blob[2:]
    data = bytearray(zlib.decompress(path.read_bytes()))
    data[-2] ^= 0x01
    path.write_bytes(zlib.compress(bytes(data)))
    code, out = run(demo, "audit", "replay", run_id, capsys=capsys)
    assert code == ExitCode.TAMPERED, out
    assert "ALTERED OR MISSING" in out and blob in out

    path.unlink()  # a missing one likewise
    code, out = run(demo, "audit", "replay", run_id, capsys=capsys)
    assert code == ExitCode.TAMPERED, out
    print(f"archive: {len(blobs)} blobs, {size} bytes after one run; {size2} after two")


def _apply_any(demo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    """An apply whose run may hold actions (a missing feed): its run id all the same."""
    code, out = run(demo, "apply", "--format", "json", capsys=capsys)
    assert code in (ExitCode.OK, ExitCode.INCOMPLETE), out
    return str(json.loads(out)["run_id"])


def test_every_kind_of_run_is_archived_and_replays(
    tmp_path: Path, ldap_scope: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply, the daemon's reconcile (full then incremental) and the fast path all go
    through ``Run``: each one's inputs are archived and its plan replays."""
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, 8)
    write_config(cfg, feeds, state, ldap_scope)
    rt = Runtime(load_settings(cfg))
    planner = CyclePlanner(rt)
    sep = datetime.now(LA) - timedelta(minutes=1)
    results: list[ApplyResult | None] = [run_apply(rt)]
    append_row(feeds / "separations.csv", f"{ids[0]},LWDB04,{sep.isoformat()},quit")
    results.append(run_targeted(rt, None, kind="fastpath"))
    append_row(feeds / "separations.csv", f"{ids[1]},LWDB04,{sep.isoformat()},quit")
    results.append(Run(rt, IncrementalCycle(planner)).execute())  # the first cycle: full
    append_row(feeds / "separations.csv", f"{ids[2]},LWDB04,{sep.isoformat()},quit")
    results.append(Run(rt, IncrementalCycle(planner)).execute())
    append_row(feeds / "separations.csv", f"{ids[3]},LWDB04,{sep.isoformat()},quit")
    reviewed = tmp_path / "plan.json"
    assert main(["-c", str(cfg), "plan", "-o", str(reviewed)]) in (0, 8)
    results.append(
        run_apply(rt, ReviewedPlan(plan_from_json(reviewed.read_text(encoding="utf-8"))))
    )
    done = [r for r in results if r is not None]
    assert len(done) == 5
    assert [sum(a.op.value == "disable" for a in r.plan.actions) for r in done[1:]] == [1] * 4
    code = main(["-c", str(cfg), "audit", "replay", "--all"])
    out = capsys.readouterr().out
    assert code == ExitCode.OK, out
    for r in done[:-1]:
        assert f"run {r.run_id}: replayed from the archive" in out
        assert f"checksum {r.plan.checksum} matches the trail" in out
    assert f"run {done[-1].run_id}: a reviewed plan (apply --plan): its 1 actions" in out

    # retention: the runs archived before the last one go, the blobs it needs stay
    archive = ArchiveStore(state / "archive")
    archived = {run_id: at for run_id, _, at in archive.runs()}
    assert set(archived) == {r.run_id for r in done}
    size = archive.size()
    later = datetime.now(LA) + timedelta(days=rt.settings.archive.keep_days + 1)
    assert archive.prune(archived[done[-1].run_id], later) == 4
    assert archive.size() < size
    code = main(["-c", str(cfg), "audit", "replay", done[0].run_id])
    out = capsys.readouterr().out
    assert code == ExitCode.INCOMPLETE, out
    assert f"run {done[0].run_id}: its archived inputs were pruned at {later.isoformat()}" in out
    code = main(["-c", str(cfg), "audit", "replay", "--all"])
    out = capsys.readouterr().out
    assert code == ExitCode.OK, out  # the kept run replays; the pruned ones are listed
    assert out.count("were pruned at") == 4 and f"run {done[-1].run_id}: a reviewed plan" in out
    assert main(["-c", str(cfg), "audit", "verify"]) == ExitCode.OK  # the trail is untouched
    capsys.readouterr()

    # a run marked pruned sooner than keep_days allows is not taken at its word
    forged = archive.root / "pruned" / f"{done[1].run_id}.json"
    forged.write_text(json.dumps({"at": datetime.now(LA).isoformat()}))
    code = main(["-c", str(cfg), "audit", "replay", done[1].run_id])
    out = capsys.readouterr().out
    assert code == ExitCode.TAMPERED and "sooner than archive.keep_days" in out, out

    # the daemon's daily maintenance prunes past archive.keep_days
    aged = Runtime(rt.settings, clock=lambda: later)
    daemon = Daemon(aged, config_path=cfg, load=lambda p: Runtime(load_settings(p)))
    daemon._job_audit_verify()
    assert list(archive.runs()) == []
    assert archive.size() == 0
    code = main(["-c", str(cfg), "audit", "replay", done[-1].run_id])
    out = capsys.readouterr().out
    assert code == ExitCode.INCOMPLETE and f"pruned at {later.isoformat()}" in out, out


def test_a_run_whose_inputs_cannot_be_archived_changes_nothing(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    state = Path(demo["tmp"]) / "state"
    state.mkdir()
    (state / "archive").write_text("not a folder")  # every write under it fails
    code, out = run(demo, "apply", capsys=capsys)
    assert code == ExitCode.UNAVAILABLE, out
    assert "the run's inputs could not be archived" in demo["last_err"]
    assert e2e.entry(demo["scope"], "aortiz") is None  # nothing was created


def _manifest(archive: ArchiveStore, run_id: str) -> dict[str, Any]:
    digest = archive.run_manifest(run_id)
    assert digest is not None
    return dict(json.loads(archive.get(digest)))


def test_a_daemon_cycle_serialises_only_the_buckets_whose_accounts_changed(
    tmp_path: Path,
    ldap_scope: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The daemon's reconciles keep each account bucket's digest between cycles: a cycle
    after a change to one account serialises and writes only that account's bucket, and
    a cached digest in doubt (it names another object, or its object is gone) is made
    again from the accounts, so the manifest never names what was not read."""
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, 8)
    write_config(cfg, feeds, state, ldap_scope)
    rt = Runtime(load_settings(cfg))
    planner = CyclePlanner(rt)
    archive = ArchiveStore(state / "archive")
    serialised: list[str] = []
    real = inputs.account_to_dict

    def spy(a: Account) -> dict[str, Any]:
        serialised.append(a.account_id)
        return real(a)

    monkeypatch.setattr(inputs, "account_to_dict", spy)

    def cycle() -> tuple[str, dict[str, Any]]:
        serialised.clear()
        r = Run(rt, IncrementalCycle(planner)).execute()
        assert r is not None
        return r.run_id, _manifest(archive, r.run_id)

    cycle()  # creates the accounts (the directory it read was empty)
    cycle()  # reads the new accounts
    assert serialised  # new accounts: their buckets are serialised
    run_ids = [cycle()[0]]
    assert serialised == []  # nothing changed: no bucket serialised again
    sep = datetime.now(LA) - timedelta(minutes=1)
    append_row(feeds / "separations.csv", f"{ids[0]},LWDB04,{sep.isoformat()},quit")
    run_id, before = cycle()  # disables ids[0]'s account (it read the account enabled)
    run_ids.append(run_id)
    assert serialised == []
    run_id, after = cycle()  # reads the account disabled: its bucket alone changed
    run_ids.append(run_id)
    pairs = zip(before["accounts"], after["accounts"], strict=True)
    changed = [i for i, (a, b) in enumerate(pairs) if a != b]
    assert len(changed) == 1
    i = changed[0]
    bucket = json.loads(archive.get(after["accounts"][i]))
    assert any(d["corr"] == ids[0] and not d["enabled"] for d in bucket)
    assert sorted(serialised) == sorted(d["id"] for d in bucket)  # that bucket, only it
    assert planner.archive_cache.serialised == 1

    # a cached digest in doubt is not believed: one naming another bucket's object ...
    other = next(d for j, d in enumerate(after["accounts"]) if j != i and d != after["accounts"][i])
    cached = planner.archive_cache._buckets[i]
    planner.archive_cache._buckets[i] = dataclasses.replace(cached, digest=other)
    run_id, m = cycle()
    run_ids.append(run_id)
    assert m["accounts"] == after["accounts"]  # what was read, not what the cache said
    assert planner.archive_cache.serialised == 1
    # ... or one whose object is gone (removed by hand, or by retention)
    obj = archive.root / "objects" / cached.digest[:2] / cached.digest[2:]
    obj.unlink()
    run_id, m = cycle()
    run_ids.append(run_id)
    assert m["accounts"] == after["accounts"]
    assert obj.is_file()  # written again
    assert json.loads(archive.get(cached.digest)) == bucket

    capsys.readouterr()
    for run_id in run_ids:
        assert main(["-c", str(cfg), "audit", "replay", run_id]) == ExitCode.OK
        assert "matches the trail" in capsys.readouterr().out


def test_a_saved_plan_names_its_archived_inputs_and_its_run_replays_them(
    tmp_path: Path, ldap_scope: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``plan -o`` archives the inputs the plan was made from and names them beside the
    file's checksum; the run that carries the plan out records them, and its replay
    rebuilds the reviewed plan from them (one altered byte: exit 6). Retention keeps
    them as long as the run; a plan file naming inputs that are not its own is carried
    out all the same, naming none."""
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    write_world(feeds, 4)
    write_config(cfg, feeds, state, ldap_scope)
    saved = tmp_path / "plan.json"
    with state_lock(state), pytest.MonkeyPatch.context() as mp:
        # another run holds the state folder past the wait: no inputs, no file
        mp.setenv("MISYNC_STATE__LOCK_WAIT_SECONDS", "0.3")
        assert main(["-c", str(cfg), "plan", "-o", str(saved)]) == ExitCode.BUSY
    assert not saved.exists()
    assert main(["-c", str(cfg), "plan", "-o", str(saved)]) == ExitCode.OK
    capsys.readouterr()
    body = json.loads(saved.read_text(encoding="utf-8"))
    named = body["inputs"]
    archive = ArchiveStore(state / "archive")
    assert [(p, m) for p, m, _ in archive.plans()] == [(named["id"], named["manifest"])]
    assert list(archive.runs()) == []  # a saved plan is no run (explain --at passes it by)
    manifest = json.loads(archive.get(named["manifest"]))
    assert (manifest["kind"], manifest["checksum"]) == ("plan", body["checksum"])

    # the world moves on between review and apply: the plan still holds (nothing drifted)
    (feeds / "training.csv").write_text(
        (feeds / "training.csv").read_text(encoding="utf-8") + "P9999,MIS Basic,2025-09-10\n"
    )
    code = main(["-c", str(cfg), "apply", "--plan", str(saved), "--format", "json"])
    out = capsys.readouterr().out
    assert code == ExitCode.OK, out
    run_id = json.loads(out)["run_id"]
    run_manifest = _manifest(archive, run_id)
    assert run_manifest["reviewed"] and run_manifest["planned_from"] == named

    def replay_out(*args: str) -> tuple[int, str]:
        code = main(["-c", str(cfg), "audit", "replay", *args])
        return code, capsys.readouterr().out

    code, out = replay_out(run_id)
    assert code == ExitCode.OK, out
    assert f"run {run_id}: a reviewed plan (apply --plan): its 4 actions" in out
    assert (
        f"run {run_id}: its plan was made by misync plan -o ({named['id']}, as of"
        f" {manifest['as_of']}): rebuilt from that plan's archived inputs, checksum"
        f" {body['checksum']} matches the trail"
    ) in out

    # retention: the saved plan's entry goes, its inputs stay while the run is kept
    (plan_at,) = [at for _, _, at in archive.plans()]
    (run_at,) = [at for _, _, at in archive.runs()]
    assert plan_at < run_at
    assert archive.prune(run_at, run_at) == 0
    assert list(archive.plans()) == []
    code, out = replay_out(run_id)
    assert code == ExitCode.OK and "rebuilt from that plan's archived inputs" in out, out

    # one altered byte of the saved plan's inputs (its manifest: the rest is shared with
    # the run's own): exit 6, naming them
    obj = archive.root / "objects" / named["manifest"][:2] / named["manifest"][2:]
    data = bytearray(zlib.decompress(obj.read_bytes()))
    data[2] ^= 1
    obj.write_bytes(zlib.compress(bytes(data)))
    code, out = replay_out(run_id)
    assert code == ExitCode.TAMPERED, out
    assert f"the inputs of its saved plan {named['id']}" in out

    # a plan file naming inputs that are not its own: carried out, naming none
    assert main(["-c", str(cfg), "plan", "-o", str(saved)]) == ExitCode.OK
    capsys.readouterr()
    other = json.loads(saved.read_text(encoding="utf-8"))
    text = saved.read_text(encoding="utf-8").replace(other["inputs"]["manifest"], named["manifest"])
    saved.write_text(text, encoding="utf-8")
    code = main(["-c", str(cfg), "apply", "--plan", str(saved), "--format", "json"])
    out = capsys.readouterr().out
    assert code == ExitCode.OK, out
    assert "planned_from" not in _manifest(archive, json.loads(out)["run_id"])
