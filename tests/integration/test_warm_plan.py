"""Warm plans on a real slapd (connector.runs.directory): ``plan`` and ``apply`` start
from the stored snapshot and read only what changed since its mark; the plan is the plan
of a full scan (same checksum) after changes made behind misync's back and after a
daemon cycle; every doubt falls back to a full scan and says so; the store shared by
the daemon and a plan never ends up with rows that contradict its mark."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import ldap3
import pytest

from connector import runs
from connector.app import Runtime
from connector.cli import main
from connector.model.plan import Op, Plan
from connector.runs.cycle import CyclePlanner
from connector.runs.directory import DirectoryReader
from connector.state import StateStore, Store
from tests.integration.test_cycle import NOW, World, ops
from tests.integration.test_cycle import world as world  # the fixture

pytestmark = pytest.mark.slapd


def plan(
    w: World, *, full_scan: bool = False, store: Store | None = None, save: bool = True
) -> Plan:
    """A plan as an apply makes it (a full scan is saved as the next snapshot; ``save``
    False: as a dry run makes it)."""
    made, _ = runs.make_plan(
        w.rt, store or w.store, w.clock[0], full_scan=full_scan, save_snapshot=save
    )
    assert made.read is not None
    return made


def warm_equals_cold(w: World, *, store: Store | None = None) -> Plan:
    """A warm plan now, checked against a full scan at the same instant."""
    warm = plan(w, store=store)
    assert warm.read is not None
    assert warm.read.warm, warm.read.reason
    cold = plan(w, full_scan=True, store=store)
    assert cold.read is not None
    assert not cold.read.warm
    assert warm.checksum == cold.checksum, (warm.summary, cold.summary)
    return warm


def lock(w: World, uid: str, locked: bool = True) -> None:
    conn = w.ldap()
    value = ["000001010000Z"] if locked else []
    conn.modify(w.dn(uid), {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, value)]})
    conn.unbind()


def test_warm_plan_equals_a_full_scan_after_changes_behind_its_back(world: World) -> None:
    first = plan(world)
    assert first.read is not None
    assert not first.read.warm
    assert "no stored snapshot" in first.read.reason
    saved = world.store.snapshot_meta()
    idle = plan(world)  # the first plan saved what it read
    assert world.store.snapshot_meta() == saved  # a warm read saves nothing
    assert idle.read is not None
    assert idle.read.warm
    assert idle.read.entries == 0
    assert idle.read.full_scan_at == first.read.read_at
    assert idle.checksum == first.checksum

    # behind misync's back: modify (a lock and a group removal), add, disable
    created = next(a for a in first.actions if a.op is Op.CREATE)
    assert created.desired is not None
    conn = world.ldap()
    conn.modify(
        world.dn("ewalsh"),
        {"displayName": [(ldap3.MODIFY_REPLACE, ["Someone Else"])]},
    )
    conn.modify(
        f"cn=mis-case-manager,{world.scope.groups_dn}",
        {"member": [(ldap3.MODIFY_DELETE, [world.dn("ewalsh")])]},
    )
    assert conn.add(
        world.dn(created.desired.logon_id),
        ["inetOrgPerson"],
        {"cn": "x", "sn": "x", "employeeNumber": created.person_id},
    )
    conn.unbind()
    lock(world, "hruiz")

    warm = warm_equals_cold(world)
    assert warm.read is not None
    assert warm.read.entries == 3  # ewalsh, the new entry, hruiz: nothing else read
    assert warm.checksum != first.checksum
    assert ops(warm)[created.person_id or ""] != "create"  # the added entry is seen


def test_the_cli_says_which_read_it_did(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(tmp_path / "misync.toml")
    at = NOW.isoformat()

    def cli(*extra: str) -> dict[str, Any]:
        assert main(["plan", "-c", cfg, "--as-of", at, "--format", "json", *extra]) == 0
        return cast(dict[str, Any], json.loads(capsys.readouterr().out))

    assert cli()["read"]["mode"] == "full_scan"
    assert cli()["read"]["mode"] == "full_scan"  # a dry run saved no snapshot
    assert world.store.snapshot_meta() == {}
    # as an apply reads it, on the CLI's clock: its full scan is saved
    wall = dataclasses.replace(world.rt, clock=lambda: datetime.now(UTC))
    cold, _ = runs.make_plan(wall, world.store, NOW, save_snapshot=True)
    assert cold.read is not None
    warm = cli()
    assert warm["read"]["mode"] == "warm", warm["read"]
    assert warm["read"]["full_scan_at"] == cold.read.read_at.replace(microsecond=0).isoformat()
    lock(world, "ewalsh")
    warm = cli()
    asked = cli("--full-scan")
    assert (warm["read"]["mode"], warm["read"]["entries_read"]) == ("warm", 1)
    assert asked["read"]["mode"] == "full_scan"
    assert "--full-scan" in asked["read"]["reason"]
    assert warm["checksum"] == asked["checksum"]  # the read is outside the checksum

    assert main(["plan", "-c", cfg, "--as-of", at]) == 0
    assert "directory: warm read at" in capsys.readouterr().out
    assert main(["plan", "-c", cfg, "--as-of", at, "--full-scan"]) == 0
    assert "directory: full scan at" in capsys.readouterr().out
    page = tmp_path / "plan.html"
    assert main(["report", "-c", cfg, "--as-of", at, "-o", str(page)]) == 0
    capsys.readouterr()
    assert "directory: warm read at" in page.read_text(encoding="utf-8")


def test_warm_plan_after_a_daemon_cycle(world: World) -> None:
    daemon = CyclePlanner(world.rt)
    cycle = daemon.cycle(world.store)
    assert cycle.full
    assert cycle.plan.read is not None  # the daemon's plans say it too
    assert not cycle.plan.read.warm
    lock(world, "ewalsh")
    warm = warm_equals_cold(world)
    assert warm.read is not None
    assert warm.read.full_scan_at == NOW  # the daemon's full scan
    assert warm.read.entries == 1
    # the daemon's next cycle (after a full-scan plan saved its view) plans the same
    again = daemon.cycle(world.store)
    assert again.plan.read is not None
    assert again.plan.read.warm
    assert again.plan.checksum == warm.checksum


def test_a_warm_apply_acts_on_what_the_directory_holds_now(world: World) -> None:
    """An apply after a daemon cycle reads warm, sees the lock made behind misync's back
    and re-enables the account (reenable_external_disables), as a full scan would."""
    CyclePlanner(world.rt).cycle(world.store)
    lock(world, "ewalsh")
    world.store.close()  # the run opens its own store
    result = runs.run_apply(world.rt, runs.FreshPlan(override_guard=True))
    assert result.plan.read is not None
    assert result.plan.read.warm
    assert ops(result.plan)["P1005"] == "enable"
    with StateStore(world.rt.settings.state.db) as store:
        after = plan(world, store=store)
    assert "P1005" not in ops(after)
    assert after.read is not None
    assert after.read.warm  # the daemon's snapshot, and the apply's writes since its mark


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_plan_saved_between_two_daemon_cycles_leaves_a_true_snapshot(
    world: World, backend: str, request: pytest.FixtureRequest
) -> None:
    """The daemon keeps its view in memory and writes only the rows it sees change. A
    full-scan plan saved its own view in between (ewalsh locked); the lock is then
    lifted, which the daemon does not see as a change (its view never had the lock).
    Its next save must not leave the plan's row (locked) under its own later mark: it
    goes onto its own last save only (compare-and-set), else it writes its whole view."""
    store: Store = world.store
    if backend == "postgresql":
        from connector.state.postgres import PgStateStore

        store = PgStateStore.from_url(request.getfixturevalue("pg_url"))
    daemon = CyclePlanner(world.rt)
    daemon.cycle(store)  # view: ewalsh not locked
    time.sleep(1.1)  # modifyTimestamp has one-second steps; the mark too
    lock(world, "ewalsh")
    assert not plan(world, store=store, full_scan=True).read.warm  # type: ignore[union-attr]
    lock(world, "ewalsh", locked=False)  # back as the daemon last saw it
    time.sleep(1.1)
    daemon.cycle(store)  # incremental: ewalsh is as it holds it, nothing to write
    time.sleep(1.1)
    warm_equals_cold(world, store=store)


DoubtSetup = Callable[[World, Path], str]


def _requested(w: World, _: Path) -> str:
    return "requested"


def _off(w: World, _: Path) -> str:
    w.rt = _with(w, plan={"warm_max_age_seconds": 0})
    return "warm reads are off"


def _other_scope(w: World, _: Path) -> str:
    ldap = w.rt.settings.target.ldap.model_copy(
        update={"filter": "(&(objectClass=inetOrgPerson)(uid=*))"}
    )
    w.rt = _with(w, target=w.rt.settings.target.model_copy(update={"ldap": ldap}))
    return "no stored snapshot of this target"


def _too_old(w: World, _: Path) -> str:
    w.clock[0] = NOW + timedelta(hours=2, seconds=1)
    return "older than plan.warm_max_age_seconds"


def _clock_back(w: World, _: Path) -> str:
    w.clock[0] = NOW - timedelta(minutes=1)
    return "in the future"


def _interrupted(w: World, _: Path) -> str:
    w.store.start_run("crashed", "apply", NOW, "sha256:x")  # never finished
    return "in progress or was interrupted"


def _renamed(w: World, _: Path) -> str:
    conn = w.ldap()
    conn.modify_dn(w.dn("ewalsh"), "uid=ewalsh2")
    conn.unbind()
    return "carries the correlation"


def _no_mark(w: World, _: Path) -> str:
    meta = w.store.snapshot_meta()
    meta.pop("mark")  # as a full scan of a server that gave none saves it
    w.store.save_snapshot(meta, {}, [], replace=False)
    return "no change mark"


def _with(w: World, **sections: Any) -> Runtime:
    s = w.rt.settings
    update = {
        k: (getattr(s, k).model_copy(update=v) if isinstance(v, dict) else v)
        for k, v in sections.items()
    }
    return Runtime(s.model_copy(update=update), clock=lambda: w.clock[0])


@pytest.mark.parametrize(
    "setup",
    [
        _requested,
        _off,
        _other_scope,
        _too_old,
        _clock_back,
        _interrupted,
        _renamed,
        _no_mark,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_every_doubt_falls_back_to_a_full_scan_and_says_so(
    world: World, tmp_path: Path, setup: DoubtSetup
) -> None:
    plan(world)  # the stored snapshot
    assert plan(world).read.warm  # type: ignore[union-attr]
    why = setup(world, tmp_path)
    made = plan(world, full_scan=setup is _requested)
    assert made.read is not None
    assert not made.read.warm
    assert why in made.read.reason
    if setup is not _other_scope:  # another scope is another plan
        assert made.checksum == plan(world, full_scan=True).checksum


@pytest.mark.parametrize(("read", "kept"), [(1, True), (3, False)], ids=["1-read", "3-read"])
def test_a_snapshot_read_only_in_part_is_never_taken_for_one(
    world: World, monkeypatch: pytest.MonkeyPatch, read: int, kept: bool
) -> None:
    """A full scan is saved in chunks (here 2 rows) as it streams past. Stopped before
    its first chunk, the stored snapshot stays as it was; after it, the stored one is
    gone (no mark, no fingerprint) and the next plan scans in full: never a partial one."""
    from connector.runs import directory

    monkeypatch.setattr(directory, "SAVE_CHUNK", 2)
    first = plan(world)  # saved in chunks of 2, read to the end
    assert plan(world).read.warm  # type: ignore[union-attr]
    assert warm_equals_cold(world).checksum == first.checksum
    before = (world.store.snapshot_meta(), world.store.load_snapshot())
    target = world.rt.target()
    stream = DirectoryReader(world.rt, world.store, target, full_scan=True).accounts()
    for _ in range(read):
        next(stream)
    stream.close()  # the read stopped (a failed page raises the same way)
    target.close()
    assert ((world.store.snapshot_meta(), world.store.load_snapshot()) == before) is kept
    after = plan(world)
    assert after.read is not None
    if kept:
        assert after.read.warm
    else:
        assert not after.read.warm
        assert "no stored snapshot" in after.read.reason
    assert after.checksum == first.checksum


def test_a_snapshot_saved_while_it_is_loaded_is_a_doubt(world: World) -> None:
    """Another process saves its view between our meta and rows reads (two connections
    to the same SQLite file): the rows may be of another view than the mark."""
    plan(world)
    other = StateStore(world.rt.settings.state.db)

    @dataclasses.dataclass
    class Racing:
        inner: StateStore

        def load_snapshot(self) -> dict[str, str]:
            meta = other.snapshot_meta()
            other.save_snapshot({**meta, "generation": "theirs"}, {}, [], replace=False)
            return self.inner.load_snapshot()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    made = plan(world, store=cast(Store, Racing(world.store)))
    other.close()
    assert made.read is not None
    assert not made.read.warm
    assert "changed while it was read" in made.read.reason
