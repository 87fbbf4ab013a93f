"""The plan memo on a real slapd (connector.runs.memo): a dry run after a whole plan
reuses it and gives the plan the ordinary code gives for the same view of the directory
(same checksum, actions, holds and breaches): a warm plan without the memo, and a full
scan wherever that sees the same directory.

The world is ``bench/generate.py``'s (150 people, a few stale accounts, a few pending
creates, an orphan, 1% separated and locked) on the session's slapd: most accounts are
in line, so the memo settles most of them and each scenario changes one thing behind
misync's back, in the directory or in the state store, after the memo was kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connector import runs
from connector.app import Runtime
from connector.cli import main
from connector.model.plan import ACCEPTABLE, APPROVABLE, Op, Plan
from connector.reconcile.serialize import held_digest
from connector.settings import load_settings
from connector.state import LogonIdConflictError, StateStore
from tests.configs import ldap_toml
from tests.conftest import ldap_scope_on
from tests.integration.test_cycle import World
from tests.integration.test_cycle import world as world  # the fixture

pytestmark = pytest.mark.slapd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import generate as gen  # noqa: E402

AS_OF = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
N = 150


def whole(w: World) -> Plan:
    made, _ = runs.make_plan(w.rt, w.store, w.clock[0], save_snapshot=True)
    return made


def dry(w: World) -> Plan:
    return runs.dry_plan(w.rt, w.store, w.clock[0])


def cold(w: World) -> Plan:
    return runs.make_plan(w.rt, w.store, w.clock[0], full_scan=True)[0]


def ordinary(w: World) -> Plan:
    """The plan without the memo of the view a dry run reads (warm when it can)."""
    return runs.make_plan(w.rt, w.store, w.clock[0])[0]


def test_a_dry_run_reuses_the_memo(world: World) -> None:
    first = whole(world)
    again = dry(world)
    assert again.read is not None
    assert again.read.memo_at is not None, again.read.memo_unused
    assert again.checksum == first.checksum == cold(world).checksum
    conn = world.ldap()
    conn.modify(world.dn("ewalsh"), {"displayName": [(ldap3.MODIFY_REPLACE, ["Someone Else"])]})
    conn.unbind()
    after = dry(world)
    assert after.read is not None and after.read.memo_at is not None, after.read
    assert after.checksum == cold(world).checksum


# -- a larger world, mostly in line ---------------------------------------------------------


@dataclass
class Town(World):
    """``World`` over ``bench/generate.py``'s people; ``people`` by person id."""

    people: dict[str, gen.Person] = dataclasses.field(default_factory=dict)
    config: Path = Path()
    memo_of: Plan | None = None  # the whole plan that kept the memo

    def pid_of(self, uid: str) -> str:
        return next(p.pid for p in self.people.values() if p.uid == uid)

    def settled(self) -> list[gen.Person]:
        """The people whose account the memo settled (in line, enabled), in id order."""
        rows = self.store.memo_rows("settled")
        out = []
        for p in sorted(self.people.values(), key=lambda p: p.pid):
            row = rows.get(self.dn(p.uid).lower()) or rows.get(p.uid.lower())
            if row is not None and not p.separated:
                out.append(p)
        return out

    def settled_locked(self) -> list[gen.Person]:
        rows = self.store.memo_rows("settled")
        return [
            p
            for p in sorted(self.people.values(), key=lambda p: p.pid)
            if p.separated and (self.dn(p.uid).lower() in rows or p.uid.lower() in rows)
        ]

    def modify(self, uid: str, changes: dict[str, Any]) -> None:
        conn = self.ldap()
        conn.modify(self.dn(uid), changes)
        conn.unbind()

    def add_entry(self, uid: str, employee_number: str) -> None:
        conn = self.ldap()
        conn.add(
            self.dn(uid),
            ["inetOrgPerson"],
            {"uid": uid, "cn": uid, "sn": uid, "employeeNumber": employee_number},
        )
        conn.unbind()

    def group_dn(self, profile: str) -> str:
        return f"cn=mis-{profile},{self.scope.groups_dn}"

    def runtime(self, extra: str) -> Runtime:
        """Another runtime on the same world with ``extra`` appended to the settings."""
        cfg = self.config.with_name(f"misync-{hashlib.sha256(extra.encode()).hexdigest()[:8]}.toml")
        cfg.write_text(self.config.read_text(encoding="utf-8") + extra, encoding="utf-8")
        return Runtime(load_settings(cfg), clock=lambda: self.clock[0])


def town_ldif(work: Path, scope: Any) -> str:
    text = (work / "people.ldif").read_text(encoding="utf-8")
    text = text.replace(gen.PEOPLE, scope.people_dn).replace(gen.GROUPS, scope.groups_dn)
    blocks = [b for b in text.split("\n\n") if b.strip()]
    return "\n\n".join(b for b in blocks if "objectClass: organizationalUnit" not in b) + "\n"


def add_odd_rows(feeds: Path) -> None:
    """Rows off the plain path: a separation that cannot be read (its person's account is
    held), a person id spelled two ways (every row with either is rejected), and a data
    sharing contract that ends in two days (the memo's horizon)."""
    with (feeds / "separations.csv").open("a", encoding="utf-8") as f:
        f.write("P0000010,ORG010,not-a-date,resignation\n")
    with (feeds / "training.csv").open("a", encoding="utf-8") as f:
        f.write("p0000007,MIS Basic,2025-02-01\n")
    contracts = feeds / "contracts.csv"
    text = contracts.read_text(encoding="utf-8")
    old = "DS-ORG003,ORG003,data_sharing,esd,Case management for WIOA participants,2025-01-01,2025-01-01,,"
    assert old in text
    contracts.write_text(text.replace(old, old[:-1] + "2026-12-03,"), encoding="utf-8")


def make_town(
    tmp_path: Path,
    ldap_scope: Any,
    slapd: Any,
    n: int = N,
    seed: int = 1021,
    *,
    odd: bool = False,
    report_only: bool = False,
) -> Town:
    work = tmp_path / "town"
    gen.generate(work, n, drift=0.03, missing=0.03, orphans=1, seed=seed, stale_profile=True)
    if odd:
        add_odd_rows(work / "feeds")
    slapd.add_ldif(town_ldif(work, ldap_scope))
    ldap = ldap_scope.settings
    cfg = tmp_path / "misync.toml"
    toml = ldap_toml(
        feeds=work / "feeds",
        url=ldap.url,
        bind_dn=ldap.bind_dn,
        password_file=ldap.password_file,
        base_dn=ldap_scope.people_dn,
        group_base_dn=ldap_scope.groups_dn,
    )
    state = tmp_path / "state"
    cfg.write_text(f'{toml}\nclock_margin_seconds = 0\n\n[state]\ndir = "{state}"\n')
    if report_only:  # orphans held, external locks re-enabled
        body = cfg.read_text(encoding="utf-8").replace(
            "[target]\n", '[target]\norphans = "report"\n'
        )
        cfg.write_text(body + "\n[apply]\nreenable_external_disables = true\n", encoding="utf-8")
    clock = [AS_OF]
    rt = Runtime(load_settings(cfg), clock=lambda: clock[0])
    people = {p.pid: p for p in gen.people(n, max(len(gen.WDAS), n // 400), seed)}
    store = StateStore(rt.settings.state.db)
    return Town(rt, store, ldap_scope, work / "feeds", clock, people, cfg)


@pytest.fixture
def town(tmp_path: Path, ldap_scope: Any, slapd: Any) -> Iterator[Town]:
    t = make_town(tmp_path, ldap_scope, slapd)
    try:
        yield t
    finally:
        t.store.close()


def same(a: Plan, b: Plan) -> None:
    """The same plan: checksum, and every action, hold, acceptance, breach, decision."""
    assert a.actions == b.actions
    assert a.held == b.held
    assert a.accepted == b.accepted
    assert a.approved == b.approved
    assert a.reopened == b.reopened
    assert a.breaches == b.breaches
    assert a.decisions == b.decisions
    assert a.rejected == b.rejected
    assert a.checksum == b.checksum


def memo_plan(t: Town) -> Plan:
    """A dry run that must have used the memo, and reused most accounts."""
    plan = dry(t)
    assert plan.read is not None
    assert plan.read.memo_at is not None, plan.read.memo_unused
    assert plan.read.reused > len(t.people) // 2, plan.read
    return plan


def by_person(plan: Plan) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a in plan.actions:
        out.setdefault(a.person_id or a.account_id or "", set()).add(a.op.value)
    for h in plan.held:
        out.setdefault(h.action.person_id or h.action.account_id or "", set()).add(h.code)
    for h in plan.accepted:
        out.setdefault(h.action.person_id or h.action.account_id or "", set()).add("accepted")
    for r in plan.reopened:
        out.setdefault(r.key.partition(":")[2], set()).add("reopened")
    return out


# Each scenario changes one thing after the memo was kept and returns the person (or
# account) whose plan must change, with what must now be in the plan for them (None:
# nothing must change for anyone: the plan must be the memo's plan).
def memo_of(t: Town) -> Plan:
    assert t.memo_of is not None
    return t.memo_of


Scenario = Callable[[Town], tuple[str, str] | None]


def attribute_changed(t: Town) -> tuple[str, str]:
    p = t.settled()[0]
    t.modify(p.uid, {"displayName": [(ldap3.MODIFY_REPLACE, ["Someone Else"])]})
    return p.pid, "update"


def unmanaged_attribute_changed(t: Town) -> None:
    p = t.settled()[1]
    t.modify(p.uid, {"telephoneNumber": [(ldap3.MODIFY_REPLACE, ["+1 360 555 0100"])]})


def locked(t: Town) -> tuple[str, str]:
    p = t.settled()[2]
    t.modify(p.uid, {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["000001010000Z"])]})
    return p.pid, "disabled_outside_misync"


def unlocked(t: Town) -> tuple[str, str]:
    p = t.settled_locked()[0]
    t.modify(p.uid, {"pwdAccountLockedTime": [(ldap3.MODIFY_DELETE, [])]})
    return p.pid, "disable"


def group_removed(t: Town) -> tuple[str, str]:
    p = t.settled()[3]
    conn = t.ldap()
    conn.modify(t.group_dn(p.profile), {"member": [(ldap3.MODIFY_DELETE, [t.dn(p.uid)])]})
    conn.unbind()
    return p.pid, "update"


def group_added(t: Town) -> tuple[str, str]:
    p = t.settled()[4]
    other = "reviewer" if p.profile != "reviewer" else "supervisor"
    conn = t.ldap()
    conn.modify(t.group_dn(other), {"member": [(ldap3.MODIFY_ADD, [t.dn(p.uid)])]})
    conn.unbind()
    return p.pid, "update"


def duplicate(t: Town) -> tuple[str, str]:
    p = t.settled()[5]
    t.add_entry("dup-of-settled", p.pid)
    return p.pid, "ambiguous_correlation"


def new_orphan(t: Town) -> tuple[str, str]:
    t.add_entry("stray", "X7777777")
    return t.dn("stray"), "disable"


def pending_create_gets_an_account(t: Town) -> tuple[str, str]:
    missing = [
        p
        for p in sorted(t.people.values(), key=lambda p: p.pid)
        if not p.separated and Op.CREATE.value in by_person(memo_of(t)).get(p.pid, set())
    ]
    p = missing[0]
    t.add_entry(p.uid, p.pid)
    return p.pid, "update"


def logon_id_reserved(t: Town) -> tuple[str, str]:
    p = t.settled()[6]
    t.store.reserve_logon_id(p.pid, "zz-new-logon")
    return p.pid, "update"


def quarantined_settled(t: Town) -> None:
    p = t.settled()[7]
    for k in range(5):
        t.store.record_failure(t.dn(p.uid), AS_OF - timedelta(hours=k), "failed")


def quarantined_named(t: Town) -> tuple[str, str]:
    planned = next(a for a in memo_of(t).actions if a.op is Op.UPDATE)
    for k in range(5):
        t.store.record_failure(planned.key, AS_OF - timedelta(hours=k), "failed")
    return planned.person_id or "", "quarantined"


def held_accepted(t: Town) -> tuple[str, str]:
    h = next(h for h in memo_of(t).held if h.code == "disabled_outside_misync")
    t.store.decide_held(h.key, "accept", digest=held_digest(h), reason="r", by="t", at=AS_OF)
    return h.action.person_id or "", "accepted"


def held_approved(t: Town) -> tuple[str, str]:
    h = next(h for h in memo_of(t).held if h.code == "disabled_outside_misync")
    t.store.decide_held(h.key, "approve", digest=held_digest(h), reason="r", by="t", at=AS_OF)
    return h.action.person_id or "", "enable"


def held_accepted_until_passed(t: Town) -> tuple[str, str]:
    h = next(h for h in memo_of(t).held if h.code == "disabled_outside_misync")
    t.store.decide_held(
        h.key,
        "accept",
        digest=held_digest(h),
        reason="r",
        by="t",
        at=AS_OF - timedelta(days=2),
        until=AS_OF - timedelta(days=1),
    )
    return h.action.key, "reopened"


def correlation_moved_to_nobody(t: Town) -> tuple[str, str]:
    p = t.settled()[8]
    t.modify(p.uid, {"employeeNumber": [(ldap3.MODIFY_REPLACE, ["X5555555"])]})
    return p.pid, "create"  # their account now correlates to nobody: they have none


def correlation_moved_to_another(t: Town) -> tuple[str, str]:
    p, q = t.settled()[9:11]
    t.modify(p.uid, {"employeeNumber": [(ldap3.MODIFY_REPLACE, [q.pid])]})
    return p.pid, "create"


SCENARIOS: dict[str, tuple[Scenario, bool]] = {
    # name: (change, whether a full scan sees the view a warm read sees)
    "a managed attribute changed": (attribute_changed, True),
    "an unmanaged attribute changed": (unmanaged_attribute_changed, True),
    "an account locked behind misync": (locked, True),
    "a separated person's account unlocked": (unlocked, True),
    "a group membership removed": (group_removed, True),
    "a group membership added": (group_added, True),
    "a second account with a settled person's id": (duplicate, True),
    "a new orphan": (new_orphan, True),
    "a pending create gets an account": (pending_create_gets_an_account, True),
    "a settled person's logon ID set in the store": (logon_id_reserved, True),
    "a settled account's key quarantined": (quarantined_settled, True),
    "a planned update's key quarantined": (quarantined_named, True),
    "a held enable accepted": (held_accepted, True),
    "a held enable approved": (held_approved, True),
    "a held enable accepted until a past instant": (held_accepted_until_passed, True),
    "a settled account's correlation moved to nobody": (correlation_moved_to_nobody, True),
    "a settled account's correlation moved to another": (correlation_moved_to_another, True),
}


def kept(t: Town) -> Plan:
    """The whole plan that keeps the memo (an apply's), with one account locked behind
    misync beforehand (a held enable for the decisions to decide on)."""
    first = whole(t)
    assert first.read is not None
    t.memo_of = first
    assert t.store.memo_meta(), "no memo kept"
    return first


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_memo_plan_is_the_ordinary_plan(town: Town, name: str) -> None:
    change, cold_sees_it = SCENARIOS[name]
    victim = sorted(town.people.values(), key=lambda p: p.pid)[-1]  # a held enable
    if not victim.separated:
        town.modify(
            victim.uid, {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["000001010000Z"])]}
        )
    before = kept(town)
    same(memo_plan(town), before)  # nothing changed yet: the memo's own plan
    expect = change(town)
    plan = memo_plan(town)
    same(plan, ordinary(town))
    if cold_sees_it:
        same(plan, cold(town))
    if expect is None:
        same(plan, before)
    else:
        who, what = expect
        assert what in by_person(plan).get(who, set()), (name, by_person(plan).get(who))
        assert what not in by_person(before).get(who, set())


def delete(t: Town, uid: str) -> None:
    """Delete the entry only (its group keeps a dangling member, as without refint): a
    warm read sees no change at all."""
    conn = t.ldap()
    conn.delete(t.dn(uid))
    conn.unbind()


def test_a_deleted_settled_account(town: Town) -> None:
    """A warm read does not see a deletion (the next full scan does): the memo plan is
    the ordinary warm plan; where the dry run reads the directory in full (warm reads
    off) the memo puts the person back and the plan is the full scan's: a create."""
    kept(town)
    p = town.settled()[0]
    delete(town, p.uid)
    warm = memo_plan(town)
    same(warm, ordinary(town))
    full = cold(town)
    assert Op.CREATE.value in by_person(full)[p.pid]
    assert p.pid not in by_person(warm)
    assert warm.checksum != full.checksum  # what a warm read cannot see, as without the memo
    # the same store, warm reads off: the dry run reads in full and still uses the memo
    rt = town.runtime("\n[plan]\nwarm_max_age_seconds = 0\n")
    cold_view = runs.dry_plan(rt, town.store, AS_OF)
    assert cold_view.read is not None and not cold_view.read.warm
    assert cold_view.read.memo_at is not None, cold_view.read.memo_unused
    same(cold_view, full)
    # --full-scan never uses the memo
    scan = runs.dry_plan(town.rt, town.store, AS_OF, full_scan=True)
    assert scan.read is not None and scan.read.memo_at is None and not scan.read.memo_unused
    same(scan, full)


# -- invalidation: each says why, and the plan is still the ordinary plan ---------------


def not_used(t: Town, why: str, rt: Runtime | None = None, as_of: datetime | None = None) -> Plan:
    rt = rt or t.rt
    at = as_of or t.clock[0]
    plan = runs.dry_plan(rt, t.store, at)
    assert plan.read is not None
    assert plan.read.memo_at is None
    assert why in plan.read.memo_unused, plan.read.memo_unused
    same(plan, runs.make_plan(rt, t.store, at)[0])
    same(plan, runs.make_plan(rt, t.store, at, full_scan=True)[0])
    return plan


def append(t: Town, feed: str, row: str) -> None:
    with (t.feeds / feed).open("a", encoding="utf-8") as f:
        f.write(row + "\n")


FEEDS_DIFFER = "the feeds, settings or mapping differ from the memo's"


def test_a_feed_row_appended(town: Town) -> None:
    kept(town)
    p = town.settled()[0]
    append(town, "training.csv", f"{p.pid},WIOA Title I-B,2026-11-01")
    not_used(town, FEEDS_DIFFER)


def test_a_separation_of_a_settled_person_disables_them(town: Town) -> None:
    kept(town)
    p = town.settled()[0]
    append(
        town,
        "separations.csv",
        f"{p.pid},{gen._org_id(p.org)},2026-11-30T17:00:00-08:00,resignation",
    )
    plan = not_used(town, FEEDS_DIFFER)
    assert Op.DISABLE.value in by_person(plan)[p.pid]


def test_a_feed_touched_with_the_same_bytes_keeps_the_memo(town: Town) -> None:
    """The same bytes are the same rows: the memo is used (the plan's feed health shows
    the new modification time, as the ordinary plan's does)."""
    kept(town)
    path = town.feeds / "workers.csv"
    path.write_bytes(path.read_bytes())
    later = path.stat().st_mtime + 60
    os.utime(path, (later, later))
    same(memo_plan(town), ordinary(town))


@pytest.mark.parametrize(
    "extra",
    [
        "\n[guard]\nmax_unexplained_disables = 0\n",
        "\n[policy]\nwarning_hours = 240\n",
        "\n[apply]\nreenable_external_disables = true\n",
    ],
    ids=["guard", "policy warning hours", "apply re-enables external locks"],
)
def test_a_setting_that_shapes_plans(town: Town, extra: str) -> None:
    kept(town)
    rt = town.runtime(extra)
    not_used(town, FEEDS_DIFFER, rt=rt)


def test_a_setting_that_does_not_shape_plans_keeps_the_memo(town: Town) -> None:
    before = kept(town)
    rt = town.runtime("\n[plan]\nwarm_max_age_seconds = 3600\n")
    plan = runs.dry_plan(rt, town.store, AS_OF)
    assert plan.read is not None and plan.read.memo_at is not None, plan.read.memo_unused
    same(plan, before)


def test_past_the_horizon(town: Town) -> None:
    """A separation dated after the memo's instant: the memo holds until it, and a plan
    at or past it (``plan --as-of``, or the clock) plans the disable."""
    p = sorted(town.people.values(), key=lambda p: p.pid)[0]
    assert not p.separated
    append(
        town,
        "separations.csv",
        f"{p.pid},{gen._org_id(p.org)},2026-12-03T17:00:00-08:00,resignation",
    )
    kept(town)
    meta = town.store.memo_meta()
    until = datetime.fromisoformat(meta["until"])
    assert AS_OF < until <= datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
    before_it = runs.dry_plan(town.rt, town.store, until - timedelta(seconds=1))
    assert before_it.read is not None and before_it.read.memo_at is not None
    assert Op.DISABLE.value not in by_person(before_it).get(p.pid, set())
    same(before_it, runs.make_plan(town.rt, town.store, until - timedelta(seconds=1))[0])
    not_used(town, "outside the memo's horizon", as_of=until)
    separated = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
    after = not_used(town, "outside the memo's horizon", as_of=separated)
    assert Op.DISABLE.value in by_person(after)[p.pid]
    town.clock[0] = separated + timedelta(hours=1)
    moved = not_used(town, "outside the memo's horizon")
    assert Op.DISABLE.value in by_person(moved)[p.pid]
    not_used(town, "outside the memo's horizon", as_of=AS_OF - timedelta(seconds=1))


def test_no_memo_when_a_feed_was_unusable(town: Town) -> None:
    ndas = town.feeds / "ndas.csv"
    body = ndas.read_bytes()
    ndas.unlink()
    kept_plan = whole(town)
    assert any(not f.healthy for f in kept_plan.feeds)
    assert town.store.memo_meta() == {}
    ndas.write_bytes(body)
    not_used(town, "no memo of a whole plan")


def test_no_memo_at_all(town: Town) -> None:
    not_used(town, "no memo of a whole plan")


def test_a_tampered_memo_is_never_a_different_plan(town: Town) -> None:
    """A person's line numbers pointing at another person's rows (or past the end):
    the dry run falls back (a row is not where the memo says) and gives the ordinary
    plan, never another plan. (Before the memo checked whose row it read, the first
    forgery planned a disable of the person from nobody's rows.)"""
    before = kept(town)
    meta = town.store.memo_meta()
    people = town.store.memo_rows("people")
    named = next(a.person_id for a in before.actions if a.op is Op.UPDATE)
    assert named is not None
    other = next(p.pid for p in town.settled())
    rows = [("settled", k, v) for k, v in town.store.memo_rows("settled").items()]
    for swapped in (people[other.lower()], json.dumps({named: {"workers": [100000]}})):
        forged = dict(people)
        forged[named.lower()] = swapped.replace(other, named)
        town.store.save_memo(meta, rows + [("people", k, v) for k, v in forged.items()])
        plan = runs.dry_plan(town.rt, town.store, AS_OF)
        assert plan.read is not None
        assert "a row is not where the memo says" in plan.read.memo_unused, plan.read
        same(plan, ordinary(town))
        same(plan, before)


# -- random changes after the memo: the memo plan is the ordinary plan every time ------------


def _random_step(t: Town, rnd: random.Random, state: dict[str, Any]) -> str:  # noqa: C901, PLR0911, PLR0912 -- one branch per kind of change
    """One random change behind misync's back (directory or state store); its name."""
    ppl = sorted(t.people.values(), key=lambda p: p.pid)
    live = [p for p in ppl if p.uid not in state["gone"] and p.uid not in state["missing"]]
    p = rnd.choice(live)
    kind = rnd.choice(
        [
            "attribute", "unmanaged", "lock", "unlock", "group-", "group+", "duplicate",
            "orphan", "requester", "case", "delete", "logon", "quarantine", "decide",
            "release", "time", "apply", "remember", "create", "move", "uncorrelate",
            "rename",
        ]
    )  # fmt: skip
    conn = t.ldap()
    try:
        if kind == "attribute":
            attr, value = rnd.choice(
                [
                    ("displayName", "Someone Else"),
                    ("physicalDeliveryOfficeName", "Walla Walla"),
                    ("mail", "changed@example.org"),
                    ("employeeType", "reviewer"),
                    ("departmentNumber", "ORG999"),
                ]
            )
            conn.modify(t.dn(p.uid), {attr: [(ldap3.MODIFY_REPLACE, [value])]})
        elif kind == "unmanaged":
            conn.modify(t.dn(p.uid), {"telephoneNumber": [(ldap3.MODIFY_REPLACE, ["555"])]})
        elif kind in ("lock", "unlock"):
            value = ["000001010000Z"] if kind == "lock" else []
            conn.modify(t.dn(p.uid), {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, value)]})
        elif kind in ("group-", "group+"):
            group = t.group_dn(rnd.choice(sorted(set(gen.PROFILES))))
            op = ldap3.MODIFY_DELETE if kind == "group-" else ldap3.MODIFY_ADD
            try:
                conn.modify(group, {"member": [(op, [t.dn(p.uid)])]})
            except ldap3.core.exceptions.LDAPException:
                return f"{kind} (no change)"
        elif kind in ("duplicate", "orphan", "requester"):
            number = {"duplicate": p.pid, "orphan": f"X{rnd.randrange(10**6):07d}"}.get(
                kind, f"R{rnd.randrange(1, 13):02d}"
            )
            uid = f"x-{kind}{state['added']}"
            state["added"] += 1
            conn.add(t.dn(uid), ["inetOrgPerson"], {"uid": uid, "cn": uid, "sn": uid,
                                                     "employeeNumber": number})  # fmt: skip
        elif kind == "case":  # the same person id in another case (caseIgnoreMatch)
            conn.modify(t.dn(p.uid), {"employeeNumber": [(ldap3.MODIFY_REPLACE, [p.pid.lower()])]})
        elif kind == "move":  # the account now carries another person's id, or nobody's
            other = rnd.choice([*(q.pid for q in ppl), "X0000001", "R01"])
            conn.modify(t.dn(p.uid), {"employeeNumber": [(ldap3.MODIFY_REPLACE, [other])]})
        elif kind == "uncorrelate":
            conn.modify(t.dn(p.uid), {"employeeNumber": [(ldap3.MODIFY_REPLACE, [])]})
        elif kind == "rename":
            conn.modify_dn(t.dn(p.uid), f"uid={p.uid}-renamed")
            state["gone"].add(p.uid)
        elif kind == "delete":
            conn.delete(t.dn(p.uid))
            state["gone"].add(p.uid)
        elif kind == "create":  # a pending create gets an account behind misync
            if not state["missing"]:
                return "create (none pending)"
            uid = sorted(state["missing"])[0]
            state["missing"].discard(uid)
            q = next(x for x in ppl if x.uid == uid)
            try:
                conn.add(t.dn(uid), ["inetOrgPerson"], {"uid": uid, "cn": uid, "sn": uid,
                                                         "employeeNumber": q.pid})  # fmt: skip
            except ldap3.core.exceptions.LDAPEntryAlreadyExistsResult:
                return "create (created by an apply)"
        elif kind == "logon":
            try:
                t.store.reserve_logon_id(p.pid, f"{p.uid}-{rnd.randrange(100)}")
            except LogonIdConflictError:
                return "logon (conflict)"
        elif kind == "quarantine":
            key = rnd.choice([t.dn(p.uid), f"person:{p.pid}"])
            for k in range(3):
                t.store.record_failure(key, t.clock[0] - timedelta(minutes=k), "failed")
        elif kind == "release":
            for key in list(t.store.failures()):
                t.store.release(key)
        elif kind == "decide":
            held = ordinary(t).held
            if not held:
                return "decide (nothing held)"
            h = rnd.choice(held)
            verdict = rnd.choice(["accept", "approve"])
            if h.code not in (ACCEPTABLE if verdict == "accept" else APPROVABLE):
                return f"decide (a {h.code} cannot be decided on)"
            until = (
                t.clock[0] + timedelta(hours=rnd.choice([1, 48])) if verdict == "accept" else None
            )
            t.store.decide_held(h.key, verdict, digest=held_digest(h), reason="r", by="t",
                                at=t.clock[0], until=until)  # fmt: skip
        elif kind == "time":
            t.clock[0] += timedelta(hours=rnd.choice([1, 5, 30]))
        elif kind == "apply":
            result = runs.run_apply(t.rt, runs.FreshPlan(override_guard=True))
            assert result is not None
        elif kind == "remember":
            whole(t)
    except ldap3.core.exceptions.LDAPNoSuchObjectResult:  # an account an apply created
        return f"{kind} (no such entry)"  # under another uid than the generator's
    finally:
        conn.unbind()
    return kind


#: MISYNC_MEMO_SEEDS=200 MISYNC_MEMO_STEPS=25 explores more (the default run: a few, fast)
SEEDS = range(1, 1 + int(os.environ.get("MISYNC_MEMO_SEEDS", "5")))
STEPS = int(os.environ.get("MISYNC_MEMO_STEPS", "12"))


@pytest.mark.parametrize("seed", SEEDS)
def test_random_changes_after_the_memo(tmp_path: Path, slapd: Any, seed: int) -> None:
    rnd = random.Random(seed)  # noqa: S311 -- a reproducible test, not a secret
    scope = ldap_scope_on(slapd, tmp_path)
    t = make_town(tmp_path, scope, slapd, n=60, seed=seed, odd=True, report_only=seed % 2 == 0)
    assert (t.rt.settings.target.orphans == "report") is (seed % 2 == 0)
    try:
        first = whole(t)
        missing = {a.person_id for a in first.actions if a.op is Op.CREATE}
        state: dict[str, Any] = {
            "gone": set(),
            "added": 0,
            "missing": {p.uid for p in t.people.values() if p.pid in missing},
        }
        used = 0
        steps: list[str] = []
        why: set[str] = set()
        for _ in range(STEPS):
            steps.append(_random_step(t, rnd, state))
            plan = dry(t)
            assert plan.read is not None
            used += plan.read.memo_at is not None
            if plan.read.memo_at is None:
                why.add(plan.read.memo_unused)
            same(plan, ordinary(t))
            if not state["gone"]:  # a warm read sees every change but a deletion
                same(plan, cold(t))
        # the memo was used, or time ran past its horizon at once
        assert used or all("horizon" in w for w in why), (steps, why)
    finally:
        t.store.close()


# -- the CLI -------------------------------------------------------------------------------


def test_the_cli_says_whether_it_used_the_memo(
    town: Town, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept(town)
    capsys.readouterr()
    cfg, at = str(town.config), AS_OF.isoformat()

    def cli(*extra: str, as_of: str = at) -> str:
        assert main(["plan", "-c", cfg, "--as-of", as_of, *extra]) == 0
        return capsys.readouterr().out

    def read_of(*extra: str, as_of: str = at) -> dict[str, Any]:
        got: dict[str, Any] = json.loads(cli("--format", "json", *extra, as_of=as_of))["read"]
        return got

    text = cli()
    assert "feeds and policy: the files are those of the whole plan of" in text, text
    memo = read_of()["memo"]
    assert memo["whole_plan_at"].startswith("2026-12-01T")
    assert memo["people_planned"] > 0
    assert memo["accounts_reused"] > len(town.people) // 2
    # --full-scan: the ordinary plan, no memo tried
    assert "memo" not in read_of("--full-scan")
    assert "feeds and policy" not in cli("--full-scan")
    # past the memo's horizon: every feed read, and why
    later = (
        datetime.fromisoformat(town.store.memo_meta()["until"]) + timedelta(hours=1)
    ).isoformat()
    assert "outside the memo's horizon" in read_of(as_of=later)["memo"]["unused"]
    assert "every feed read and evaluated (the plan memo: the instant is outside" in cli(
        as_of=later
    )
    # plan -o (a plan to review and apply) never uses the memo: it archives every input
    out = tmp_path / "plan.json"
    cli("-o", str(out))
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert "memo" not in saved["read"], saved["read"]
    assert saved["checksum"] == json.loads(cli("--format", "json"))["checksum"]


@pytest.mark.parametrize(
    ("case", "edit"),
    [
        (
            "the roster's name columns swapped",
            lambda t: t.replace(
                '[feeds.workers]\nfile = "workers.csv"\n',
                '[feeds.workers]\nfile = "workers.csv"\n'
                'columns = { given_name = "family_name", family_name = "given_name" }\n',
            ),
        ),
        (
            "the approved status word changed",
            lambda t: t.replace('approved = ["approved"]', 'approved = ["APPROVED"]'),
        ),
    ],
)
@pytest.mark.parametrize("when", ["after the memo", "between the evaluation and the memo"])
def test_a_changed_feed_layout_is_another_key(
    tmp_path: Path,
    ldap_scope: Any,
    slapd: Any,
    case: str,
    edit: Callable[[str], str],
    when: str,
) -> None:
    """The feed layout (``feeds.mapping``: file names, columns, status words) makes the
    rows of the same bytes: a layout changed in place (same path) is not the memo's. (The
    key held only the layout's path: the memo plan then reused every settled account of a
    roster read with its names swapped, or of requests no longer approved.)"""
    layout = tmp_path / "feeds-layout.toml"
    layout.write_text((ROOT / "mappings" / "feeds.toml").read_text(encoding="utf-8"))
    t = make_town(tmp_path, ldap_scope, slapd, n=60)
    try:
        body = t.config.read_text(encoding="utf-8")
        t.config.write_text(
            body.replace(str(ROOT / "mappings" / "feeds.toml"), str(layout), 1),
            encoding="utf-8",
        )
        t.rt = Runtime(load_settings(t.config), clock=lambda: t.clock[0])
        assert t.rt.settings.feeds.mapping == layout
        text = layout.read_text(encoding="utf-8")
        assert edit(text) != text, case
        if when == "after the memo":
            before = kept(t)
            layout.write_text(edit(text), encoding="utf-8")
        else:  # the memo is keyed by the layout the rows were parsed under, not today's
            ev = runs.evaluate(t.rt, t.store, t.clock[0])
            layout.write_text(edit(text), encoding="utf-8")
            before, _ = runs.make_plan(t.rt, t.store, t.clock[0], evaluation=ev, save_snapshot=True)
            assert t.store.memo_meta(), "no memo kept"
        plan = not_used(t, FEEDS_DIFFER)
        assert plan.checksum != before.checksum
    finally:
        t.store.close()


def test_too_many_people_to_plan_again(town: Town, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``MAX_REPLAN_SHARE`` of the people (and ``MIN_REPLAN``) the ordinary plan
    runs: it would cost about the same."""
    from connector.runs import memo

    kept(town)
    for p in town.settled()[:40]:
        town.modify(p.uid, {"displayName": [(ldap3.MODIFY_REPLACE, ["Someone Else"])]})
    monkeypatch.setattr(memo, "MIN_REPLAN", 10)
    not_used(town, "people to plan again")
    monkeypatch.setattr(memo, "MIN_REPLAN", 1000)
    same(memo_plan(town), ordinary(town))


def test_a_whole_plan_that_names_too_many_people_keeps_no_memo(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dry run would plan them all again (``replan`` refuses past that share): an apply
    that is about to change that many accounts writes no memo, and drops the last one."""
    from connector.runs import memo

    kept(town)
    for p in town.settled()[:40]:
        town.modify(p.uid, {"displayName": [(ldap3.MODIFY_REPLACE, ["Someone Else"])]})
    monkeypatch.setattr(memo, "MIN_REPLAN", 10)
    whole(town)
    assert town.store.memo_meta() == {}
    not_used(town, "no memo of a whole plan")
    monkeypatch.setattr(memo, "MIN_REPLAN", 1000)
    whole(town)
    assert town.store.memo_meta()


def test_a_feed_over_max_bytes_is_not_read_by_the_memo(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feed file over ``feeds.max_bytes`` is never read into memory by the memo's
    check (the memo cannot have it: such a feed is unusable); the ordinary plan holds
    what it would drive, and says why."""
    kept(town)
    size = (town.feeds / "workers.csv").stat().st_size
    monkeypatch.setenv("MISYNC_FEEDS__MAX_BYTES", str(size - 1))
    rt = Runtime(load_settings(town.config), clock=lambda: town.clock[0])
    plan = not_used(town, "workers.csv is over feeds.max_bytes", rt=rt)
    assert any(f.feed.value == "workers" and not f.healthy for f in plan.feeds)
