"""Run records (connector.records): what a run writes to the audit trail is what its
report reads back, and trails written by earlier versions still render and verify."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.app import Runtime
from connector.audit import AuditTrail
from connector.cli import main
from connector.model.accounts import Change, ChangeKind
from connector.model.plan import Op
from connector.records import read_run
from connector.runs import run_apply
from connector.settings import load_settings
from connector.testing import MemoryDirectory
from tests.unit.test_run_ordering import AS_OF, _enabled, _toml

OLD_RUN = "0ld5hape0001"

#: a run as an earlier misync wrote it: the plan record without the report's extras
#: (held actions, deadlines, rejected rows, feed health), and operation records whose
#: changes carry no ``kind``
OLD_RECORDS: list[tuple[str, dict[str, Any]]] = [
    (
        "plan",
        {
            "checksum": "sha256:" + "0" * 64,
            "as_of": "2026-11-25T09:00:00-08:00",
            "summary": {"create": 0, "update": 1, "disable": 0, "enable": 0, "held": 0},
            "target": "ldap://old.example ou=people,dc=mis,dc=example",
            "feeds": {"workers": "sha256:1"},
        },
    ),
    (
        "operation",
        {
            "journal": 1,
            "op": "update",
            "person_id": "P1005",
            "account_id": "uid=ewalsh,ou=people,dc=mis,dc=example",
            "logon_id": "ewalsh",
            "outcome": "ok",
            "attempts": 1,
            "detail": "",
            "plan": "sha256:" + "0" * 64,
            "reasons": [{"code": "changed", "clause": "3.b", "message": "new profile"}],
            "changes": [
                {"name": "title", "old": ["Clerk"], "new": ["Counselor"]},
                {"name": "groups", "old": ["cn=a"], "new": ["cn=a", "cn=b"]},
            ],
        },
    ),
    (
        "breach",
        {
            "account_id": "uid=x",
            "person_id": "P1003",
            "deadline": "2026-07-01T01:00:00-07:00",
            "reasons": "data_sharing_ended",
            "state": "open",
        },
    ),
    ("run", {"status": "ok", "summary": {"update_ok": 1, "failed": 0}}),
]


def _old_trail(rt: Runtime) -> None:
    with AuditTrail(rt.settings.state.audit_db) as trail:
        for kind, data in OLD_RECORDS:
            trail.append(kind, data, run_id=OLD_RUN)


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    directory = MemoryDirectory(description="memory://ou=people,dc=mis,dc=example")
    for n, pid in enumerate(("P1003", "P1004", "P9999")):
        directory.add(_enabled(pid, n))
    rt = Runtime(load_settings(_toml(tmp_path)), target_factory=directory.connect)
    rt.clock = lambda: AS_OF
    return rt


def test_an_operation_record_without_change_kinds_is_read_with_the_old_guess(
    rt: Runtime,
) -> None:
    _old_trail(rt)
    with AuditTrail(rt.settings.state.audit_db, read_only=True) as trail:
        records = [(r.kind, r.at, r.data) for r in trail.run_records(OLD_RUN)]
    run = read_run(records, OLD_RUN)
    (action,) = run.plan.actions
    assert action.op is Op.UPDATE
    assert action.changes == (
        Change(ChangeKind.ATTRIBUTE, "title", ("Clerk",), ("Counselor",)),
        Change(ChangeKind.GROUPS, "groups", ("cn=a",), ("cn=a", "cn=b")),
    )
    assert run.status == "ok" and not run.complete
    assert [b.account_id for b in run.plan.breaches] == ["uid=x"]  # from the breach record


def test_an_old_trail_renders_with_report_run_and_verifies(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _old_trail(rt)
    cfg = str(tmp_path / "misync.toml")
    out = tmp_path / "old.html"
    assert main(["-c", cfg, "report", "--run", OLD_RUN, "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "Counselor" in page and "cn=b" in page
    assert "predate" in page  # says what an old record cannot show
    assert main(["-c", cfg, "audit", "verify"]) == 0
    assert "intact" in capsys.readouterr().out


def test_what_a_run_writes_is_what_its_report_reads(rt: Runtime) -> None:
    result = run_apply(rt)
    with AuditTrail(rt.settings.state.audit_db, read_only=True) as trail:
        records = [(r.kind, r.at, r.data) for r in trail.run_records(result.run_id)]
    operations = [json.loads(d) for k, _, d in records if k == "operation"]
    assert operations and all("kind" in c for o in operations for c in o["changes"])
    run = read_run(records, result.run_id)
    assert run.complete and run.status == result.status
    # a create is recorded under the account id the directory gave it
    assert {(a.op, a.person_id, a.changes) for a in run.plan.actions} == {
        (o.action.op, o.action.person_id, o.action.changes) for o in result.report.outcomes
    }
    assert sorted(o.status for o in run.outcomes.values()) == sorted(
        o.status for o in result.report.outcomes
    )

    def deadlines(bs: Any) -> list[tuple[Any, ...]]:
        return [(b.account_id, b.deadline, b.severity, [r.code for r in b.reasons]) for b in bs]

    assert deadlines(run.plan.breaches) == deadlines(result.plan.breaches)
    assert run.plan.summary == result.plan.summary
