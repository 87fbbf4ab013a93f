"""The target contract suite (tests/integration/test_contract.py) on a real 389 DS, with
``mappings/389ds.toml`` (``nsAccountLock``), bound as the service account that only
the shipped ``389ds-misync.ldif`` empowers: the same plan and the same end state as on
slapd and SCIM. Only the ``world`` fixture differs; the tests are the contract's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ldap3
import pytest

from connector import app
from connector.devtools.ds389 import LocalDs389
from tests.conftest import LdapScope
from tests.ds389.conftest import config_389, seed_389
from tests.integration.test_contract import (  # the contract's tests, run with this world
    NOW,
    World,
    _config,
    test_accounts_outside_the_scope_are_never_touched,
    test_mass_disable_guard_holds_orphans,
    test_reviewed_plan_refuses_drift,
    test_same_plan_then_same_end_state,
)

__all__ = [
    "test_accounts_outside_the_scope_are_never_touched",
    "test_mass_disable_guard_holds_orphans",
    "test_reviewed_plan_refuses_drift",
    "test_same_plan_then_same_end_state",
]


@pytest.fixture
def world(
    ds: LocalDs389, ds_scope: LdapScope, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> World:
    monkeypatch.setattr(app, "now", lambda: NOW)
    ds.modify(seed_389(ds_scope))

    def outside() -> dict[str, Any]:
        """Every entry under ou=svc with its operational attributes, read as the
        Directory Manager (the service account may not read them)."""
        conn = ldap3.Connection(
            ldap3.Server(ds.url), ds.root_dn, ds.root_password, raise_exceptions=True
        )
        conn.bind()
        conn.search(ds_scope.outside_dn, "(objectClass=*)", attributes=["*", "+"])
        found = {e.entry_dn: e.entry_attributes_as_dict for e in conn.entries}
        conn.unbind()
        return found

    return World("ldap", _config(tmp_path, config_389(tmp_path, ds_scope)), tmp_path, outside)
