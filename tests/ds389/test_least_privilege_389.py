"""Least privilege on a real 389 DS with the shipped ``deploy/ldap-acl/389ds-misync.ldif``
(issue 13 items 14-16): misync's service account does everything misync does (create,
update, groups, disable, enable, a paged read of more than 5,000 entries, incremental
reads through ``modifyTimestamp``) and none of the escalations the old file allowed:
an entry carrying its own ``aci``, an ``nsRoleDN``, a password policy, resource limits
or a password; a rename (modrdn); a write on ``objectClass``, ``uid``, ``aci`` or
``nsRoleDN``; a delete."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import ldap3
import pytest
from ldap3.core import exceptions as lx

from connector.devtools.ds389 import LocalDs389
from connector.mapping import load_mapping
from connector.model import Change, ChangeKind, DesiredAccount
from connector.targets import TargetUnavailableError
from connector.targets.ldap import LdapTarget
from tests.conftest import LdapScope
from tests.ds389.conftest import ACL_FILE, MAPPING_389, SERVICE, SERVICE_PASSWORD

MAPPING = load_mapping(MAPPING_389)
PERSON = ["top", "person", "organizationalPerson", "inetOrgPerson"]
ACI_ALL = '(targetattr = "*")(version 3.0; acl "mine"; allow (all) userdn = "ldap:///{who}";)'


@pytest.fixture
def service(ds_scope: LdapScope) -> Iterator[ldap3.Connection]:
    conn = ldap3.Connection(
        ldap3.Server(ds_scope.settings.url), SERVICE, SERVICE_PASSWORD, raise_exceptions=True
    )
    conn.bind()
    yield conn
    conn.unbind()


@pytest.fixture
def target(ds_scope: LdapScope) -> Iterator[LdapTarget]:
    t = LdapTarget(ds_scope.settings, MAPPING)
    yield t
    t.close()


def _person(uid: str, **extra: list[str]) -> dict[str, list[str]]:
    return {"objectClass": PERSON, "uid": [uid], "cn": [uid], "sn": [uid], **extra}


Attempt = Callable[[ldap3.Connection, LdapScope], object]
ESCALATIONS: list[tuple[str, Attempt]] = [
    (
        "add an entry carrying its own aci",
        lambda c, s: c.add(
            f"uid=evil1,{s.people_dn}",
            attributes=_person("evil1", aci=[ACI_ALL.format(who=SERVICE)]),
        ),
    ),
    (
        "add an entry carrying nsRoleDN",
        lambda c, s: c.add(
            f"uid=evil2,{s.people_dn}",
            attributes=_person("evil2", nsRoleDN=[f"cn=admins,{s.root_dn}"]),
        ),
    ),
    (
        "add an entry carrying pwdpolicysubentry",
        lambda c, s: c.add(
            f"uid=evil3,{s.people_dn}",
            attributes=_person("evil3", pwdpolicysubentry=[f"cn=lax,{s.root_dn}"]),
        ),
    ),
    (
        "add an entry carrying nsLookThroughLimit",
        lambda c, s: c.add(
            f"uid=evil4,{s.people_dn}", attributes=_person("evil4", nsLookThroughLimit=["-1"])
        ),
    ),
    (
        "add an entry carrying nsSizeLimit",
        lambda c, s: c.add(
            f"uid=evil5,{s.people_dn}", attributes=_person("evil5", nsSizeLimit=["-1"])
        ),
    ),
    (
        "add an entry carrying a password",
        lambda c, s: c.add(
            f"uid=evil6,{s.people_dn}", attributes=_person("evil6", userPassword=["known"])
        ),
    ),
    (
        "add a group carrying its own aci",
        lambda c, s: c.add(
            f"cn=evil7,{s.groups_dn}",
            attributes={
                "objectClass": ["groupOfNames"],
                "cn": ["evil7"],
                "member": [f"uid=aortiz,{s.people_dn}"],
                "aci": [ACI_ALL.format(who=SERVICE)],
            },
        ),
    ),
    (
        "add a role definition among the accounts",
        lambda c, s: c.add(
            f"cn=evil8,{s.people_dn}",
            attributes={
                "objectClass": [
                    "top",
                    "LDAPsubentry",
                    "nsRoleDefinition",
                    "nsSimpleRoleDefinition",
                    "nsManagedRoleDefinition",
                ],
                "cn": ["evil8"],
            },
        ),
    ),
    (
        "rename a person (modrdn)",
        lambda c, s: c.modify_dn(f"uid=aortiz,{s.people_dn}", "uid=renamed"),
    ),
    ("rename a group (modrdn)", lambda c, s: c.modify_dn(f"cn=mis-x,{s.groups_dn}", "cn=mis-y")),
    (
        "write objectClass on ou=people",
        lambda c, s: c.modify(
            s.people_dn, {"objectClass": [(ldap3.MODIFY_ADD, ["extensibleObject"])]}
        ),
    ),
    (
        "write objectClass on a person",
        lambda c, s: c.modify(
            f"uid=aortiz,{s.people_dn}", {"objectClass": [(ldap3.MODIFY_ADD, ["extensibleObject"])]}
        ),
    ),
    (
        "write uid on a person",
        lambda c, s: c.modify(
            f"uid=aortiz,{s.people_dn}", {"uid": [(ldap3.MODIFY_ADD, ["other"])]}
        ),
    ),
    (
        "write aci on a person",
        lambda c, s: c.modify(
            f"uid=aortiz,{s.people_dn}",
            {"aci": [(ldap3.MODIFY_ADD, [ACI_ALL.format(who=SERVICE)])]},
        ),
    ),
    (
        "write nsRoleDN on a person",
        lambda c, s: c.modify(
            f"uid=aortiz,{s.people_dn}",
            {"nsRoleDN": [(ldap3.MODIFY_ADD, [f"cn=admins,{s.root_dn}"])]},
        ),
    ),
    (
        "write a password on a person",
        lambda c, s: c.modify(
            f"uid=aortiz,{s.people_dn}", {"userPassword": [(ldap3.MODIFY_REPLACE, ["known"])]}
        ),
    ),
    (
        "write aci on ou=people",
        lambda c, s: c.modify(
            s.people_dn, {"aci": [(ldap3.MODIFY_ADD, [ACI_ALL.format(who=SERVICE)])]}
        ),
    ),
    (
        "lift its own lookthrough limit",
        lambda c, s: c.modify(SERVICE, {"nsLookThroughLimit": [(ldap3.MODIFY_REPLACE, ["-1"])]}),
    ),
    ("delete a person", lambda c, s: c.delete(f"uid=aortiz,{s.people_dn}")),
    ("delete a group", lambda c, s: c.delete(f"cn=mis-x,{s.groups_dn}")),
    (
        "write outside the managed scope",
        lambda c, s: c.modify(
            f"uid=svc-backup,{s.outside_dn}", {"mail": [(ldap3.MODIFY_REPLACE, ["x@y.z"])]}
        ),
    ),
]


@pytest.mark.parametrize(("what", "attempt"), ESCALATIONS, ids=[e[0] for e in ESCALATIONS])
def test_the_service_account_cannot_escalate(
    ds: LocalDs389,
    ds_scope: LdapScope,
    target: LdapTarget,
    service: ldap3.Connection,
    what: str,
    attempt: Attempt,
) -> None:
    target.create(
        DesiredAccount(
            "P1001",
            "aortiz",
            True,
            {"employeeNumber": ("P1001",), "cn": ("Ana Ortiz",), "sn": ("Ortiz",)},
        )
    )
    ds.modify(
        f"dn: cn=mis-x,{ds_scope.groups_dn}\nobjectClass: groupOfNames\ncn: mis-x\n"
        f"member: uid=aortiz,{ds_scope.people_dn}\n"
    )
    with pytest.raises(lx.LDAPInsufficientAccessRightsResult):
        attempt(service, ds_scope)
    # and nothing of it happened (read as the Directory Manager)
    root = ldap3.Connection(ldap3.Server(ds.url), ds.root_dn, ds.root_password, auto_bind=True)
    root.search(
        ds_scope.root_dn, "(|(uid=evil*)(cn=evil*)(uid=renamed)(cn=mis-y))", attributes=["1.1"]
    )
    assert root.entries == [], what
    root.search(
        f"uid=aortiz,{ds_scope.people_dn}", "(objectClass=*)", ldap3.BASE, attributes=["*", "+"]
    )
    entry = root.entries[0].entry_attributes_as_dict
    assert {v.lower() for v in entry["objectClass"]} == {v.lower() for v in PERSON}
    assert entry["uid"] == ["aortiz"]
    for forbidden in ("aci", "nsRoleDN", "userPassword"):
        assert forbidden not in entry, forbidden
    root.unbind()


def test_misync_own_operations_work(ds_scope: LdapScope, target: LdapTarget) -> None:
    """create (enabled and disabled), update, groups in and out, disable, enable, find,
    read, and the incremental mark and read through modifyTimestamp."""
    assert target.high_water_mark() is not None  # modifyTimestamp of ou=people is readable
    attrs = {
        "employeeNumber": ("P1001",),
        "uid": ("aortiz",),
        "cn": ("Ana Ortiz",),
        "sn": ("Ortiz",),
        "givenName": ("Ana",),
        "mail": ("ana@example.org",),
        "employeeType": ("case-manager",),
        "physicalDeliveryOfficeName": ("Tacoma", "Olympia"),
    }
    dn = target.create(
        DesiredAccount("P1001", "aortiz", True, attrs, groups=frozenset({"mis-case-manager"}))
    )
    off = target.create(
        DesiredAccount(
            "P1002",
            "blee",
            False,
            {"employeeNumber": ("P1002",), "uid": ("blee",), "cn": ("B Lee",), "sn": ("Lee",)},
        )
    )
    a = target.read(dn)
    assert a is not None and a.enabled and a.groups == {"mis-case-manager"}
    assert a.attributes["physicalDeliveryOfficeName"] == ("Tacoma", "Olympia")
    b = target.read(off)
    assert b is not None and not b.enabled
    target.update(
        dn,
        [
            Change(ChangeKind.ATTRIBUTE, "mail", ("ana@example.org",), ("ana.o@example.org",)),
            Change(ChangeKind.GROUPS, "groups", ("mis-case-manager",), ("mis-supervisor",)),
        ],
    )
    target.set_enabled(dn, False)
    a = target.read(dn)
    assert a is not None and not a.enabled
    assert a.attributes["mail"] == ("ana.o@example.org",)
    assert a.groups == {"mis-supervisor"}
    target.set_enabled(dn, True)
    target.set_enabled(off, True)
    assert all(x.enabled for x in target.snapshot())
    found = target.find("p1001")  # employeeNumber is caseIgnoreMatch
    assert found is not None and found.account_id.lower() == dn.lower()
    mark = "19700101000000Z"
    changed = target.changed_since(mark)
    assert {x.correlation for x in changed.accounts} == {"P1001", "P1002"}


def test_a_paged_read_past_the_lookthrough_limit(ds: LocalDs389, ds_scope: LdapScope) -> None:
    """5,100 accounts: the shipped file's limits let the service read them all; without
    them 389 DS stops at its lookthrough limit (5,000) with adminLimitExceeded, and the
    error names the limit and what to set."""
    n = 5100
    ds.modify(
        "\n".join(
            f"dn: uid=bulk{i},{ds_scope.people_dn}\nobjectClass: inetOrgPerson\nuid: bulk{i}\n"
            f"cn: bulk {i}\nsn: bulk\nemployeeNumber: B{i}\n"
            for i in range(n)
        )
    )
    settings = ds_scope.settings.model_copy(update={"page_size": 1000})
    t = LdapTarget(settings, MAPPING)
    try:
        assert sum(1 for _ in t.snapshot()) == n
        text = ACL_FILE.read_text(encoding="utf-8")
        limits = text[
            text.index(f"dn: {SERVICE}") : text.index("\n\n", text.index(f"dn: {SERVICE}"))
        ]
        ds.modify(
            f"dn: {SERVICE}\nchangetype: modify\n"
            + "-\n".join(
                f"delete: {name}\n"
                for name in (
                    "nsLookThroughLimit",
                    "nsPagedLookThroughLimit",
                    "nsSizeLimit",
                    "nsPagedSizeLimit",
                )
            )
        )
        try:
            t.close()
            with pytest.raises(TargetUnavailableError) as caught:
                sum(1 for _ in t.snapshot())
            message = str(caught.value)
            assert "adminLimitExceeded (result 11)" in message
            assert f"An administrative limit of {SERVICE} was reached" in message
            assert "nsLookThroughLimit: -1" in message
        finally:
            ds.modify(limits + "\n")  # the shipped file's own lines put them back
        t.close()
        assert sum(1 for _ in t.snapshot()) == n
    finally:
        t.close()
