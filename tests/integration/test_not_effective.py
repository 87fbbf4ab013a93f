"""A write the server accepts but that does not take (issue 6 item 3), on a real slapd.

On 389 DS a role (``nsRoleDN``) makes the server compute ``nsAccountLock`` for an
entry: removing the entry's own lock leaves it locked. The slapd counterpart here is
the ``dynlist`` overlay: an account carries a ``labeledURI`` naming a lock "role" entry,
and slapd merges that entry's ``shadowExpire: 1`` into every read of the account. The
mapping reads and writes ``shadowExpire`` (a common Linux/PAM disable convention); the
enable removes the account's own value, slapd answers success, and the account still
reads as disabled. misync must read it back, fail the action as ``not_effective`` with
an explanation, and raise an alert, never report it done.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector import app, runs
from connector.alerts import Alert
from connector.devtools.slapd import LocalSlapd
from connector.settings import load_settings
from tests.conftest import DEMO, ROOT, ldap_scope_on

pytestmark = pytest.mark.slapd
NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
DYNLIST = "moduleload dynlist\noverlay dynlist\ndynlist-attrset labeledURIObject labeledURI\n"


@pytest.fixture
def slapd_with_roles(tmp_path: Path) -> Iterator[LocalSlapd]:
    with LocalSlapd(tmp_path / "slapd", extra_config=DYNLIST) as server:
        yield server


class Alerts:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)


def test_an_enable_that_a_server_role_undoes_fails_with_an_alert(
    tmp_path: Path, slapd_with_roles: LocalSlapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "now", lambda: NOW)
    slapd = slapd_with_roles
    scope = ldap_scope_on(slapd, tmp_path)
    role = f"uid=incident-lock,{scope.outside_dn}"
    gkim = f"uid=gkim,{scope.people_dn}"
    slapd.add_ldif(
        f"dn: {role}\nobjectClass: account\nobjectClass: shadowAccount\nuid: incident-lock\n"
        "shadowExpire: 1\n\n"
        f"dn: {gkim}\nobjectClass: inetOrgPerson\nobjectClass: shadowAccount\n"
        "objectClass: labeledURIObject\nuid: gkim\nemployeeNumber: P1007\ncn: Grace Kim\n"
        "sn: Kim\ngivenName: Grace\nmail: grace.kim@example.org\ndisplayName: Grace Kim\n"
        "o: Seattle-King County Workforce Development Council\ndepartmentNumber: LWDB04\n"
        "employeeType: reports-viewer\nphysicalDeliveryOfficeName: Bellevue\n"
        f"shadowExpire: 1\nlabeledURI: ldap:///{role}?shadowExpire?base?(objectClass=*)\n"
    )
    mapping = (ROOT / "mappings" / "openldap-ppolicy.toml").read_text(encoding="utf-8")
    head, _, tail = mapping.partition("[disable]")
    mapping = (
        head.replace('"inetOrgPerson"]', '"inetOrgPerson", "shadowAccount"]')
        + '[disable]\nattribute = "shadowExpire"\ndisabled_value = "1"\nmatch = "present"\n\n'
        + tail[tail.index("[groups]") :]
    )
    (tmp_path / "shadow.toml").write_text(mapping, encoding="utf-8")
    feeds = tmp_path / "feeds"
    shutil.copytree(DEMO / "feeds", feeds)
    s = scope.settings
    cfg = tmp_path / "misync.toml"
    cfg.write_text(
        f"""
[feeds]
dir = "{feeds}"
mapping = "{ROOT / "mappings" / "feeds.toml"}"
max_age_hours = 0
[target]
kind = "ldap"
mapping = "{tmp_path / "shadow.toml"}"
[target.ldap]
url = "{s.url}"
bind_dn = "{s.bind_dn}"
password_file = "{s.password_file}"
base_dn = "{scope.people_dn}"
group_base_dn = "{scope.groups_dn}"
scope = "one"
[apply]
backoff_seconds = 0
reenable_external_disables = true
[state]
dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    rt = app.Runtime(load_settings(cfg))
    alerts = Alerts()
    result = runs.run_apply(rt, alerts=alerts)
    (enable,) = [o for o in result.report.outcomes if o.action.person_id == "P1007"]
    assert enable.action.op.value == "enable"
    assert (enable.status, enable.code) == ("failed", "not_effective")
    assert "still disabled after enable" in enable.detail
    assert "locked by a server role or policy outside misync's attribute" in enable.detail
    assert result.status == "incomplete"
    (alert,) = [a for a in alerts.sent if a.kind == "operation.not_effective"]
    assert alert.key == gkim
    # the other actions of the run were carried out and read back as they should
    assert all(o.status == "ok" for o in result.report.outcomes if o is not enable)
    assert any(o.action.op.value == "create" for o in result.report.outcomes)
    # `apply --format json` names the failure's code as the audit record does (issue 13.13)
    from connector.progress import apply_result_json

    rows = {r["person_id"]: r for r in json.loads(apply_result_json(result))["outcomes"]}
    assert (rows["P1007"]["outcome"], rows["P1007"]["code"]) == ("failed", "not_effective")
    assert rows["P1001"]["code"] is None
    with rt.audit(read_only=True) as trail:
        records = [json.loads(r.data) for r in trail.run_records(result.run_id)]
    audited = [r for r in records if r.get("op") == "enable" and "outcome" in r]
    assert [r.get("code") for r in audited] == ["not_effective"]
