"""One contract, every target: the same feeds and policy give the same plan and the
same end state on OpenLDAP (slapd) and on SCIM 2.0 (scim2-server over HTTP).

In the spirit of APScheduler's suite parametrised over every data store: each test
runs once per target; only the fixture knows how a target is started and seeded.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import ldap3
import pytest

from connector import app
from connector.cli import main
from connector.devtools.scim_server import LocalScimServer
from connector.model import Change, ChangeKind, DesiredAccount
from connector.settings import load_settings
from tests.conftest import DEMO, ROOT, demo_seed_ldif

NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
EXPECTED_PLAN = {
    "P1001": "create",
    "P1002": "create",
    "P1003": "disable",
    "P1004": "disable",
    "P1005": "update",
    "P1007": "enable",
    "P1008": "disable",
    "P9999": "disable",
}
EXPECTED_ENABLED = {
    "P1001": True,
    "P1002": True,
    "P1003": False,
    "P1004": False,
    "P1005": True,
    "P1007": True,
    "P1008": False,
    "P9999": False,
}


@dataclass
class World:
    kind: str
    config: Path
    tmp: Path
    outside: Callable[[], dict[str, Any]]  # raw read of what lies outside the managed scope

    def runtime(self) -> app.Runtime:
        return app.Runtime(load_settings(self.config))

    def accounts(self) -> dict[str, Any]:
        target = self.runtime().target()
        try:
            return {a.correlation: a for a in target.snapshot()}
        finally:
            target.close()

    def profile_attribute(self) -> str:
        return next(r.name for r in self.runtime().mapping.attributes if r.template == "{profile}")


def _config(tmp: Path, target_block: str) -> Path:
    feeds = tmp / "feeds"
    shutil.copytree(DEMO / "feeds", feeds)
    cfg = tmp / "misync.toml"
    cfg.write_text(
        f"""
[feeds]
dir = "{feeds}"
max_age_hours = 0
{target_block}
[guard]
max_unexplained_share = 0.5
[apply]
backoff_seconds = 0
reenable_external_disables = true  # as config/demo/misync.toml: the story's P1007 lock
[state]
dir = "{tmp / "state"}"
""",
        encoding="utf-8",
    )
    return cfg


@pytest.fixture(params=["ldap", "scim"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    monkeypatch.setattr(app, "now", lambda: NOW)
    if request.param == "ldap":
        scope = request.getfixturevalue("ldap_scope")
        request.getfixturevalue("slapd").add_ldif(demo_seed_ldif(scope))
        s = scope.settings
        block = f"""
[target]
kind = "ldap"
mapping = "{ROOT / "mappings" / "openldap-ppolicy.toml"}"
[target.ldap]
url = "{s.url}"
bind_dn = "{s.bind_dn}"
password_file = "{s.password_file}"
base_dn = "{scope.people_dn}"
group_base_dn = "{scope.groups_dn}"
"""

        def ldap_outside() -> dict[str, Any]:
            """Every entry under ou=svc, with operational attributes (entryCSN moves on write)."""
            conn = ldap3.Connection(
                ldap3.Server(s.url), s.bind_dn, s.bind_password(), raise_exceptions=True
            )
            conn.bind()
            conn.search(scope.outside_dn, "(objectClass=*)", attributes=["*", "+"])
            found = {e.entry_dn: e.entry_attributes_as_dict for e in conn.entries}
            conn.unbind()
            return found

        yield World("ldap", _config(tmp_path, block), tmp_path, ldap_outside)
        return
    with LocalScimServer(tmp_path / "scim") as server:
        seed = json.loads((DEMO / "seed-scim.json").read_text(encoding="utf-8"))
        server.seed(seed["users"], seed["groups"])
        token = tmp_path / "scim-token"
        token.write_text(server.token)
        block = f"""
[target]
kind = "scim"
mapping = "{ROOT / "mappings" / "scim-core.toml"}"
[target.scim]
base_url = "{server.url}"
token_file = "{token}"
page_size = 3
"""

        def scim_outside() -> dict[str, Any]:
            """Every user without an externalId, as the server holds it (meta.version too)."""
            auth = {"Authorization": f"Bearer {server.token}"}
            with httpx2.Client(headers=auth, timeout=10) as http:
                users = http.get(f"{server.url}/Users", params={"count": 1000}).json()
            return {u["id"]: u for u in users["Resources"] if not u.get("externalId")}

        yield World("scim", _config(tmp_path, block), tmp_path, scim_outside)


def plan(world: World, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    capsys.readouterr()  # drop what earlier commands printed
    code = main(["-c", str(world.config), "plan", "--format", "json", *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    body: dict[str, Any] = json.loads(out)
    return body


def ops(body: dict[str, Any], world: World) -> dict[str, str]:
    accounts = world.accounts()
    by_id = {a.account_id: a.correlation for a in accounts.values()}
    return {a["person_id"] or by_id[a["account_id"]]: a["op"] for a in body["actions"]}


def test_same_plan_then_same_end_state(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    body = plan(world, capsys)
    assert ops(body, world) == EXPECTED_PLAN
    reasons = {
        a["person_id"]: [r["code"] for r in a["reasons"]] for a in body["actions"] if a["person_id"]
    }
    assert "data_sharing_ended" in reasons["P1003"]
    assert "separated" in reasons["P1004"]
    assert {b["person_id"] for b in body["breaches"]} == {"P1003", "P1004", "P1008"}

    assert main(["-c", str(world.config), "apply"]) == 0
    accounts = world.accounts()
    assert {pid: a.enabled for pid, a in accounts.items()} == EXPECTED_ENABLED
    profile = world.profile_attribute()
    assert accounts["P1005"].attributes[profile] == ("supervisor",)
    assert accounts["P1005"].groups == frozenset({"mis-supervisor"})
    assert accounts["P1001"].logon_id == "aortiz"

    again = plan(world, capsys)
    assert again["actions"] == []
    assert again["held"] == []


def test_reviewed_plan_refuses_drift(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    path = world.tmp / "plan.json"
    assert main(["-c", str(world.config), "plan", "-o", str(path)]) == 0
    target = world.runtime().target()
    ewalsh = target.find("P1005")
    assert ewalsh is not None
    profile = world.profile_attribute()
    target.update(
        ewalsh.account_id, [Change(ChangeKind.ATTRIBUTE, profile, ("case-manager",), ("auditor",))]
    )
    target.close()
    capsys.readouterr()
    assert main(["-c", str(world.config), "apply", "--plan", str(path)]) == 5
    assert "changed since the plan was made" in capsys.readouterr().err
    assert world.accounts()["P1004"].enabled  # nothing was applied


def test_mass_disable_guard_holds_orphans(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    rt = world.runtime()
    target = rt.target()
    for i in range(30):
        corr, logon = f"X{i}", f"stray{i}"
        attrs = {rt.mapping.correlation_attribute: (corr,), rt.mapping.logon_attribute: (logon,)}
        if world.kind == "ldap":
            attrs |= {"cn": (logon,), "sn": (logon,)}
        target.create(DesiredAccount(corr, logon, True, attrs))
    target.close()
    body = plan(world, capsys)
    assert sum(h["code"] == "mass_disable_guard" for h in body["held"]) == 31
    assert ops(body, world)["P1004"] == "disable"  # evidenced: never held by a count
    assert main(["-c", str(world.config), "apply"]) == 4
    assert world.accounts()["X0"].enabled
    assert main(["-c", str(world.config), "apply", "--override-guard"]) == 0
    assert not world.accounts()["X0"].enabled


def test_accounts_outside_the_scope_are_never_touched(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """SPEC "Accounts": service accounts and other branches are never orphans, never written."""
    before = world.outside()
    assert before, "the seed puts a service account outside the managed scope"
    body = plan(world, capsys)
    touched = {a["account_id"] for a in body["actions"]} | {
        h["action"]["account_id"] for h in body["held"]
    }
    assert not touched & set(before)
    assert main(["-c", str(world.config), "apply", "--override-guard"]) == 0
    assert world.outside() == before
