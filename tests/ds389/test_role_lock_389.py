"""An account locked by a disabled role, on a real 389 DS (issue 6 item 3 on the server
it was written for). Grace Kim (P1007, entitled) carries no ``nsAccountLock`` of her
own: she holds ``nsRoleDN`` of a managed role that ``dsidm role lock`` disabled, and
389 DS computes ``nsAccountLock: true`` for her (class of service). misync's enable
removes her own value, the server answers success, and she still reads as locked:
the enable must fail as ``not_effective`` with an ``operation.not_effective`` alert,
never ``ok``, and the run's other actions still succeed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connector import app, runs
from connector.alerts import Alert
from connector.devtools.ds389 import LocalDs389
from connector.settings import load_settings
from tests.conftest import DEMO, ROOT, LdapScope
from tests.ds389.conftest import config_389, seed_389
from tests.integration.test_contract import NOW


class Alerts:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)


def test_an_enable_that_a_disabled_role_undoes_fails_not_effective(
    ds: LocalDs389, ds_scope: LdapScope, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "now", lambda: NOW)
    # a managed role's scope is its parent's subtree: the branch root covers ou=people
    role = f"cn=incident-lock,{ds_scope.root_dn}"
    ds.modify(
        f"dn: {role}\nobjectClass: top\nobjectClass: LDAPsubentry\n"
        "objectClass: nsRoleDefinition\nobjectClass: nsSimpleRoleDefinition\n"
        "objectClass: nsManagedRoleDefinition\ncn: incident-lock\n"
    )
    ds.modify(seed_389(ds_scope, gkim_lock=f"nsRoleDN: {role}"))
    ds.dsidm("role", "lock", role)
    gkim = f"uid=gkim,{ds_scope.people_dn}"
    feeds = tmp_path / "feeds"
    shutil.copytree(DEMO / "feeds", feeds)
    cfg = tmp_path / "misync.toml"
    cfg.write_text(
        f"""
[feeds]
dir = "{feeds}"
mapping = "{ROOT / "mappings" / "feeds.toml"}"
max_age_hours = 0
{config_389(tmp_path, ds_scope)}
[apply]
backoff_seconds = 0
reenable_external_disables = true
[state]
dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    rt = app.Runtime(load_settings(cfg))
    target = rt.target()
    before = target.read(gkim)
    target.close()
    assert before is not None and not before.enabled  # the role's lock is what misync reads
    assert "nsAccountLock" not in before.attributes
    alerts = Alerts()
    result = runs.run_apply(rt, alerts=alerts)
    (enable,) = [o for o in result.report.outcomes if o.action.person_id == "P1007"]
    assert enable.action.op.value == "enable"
    assert (enable.status, enable.code) == ("failed", "not_effective")
    assert "still disabled after enable" in enable.detail
    assert result.status == "incomplete"
    (alert,) = [a for a in alerts.sent if a.kind == "operation.not_effective"]
    assert alert.key == gkim
    assert all(o.status == "ok" for o in result.report.outcomes if o is not enable)
    assert any(o.action.op.value == "create" for o in result.report.outcomes)
