"""The plan memo on a real slapd (connector.runs.memo): a dry run after a whole plan
reuses it and gives the plan a full scan and a whole evaluation give (same checksum)."""

from __future__ import annotations

import ldap3
import pytest

from connector import runs
from connector.model.plan import Plan
from tests.integration.test_cycle import World
from tests.integration.test_cycle import world as world  # the fixture

pytestmark = pytest.mark.slapd


def whole(w: World) -> Plan:
    made, _ = runs.make_plan(w.rt, w.store, w.clock[0], save_snapshot=True)
    return made


def dry(w: World) -> Plan:
    return runs.dry_plan(w.rt, w.store, w.clock[0])


def cold(w: World) -> Plan:
    return runs.make_plan(w.rt, w.store, w.clock[0], full_scan=True)[0]


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
    print(after.read, after.summary)
