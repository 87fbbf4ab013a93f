"""The opt-in 389 Directory Server profile (issue 13 item 17).

    apt-get install -y 389-ds-base                      # as root, once
    MISYNC_389DS=1 .venv/bin/python -m pytest -m ds389 tests/ds389

Skipped (saying how to run it) without ``MISYNC_389DS=1``; with it, a missing
389-ds-base or a non-root user fails the run rather than skipping it. One real 389 DS
instance per session (``connector.devtools.ds389``: ``dscreate`` in a private prefix
folder, loopback only, small caches; ~10 s), removed at the end. Each test gets its own
branch ``ou=tN,dc=mis,dc=example`` with ``ou=people``, ``ou=groups`` and ``ou=svc``, and
the shipped ``deploy/ldap-acl/389ds-misync.ldif`` loaded for that branch: misync binds
as ``cn=misync,dc=mis,dc=example``, which that file alone empowers.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.devtools.ds389 import LocalDs389, available
from connector.settings import LdapSettings
from tests.conftest import LdapScope, demo_seed_ldif

ENABLED = os.environ.get("MISYNC_389DS") == "1"
ROOT = Path(__file__).resolve().parents[2]
ACL_FILE = ROOT / "deploy" / "ldap-acl" / "389ds-misync.ldif"
MAPPING_389 = ROOT / "mappings" / "389ds.toml"
SUFFIX = "dc=mis,dc=example"
SERVICE = f"cn=misync,{SUFFIX}"  # the DN the shipped file names
SERVICE_PASSWORD = "misync-389-pw"
SHIPPED_PEOPLE, SHIPPED_GROUPS = f"ou=people,{SUFFIX}", f"ou=groups,{SUFFIX}"
_branch = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skipif(
        not ENABLED, reason="389 DS profile: MISYNC_389DS=1 pytest -m ds389 tests/ds389"
    )
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.ds389)
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDs389]:
    why = available()
    if why is not None:
        pytest.fail(f"MISYNC_389DS=1, but 389 DS cannot run here: {why}")
    with LocalDs389(tmp_path_factory.mktemp("ds389"), suffix=SUFFIX) as server:
        server.add_service_account("cn=misync", SERVICE_PASSWORD)
        yield server


def rendered_acl(people: str, groups: str) -> str:
    """The shipped file with the managed scope and groups of one test's branch."""
    text = ACL_FILE.read_text(encoding="utf-8")
    return text.replace(SHIPPED_PEOPLE, people).replace(SHIPPED_GROUPS, groups)


@pytest.fixture
def ds_scope(ds: LocalDs389, tmp_path: Path) -> LdapScope:
    root = f"ou=t{next(_branch)},{SUFFIX}"
    people, groups, outside = f"ou=people,{root}", f"ou=groups,{root}", f"ou=svc,{root}"
    ds.modify(
        "\n".join(
            f"dn: {dn}\nobjectClass: organizationalUnit\nou: {dn.split(',')[0][3:]}\n"
            for dn in (root, people, groups, outside)
        )
        + f"\ndn: uid=svc-backup,{outside}\nobjectClass: inetOrgPerson\nuid: svc-backup\n"
        "cn: backup service\nsn: service\nemployeeNumber: SVC1\n"
    )
    ds.modify(rendered_acl(people, groups))
    secret = tmp_path / "ldap-password"
    secret.write_text(SERVICE_PASSWORD + "\n", encoding="utf-8")
    secret.chmod(0o600)
    settings = LdapSettings(
        url=ds.url,
        bind_dn=SERVICE,
        password_file=secret,
        base_dn=people,
        group_base_dn=groups,
        scope="one",
        page_size=50,
    )
    return LdapScope(root, people, groups, outside, settings)


def seed_389(scope: LdapScope, *, gkim_lock: str = "nsAccountLock: TRUE") -> str:
    """config/demo/seed.ldif for a 389 DS branch: P1007's lock is nsAccountLock (or, with
    ``gkim_lock``, whatever line locks her, e.g. an nsRoleDN)."""
    text = demo_seed_ldif(scope)
    assert "pwdAccountLockedTime: 000001010000Z" in text
    return text.replace("pwdAccountLockedTime: 000001010000Z", gkim_lock)


def config_389(tmp: Path, scope: LdapScope, extra: str = "") -> str:
    """The [target] part of a configuration for ``scope``, bound as the service."""
    s = scope.settings
    return f"""
[target]
kind = "ldap"
mapping = "{MAPPING_389}"
[target.ldap]
url = "{s.url}"
bind_dn = "{s.bind_dn}"
password_file = "{s.password_file}"
base_dn = "{scope.people_dn}"
group_base_dn = "{scope.groups_dn}"
{extra}
"""
