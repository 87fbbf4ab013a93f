"""deploy/ldap-acl/389ds-misync.ldif, read as text (the default run; the ds389 profile
loads it on a real 389 DS: tests/ds389/test_least_privilege_389.py).

Kept in step with mappings/389ds.toml: write on exactly the mapped attributes and the
lock, never on uid, objectClass, aci, nsRoleDN or a password; every add aci refuses
entries that carry an aci, a role, a password policy, resource limits or a password;
no deny aci; modifyTimestamp readable in the managed scope and the groups; the
service entry's limits lifted for a paged read of the whole scope."""

from __future__ import annotations

import re
from pathlib import Path

from connector.mapping import load_mapping

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "deploy" / "ldap-acl" / "389ds-misync.ldif").read_text(encoding="utf-8")
MAPPING = load_mapping(ROOT / "mappings" / "389ds.toml")
ACIS = re.findall(r"^aci: (.+)$", TEXT, re.M)
REFUSED_ON_ADD = (
    "aci",
    "nsRoleDN",
    "pwdPolicySubentry",
    "userPassword",
    "nsLookThroughLimit",
    "nsPagedLookThroughLimit",
    "nsSizeLimit",
    "nsPagedSizeLimit",
    "nsTimeLimit",
    "nsIdleTimeout",
)


def _attrs(aci: str) -> set[str]:
    m = re.search(r'\(targetattr = "([^"]+)"\)', aci)
    return {a.strip() for a in m.group(1).split("||")} if m else set()


def _rights(aci: str) -> set[str]:
    m = re.search(r"allow \(([^)]+)\)", aci)
    assert m, aci
    return {r.strip() for r in m.group(1).split(",")}


def test_no_deny_and_no_delete() -> None:
    assert ACIS
    for aci in ACIS:
        assert "deny" not in aci, aci  # a deny on add refuses misync's own adds too
        assert not _rights(aci) & {"delete", "all", "proxy", "selfwrite"}, aci
        assert "'" not in aci, aci  # an apostrophe is a syntax error for 389 DS


def test_write_is_exactly_the_mapped_attributes_and_the_lock() -> None:
    written = set().union(*(_attrs(a) for a in ACIS if "write" in _rights(a)))
    people = {*MAPPING.managed_attributes, MAPPING.disable.attribute} - {MAPPING.rdn_attribute}
    assert written == people | {MAPPING.group_member_attribute}
    for never in ("uid", "objectClass", "aci", "nsRoleDN", "userPassword", "cn=", "*"):
        assert never not in written
    # and every write aci targets the accounts or groups under the scope, not the OUs
    for aci in ACIS:
        if "write" in _rights(aci):
            assert re.search(r'\(target = "ldap:///(uid|cn)=\*,', aci), aci


def test_every_add_refuses_what_would_grant_or_lift_anything() -> None:
    adds = [a for a in ACIS if "add" in _rights(a)]
    assert len(adds) == 2  # accounts and groups
    for aci in adds:
        m = re.search(r'\(targetfilter = "(.+?)"\)\(', aci)
        assert m, aci
        flt = m.group(1)
        for attr in REFUSED_ON_ADD:
            assert f"(!({attr}=*))" in flt, (attr, aci)
        for oc in ("ldapSubEntry", "nsRoleDefinition", "cosSuperDefinition", "extensibleObject"):
            assert f"(!(objectClass={oc}))" in flt, (oc, aci)


def test_modify_timestamp_is_readable_for_incremental_reads() -> None:
    """One read aci per branch (accounts, groups) names modifyTimestamp, with no target
    that would leave out the branch's own entry (the mark is read there)."""
    readers = [a for a in ACIS if "read" in _rights(a) and "modifyTimestamp" in _attrs(a)]
    assert len(readers) == 2, readers
    for aci in readers:
        assert "(target =" not in aci and "targetfilter" not in aci, aci
        assert "write" not in _rights(aci), aci
    blocks = TEXT.split("\ndn: ")
    for branch in ("ou=people,", "ou=groups,"):
        (block,) = [b for b in blocks if b.startswith(branch)]
        assert any(aci in block for aci in readers), branch


def test_the_service_entry_lifts_the_limits_a_paged_full_read_meets() -> None:
    block = TEXT[TEXT.index("dn: cn=misync,") : TEXT.index("\n\n", TEXT.index("dn: cn=misync,"))]
    for limit in (
        "nsLookThroughLimit",
        "nsPagedLookThroughLimit",
        "nsSizeLimit",
        "nsPagedSizeLimit",
    ):
        assert f"replace: {limit}\n{limit}: -1" in block, limit
