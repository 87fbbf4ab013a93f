"""Incremental cycles on a real slapd (connector.runs.cycle): a change made behind
misync's back is found by the next cycle, a deletion by the next full scan, a changed
feed is read again, and every cycle plans exactly what a full ``make_plan`` plans."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connector import runs
from connector.app import Runtime
from connector.model.plan import Plan
from connector.runs.cycle import CyclePlanner
from connector.settings import load_settings
from connector.state import StateStore
from tests.conftest import demo_seed_ldif

pytestmark = pytest.mark.slapd

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"
NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)


@dataclass
class World:
    rt: Runtime
    store: StateStore
    scope: Any
    feeds: Path
    clock: list[datetime]

    def ldap(self) -> ldap3.Connection:
        s = self.scope.settings
        return ldap3.Connection(
            ldap3.Server(s.url), s.bind_dn, s.bind_password(), auto_bind=True, raise_exceptions=True
        )

    def dn(self, uid: str) -> str:
        return f"uid={uid},{self.scope.people_dn}"

    def fresh_plan(self) -> Plan:
        """A plan from a full scan (``make_plan`` would otherwise read warm from the
        snapshot the cycles saved)."""
        plan, _ = runs.make_plan(self.rt, self.store, self.clock[0], full_scan=True)
        return plan


@pytest.fixture
def world(tmp_path: Path, ldap_scope: Any, slapd: Any) -> Iterator[World]:
    slapd.add_ldif(demo_seed_ldif(ldap_scope))
    feeds = tmp_path / "feeds"
    shutil.copytree(DEMO / "feeds", feeds)
    ldap = ldap_scope.settings
    cfg = tmp_path / "misync.toml"
    cfg.write_text(
        f"""
[feeds]
dir = "{feeds}"
mapping = "{ROOT / "mappings" / "feeds.toml"}"
max_age_hours = 0

[target]
mapping = "{ROOT / "mappings" / "openldap-ppolicy.toml"}"

[target.ldap]
url = "{ldap.url}"
bind_dn = "{ldap.bind_dn}"
password_file = "{ldap.password_file}"
base_dn = "{ldap_scope.people_dn}"
group_base_dn = "{ldap_scope.groups_dn}"
clock_margin_seconds = 0

[guard]
max_unexplained_share = 0.5

[apply]
reenable_external_disables = true  # as config/demo/misync.toml: the story's P1007 lock

[state]
dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    clock = [NOW]
    rt = Runtime(load_settings(cfg), clock=lambda: clock[0])
    # modifyTimestamp has one-second steps: let the seed's second pass, so that an
    # incremental read returns only what the test changes
    time.sleep(1.1)
    with StateStore(rt.settings.state.db) as store:
        yield World(rt, store, ldap_scope, feeds, clock)


def same_plan(a: Plan, b: Plan) -> None:
    """Same actions, held actions and breaches (the plans differ only in nothing else)."""
    assert a.checksum == b.checksum, (a.summary, b.summary)


def ops(plan: Plan) -> dict[str, str]:
    return {a.person_id or a.account_id or "": a.op.value for a in plan.actions}


def test_change_behind_its_back_is_found_by_the_next_incremental_cycle(world: World) -> None:
    rec = CyclePlanner(world.rt)
    first = rec.cycle(world.store)
    assert first.full
    assert first.reevaluated
    same_plan(first.plan, world.fresh_plan())
    assert ops(first.plan)["P1005"] == "update"

    idle = rec.cycle(world.store)
    assert not idle.full
    assert not idle.reevaluated
    assert idle.read == 0
    same_plan(idle.plan, first.plan)

    # behind misync's back: P1005's account is locked and leaves its group
    conn = world.ldap()
    conn.modify(
        world.dn("ewalsh"), {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["000001010000Z"])]}
    )
    conn.modify(
        f"cn=mis-case-manager,{world.scope.groups_dn}",
        {"member": [(ldap3.MODIFY_DELETE, [world.dn("ewalsh")])]},
    )
    conn.unbind()

    second = rec.cycle(world.store)
    assert not second.full
    assert second.read == 1
    assert ops(second.plan)["P1005"] == "enable"
    same_plan(second.plan, world.fresh_plan())

    # a process restart resumes from the state store, still incrementally
    again = CyclePlanner(world.rt).cycle(world.store)
    assert not again.full
    same_plan(again.plan, second.plan)


def test_deletion_is_found_by_the_next_full_scan(world: World) -> None:
    rec = CyclePlanner(world.rt, full_every=timedelta(minutes=30))
    first = rec.cycle(world.store)
    assert "P1005" in ops(first.plan)
    conn = world.ldap()
    conn.delete(world.dn("ewalsh"))
    conn.unbind()

    world.clock[0] = NOW + timedelta(minutes=5)
    incremental = rec.cycle(world.store)
    assert not incremental.full  # a deletion leaves nothing an incremental read sees

    world.clock[0] = NOW + timedelta(minutes=31)
    full = rec.cycle(world.store)
    assert full.full
    assert "older than" in full.reason
    assert ops(full.plan)["P1005"] == "create"
    same_plan(full.plan, world.fresh_plan())


@pytest.mark.parametrize(
    ("uid", "new_uid", "why"),
    [("ewalsh", "ewalsh2", "carries the correlation"), ("oldtemp", None, "correlates to nobody")],
    ids=["renamed", "new-uncorrelated"],
)
def test_a_renamed_or_unknown_account_is_a_doubt_and_forces_a_full_scan(
    world: World, uid: str, new_uid: str | None, why: str
) -> None:
    rec = CyclePlanner(world.rt)
    rec.cycle(world.store)
    conn = world.ldap()
    if new_uid:
        conn.modify_dn(world.dn(uid), f"uid={new_uid}")
    else:  # an account with no correlation appears (a renamed orphan would look the same)
        conn.add(world.dn("stray"), ["inetOrgPerson"], {"cn": "stray", "sn": "stray"})
    conn.unbind()
    after = rec.cycle(world.store)
    assert after.full
    assert why in after.reason
    same_plan(after.plan, world.fresh_plan())


def test_an_account_with_a_known_id_in_another_case_is_a_doubt_too(world: World) -> None:
    """employeeNumber is caseIgnoreMatch: a new account carrying p1005 is P1005's
    second account for the directory, so the incremental read doubts and scans in full."""
    rec = CyclePlanner(world.rt)
    rec.cycle(world.store)
    conn = world.ldap()
    assert conn.add(
        world.dn("ewalsh-dup"),
        ["inetOrgPerson"],
        {"uid": "ewalsh-dup", "cn": "E W", "sn": "W", "employeeNumber": "p1005"},
    )
    conn.unbind()
    after = rec.cycle(world.store)
    assert after.full
    assert "correlation" in after.reason
    held = {h.action.account_id: h.code for h in after.plan.held}
    assert held[world.dn("ewalsh-dup")] == "ambiguous_correlation"
    same_plan(after.plan, world.fresh_plan())


def test_feeds_are_read_again_only_when_a_file_changed(world: World) -> None:
    rec = CyclePlanner(world.rt)
    rec.cycle(world.store)
    assert not rec.cycle(world.store).reevaluated
    with (world.feeds / "separations.csv").open("a", encoding="utf-8") as f:
        f.write("P1005,CBO1,2026-11-25T08:00:00-08:00,resignation\n")
    changed = rec.cycle(world.store)
    assert changed.reevaluated
    assert not changed.full
    assert ops(changed.plan)["P1005"] == "disable"
    same_plan(changed.plan, world.fresh_plan())


def test_decisions_are_evaluated_again_when_time_passes_a_threshold(world: World) -> None:
    """Noon on 25 Nov 2026 is before P1008's disable request takes effect (the 24th is
    past, so take the day before); the cached decisions must not outlive the midnight
    at which it does."""
    world.clock[0] = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    rec = CyclePlanner(world.rt)
    before = rec.cycle(world.store)
    world.clock[0] = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    later = rec.cycle(world.store)
    assert later.reevaluated
    same_plan(later.plan, world.fresh_plan())
    assert ops(before.plan).get("P1008") != ops(later.plan).get("P1008")
