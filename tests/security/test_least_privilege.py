"""Least privilege on a real slapd: misync runs (config check, plan, apply, plan again,
audit verify) bound as a service account that only the ACL in
deploy/ldap-acl/openldap-misync.conf empowers, not as the rootdn; and that account
cannot write outside the managed scope or the mapped attributes, nor delete anything."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest
from ldap3.core import exceptions as lx

from connector.devtools.slapd import LocalSlapd
from connector.mapping import load_mapping
from connector.settings import LdapSettings
from tests.conftest import LdapScope
from tests.integration.test_end_to_end import run

pytestmark = pytest.mark.slapd
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "ldap-acl" / "openldap-misync.conf"
MAPPING = load_mapping(ROOT / "mappings" / "openldap-ppolicy.toml")
SUFFIX = "dc=mis,dc=test"
BRANCH = f"ou=acl,{SUFFIX}"
PEOPLE, GROUPS, OUTSIDE = f"ou=people,{BRANCH}", f"ou=groups,{BRANCH}", f"ou=svc,{BRANCH}"
SERVICE = f"cn=misync,{SUFFIX}"
SERVICE_PASSWORD = "s3rvice-pw"


def rendered() -> str:
    text = TEMPLATE.read_text(encoding="utf-8")
    return (
        text.replace("@SERVICE@", SERVICE).replace("@PEOPLE@", PEOPLE).replace("@GROUPS@", GROUPS)
    )


def test_the_acl_names_exactly_the_attributes_the_mapping_writes() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    lists = re.findall(r'access to dn\.one="@PEOPLE@" attrs=(\S+)', text)
    granted = {a for attrs in lists for a in attrs.split(",")}
    written = {*MAPPING.managed_attributes, MAPPING.disable.attribute, "objectClass", "entry"}
    assert granted == written
    assert re.findall(r'access to dn\.one="@GROUPS@" attrs=(\S+)', text) == [
        f"entry,objectClass,cn,{MAPPING.group_member_attribute}"
    ]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlapd]:
    """This module's own slapd (it overrides the session one): the ACL in force."""
    with LocalSlapd(tmp_path_factory.mktemp("acl-slapd"), suffix=SUFFIX, access=rendered()) as s:
        s.add_service_account("cn=misync", SERVICE_PASSWORD)
        s.add_ldif(
            "\n".join(
                f"dn: {dn}\nobjectClass: organizationalUnit\nou: {dn.split(',')[0][3:]}\n"
                for dn in (BRANCH, PEOPLE, GROUPS, OUTSIDE)
            )
            + f"\ndn: uid=svc-backup,{OUTSIDE}\nobjectClass: inetOrgPerson\nuid: svc-backup\n"
            "cn: backup service\nsn: service\nemployeeNumber: SVC1\n"
        )
        yield s


@pytest.fixture
def ldap_scope(slapd: LocalSlapd, tmp_path: Path) -> LdapScope:
    """The managed branch, with misync bound as the service account (not the rootdn)."""
    secret = tmp_path / "ldap-password"
    secret.write_text(SERVICE_PASSWORD + "\n", encoding="utf-8")
    settings = LdapSettings(
        url=slapd.url,
        bind_dn=SERVICE,
        password_file=secret,
        base_dn=PEOPLE,
        group_base_dn=GROUPS,
        scope="one",
        page_size=50,
    )
    return LdapScope(BRANCH, PEOPLE, GROUPS, OUTSIDE, settings)


def as_service(slapd: LocalSlapd) -> ldap3.Connection:
    return ldap3.Connection(
        ldap3.Server(slapd.url, get_info=ldap3.NONE),
        SERVICE,
        SERVICE_PASSWORD,
        auto_bind=True,
        raise_exceptions=True,
    )


def test_misync_works_under_the_service_account_and_nothing_more(
    demo: dict[str, Any], slapd: LocalSlapd, capsys: pytest.CaptureFixture[str]
) -> None:
    # misync, bound as the service account, does the whole demo
    assert run(demo, "config", "check", capsys=capsys)[0] == 0
    code, out = run(demo, "plan", "--format", "json", capsys=capsys)
    assert code == 0, demo["last_err"]
    ops = sorted(a["op"] for a in json.loads(out)["actions"])
    assert {"create", "disable", "enable", "update"} <= set(ops)
    code, out = run(demo, "apply", capsys=capsys)
    assert code == 0, out + demo["last_err"]
    code, out = run(demo, "plan", "--format", "json", capsys=capsys)
    assert (code, json.loads(out)["actions"]) == (0, [])
    assert run(demo, "audit", "verify", capsys=capsys)[0] == 0

    # ... and the same account cannot step outside the ACL
    conn = as_service(slapd)
    account = conn.search(PEOPLE, "(uid=aortiz)", attributes=["uid"]) and conn.entries[0]
    dn = account.entry_dn
    refused: dict[str, Any] = {
        "an attribute the mapping does not write": lambda: conn.modify(
            dn, {"telephoneNumber": [(ldap3.MODIFY_REPLACE, ["555"])]}
        ),
        "a person's password": lambda: conn.modify(
            dn, {"userPassword": [(ldap3.MODIFY_REPLACE, ["x"])]}
        ),
        "delete an account": lambda: conn.delete(dn),
        "an entry outside the managed scope": lambda: conn.modify(
            f"uid=svc-backup,{OUTSIDE}", {"description": [(ldap3.MODIFY_REPLACE, ["x"])]}
        ),
        "create outside the managed scope": lambda: conn.add(
            f"uid=intruder,{OUTSIDE}",
            ["inetOrgPerson"],
            {"cn": "x", "sn": "x", "uid": "intruder"},
        ),
        "a group's other attributes": lambda: conn.modify(
            f"cn=mis-supervisor,{GROUPS}", {"description": [(ldap3.MODIFY_REPLACE, ["x"])]}
        ),
        "create under the group's entry": lambda: conn.add(
            f"cn=x,cn=mis-supervisor,{GROUPS}", ["groupOfNames"], {"cn": "x", "member": dn}
        ),
        "rename an account": lambda: conn.modify_dn(dn, "uid=renamed"),
        "its own password": lambda: conn.modify(
            SERVICE, {"userPassword": [(ldap3.MODIFY_REPLACE, ["x"])]}
        ),
    }
    allowed = []
    for what, attempt in refused.items():
        try:
            attempt()
        except lx.LDAPInsufficientAccessRightsResult:
            continue
        allowed.append(what)
    assert allowed == []
    # outside the scope it reads nothing either (slapd does not even say it exists)
    with pytest.raises(lx.LDAPNoSuchObjectResult):
        conn.search(OUTSIDE, "(uid=svc-backup)", attributes=["uid"])
    conn.unbind()
