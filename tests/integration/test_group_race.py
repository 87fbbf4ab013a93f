"""Concurrent creates into groups that do not exist yet (issue 6 item 2).

With ``apply.workers > 1`` two workers may both find a group missing and both create
it. The loser must add its member to the group the winner made, never fail the create
and never leave a second group of the same name. Many new groups per account make the
race happen on every run (each one a fresh chance), on a real slapd and a real
scim2-server.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import ldap3
import pytest

from connector.app import Runtime
from connector.devtools.scim_server import LocalScimServer
from connector.executor import Executor
from connector.mapping import load_mapping
from connector.model import Action, DesiredAccount, Op, Plan
from connector.settings import load_settings
from connector.state import StateStore
from connector.targets.ldap import LdapTarget
from tests.conftest import ROOT

NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
PEOPLE, GROUPS, WORKERS = 12, 16, 4


def creates(attrs: Any, group: Any, *, people: int = PEOPLE, groups: int = GROUPS) -> Plan:
    actions = tuple(
        Action(
            Op.CREATE,
            f"P{i:03}",
            None,
            f"user{i:03}",
            (),
            (),
            None,
            DesiredAccount(
                f"P{i:03}",
                f"user{i:03}",
                True,
                attrs(i),
                {},
                frozenset(group(g) for g in range(groups)),
            ),
        )
        for i in range(people)
    )
    return Plan(as_of=NOW, target="t", actions=actions, checksum="sha256:race")


def run(factory: Any, plan: Plan, tmp_path: Path) -> Any:
    with StateStore(tmp_path / "state.sqlite3") as store:
        ex = Executor(target_factory=factory, journal=store, workers=WORKERS, backoff=0)
        return ex.apply(plan, "race")


@pytest.mark.slapd
def test_ldap_workers_creating_the_same_new_groups(ldap_scope: Any, tmp_path: Path) -> None:
    mapping = load_mapping(ROOT / "mappings" / "openldap-ppolicy.toml")
    plan = creates(
        lambda i: {
            "employeeNumber": (f"P{i:03}",),
            "uid": (f"user{i:03}",),
            "cn": (f"User {i}",),
            "sn": ("User",),
        },
        lambda g: f"race-{g}",
    )
    report = run(lambda: LdapTarget(ldap_scope.settings, mapping), plan, tmp_path)
    assert [o.detail for o in report.failed] == []
    s = ldap_scope.settings
    conn = ldap3.Connection(ldap3.Server(s.url), s.bind_dn, s.bind_password(), auto_bind=True)
    try:
        conn.search(ldap_scope.groups_dn, "(cn=race-*)", ldap3.LEVEL, attributes=["cn", "member"])
        members = {str(e.cn): {str(m).lower() for m in e.member.values} for e in conn.entries}
    finally:
        conn.unbind()
    everyone = {f"uid=user{i:03},{ldap_scope.people_dn}".lower() for i in range(PEOPLE)}
    assert members == {f"race-{g}": everyone for g in range(GROUPS)}


@pytest.mark.scim
def test_scim_workers_creating_the_same_new_groups(tmp_path: Path) -> None:
    plan = creates(
        lambda i: {
            "externalId": (f"P{i:03}",),
            "userName": (f"user{i:03}",),
            "name.givenName": ("User",),
            "name.familyName": (f"N{i}",),
        },
        lambda g: f"mis-race-{g}",
        people=8,
        groups=8,
    )
    with LocalScimServer(tmp_path / "scim") as server:
        token = tmp_path / "token"
        token.write_text(server.token, encoding="utf-8")
        cfg = tmp_path / "misync.toml"
        cfg.write_text(
            f"""
[feeds]
dir = "{tmp_path}"
[target]
kind = "scim"
mapping = "{ROOT / "mappings" / "scim-core.toml"}"
[target.scim]
base_url = "{server.url}"
token_file = "{token}"
[state]
dir = "{tmp_path / "state"}"
""",
            encoding="utf-8",
        )
        rt = Runtime(load_settings(cfg))  # the targets of one runtime, as apply builds them
        report = run(rt.target, plan, tmp_path)
        assert [o.detail for o in report.failed] == []
        ids = {o.action.person_id: o.account_id for o in report.outcomes}
        groups = httpx2.get(
            f"{server.url}/Groups",
            params={"count": 1000},
            headers={"Authorization": f"Bearer {server.token}"},
        ).json()["Resources"]
    names = sorted(g["displayName"] for g in groups)
    assert names == sorted(f"mis-race-{g}" for g in range(8))  # one group per name
    for g in groups:
        assert {m["value"] for m in g.get("members", [])} == set(ids.values()), g["displayName"]


class CreatedElsewhere(httpx2.BaseTransport):
    """The first Group create lands on the real server, but the answer is the 409 that a
    uniqueness-enforcing server gives the loser of a race (someone else made it first)."""

    def __init__(self) -> None:
        self.inner = httpx2.HTTPTransport()
        self.conflicts = 0

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/Groups") and not self.conflicts:
            self.conflicts += 1
            response.read()
            body = {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "409",
                "scimType": "uniqueness",
                "detail": "displayName taken",
            }
            return httpx2.Response(
                409, headers={"Content-Type": "application/scim+json"}, json=body
            )
        return response


@pytest.mark.scim
def test_scim_409_on_group_create_adds_the_member_to_the_existing_group(tmp_path: Path) -> None:
    from connector.settings import ScimSettings
    from connector.targets.scim import ScimTarget

    mapping = load_mapping(ROOT / "mappings" / "scim-core.toml")
    with LocalScimServer(tmp_path / "scim") as server:
        wire = CreatedElsewhere()
        client = httpx2.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {server.token}"},
            transport=wire,
        )
        t = ScimTarget(ScimSettings(base_url=server.url), mapping, client=client)
        # the first create's group lands but is answered 409, as if someone else made it
        first, second = (
            t.create(
                DesiredAccount(
                    pid,
                    uid,
                    True,
                    {"externalId": (pid,), "userName": (uid,)},
                    {},
                    frozenset({"mis-x"}),
                )
            )
            for pid, uid in (("P1", "ann"), ("P2", "bob"))
        )
        t.close()
        groups = httpx2.get(
            f"{server.url}/Groups", headers={"Authorization": f"Bearer {server.token}"}
        ).json()["Resources"]
    assert wire.conflicts == 1
    assert [(g["displayName"], {m["value"] for m in g["members"]}) for g in groups] == [
        ("mis-x", {first, second})
    ]
