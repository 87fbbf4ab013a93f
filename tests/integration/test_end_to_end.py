"""End to end on a real slapd: the `misync` command on the demo feeds.

feeds -> policy -> plan -> apply on slapd -> plan is empty; drift refusal; the
mass-disable guard; feed guards; per-object failures; the audit trail.
The evaluation instant is pinned (``connector.app.now``, the default clock of a ``Runtime``) so the sample dates never rot.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connector import app
from connector.cli import main
from tests.configs import ldap_toml
from tests.conftest import demo_seed_ldif

pytestmark = pytest.mark.slapd

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"
NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)


@pytest.fixture
def pinned_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    monkeypatch.setattr(app, "now", lambda: NOW)
    return NOW


@pytest.fixture
def demo(tmp_path: Path, ldap_scope: Any, slapd: Any, pinned_now: datetime) -> dict[str, Any]:
    slapd.add_ldif(demo_seed_ldif(ldap_scope))
    feeds = tmp_path / "feeds"
    shutil.copytree(DEMO / "feeds", feeds)
    ldap = ldap_scope.settings
    cfg = tmp_path / "misync.toml"
    cfg.write_text(
        f"""
{ldap_toml(feeds=feeds, url=ldap.url, bind_dn=ldap.bind_dn, password_file=ldap.password_file, base_dn=ldap_scope.people_dn, group_base_dn=ldap_scope.groups_dn)}

[guard]
max_unexplained_share = 0.5

[apply]
backoff_seconds = 0
reenable_external_disables = true  # as config/demo/misync.toml: the story's P1007 lock

[state]
dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    return {"config": cfg, "feeds": feeds, "scope": ldap_scope, "tmp": tmp_path}


def run(demo: dict[str, Any], *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["-c", str(demo["config"]), *args])
    captured = capsys.readouterr()
    demo["last_err"] = captured.err
    return code, captured.out


def plan_json(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str], *extra: str
) -> dict[str, Any]:
    code, out = run(demo, "plan", "--format", "json", *extra, capsys=capsys)
    assert code == 0, out
    return json.loads(out)


def entry(scope: Any, uid: str, attrs: list[str] | None = None) -> dict[str, list[str]] | None:
    ldap = scope.settings
    conn = ldap3.Connection(
        ldap3.Server(ldap.url),
        ldap.bind_dn,
        ldap.bind_password(),
        auto_bind=True,
        raise_exceptions=False,
    )
    try:
        base = f"uid={uid},{scope.people_dn}"
        ok = conn.search(
            base, "(objectClass=*)", ldap3.BASE, attributes=attrs or ["*", "pwdAccountLockedTime"]
        )
        if not ok:
            return None
        return _present(conn.entries[0].entry_attributes_as_dict)
    finally:
        conn.unbind()


def _present(attrs: dict[str, Any]) -> dict[str, list[str]]:
    """Attributes with values (ldap3 lists a requested but absent attribute as [])."""
    return {k: [str(v) for v in vals] for k, vals in attrs.items() if vals}


def by_person(plan: dict[str, Any]) -> dict[str | None, str]:
    return {a["person_id"] or a["account_id"].split(",")[0]: a["op"] for a in plan["actions"]}


def test_plan_apply_then_plan_is_empty(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_json(demo, capsys)
    assert by_person(plan) == {
        "P1001": "create",
        "P1002": "create",
        "P1003": "disable",
        "P1004": "disable",
        "P1005": "update",
        "P1007": "enable",
        "P1008": "disable",
        "uid=oldtemp": "disable",
    }
    assert plan["summary"]["create"] == 2
    assert plan["summary"]["disable"] == 4
    assert plan["held"] == []
    reasons = {
        a["person_id"]: {r["code"]: r["clause"] for r in a["reasons"]} for a in plan["actions"]
    }
    assert reasons["P1003"]["data_sharing_ended"] == "3.e.vii"
    assert "separated" in reasons["P1004"]
    assert "disabled_by_request" in reasons["P1008"]
    assert "late_notice_disable" in reasons["P1008"]
    assert {b["person_id"] for b in plan["breaches"] if b["severity"] == "breach"} == {
        "P1003",
        "P1004",
        "P1008",
    }
    assert [(r["file"], r["line"], r["column"]) for r in plan["rejected"]] == [
        ("training.csv", 11, "completed_on")
    ]

    code, out = run(demo, "apply", capsys=capsys)
    assert code == 0, out

    scope = demo["scope"]
    aortiz = entry(scope, "aortiz")
    assert aortiz is not None
    assert aortiz["employeeNumber"] == ["P1001"]
    assert sorted(aortiz["physicalDeliveryOfficeName"]) == ["Bellevue", "Seattle Downtown"]
    assert "pwdAccountLockedTime" not in aortiz
    for uid in ("cnguyen", "dpatel", "hruiz", "oldtemp"):
        e = entry(scope, uid)
        assert e is not None and e.get("pwdAccountLockedTime"), uid  # disabled, never deleted
    gkim = entry(scope, "gkim")
    assert gkim is not None and "pwdAccountLockedTime" not in gkim
    ewalsh = entry(scope, "ewalsh")
    assert ewalsh is not None and ewalsh["employeeType"] == ["supervisor"]
    svc = entry_outside(scope, "etl-batch")
    assert svc is not None and "pwdAccountLockedTime" not in svc

    again = plan_json(demo, capsys)
    assert again["actions"] == []
    assert again["held"] == []
    assert main(["-c", str(demo["config"]), "plan", "--detailed-exitcode"]) == 0


def entry_outside(scope: Any, uid: str) -> dict[str, list[str]] | None:
    ldap = scope.settings
    conn = ldap3.Connection(
        ldap3.Server(ldap.url), ldap.bind_dn, ldap.bind_password(), auto_bind=True
    )
    try:
        conn.search(
            f"uid={uid},{scope.outside_dn}",
            "(objectClass=*)",
            ldap3.BASE,
            attributes=["*", "pwdAccountLockedTime"],
        )
        return _present(conn.entries[0].entry_attributes_as_dict)
    finally:
        conn.unbind()


def test_reviewed_plan_applies_exactly_and_refuses_drift(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = demo["tmp"] / "plan.json"
    code, _ = run(demo, "plan", "-o", str(path), capsys=capsys)
    assert code == 0

    # someone edits an account the plan touches
    ldap = demo["scope"].settings
    conn = ldap3.Connection(
        ldap3.Server(ldap.url), ldap.bind_dn, ldap.bind_password(), auto_bind=True
    )
    conn.modify(
        f"uid=ewalsh,{demo['scope'].people_dn}", {"sn": [(ldap3.MODIFY_REPLACE, ["Walsh-Smith"])]}
    )
    conn.unbind()

    code, _ = run(demo, "apply", "--plan", str(path), capsys=capsys)
    err = demo["last_err"]
    assert code == 5
    assert "ewalsh" in err and "changed since the plan was made" in err
    dpatel = entry(demo["scope"], "dpatel")
    assert dpatel is not None and "pwdAccountLockedTime" not in dpatel  # nothing applied

    # a fresh plan, reviewed and applied as is
    code, _ = run(demo, "plan", "-o", str(path), capsys=capsys)
    assert code == 0
    code, out = run(demo, "apply", "--plan", str(path), capsys=capsys)
    assert code == 0, out + err
    assert plan_json(demo, capsys)["actions"] == []


def test_altered_plan_file_is_refused(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = demo["tmp"] / "plan.json"
    assert run(demo, "plan", "-o", str(path), capsys=capsys)[0] == 0
    body = json.loads(path.read_text())
    body["actions"] = [a for a in body["actions"] if a["op"] != "disable"]
    path.write_text(json.dumps(body))
    assert run(demo, "apply", "--plan", str(path), capsys=capsys)[0] == 5
    assert "checksum mismatch" in demo["last_err"]


def _grant_admin_to_ewalsh(plan: Any) -> Any:
    """P1005's update, edited to put her in a group no profile of hers maps to."""
    import dataclasses

    from connector.model import ChangeKind

    def edit(a: Any) -> Any:
        if a.person_id != "P1005":
            return a
        changes = tuple(
            dataclasses.replace(c, new=("mis-admin",)) if c.kind is ChangeKind.GROUPS else c
            for c in a.changes
        )
        desired = dataclasses.replace(a.desired, groups=frozenset({"mis-admin"}))
        return dataclasses.replace(a, changes=changes, desired=desired)

    return dataclasses.replace(plan, actions=tuple(edit(a) for a in plan.actions))


def _reenable_cnguyen(plan: Any) -> Any:
    """P1003's disable (her data-sharing contract ended), turned into an enable."""
    import dataclasses

    from connector.model import Op

    return dataclasses.replace(
        plan,
        actions=tuple(
            dataclasses.replace(a, op=Op.ENABLE) if a.person_id == "P1003" else a
            for a in plan.actions
        ),
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(_grant_admin_to_ewalsh, "P1005: update", id="extra-group"),
        pytest.param(_reenable_cnguyen, "P1003: enable", id="enable-after-contract-end"),
    ],
)
def test_an_edited_plan_sealed_again_is_refused(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str], edit: Any, message: str
) -> None:
    """The checksum only shows the file was not changed after sealing; anyone who can
    write the file can seal it again. The plan must still be what the policy gives now."""
    from connector.reconcile import plan_from_json, plan_to_json, seal

    path = demo["tmp"] / "plan.json"
    assert run(demo, "plan", "-o", str(path), capsys=capsys)[0] == 0
    path.write_text(plan_to_json(seal(edit(plan_from_json(path.read_text())))))
    assert run(demo, "apply", "--plan", str(path), capsys=capsys)[0] == 5
    err = demo["last_err"]
    assert "not what Policy 1021 gives now" in err
    assert message in err
    dpatel = entry(demo["scope"], "dpatel")
    assert dpatel is not None and "pwdAccountLockedTime" not in dpatel  # nothing applied


def test_apply_can_pin_the_approved_checksum(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = demo["tmp"] / "plan.json"
    assert run(demo, "plan", "-o", str(path), capsys=capsys)[0] == 0
    approved = json.loads(path.read_text())["checksum"]
    wrong = "sha256:" + "0" * 64
    assert run(demo, "apply", "--plan", str(path), "--checksum", wrong, capsys=capsys)[0] == 5
    assert f"not the approved {wrong}" in demo["last_err"]
    assert run(demo, "apply", "--plan", str(path), "--checksum", approved, capsys=capsys)[0] == 0


def test_mass_disable_guard_holds_orphans_until_overridden(
    demo: dict[str, Any], slapd: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    people = demo["scope"].people_dn
    slapd.add_ldif(
        "\n".join(
            f"dn: uid=stray{i},{people}\nobjectClass: inetOrgPerson\nuid: stray{i}\n"
            f"cn: Stray {i}\nsn: Stray\nemployeeNumber: X{i}\n"
            for i in range(30)
        )
    )
    plan = plan_json(demo, capsys)
    held = [h for h in plan["held"] if h["code"] == "mass_disable_guard"]
    assert len(held) == 31  # 30 strays + the demo's orphan
    assert "P1004" in {a["person_id"] for a in plan["actions"]}  # evidenced disables go ahead

    assert run(demo, "apply", capsys=capsys)[0] == 4  # held actions: incomplete
    stray = entry(demo["scope"], "stray0")
    assert stray is not None and "pwdAccountLockedTime" not in stray
    dpatel = entry(demo["scope"], "dpatel")
    assert dpatel is not None and dpatel.get("pwdAccountLockedTime")

    assert run(demo, "apply", "--override-guard", capsys=capsys)[0] == 0
    stray = entry(demo["scope"], "stray0")
    assert stray is not None and stray.get("pwdAccountLockedTime")


def test_missing_feed_blocks_what_it_drives(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (demo["feeds"] / "contracts.csv").unlink()
    plan = plan_json(demo, capsys)
    ops = by_person(plan)
    assert ops.get("P1004") == "disable"  # separation: another feed drives it
    assert ops.get("P1008") == "disable"  # disable request
    assert "P1001" not in ops  # without contracts nobody is entitled: nothing is created
    assert "P1003" not in ops
    held = {h["action"]["person_id"]: h["code"] for h in plan["held"]}
    assert held["P1003"] == "feed_unhealthy"  # only the (missing) contracts feed explains it
    assert [f["state"] for f in plan["feeds"] if f["feed"] == "contracts"] == ["missing"]


def test_one_bad_account_does_not_stop_the_run(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    workers = demo["feeds"] / "workers.csv"
    # mail is IA5String in the LDAP schema: slapd refuses a non-ASCII value
    workers.write_text(workers.read_text().replace("ben.lee@example.org", "bén.lee@example.org"))
    code, out = run(demo, "apply", capsys=capsys)
    assert code == 4
    assert "FAILED create" in out
    assert entry(demo["scope"], "blee") is None
    assert entry(demo["scope"], "aortiz") is not None  # the rest was applied
    plan = plan_json(demo, capsys)
    assert by_person(plan) == {"P1002": "create"}


def test_explain_lists_every_reason(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(demo, "explain", "P1006", "--format", "json", capsys=capsys)
    assert code == 0
    body = json.loads(out)
    assert body["entitled"] is False
    assert [r["code"] for r in body["reasons"]] == ["training_missing"]
    assert body["reasons"][0]["clause"] == "3.a.iii"
    code, out = run(demo, "explain", "P1003", capsys=capsys)
    assert "3.e.vii" in out and "DS-0417" in out and "contracts.csv line 7" in out
    assert run(demo, "explain", "NOBODY", capsys=capsys)[0] == 2


def test_audit_trail_verifies_and_detects_tampering(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(demo, "apply", capsys=capsys)[0] == 0
    code, out = run(demo, "audit", "verify", capsys=capsys)
    assert code == 0, out
    assert "intact" in out
    import sqlite3

    db = sqlite3.connect(demo["tmp"] / "state" / "audit.sqlite3")
    db.execute(
        "update records set data = replace(data, 'disable', 'enable') where kind = 'operation'"
    )
    db.commit()
    db.close()
    code, out = run(demo, "audit", "verify", capsys=capsys)
    assert code == 6
    assert "ALTERED" in out


def test_as_of_evaluates_at_another_instant(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    before_end = plan_json(demo, capsys, "--as-of", "2026-06-30T23:00:00-07:00")
    assert before_end["as_of"] == "2026-06-30T23:00:00-07:00"
    assert "P1003" not in by_person(before_end)  # DS-0417 still in force that evening
    after_end = plan_json(demo, capsys, "--as-of", "2026-07-01T00:00:00-07:00")
    assert by_person(after_end)["P1003"] == "disable"


def test_run_logs_are_json_lines_with_run_id(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(demo, "apply", capsys=capsys)[0] == 0
    events = [json.loads(line) for line in demo["last_err"].splitlines() if line.startswith("{")]
    ops = [e for e in events if e["event"] == "operation.ok"]
    assert len(ops) == 8
    assert len({e["run_id"] for e in ops}) == 1
    assert all(
        "mail" not in json.dumps(e) and "@" not in json.dumps(e) for e in events
    )  # no emails
    assert any(e["event"] == "decision.changed" for e in events)
    assert any(e["event"] == "breach.closed" for e in events)


def test_audit_export_for_auditors(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(demo, "apply", capsys=capsys)[0] == 0
    out = demo["tmp"] / "audit.csv"
    assert run(demo, "audit", "export", "--format", "csv", "-o", str(out), capsys=capsys)[0] == 0
    text = out.read_text()
    assert text.startswith(
        "seq,at,kind,run_id,op,person_id,account_id,outcome,code,reason_codes,prev,hash,data"
    )
    assert text.count("\n") > 10


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[policy]\ntimezone = "Mars/Olympus"\n[target.ldap]\nbase_dn = "x"\n', "policy.timezone"),
        ('[target.ldap]\nbase_dn = "x"\nbogus = 1\n', "target.ldap.bogus"),
        ("[target]\nkind = 'ldap'\n", "target.ldap.base_dn"),
        (
            '[target]\nkind = "scim"\nmapping = "{root}/mappings/scim-core.toml"\n'
            '[target.scim]\nbase_url = "http://127.0.0.1:1/v2"\nfilter = "externalId pr and"\n',
            "target.scim.filter: 'externalId pr and' is not a SCIM filter: invalid syntax at column",
        ),
        (
            '[target]\nkind = "scim"\nmapping = "{root}/mappings/openldap-ppolicy.toml"\n'
            '[target.scim]\nbase_url = "http://127.0.0.1:1/v2"\n',
            "is a ldap mapping but target.kind is 'scim'",
        ),
    ],
)
def test_bad_configuration_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, message: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml.replace("{root}", str(ROOT)))
    assert main(["-c", str(cfg), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err
    assert message in err
    assert "Traceback" not in err


def test_quarantine_list_and_release(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.settings import load_settings
    from connector.state import StateStore

    with StateStore(load_settings(demo["config"]).state.db) as store:
        for _ in range(3):
            store.record_failure("person:P1001", NOW, "objectClassViolation")
    plan = plan_json(demo, capsys)
    assert [h["code"] for h in plan["held"] if h["action"]["person_id"] == "P1001"] == [
        "quarantined"
    ]
    code, out = run(demo, "quarantine", "list", capsys=capsys)
    assert code == 0
    assert "person:P1001\tobjectClassViolation" in out
    assert run(demo, "quarantine", "release", "person:P1001", capsys=capsys)[0] == 0
    assert by_person(plan_json(demo, capsys))["P1001"] == "create"
    # an alias of `held approve quarantined:person:P1001`: audited, and once is enough
    assert run(demo, "quarantine", "release", "person:P1001", capsys=capsys)[0] == 2
    assert "already approved" in demo["last_err"]
    db = sqlite3.connect(demo["tmp"] / "state" / "audit.sqlite3")
    (data,) = db.execute("select data from records where kind = 'held'").fetchone()
    db.close()
    assert json.loads(data)["event"] == "approve"
    assert json.loads(data)["reason"] == "quarantine release"


def test_groups_without_a_group_base_is_a_config_error(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = demo["config"]
    cfg.write_text(
        "\n".join(
            line for line in cfg.read_text().splitlines() if not line.startswith("group_base_dn")
        )
    )
    assert main(["-c", str(cfg), "plan"]) == 2
    assert "target.ldap.group_base_dn: required because the mapping" in capsys.readouterr().err


def test_a_second_apply_on_the_same_state_is_refused(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.settings import load_settings
    from connector.state import state_lock

    with state_lock(load_settings(demo["config"]).state.dir):  # another run, in progress
        assert run(demo, "apply", capsys=capsys)[0] == 7
    assert "another misync run holds the state folder" in demo["last_err"]
    dpatel = entry(demo["scope"], "dpatel")
    assert dpatel is not None and "pwdAccountLockedTime" not in dpatel  # nothing was done
    assert run(demo, "apply", capsys=capsys)[0] == 0  # released with the holder


def test_a_crashed_run_is_closed_as_interrupted_and_audited(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run killed between "about to touch the directory" and "here is what happened"
    leaves an open journal entry; the next run closes it, says so in the audit trail,
    and converges from a fresh read."""
    from connector.settings import load_settings
    from connector.state import StateStore

    settings = load_settings(demo["config"])
    with StateStore(settings.state.db) as store:
        store.start_run("crashed1", "apply", NOW, None)
        store.journal_begin("crashed1", "uid=dpatel", "disable", "P1004", "uid=dpatel", {})
    assert run(demo, "apply", capsys=capsys)[0] == 0
    with StateStore(settings.state.db) as store:
        assert store.open_journal_entries() == []
        (crashed,) = [r for r in store.runs() if r.run_id == "crashed1"]
        assert crashed.status == "interrupted"
        assert [e.outcome for e in store.journal("crashed1")] == ["interrupted"]
    out = demo["tmp"] / "audit.jsonl"
    assert run(demo, "audit", "export", "--format", "jsonl", "-o", str(out), capsys=capsys)[0] == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    data = [r["data"] for r in records if r["kind"] == "operation"]  # objects (issue 13.11)
    assert {"outcome": "interrupted", "interrupted_run": "crashed1"}.items() <= next(
        d for d in data if d.get("outcome") == "interrupted"
    ).items()
    assert run(demo, "audit", "verify", capsys=capsys)[0] == 0
    assert plan_json(demo, capsys)["actions"] == []


def test_breaches_are_recorded_before_the_directory_is_touched(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that dies while applying still leaves the evidence that deadlines were missed."""
    from connector.executor import Executor
    from connector.settings import load_settings
    from connector.state import StateStore

    def killed(*_: object) -> None:
        raise KeyboardInterrupt  # the process is stopped mid-run

    monkeypatch.setattr(Executor, "apply", killed)
    assert run(demo, "apply", capsys=capsys)[0] == 130
    db = load_settings(demo["config"]).state.db
    with StateStore(db) as store:
        opened = {row.person_id for row in store.open_breaches().values()}
    assert opened == {"P1003", "P1004", "P1008"}

    monkeypatch.undo()
    assert run(demo, "apply", capsys=capsys)[0] == 0
    with StateStore(db) as store:
        assert store.open_breaches() == {}


def test_a_truncated_trail_stops_the_next_apply_before_anything(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The head anchor (HMAC-keyed here, key outside the state folder) is checked before a
    run starts: a later run cannot launder a truncation by writing a new head."""
    import sqlite3

    from connector.settings import load_settings
    from connector.state import StateStore

    key = demo["tmp"] / "audit-key"
    key.write_text("a secret kept outside the state folder\n")
    cfg = demo["config"]
    cfg.write_text(cfg.read_text() + f'\n[audit]\nkey_file = "{key}"\n')
    assert run(demo, "apply", capsys=capsys)[0] == 0
    assert run(demo, "audit", "verify", capsys=capsys)[0] == 0

    db = sqlite3.connect(demo["tmp"] / "state" / "audit.sqlite3")
    db.execute("delete from records where seq = (select max(seq) from records)")
    db.commit()
    db.close()
    with StateStore(load_settings(cfg).state.db) as store:
        runs_before = len(store.runs())
    assert run(demo, "apply", capsys=capsys)[0] == 6
    assert "does not match its head anchor" in demo["last_err"]
    with StateStore(load_settings(cfg).state.db) as store:
        assert len(store.runs()) == runs_before  # nothing was started
    assert run(demo, "audit", "verify", capsys=capsys)[0] == 6


@pytest.mark.parametrize(
    ("args", "code", "event"),
    [
        pytest.param(("plan",), 0, "plan.made", id="plan"),
        pytest.param(("explain", "P1003"), 0, "feed.row_rejected", id="explain"),
        pytest.param(("apply",), 0, "run.finished", id="apply"),
        pytest.param(("apply", "--checksum", "sha256:x"), 2, "command.refused", id="refused"),
    ],
)
def test_every_command_logs_json_lines_with_one_run_id(
    demo: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    code: int,
    event: str,
) -> None:
    """journald gets one JSON event per line, all of one run, with no secret and no email;
    besides them, at most the one-line message for the operator."""
    assert run(demo, *args, capsys=capsys)[0] == code
    lines = demo["last_err"].splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    others = [line for line in lines if not line.startswith("{")]
    assert len(others) <= 1 and all(line.startswith("misync: ") for line in others)
    assert len({e["run_id"] for e in events}) == 1
    assert {e["command"] for e in events} == {args[0]}
    assert event in {e["event"] for e in events}
    password = demo["scope"].settings.bind_password()
    assert password not in demo["last_err"]
    assert "@" not in demo["last_err"]
