"""The LDAP adapter against a real slapd (ppolicy loaded): every operation, paging,
scope isolation, groups, and the error tree."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connector.devtools.slapd import LocalSlapd, free_port
from connector.mapping import load_mapping
from connector.mapping.types import DisableMatch, DisableRule
from connector.model import Change, ChangeKind, DesiredAccount
from connector.targets import PermanentTargetError, TargetUnavailableError
from connector.targets.ldap import LdapTarget, is_disabled

pytestmark = pytest.mark.slapd
ROOT = Path(__file__).resolve().parents[2]
MAPPING = load_mapping(ROOT / "mappings" / "openldap-ppolicy.toml")


def desired(
    pid: str, logon: str, *, enabled: bool = True, profile: str = "case-manager"
) -> DesiredAccount:
    return DesiredAccount(
        person_id=pid,
        logon_id=logon,
        enabled=enabled,
        attributes={
            "employeeNumber": (pid,),
            "uid": (logon,),
            "cn": ("Ann Lee",),
            "sn": ("Lee",),
            "mail": (f"{logon}@x.org",),
            "physicalDeliveryOfficeName": ("Kent", "Renton"),
            "employeeType": (profile,),
        },
        create_only={"description": ("Provisioned by misync",)},
        groups=frozenset({f"mis-{profile}"}),
    )


@pytest.fixture
def target(ldap_scope: Any) -> Any:
    t = LdapTarget(ldap_scope.settings, MAPPING)
    yield t
    t.close()


def raw(scope: Any, dn: str, attrs: list[str]) -> dict[str, list[str]]:
    s = scope.settings
    conn = ldap3.Connection(ldap3.Server(s.url), s.bind_dn, s.bind_password(), auto_bind=True)
    try:
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=attrs)
        got = conn.entries[0].entry_attributes_as_dict.items()
        return {
            k: [v.decode() if isinstance(v, bytes) else str(v) for v in vals]
            for k, vals in got
            if vals
        }
    finally:
        conn.unbind()


def test_create_writes_attributes_create_only_and_groups(
    target: LdapTarget, ldap_scope: Any
) -> None:
    dn = target.create(desired("P1", "alee"))
    assert dn == f"uid=alee,{ldap_scope.people_dn}"
    entry = raw(ldap_scope, dn, ["*", "pwdAccountLockedTime"])
    assert entry["employeeNumber"] == ["P1"]
    assert sorted(entry["physicalDeliveryOfficeName"]) == ["Kent", "Renton"]
    assert entry["description"] == ["Provisioned by misync"]
    assert "pwdAccountLockedTime" not in entry
    group = raw(ldap_scope, f"cn=mis-case-manager,{ldap_scope.groups_dn}", ["member"])
    assert group["member"] == [dn]


def test_create_disabled_writes_the_lock(target: LdapTarget, ldap_scope: Any) -> None:
    dn = target.create(desired("P2", "blee", enabled=False))
    assert raw(ldap_scope, dn, ["pwdAccountLockedTime"])["pwdAccountLockedTime"] == [
        "000001010000Z"
    ]


def test_snapshot_read_find_and_scope(target: LdapTarget, ldap_scope: Any) -> None:
    dn = target.create(desired("P1", "alee"))
    target.create(desired("P2", "blee", enabled=False))
    accounts = {a.correlation: a for a in target.snapshot()}
    assert set(accounts) == {"P1", "P2"}  # svc-backup lives outside the managed scope
    a = accounts["P1"]
    assert (a.account_id, a.logon_id, a.enabled, a.groups) == (
        dn,
        "alee",
        True,
        frozenset({"mis-case-manager"}),
    )
    assert a.attributes["employeeType"] == ("case-manager",)
    assert "description" in a.attributes
    assert accounts["P2"].enabled is False
    assert target.read(dn) == a
    assert target.find("P1") == a
    assert target.find("NOBODY") is None
    assert target.read(f"uid=svc-backup,{ldap_scope.outside_dn}") is None  # out of scope
    assert target.read(f"uid=ghost,{ldap_scope.people_dn}") is None


def test_snapshot_pages_through_many_entries(
    target: LdapTarget, ldap_scope: Any, slapd: LocalSlapd
) -> None:
    slapd.add_ldif(
        "\n".join(
            f"dn: uid=u{i},{ldap_scope.people_dn}\nobjectClass: inetOrgPerson\nuid: u{i}\ncn: U {i}\nsn: U\nemployeeNumber: E{i}\n"
            for i in range(130)
        )
    )
    assert ldap_scope.settings.page_size == 50
    ids = [a.correlation for a in target.snapshot()]
    assert len(ids) == 130
    assert len(set(ids)) == 130


def test_update_attributes_and_groups(target: LdapTarget, ldap_scope: Any) -> None:
    dn = target.create(desired("P1", "alee"))
    target.update(
        dn,
        [
            Change(ChangeKind.ATTRIBUTE, "employeeType", ("case-manager",), ("supervisor",)),
            Change(ChangeKind.ATTRIBUTE, "physicalDeliveryOfficeName", ("Kent", "Renton"), ()),
            Change(ChangeKind.GROUPS, "groups", ("mis-case-manager",), ("mis-supervisor",)),
        ],
    )
    a = target.read(dn)
    assert a is not None
    assert a.attributes["employeeType"] == ("supervisor",)
    assert "physicalDeliveryOfficeName" not in a.attributes
    assert a.groups == frozenset({"mis-supervisor"})
    # the emptied group keeps a placeholder member (groupOfNames needs one); never deleted
    old = raw(ldap_scope, f"cn=mis-case-manager,{ldap_scope.groups_dn}", ["member"])
    assert old["member"] == [f"cn=mis-case-manager,{ldap_scope.groups_dn}"]
    # a new member replaces the placeholder
    dn2 = target.create(desired("P2", "blee"))
    assert raw(ldap_scope, f"cn=mis-case-manager,{ldap_scope.groups_dn}", ["member"])["member"] == [
        dn2
    ]


def test_disable_enable_round_trip_is_idempotent(target: LdapTarget, ldap_scope: Any) -> None:
    dn = target.create(desired("P1", "alee"))
    target.set_enabled(dn, False)
    target.set_enabled(dn, False)
    assert raw(ldap_scope, dn, ["pwdAccountLockedTime"])["pwdAccountLockedTime"] == [
        "000001010000Z"
    ]
    assert target.read(dn).enabled is False  # type: ignore[union-attr]
    target.set_enabled(dn, True)
    target.set_enabled(dn, True)
    assert "pwdAccountLockedTime" not in raw(ldap_scope, dn, ["pwdAccountLockedTime"])
    assert target.read(dn).enabled is True  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        pytest.param(
            lambda t: (t.create(desired("P1", "alee")), t.create(desired("P1", "alee"))),
            "entryAlreadyExists",
            id="duplicate",
        ),
        pytest.param(
            lambda t: t.create(
                dataclasses.replace(
                    desired("P1", "alee"),
                    attributes={**desired("P1", "alee").attributes, "mail": ("bén@x.org",)},
                )
            ),
            "invalidAttributeSyntax",
            id="bad-syntax",
        ),
        pytest.param(
            lambda t: t.update(
                "uid=ghost," + t._s.base_dn, [Change(ChangeKind.ATTRIBUTE, "sn", (), ("X",))]
            ),
            "noSuchObject",
            id="no-such-object",
        ),
    ],
)
def test_permanent_errors_carry_the_server_words(
    target: LdapTarget, make: Any, detail: str
) -> None:
    with pytest.raises(PermanentTargetError) as err:
        make(target)
    assert detail in err.value.detail
    assert err.value.account_id


def test_unreachable_server_is_unavailable(ldap_scope: Any) -> None:
    settings = ldap_scope.settings.model_copy(
        update={"url": f"ldap://127.0.0.1:{free_port()}", "connect_timeout": 2}
    )
    t = LdapTarget(settings, MAPPING)
    with pytest.raises(TargetUnavailableError):
        list(t.snapshot())


def test_server_stopping_mid_snapshot_is_never_a_complete_read(tmp_path: Path) -> None:
    with LocalSlapd(tmp_path / "s", suffix="dc=x") as s:
        s.add_ldif(
            "dn: ou=p,dc=x\nobjectClass: organizationalUnit\nou: p\n\n"
            + "\n".join(
                f"dn: uid=u{i},ou=p,dc=x\nobjectClass: inetOrgPerson\nuid: u{i}\ncn: u\nsn: u\nemployeeNumber: E{i}\n"
                for i in range(120)
            )
        )
        pw = tmp_path / "pw"
        pw.write_text(s.root_password)
        from connector.settings import LdapSettings

        t = LdapTarget(
            LdapSettings(
                url=s.url, bind_dn=s.root_dn, password_file=pw, base_dn="ou=p,dc=x", page_size=50
            ),
            MAPPING,
        )
        stream = t.snapshot()
        seen = [next(stream) for _ in range(10)]
        s.stop()
        with pytest.raises(TargetUnavailableError):
            seen += list(stream)
        assert len(seen) < 120


@pytest.mark.parametrize(
    ("limit", "flt", "says"),
    [
        pytest.param("size=5", "(objectClass=inetOrgPerson)", "nsSizeLimit: -1", id="size-limit"),
        pytest.param(
            "size.soft=5 size.hard=5 size.prtotal=5",
            "(objectClass=inetOrgPerson)",
            "stopped before the end",
            id="paged-total-limit",
        ),
        # slapd's counterpart of 389 DS's lookthrough limit: an unindexed search that
        # would examine more than N entries ends in adminLimitExceeded (11)
        pytest.param(
            "size.unchecked=5",
            "(cn=u)",
            "adminLimitExceeded (result 11); a partial read is never planned from. An "
            "administrative limit of cn=reader,dc=x was reached: on 389 DS its lookthrough "
            "limit (nsslapd-lookthroughlimit, 5000 entries by default); set "
            "nsLookThroughLimit: -1",
            id="admin-limit",
        ),
    ],
)
def test_a_server_limit_is_a_partial_read_never_a_complete_one(
    tmp_path: Path, limit: str, flt: str, says: str
) -> None:
    """ldap3 does not raise on sizeLimitExceeded: the adapter must, or a bind account with
    a server-side limit would make 5 of 40 accounts look like the whole directory. The
    error names the limit and what lifts it for the bind DN (issue 13 item 16)."""
    reader = "cn=reader,dc=x"
    with LocalSlapd(
        tmp_path / "s", suffix="dc=x", extra_config=f'limits dn.exact="{reader}" {limit}'
    ) as s:
        s.add_ldif(
            f"dn: {reader}\nobjectClass: person\ncn: reader\nsn: r\nuserPassword: rpw\n\n"
            "dn: ou=p,dc=x\nobjectClass: organizationalUnit\nou: p\n\n"
            + "\n".join(
                f"dn: uid=u{i},ou=p,dc=x\nobjectClass: inetOrgPerson\nuid: u{i}\ncn: u\nsn: u\n"
                for i in range(40)
            )
        )
        pw = tmp_path / "pw"
        pw.write_text("rpw")
        from connector.settings import LdapSettings

        t = LdapTarget(
            LdapSettings(
                url=s.url,
                bind_dn=reader,
                password_file=pw,
                base_dn="ou=p,dc=x",
                page_size=3,
                filter=flt,
            ),
            MAPPING,
        )
        with pytest.raises(TargetUnavailableError, match="stopped before the end") as caught:
            list(t.snapshot())
        t.close()
        assert says in str(caught.value)


@pytest.mark.parametrize(
    ("rule", "values", "disabled"),
    [
        (
            DisableRule("pwdAccountLockedTime", "000001010000Z", None, DisableMatch.PRESENT),
            ("20260101000000Z",),
            True,
        ),
        (
            DisableRule("pwdAccountLockedTime", "000001010000Z", None, DisableMatch.PRESENT),
            (),
            False,
        ),
        (DisableRule("nsAccountLock", "TRUE", None, DisableMatch.EQUALS), ("true",), True),
        (DisableRule("nsAccountLock", "TRUE", None, DisableMatch.EQUALS), ("FALSE",), False),
        (DisableRule("nsAccountLock", "TRUE", None, DisableMatch.EQUALS), (), False),
    ],
)
def test_reading_the_disabled_flag(
    rule: DisableRule, values: tuple[str, ...], disabled: bool
) -> None:
    """389-ds semantics as a pure check: slapd has no nsAccountLock attribute type."""
    assert is_disabled(rule, values) is disabled
