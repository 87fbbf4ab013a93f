"""A world for the chaos tests: the demo feeds plus a crowd of entitled people (so that
an apply has enough writes to be interrupted), a slapd branch seeded with the demo's
accounts, a configuration, misync as a real subprocess, and the invariants every chaos
case checks afterwards."""

from __future__ import annotations

import collections
import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap3

from tests.configs import ldap_toml

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"


def _rows(data: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data, newline="")))


def write_crowd_feeds(folder: Path, crowd: int) -> None:
    """The demo feeds plus ``crowd`` people entitled exactly as P1001 is."""
    folder.mkdir(parents=True, exist_ok=True)
    for src in sorted((DEMO / "feeds").glob("*.csv")):
        table = _rows(src.read_text(encoding="utf-8"))
        template = [r for r in table[1:] if "P1001" in r]
        for i in range(crowd):
            pid = f"P8{i:04d}"
            for r in template:
                row = [v.replace("P1001", pid).replace("REQ-001", f"REQ-8{i:04d}") for v in r]
                table.append([v.replace("ana.ortiz@", f"p8{i:04d}@") for v in row])
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(table)
        (folder / src.name).write_text(out.getvalue(), encoding="utf-8")


@dataclass
class World:
    tmp: Path
    config: Path
    state: Path
    url: str
    bind_dn: str
    password: str
    people: str

    def misync(
        self,
        *args: str,
        timeout: float = 300,
        env: dict[str, str] | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "connector.cli", "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            check=False,
        )
        if check and proc.returncode not in (0, 4):
            raise AssertionError(
                f"misync {' '.join(args)}: {proc.returncode}\n{proc.stderr[-3000:]}"
            )
        return proc

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """misync in the background; its output goes to files (a pipe nobody reads would
        fill up and block it)."""
        n = len(list(self.tmp.glob("spawn-*.out")))
        return subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "-c", str(self.config), *args],
            stdout=(self.tmp / f"spawn-{n}.out").open("w"),
            stderr=(self.tmp / f"spawn-{n}.err").open("w"),
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )

    # -- invariants ------------------------------------------------------------------

    def journal_and_audit(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with sqlite3.connect(self.state / "state.sqlite3") as db:
            journal = [
                {"id": r[0], "op": r[1], "person_id": r[2], "outcome": r[3]}
                for r in db.execute("select id, op, person_id, outcome from journal order by id")
            ]
        with sqlite3.connect(self.state / "audit.sqlite3") as db:
            ops = [
                json.loads(r[0])
                for r in db.execute(
                    "select data from records where kind = 'operation' order by seq"
                )
            ]
        return journal, ops

    def accounts(self) -> list[dict[str, Any]]:
        if self.url.startswith("http"):  # SCIM: every user, paged
            import httpx2

            users: list[dict[str, Any]] = []
            with httpx2.Client(headers={"Authorization": f"Bearer {self.password}"}) as http:
                while True:
                    page = http.get(
                        f"{self.url}/Users", params={"startIndex": len(users) + 1, "count": 500}
                    ).json()
                    users += page.get("Resources", [])
                    if len(users) >= page["totalResults"] or not page.get("Resources"):
                        break
            return [
                {"uid": [u["userName"]], "employeeNumber": [u.get("externalId")]} for u in users
            ]
        conn = ldap3.Connection(
            ldap3.Server(self.url, get_info=ldap3.NONE),
            self.bind_dn,
            self.password,
            auto_bind=True,
            raise_exceptions=True,
        )
        try:
            entries = conn.extend.standard.paged_search(
                self.people,
                "(objectClass=inetOrgPerson)",
                ldap3.LEVEL,
                attributes=["uid", "employeeNumber"],
                paged_size=500,
                generator=False,
            )
            return [dict(e["attributes"]) for e in entries if e.get("type") == "searchResEntry"]
        finally:
            conn.unbind()

    def check(self) -> None:
        """After a recovery run: nothing open, the journal and the audit trail agree one
        to one, the trail verifies, no duplicate account, and the next plan has no action."""
        journal, ops = self.journal_and_audit()
        assert [j for j in journal if j["outcome"] is None] == [], "open journal entries"
        key = lambda d: (d["op"], d["person_id"], d["outcome"])  # noqa: E731
        assert collections.Counter(map(key, journal)) == collections.Counter(map(key, ops)), (
            "journal and audit trail disagree (op, person, outcome)"
        )
        by_entry = collections.Counter(o.get("journal") for o in ops)
        assert by_entry == collections.Counter(j["id"] for j in journal), (
            "journal and audit trail disagree (by entry)"
        )
        audited = {o["journal"]: key(o) for o in ops}
        assert {j["id"]: key(j) for j in journal} == audited, "outcomes disagree"
        verify = self.misync("audit", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        accounts = self.accounts()
        for attr in ("uid", "employeeNumber"):
            values = [str(v).lower() for a in accounts for v in (a.get(attr) or [])]
            dupes = [v for v, n in collections.Counter(values).items() if n > 1]
            assert dupes == [], f"duplicate {attr}: {dupes}"
        plan = self.misync("plan", "--format", "json")
        assert plan.returncode == 0, plan.stderr[-3000:]
        # converged: nothing left to do (held actions, e.g. an account someone else
        # disabled, stay held run after run and are not the chaos' doing)
        assert json.loads(plan.stdout)["actions"] == [], plan.stdout[-3000:]


def make_scim_world(tmp: Path, *, url: str, token: str, crowd: int, timeout: float) -> World:
    feeds = tmp / "feeds"
    write_crowd_feeds(feeds, crowd)
    secret = tmp / "scim-token"
    secret.write_text(token + "\n", encoding="utf-8")
    state = tmp / "state"
    cfg = tmp / "misync.toml"
    cfg.write_text(
        f"""
[feeds]
dir = "{feeds}"
mapping = "{ROOT / "mappings" / "feeds.toml"}"
max_age_hours = 0

[target]
kind = "scim"
mapping = "{ROOT / "mappings" / "scim-core.toml"}"

[target.scim]
base_url = "{url}"
token_file = "{secret}"
timeout = {timeout}

[guard]
max_unexplained_share = 0.5

[apply]
backoff_seconds = 0.05
backoff_max_seconds = 0.5
commit_batch = 5
max_attempts = 6

[state]
dir = "{state}"
""",
        encoding="utf-8",
    )
    return World(tmp, cfg, state, url, "", token, "")


def make_world(
    tmp: Path,
    *,
    url: str,
    bind_dn: str,
    password: str,
    people: str,
    groups: str,
    crowd: int,
    extra: str = "",
) -> World:
    feeds = tmp / "feeds"
    write_crowd_feeds(feeds, crowd)
    secret = tmp / "ldap-password"
    secret.write_text(password + "\n", encoding="utf-8")
    state = tmp / "state"
    cfg = tmp / "misync.toml"
    cfg.write_text(
        f"""
{ldap_toml(feeds=feeds, url=url, bind_dn=bind_dn, password_file=secret, base_dn=people, group_base_dn=groups)}
connect_timeout = 5
receive_timeout = 10

[guard]
max_unexplained_share = 0.5

[apply]
backoff_seconds = 0.05
backoff_max_seconds = 0.5
commit_batch = 5

[state]
dir = "{state}"
{extra}
""",
        encoding="utf-8",
    )
    return World(tmp, cfg, state, url, bind_dn, password, people)


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
