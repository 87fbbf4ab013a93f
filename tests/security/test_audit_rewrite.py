"""The audit trail against an attacker who can write the state folder and rebuilds the
trail wholesale with the public recipe (every record re-hashed, the head file
rewritten). Editing, deleting, inserting and reordering single records are covered in
tests/unit/test_audit_trail.py and test_state_audit.py; this covers what only a key
(``[audit] key_file``) or an anchor kept off the host (``--anchor SEQ:HASH``) can catch,
and that misync says so when neither is set."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector import cli
from connector.audit import UNKEYED_WARNING, AuditTrail, head_mac, record_hash
from tests.integration.test_end_to_end import run

T0 = datetime(2026, 11, 25, 17, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
KEY = b"0123456789abcdef0123456789abcdef"


def _rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return list(db.execute("select seq, at, kind, run_id, data from records order by seq"))


def rewrite_wholesale(path: Path, keep: Callable[[dict[str, Any]], bool]) -> tuple[int, str]:
    """Drop the records ``keep`` rejects, re-number and re-hash the rest with the public
    recipe, and write a head file that matches: what an attacker with write access to the
    state folder (and without the key) can do. Returns the forged head."""
    kept = [r for r in _rows(path) if keep(json.loads(r[4]))]
    prev, rebuilt = "0" * 64, []
    for seq, (_, at, kind, run_id, data) in enumerate(kept, start=1):
        h = record_hash(seq, at, kind, run_id, data, prev)
        rebuilt.append((seq, at, kind, run_id, data, prev, h))
        prev = h
    with sqlite3.connect(path) as db:
        db.execute("delete from records")
        db.executemany("insert into records values (?, ?, ?, ?, ?, ?, ?)", rebuilt)
    head = path.with_name(path.name + ".head")
    head.write_text(json.dumps({"seq": len(rebuilt), "hash": prev, "at": ""}), encoding="utf-8")
    return len(rebuilt), prev


def config(tmp_path: Path, key_file: Path | None) -> Path:
    cfg = tmp_path / "misync.toml"
    feeds = tmp_path / "feeds"
    feeds.mkdir(exist_ok=True)
    key = f'[audit]\nkey_file = "{key_file}"\n' if key_file else ""
    cfg.write_text(
        f'[feeds]\ndir = "{feeds}"\n'
        f'[target]\nkind = "ldap"\nmapping = "{ROOT / "mappings" / "openldap-ppolicy.toml"}"\n'
        '[target.ldap]\nbase_dn = "ou=people,dc=x"\ngroup_base_dn = "ou=groups,dc=x"\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n{key}',
        encoding="utf-8",
    )
    return cfg


@dataclass(frozen=True)
class Attack:
    keyed: bool
    tamper: str  # "rewrite" (drop a disable, re-hash), "rollback" or "delete"
    anchor: bool  # check with the genuine last head, kept off the host
    caught: bool
    message: str  # in `audit verify`'s output


ATTACKS = {
    "rewrite, no key, no anchor: undetectable (the documented gap)": Attack(
        False, "rewrite", False, False, UNKEYED_WARNING
    ),
    "rewrite, no key, external anchor": Attack(
        False, "rewrite", True, True, "the external anchor names seq 6"
    ),
    "rewrite, keyed head": Attack(True, "rewrite", False, True, "carries no mac"),
    "rollback to an older signed head, keyed, no anchor: undetectable": Attack(
        True, "rollback", False, False, "intact: 4 records"
    ),
    "rollback to an older signed head, keyed, external anchor": Attack(
        True, "rollback", True, True, "the external anchor names seq 6"
    ),
    "trail and head deleted, keyed, no anchor: undetectable": Attack(
        True, "delete", False, False, "the trail is empty"
    ),
    "trail and head deleted, keyed, external anchor": Attack(
        True, "delete", True, True, "the external anchor names seq 6"
    ),
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_a_trail_rebuilt_wholesale_needs_a_key_or_an_external_anchor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], attack: Attack
) -> None:
    key_file = None
    if attack.keyed:
        key_file = tmp_path / "credentials" / "audit.key"
        key_file.parent.mkdir()
        key_file.write_bytes(KEY)
    cfg = config(tmp_path, key_file)
    path = tmp_path / "state" / "audit.sqlite3"
    with AuditTrail(path, key=KEY if attack.keyed else None) as trail:
        trail.append_many(
            [("operation", {"op": "create", "n": n}) for n in (1, 2, 3)]
            + [("operation", {"op": "disable", "n": 4})],
            run_id="r1",
            at=T0,
        )
        older_head = path.with_name(path.name + ".head").read_bytes()
        trail.append_many([("operation", {"op": "create", "n": n}) for n in (5, 6)], run_id="r2")
        genuine = trail.head()  # what run.finished logged: audit_seq / audit_head
    assert genuine[0] == 6
    if attack.tamper == "rewrite":
        seq, forged = rewrite_wholesale(path, lambda d: d["op"] != "disable")
        assert seq == 5 and forged != genuine[1]
    elif attack.tamper == "rollback":  # the records after an older head dropped, head restored
        with sqlite3.connect(path) as db:
            db.execute("delete from records where seq > 4")
        path.with_name(path.name + ".head").write_bytes(older_head)
    else:
        with sqlite3.connect(path) as db:
            db.execute("delete from records")
        path.with_name(path.name + ".head").unlink()

    extra = ["--anchor", f"{genuine[0]}:{genuine[1]}"] if attack.anchor else []
    capsys.readouterr()
    code = cli.main(["-c", str(cfg), "audit", "verify", *extra])
    out = capsys.readouterr().out
    assert (code, attack.message in out) == (6 if attack.caught else 0, True), out


def test_a_keyed_trail_signs_every_head_it_writes(tmp_path: Path) -> None:
    """The key never enters the state folder; the head carries only its MAC."""
    path = tmp_path / "state" / "audit.sqlite3"
    with AuditTrail(path, key=KEY) as trail:
        last = trail.append("run", {"status": "ok"}, at=T0)
    head = json.loads(path.with_name(path.name + ".head").read_text())
    assert head["mac"] == head_mac(KEY, last.seq, last.hash)
    for f in (tmp_path / "state").iterdir():
        assert KEY not in f.read_bytes(), f


@pytest.mark.parametrize("keyed", [False, True], ids=["no key", "key"])
def test_config_check_says_when_a_rewrite_would_go_unseen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keyed: bool
) -> None:
    key_file = None
    if keyed:
        key_file = tmp_path / "audit.key"
        key_file.write_bytes(KEY)
    cfg = config(tmp_path, key_file)
    shutil.copytree(ROOT / "config" / "demo" / "feeds", tmp_path / "feeds", dirs_exist_ok=True)
    (tmp_path / "pw").write_text("x")
    text = cfg.read_text().replace(
        "[target.ldap]\n", f'[target.ldap]\npassword_file = "{tmp_path / "pw"}"\nbind_dn = "cn=x"\n'
    )
    cfg.write_text(text)
    capsys.readouterr()
    code = cli.main(["-c", str(cfg), "config", "check"])
    out = capsys.readouterr().out
    assert (code, UNKEYED_WARNING in out) == (0, not keyed), out


@pytest.mark.slapd
@pytest.mark.parametrize("keyed", [False, True], ids=["no key", "key"])
def test_every_apply_run_logs_the_gap_when_the_trail_has_no_key(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str], keyed: bool
) -> None:
    if keyed:
        key = demo["tmp"] / "audit.key"
        key.write_bytes(KEY)
        with demo["config"].open("a", encoding="utf-8") as f:
            f.write(f'\n[audit]\nkey_file = "{key}"\n')
    assert run(demo, "apply", capsys=capsys)[0] == 0
    events = [json.loads(line) for line in demo["last_err"].splitlines() if line.startswith("{")]
    unkeyed = [e for e in events if e["event"] == "audit.unkeyed"]
    assert [e["level"] for e in unkeyed] == ([] if keyed else ["warning"])
    finished = next(e for e in events if e["event"] == "run.finished")
    assert finished["audit_seq"] > 0 and len(finished["audit_head"]) == 64
