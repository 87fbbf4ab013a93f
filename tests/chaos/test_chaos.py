"""Chaos against real servers: misync and slapd killed, stopped and starved mid-apply.

After each event a recovery run (``apply``) must leave: no open journal entry; the
journal and the audit trail agreeing one to one (every journal entry has exactly one
audit ``operation`` record carrying its journal entry id (``journal``) and the same op, person and
outcome); ``audit verify`` passing; no duplicate account (uid or employeeNumber); and a
``plan`` with nothing left to do.

The default run keeps the deterministic kills (misync killed just before and just after
the audit append of an operation) and one random-kill seed. The rest is the ``chaos``
profile, one command (root is needed for the tmpfs of the full-disk case):

    MISYNC_CHAOS=1 .venv/bin/python -m pytest -m chaos tests/chaos
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.devtools.slapd import LocalSlapd
from tests.chaos.harness import ROOT, World, make_world
from tests.conftest import LdapScope, demo_seed_ldif

CHAOS = os.environ.get("MISYNC_CHAOS") == "1"
chaos = [
    pytest.mark.chaos,
    pytest.mark.skipif(not CHAOS, reason="chaos profile: MISYNC_CHAOS=1 pytest -m chaos"),
]
pytestmark = pytest.mark.slapd
# Entitled people beyond the demo: about CROWD + 8 writes in the first apply (fewer in
# the default run, to keep it fast).
CROWD = 120 if CHAOS else 30

# misync run as `python -c CRASH -c CFG apply`, killed (os._exit) at the CRASH_AT-th
# audit append of operation records (outcomes are audited in groups of commit_batch = 5),
# before or after it commits.
CRASH = """
import os, sys
from connector.audit import trail as m
real = m.AuditTrail.append_many
seen = [0]
def append_many(self, items, run_id="", at=None):
    items = list(items)
    if items and items[0][0] == "operation":
        seen[0] += 1
        if seen[0] == int(os.environ["CRASH_AT"]):
            if os.environ["CRASH_WHEN"] == "before":
                os._exit(9)
            real(self, items, run_id, at)
            os._exit(9)
    return real(self, items, run_id, at)
m.AuditTrail.append_many = append_many
from connector.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def world(tmp_path: Path, slapd: LocalSlapd, ldap_scope: LdapScope) -> World:
    slapd.add_ldif(demo_seed_ldif(ldap_scope))
    s = ldap_scope.settings
    return make_world(
        tmp_path,
        url=s.url,
        bind_dn=s.bind_dn,
        password=s.bind_password(),
        people=ldap_scope.people_dn,
        groups=ldap_scope.groups_dn,
        crowd=CROWD,
    )


@pytest.mark.parametrize("when", ["before", "after"])
def test_misync_killed_at_the_audit_append_of_an_operation(world: World, when: str) -> None:
    """The journal and the audit trail must agree even when misync dies between them."""
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, "-c", str(world.config), "apply"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "CRASH_AT": "3", "CRASH_WHEN": when},
        timeout=300,
        check=False,
    )
    assert proc.returncode == 9, proc.stderr[-3000:]
    world.misync("apply", check=True)
    world.check()


def _kill_at_random(world: World, seed: int) -> None:
    """SIGKILL once the apply has journaled a (seeded) random number of writes."""
    rnd = random.Random(seed)  # noqa: S311 (a reproducible kill point)
    proc = world.spawn("apply")
    _wait_for_writes(world, proc, rnd.randint(1, CROWD))
    time.sleep(rnd.uniform(0, 0.05))  # anywhere between two journal writes
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    world.misync("apply", check=True)
    world.check()


def test_misync_sigkilled_at_a_random_point(world: World) -> None:
    _kill_at_random(world, 1)


@pytest.mark.parametrize("seed", range(2, 8))
@pytest.mark.chaos
@pytest.mark.skipif(not CHAOS, reason="chaos profile: MISYNC_CHAOS=1 pytest -m chaos")
def test_misync_sigkilled_at_random_points_over_seeds(world: World, seed: int) -> None:
    _kill_at_random(world, seed)


# -- slapd killed or stopped mid-apply ------------------------------------------------------


@pytest.fixture
def own_slapd(tmp_path: Path) -> Iterator[LocalSlapd]:
    with LocalSlapd(tmp_path / "slapd") as s:
        yield s


def _own_world(tmp: Path, s: LocalSlapd, **kw: object) -> World:
    from tests.conftest import LdapScope as Scope

    root = f"ou=chaos,{s.suffix}"
    people, groups, outside = f"ou=people,{root}", f"ou=groups,{root}", f"ou=svc,{root}"
    s.add_ldif(
        "\n".join(
            f"dn: {dn}\nobjectClass: organizationalUnit\nou: {dn.split(',')[0][3:]}\n"
            for dn in (root, people, groups, outside)
        )
    )
    scope = Scope(root, people, groups, outside, None)  # type: ignore[arg-type]
    s.add_ldif(demo_seed_ldif(scope))
    return make_world(
        tmp / "w",
        url=s.url,
        bind_dn=s.root_dn,
        password=s.root_password,
        people=people,
        groups=groups,
        crowd=CROWD,
        **kw,  # type: ignore[arg-type]
    )


def _wait_for_writes(world: World, proc: subprocess.Popen[str], at_least: int) -> None:
    """Until misync has journaled ``at_least`` operations (it is mid-apply)."""
    import sqlite3

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return  # finished first (a loaded machine): the invariants must hold anyway
        try:
            with sqlite3.connect(world.state / "state.sqlite3", timeout=5) as db:
                n = db.execute("select count(*) from journal").fetchone()[0]
            if n >= at_least:
                return
        except sqlite3.Error:
            pass
        time.sleep(0.02)
    raise AssertionError(f"misync did not reach {at_least} writes in 120 s")


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.chaos
@pytest.mark.skipif(not CHAOS, reason="chaos profile: MISYNC_CHAOS=1 pytest -m chaos")
def test_slapd_sigkilled_and_restarted_mid_apply(
    tmp_path: Path, own_slapd: LocalSlapd, seed: int
) -> None:
    world = _own_world(tmp_path, own_slapd)
    proc = world.spawn("apply")
    _wait_for_writes(world, proc, random.Random(seed).randint(5, 60))  # noqa: S311
    assert own_slapd._proc is not None
    own_slapd._proc.send_signal(signal.SIGKILL)
    own_slapd._proc.wait()
    own_slapd._proc = None
    time.sleep(random.Random(seed).uniform(0, 2))  # noqa: S311
    own_slapd.start()  # same port, same database
    code = proc.wait(timeout=300)
    assert code in (0, 3, 4), code
    world.misync("apply", check=True)
    world.check()


@pytest.mark.chaos
@pytest.mark.skipif(not CHAOS, reason="chaos profile: MISYNC_CHAOS=1 pytest -m chaos")
def test_slapd_sigstopped_mid_apply(tmp_path: Path, own_slapd: LocalSlapd) -> None:
    """A directory that hangs for a while mid-apply (SIGSTOP, then SIGCONT after 10 s):
    in-flight writes time out (receive_timeout 2 s) and are retried or fail; misync
    finishes (with or without a circuit breaker or run deadline) and the next run
    recovers."""
    world = _own_world(tmp_path, own_slapd)
    text = world.config.read_text().replace("receive_timeout = 10", "receive_timeout = 2")
    world.config.write_text(text)
    proc = world.spawn("apply")
    _wait_for_writes(world, proc, 20)
    assert own_slapd._proc is not None
    own_slapd._proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(10)
    finally:
        own_slapd._proc.send_signal(signal.SIGCONT)
    code = proc.wait(timeout=300)
    assert code in (0, 3, 4), code
    world.misync("apply", check=True)
    world.check()


@pytest.mark.chaos
@pytest.mark.skipif(not CHAOS, reason="chaos profile: MISYNC_CHAOS=1 pytest -m chaos")
def test_slapd_sigstopped_until_misync_gives_up(tmp_path: Path, own_slapd: LocalSlapd) -> None:
    """A directory hung for good: misync gives up within its timeouts (or a circuit
    breaker or run deadline) instead of hanging, and the next run, with the directory
    back, recovers."""
    world = _own_world(tmp_path, own_slapd)
    text = world.config.read_text().replace("receive_timeout = 10", "receive_timeout = 2")
    world.config.write_text(text)
    proc = world.spawn("apply")
    _wait_for_writes(world, proc, 20)
    assert own_slapd._proc is not None
    own_slapd._proc.send_signal(signal.SIGSTOP)
    try:
        code = proc.wait(timeout=400)
    finally:
        own_slapd._proc.send_signal(signal.SIGCONT)
    assert code in (0, 3, 4), code
    world.misync("apply", check=True)
    world.check()


# -- the state folder fills up ------------------------------------------------------------


@pytest.mark.chaos
@pytest.mark.skipif(not CHAOS, reason="chaos profile: MISYNC_CHAOS=1 pytest -m chaos")
def test_the_state_folder_fills_up_mid_apply(tmp_path: Path, own_slapd: LocalSlapd) -> None:
    world = _own_world(tmp_path, own_slapd)
    world.state.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(world.state)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr!r}")
    try:
        filler = world.state / "filler"
        # leave room for the databases and a few records, not for the whole apply
        free = os.statvfs(world.state).f_bavail * os.statvfs(world.state).f_frsize
        filler.write_bytes(b"\0" * max(0, free - 160 * 1024))
        proc = world.misync("apply")
        assert proc.returncode != 0, "the apply was expected to run out of space"
        assert "full" in proc.stderr and "internal error" not in proc.stderr, proc.stderr[-2000:]
        filler.unlink()
        world.misync("apply", check=True)
        world.check()
    finally:
        subprocess.run(["umount", "-l", str(world.state)], check=False)


# -- SCIM storms ----------------------------------------------------------------------------


@pytest.mark.scim
@pytest.mark.parametrize(
    "storm",
    [
        pytest.param({"rate": 0.4, "kinds": ["429"], "seed": 1}, id="429"),
        pytest.param({"rate": 0.4, "kinds": ["500"], "seed": 2}, id="500"),
        pytest.param({"rate": 0.25, "kinds": ["slow"], "delay": 2.5, "seed": 3}, id="timeouts"),
        pytest.param(
            {"rate": 0.5, "kinds": ["429", "500", "slow"], "delay": 2.5, "seed": 4}, id="mixed"
        ),
    ],
)
@pytest.mark.chaos
@pytest.mark.skipif(not CHAOS, reason="chaos profile: MISYNC_CHAOS=1 pytest -m chaos")
def test_scim_storms(tmp_path: Path, storm: dict[str, object]) -> None:
    """Runs in a storm, then once it is over: no duplicate user, one audit record per
    journal entry, the trail verifies, and the calm run converges."""
    import json

    from connector.devtools.scim_server import LocalScimServer
    from tests.chaos.harness import make_scim_world

    control = tmp_path / "storm.json"
    control.write_text("{}")
    with LocalScimServer(tmp_path / "scim", storm_control=control) as server:
        world = make_scim_world(
            tmp_path / "w", url=server.url, token=server.token, crowd=40, timeout=1.0
        )
        control.write_text(json.dumps(storm))
        for _ in range(2):  # two runs in the storm
            proc = world.misync("apply", timeout=600)
            assert proc.returncode in (0, 3, 4), proc.stderr[-3000:]
        control.write_text("{}")
        world.misync("apply", check=True)
        world.check()
