"""State store and audit trail (SQLite): logon IDs for life, crash-safe journal, breaches,
quarantine counts, and a hash chain that catches every kind of tampering."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.audit import AuditTrail, record_hash
from connector.state import LogonIdConflictError, StateStore

T0 = datetime(2026, 11, 25, 17, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state" / "state.sqlite3")


@pytest.mark.parametrize(
    ("reservations", "conflict"),
    [
        ([("P1", "alee"), ("P1", "alee")], None),
        ([("P1", "alee"), ("P1", "ALEE")], None),
        ([("P1", "alee"), ("P2", "alee")], "belongs to P1"),
        ([("P1", "alee"), ("P2", "ALee")], "belongs to P1"),
        ([("P1", "alee"), ("P1", "annlee")], "already holds logon ID alee"),
    ],
)
def test_logon_ids_unique_and_for_life(
    store: StateStore, reservations: list[tuple[str, str]], conflict: str | None
) -> None:
    *first, last = reservations
    for pid, logon in first:
        store.reserve_logon_id(pid, logon)
    if conflict is None:
        store.reserve_logon_id(*last)
    else:
        with pytest.raises(LogonIdConflictError, match=conflict):
            store.reserve_logon_id(*last)
    assert store.logon_ids() == {"P1": "alee"}
    assert store.taken_logon_ids() == {"alee"}


def test_files_are_private(tmp_path: Path) -> None:
    StateStore(tmp_path / "s" / "state.sqlite3").close()
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "s" / "state.sqlite3").stat().st_mode & 0o777 == 0o600


def test_journal_survives_a_crash_between_begin_and_end(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    code = (
        "import os, sys\nfrom pathlib import Path\nfrom connector.state import StateStore\n"
        f"s = StateStore(Path({str(db)!r}))\n"
        "s.journal_begin('run1', 'uid=a', 'disable', 'P1', 'uid=a', {'why': 'separated'})\n"
        "os._exit(1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == 1
    with StateStore(db) as s:
        (entry,) = s.open_journal_entries()
        assert (entry.run_id, entry.key, entry.op, entry.payload) == (
            "run1",
            "uid=a",
            "disable",
            {"why": "separated"},
        )
        s.journal_end(entry.id, "ok", None, "")
        assert s.open_journal_entries() == []
        assert s.journal("run1")[0].outcome == "ok"


def test_feed_rows_decisions_and_runs(store: StateStore) -> None:
    store.record_feed_rows("r1", {"workers": 100})
    store.record_feed_rows("r2", {"workers": 90, "ndas": 5})
    assert store.last_good_feed_rows() == {"workers": 90, "ndas": 5}
    store.record_decision_digests({f"P{i}": "x" for i in range(100_000)})
    store.record_decision_digests({"P1": "y"})
    digests = store.decision_digests()
    assert len(digests) == 100_000
    assert digests["P1"] == "y"
    store.start_run("r1", "apply", T0, "sha256:abc")
    assert [r.run_id for r in store.unfinished_runs()] == ["r1"]
    store.finish_run("r1", "ok", {"create": 2})
    assert store.unfinished_runs() == []
    assert store.runs(1)[0].summary == {"create": 2}


def test_breach_lifecycle(store: StateStore) -> None:
    store.open_breach("uid=a", "P1", T0, "breach", "separated", T0)
    store.open_breach("uid=a", "P1", T0, "breach", "separated", T0)  # idempotent while open
    assert list(store.open_breaches()) == ["uid=a"]
    store.close_breach("uid=a", T0, "disabled")
    assert store.open_breaches() == {}
    store.open_breach("uid=a", "P1", T0, "breach", "separated", T0)  # may open again later
    assert list(store.open_breaches()) == ["uid=a"]


def test_failures_quarantine_after_threshold(store: StateStore) -> None:
    assert [store.record_failure("uid=a", T0, f"try {i}") for i in range(3)] == [1, 2, 3]
    assert store.quarantined(3) == {"uid=a": "try 2"}
    assert store.quarantined(4) == {}
    store.clear_failure("uid=a")
    assert store.quarantined(1) == {}


# -- audit trail ------------------------------------------------------------------------


@pytest.fixture
def trail(tmp_path: Path) -> AuditTrail:
    t = AuditTrail(tmp_path / "audit.sqlite3")
    t.append_many(
        [("operation", {"op": "disable", "n": i}) for i in range(1, 6)], run_id="r1", at=T0
    )
    return t


def _sql(t: AuditTrail, statement: str) -> None:
    db = sqlite3.connect(t.path)
    db.execute(statement)
    db.commit()
    db.close()


TAMPERING: list[tuple[str, Callable[[AuditTrail], None], str]] = [
    (
        "edit data",
        lambda t: _sql(
            t, "update records set data = replace(data, 'disable', 'enable') where seq = 3"
        ),
        "seq 3: content does not match its hash",
    ),
    (
        "edit time",
        lambda t: _sql(t, "update records set at = '2020-01-01T00:00:00+00:00' where seq = 2"),
        "seq 2: content does not match",
    ),
    (
        "delete middle",
        lambda t: _sql(t, "delete from records where seq = 3"),
        "seq 4: expected seq 3",
    ),
    (
        "delete tail",
        lambda t: _sql(t, "delete from records where seq = 5"),
        "the head anchor says seq 5",
    ),
    (
        "swap order",
        lambda t: (
            _sql(t, "update records set seq = 100 where seq = 2"),
            _sql(t, "update records set seq = 2 where seq = 3"),
            _sql(t, "update records set seq = 3 where seq = 100"),
        ),
        "does not chain",
    ),
    (
        "forged record",
        lambda t: _sql(
            t,
            "insert into records values (6, 'x', 'operation', 'r9', '{}', '"
            + "0" * 64
            + "', '"
            + record_hash(6, "x", "operation", "r9", "{}", "0" * 64)
            + "')",
        ),
        "seq 6: does not chain",
    ),
    ("corrupt head", lambda t: t.head_path.write_text("{"), "is corrupt"),
    ("missing head", lambda t: t.head_path.unlink(), "is missing"),
]


def test_intact_trail_verifies(trail: AuditTrail) -> None:
    result = trail.verify()
    assert (result.ok, result.records, result.head_seq, result.problems) == (True, 5, 5, ())


@pytest.mark.parametrize(("tamper", "problem"), [pytest.param(f, p, id=n) for n, f, p in TAMPERING])
def test_tampering_is_detected(
    trail: AuditTrail, tamper: Callable[[AuditTrail], None], problem: str
) -> None:
    tamper(trail)
    result = AuditTrail(trail.path).verify()
    assert not result.ok
    assert any(problem in p for p in result.problems), result.problems


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_can_be_verified_without_misync(trail: AuditTrail, fmt: str) -> None:
    out = io.StringIO()
    assert trail.export(out, fmt) == 5
    out.seek(0)
    rows = list(csv.DictReader(out)) if fmt == "csv" else [json.loads(line) for line in out]
    prev = "0" * 64
    for row in rows:
        if fmt == "jsonl":  # an object; its canonical JSON is the text that was hashed
            assert isinstance(row["data"], dict)
            data = json.dumps(row["data"], sort_keys=True, separators=(",", ":"))
        else:  # the last column, exactly as hashed
            data = row["data"]
        body = "\n".join(
            [str(row["seq"]), row["at"], row["kind"], row["run_id"], data, row["prev"]]
        )
        assert row["prev"] == prev
        assert hashlib.sha256(body.encode()).hexdigest() == row["hash"]
        prev = row["hash"]


@pytest.mark.parametrize(
    ("kind", "data", "columns"),
    [
        (
            "operation",
            {
                "op": "enable",
                "person_id": "P1007",
                "account_id": "uid=gkim",
                "outcome": "failed",
                "code": "not_effective",
                "reasons": [{"code": "entitled", "clause": "3.a"}, {"code": "x", "clause": ""}],
            },
            ["enable", "P1007", "uid=gkim", "failed", "not_effective", "entitled x"],
        ),
        (
            "decision",
            {"person_id": "P1004", "status": "ended", "reasons": [{"code": "separated"}]},
            ["", "P1004", "", "ended", "", "separated"],
        ),
        (
            "breach",
            {
                "account_id": "uid=hruiz",
                "person_id": "P1008",
                "state": "open",
                "reasons": "disabled_by_request,late_notice_disable",
            },
            ["", "P1008", "uid=hruiz", "open", "", "disabled_by_request late_notice_disable"],
        ),
        ("run", {"status": "incomplete", "summary": {"create": 1}}, ["", "", "", "incomplete"]),
        ("plan", {"checksum": "sha256:00", "summary": {}}, ["", "", "", ""]),
    ],
)
def test_export_csv_has_the_columns_auditors_filter_on(
    tmp_path: Path, kind: str, data: dict[str, object], columns: list[str]
) -> None:
    t = AuditTrail(tmp_path / "audit.sqlite3")
    t.append(kind, data, run_id="r9", at=T0)
    out = io.StringIO()
    t.export(out, "csv")
    out.seek(0)
    (row,) = list(csv.DictReader(out))
    expected = dict(
        zip(
            ("op", "person_id", "account_id", "outcome", "code", "reason_codes"),
            columns + [""] * (6 - len(columns)),
            strict=True,
        )
    )
    assert {k: row[k] for k in expected} == expected
    assert (row["kind"], row["run_id"], row["seq"]) == (kind, "r9", "1")
    header = out.getvalue().splitlines()[0].split(",")
    assert header[-1] == "data" and header[-3:-1] == ["prev", "hash"]
    assert json.loads(row["data"]) == data
    assert AuditTrail(t.path).verify().ok  # export only reads
