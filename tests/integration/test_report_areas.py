"""Per-area pages (issue 16): a world of three Workforce Development Areas on a real
slapd, every page loaded by a real headless Chromium.

WDA7, WDA8 and WDA9 each have an LWDB, a requester and their people. After a first run
creates everyone's account, the feeds change: a mover separates from WDA7's
organization and now works for WDA8's, a WDA7 person's request is re-filed by WDA8's
requester, and rows of every feed are rejected (a roster row with a bad email, a
separation with a bad date naming a WDA8 organization for a WDA9 person, a training, an
NDA, a contract, an organization, a requester designation and a request row), one of
them on a roster row whose organization is in no area. The seeded accounts of the demo
are orphans. Each area's plan page, reviewed-plan page and run pages (re-rendered after
the feeds change again: a transfer, a separation row removed) must list every item of
the area and nothing that identifies another area's people, with the area's counts.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connector import app
from tests.integration import test_end_to_end as e2e
from tests.integration.test_report import CHROMIUM, Dom, chromium, console_problems

# the demo fixture: slapd seeded with the demo's accounts (orphans here), instant pinned
demo, pinned_now, run = e2e.demo, e2e.pinned_now, e2e.run

pytestmark = [
    pytest.mark.slapd,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
]

AREAS = ("WDA7", "WDA8", "WDA9")
ORGS = {
    "O7": ("Harbor Works", "WDA7"),
    "O8": ("Valley Jobs", "WDA8"),
    "O9": ("Summit Careers", "WDA9"),
}


@dataclass(frozen=True)
class P:
    """A person of the world: what identifies them on a page."""

    pid: str
    given: str
    family: str
    org: str

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"

    @property
    def email(self) -> str:
        return f"{self.given.lower()}.{self.family.lower()}@{self.org.lower()}.example.org"


PEOPLE = {
    p.pid: p
    for p in (
        P("P7001", "Alma", "Aster", "O7"),
        P("P7002", "Bo", "Birch", "O7"),
        P("P7003", "Cy", "Cedar", "O7"),
        P("P7100", "Mo", "Mover", "O7"),  # moves to O8 (WDA8) after separating from O7
        P("P8001", "Dee", "Dogwood", "O8"),
        P("P8002", "Eli", "Elm", "O8"),
        P("P9001", "Fay", "Fir", "O9"),
        P("P9002", "Gus", "Gum", "O9"),
    )
}
REQUESTERS = {
    p.pid: p
    for p in (
        P("R700", "Rae", "Rowan", "O7"),
        P("R800", "Rex", "Redwood", "O8"),
        P("R900", "Ria", "Rush", "O9"),
    )
}
REQUESTER_OF = {"O7": "R700", "O8": "R800", "O9": "R900"}
# the demo's seeded accounts: orphans here (logon, person id, name)
ORPHANS = [
    ("cnguyen", "P1003", "Carla Nguyen"),
    ("dpatel", "P1004", "Dev Patel"),
    ("ewalsh", "P1005", "Erin Walsh"),
    ("hruiz", "P1008", "Hank Ruiz"),
    ("oldtemp", "P9999", ""),
]
MOVER_SEPARATED = "2026-11-22T17:00:00-08:00"  # 2.7 days before the pinned now: a breach

HEADERS = {
    "organizations": "org_id,name,kind,wda",
    "contracts": "contract_id,org_id,type,counterparty,business_case,signed_on,starts_on,"
    "ends_on,terminated_on,security_admin_approved_on,contracts_office_approved_on,"
    "data_owner_approved_on",
    "workers": "person_id,org_id,given_name,family_name,email,office,supervisor_id,status,"
    "separated_on",
    "separations": "person_id,org_id,separated_at,reason",
    "training": "person_id,course,completed_on",
    "ndas": "person_id,signed_on",
    "requesters": "person_id,wda,designated_by,starts_on,ends_on",
    "requests": "request_id,action,person_id,requester_id,submitted_at,effective_on,status,"
    "profile,offices,cert_training,cert_profile_approved,cert_nda,supervisor_id",
}


def roster_row(p: P, org: str | None = None, email: str | None = None) -> str:
    return f"{p.pid},{org or p.org},{p.given},{p.family},{email or p.email},Office,,active,"


def request_row(p: P, requester: str | None = None) -> str:
    rid = requester or REQUESTER_OF[p.org]
    return (
        f"REQ-{p.pid},add,{p.pid},{rid},2025-09-16T09:00:00-07:00,2025-09-17,approved,"
        "case-manager,Office,true,true,true,"
    )


def first_world() -> dict[str, list[str]]:
    """Everyone entitled: the first run creates every account."""
    rows: dict[str, list[str]] = {name: [] for name in HEADERS}
    for org, (name, wda) in ORGS.items():
        rows["organizations"].append(f"{org},{name},lwdb,{wda}")
        rows["contracts"] += [
            f"W-{org},{org},wioa_services,dol,,2025-06-01,2025-07-01,,,,,",
            f"DS-{org},{org},data_sharing,esd,Case management,2025-06-01,2025-07-01,,,"
            "2025-06-10,2025-06-12,2025-06-05",
        ]
    for r in REQUESTERS.values():
        rows["workers"].append(roster_row(r))
        rows["requesters"].append(f"{r.pid},{ORGS[r.org][1]},Director,2024-01-01,")
    for p in PEOPLE.values():
        rows["workers"].append(roster_row(p))
        rows["training"].append(f"{p.pid},MIS Basic,2025-09-10")
        rows["ndas"].append(f"{p.pid},2025-09-15")
        rows["requests"].append(request_row(p))
    return rows


def second_world() -> dict[str, list[str]]:
    """The mover, a cross-area requester, a rejected row of every feed, an unplaceable one."""
    rows = first_world()
    w = rows["workers"]
    w[w.index(roster_row(PEOPLE["P7100"]))] = roster_row(PEOPLE["P7100"], org="O8")
    w[w.index(roster_row(PEOPLE["P7002"]))] = roster_row(PEOPLE["P7002"], email="not-an-email")
    w.append("P6001,NOPE,Nia,Nowhere,nowhere-at-all,Office,,active,")  # no area: statewide
    q = rows["requests"]
    q[q.index(request_row(PEOPLE["P7003"]))] = request_row(PEOPLE["P7003"], requester="R800")
    q.append(
        "REQ-BAD,add,P8001,R800,not-an-instant,2025-09-17,approved,case-manager,Office,"
        "true,true,true,"
    )
    rows["separations"] += [
        f"P7100,O7,{MOVER_SEPARATED},transfer",
        "P8002,O8,not-a-date,resignation",
        "P9001,O8,not-a-date,transfer",  # a WDA9 person's row naming a WDA8 organization
    ]
    t = rows["training"]
    t[t.index("P9002,MIS Basic,2025-09-10")] = "P9002,MIS Basic,2025-13-10"
    rows["ndas"].append("P9001,not-a-date")
    rows["contracts"].append("W-BAD,O9,wioa_services,dol,,2025-06-01,not-a-date,,,,,")
    rows["organizations"].append("O10,Broken Org,no-such-kind,WDA9")
    rows["requesters"].append("R901,WDA8,Director,not-a-date,")
    return rows


def third_world() -> dict[str, list[str]]:
    """After the second run: Alma Aster transfers to WDA9, the mover's separation row is
    removed. Run pages must not change."""
    rows = second_world()
    w = rows["workers"]
    w[w.index(roster_row(PEOPLE["P7001"]))] = roster_row(PEOPLE["P7001"], org="O9")
    rows["separations"] = [s for s in rows["separations"] if not s.startswith("P7100,")]
    return rows


def write(feeds: Path, rows: dict[str, list[str]]) -> None:
    for old in feeds.glob("*.csv"):
        old.unlink()
    for name, header in HEADERS.items():
        (feeds / f"{name}.csv").write_text("\n".join([header, *rows[name]]) + "\n", "utf-8")


# who is on which area's page, and why, after the second world (the table the pages
# are checked against)
SECOND: dict[str, set[str]] = {
    "P7002": {"WDA7"},  # rejected roster row (org O7): its disable is held
    "P7003": {"WDA7"},  # requested by WDA8's R800: disabled (bare id R800 may show)
    "P7100": {"WDA7", "WDA8"},  # separated from O7, now at O8: disable and breach on both
    "P8001": {"WDA8"},  # rejected request row: held
    "P8002": {"WDA8"},  # rejected separation row: held
    "P9001": {"WDA9", "WDA8"},  # rejected NDA row; rejected separation naming O8: held
    "P9002": {"WDA9"},  # rejected training row: held
}
FIRST: dict[str, set[str]] = {pid: {ORGS[p.org][1]} for pid, p in PEOPLE.items()}
# rejected rows by area (file:line), second world
REJECTED: dict[str, set[str]] = {
    "WDA7": {"workers.csv:6"},
    "WDA8": {"separations.csv:3", "separations.csv:4", "requesters.csv:5", "requests.csv:10"},
    "WDA9": {"organizations.csv:5", "contracts.csv:8", "training.csv:9", "ndas.csv:10"},
}
STATEWIDE_ONLY_ROWS = {"workers.csv:13"}  # P6001, organization NOPE: no area
# a person whose only roster row is rejected has no name to show (their organization,
# read from the rejected row, is shown)
UNNAMED = {"P7002"}
# accepted rows per area and feed, second world (the area's counts in Feed health)
ROWS = {
    "WDA7": {"workers": 3, "organizations": 1, "contracts": 2, "separations": 1, "requests": 3},
    "WDA8": {"workers": 4, "organizations": 1, "contracts": 2, "separations": 0, "requests": 3},
    "WDA9": {"workers": 3, "organizations": 1, "contracts": 2, "separations": 0, "requests": 2},
}


class AreaDom(Dom):
    """The rendered DOM, plus Feed health's area counts."""

    def __init__(self, text: str) -> None:
        self.feed_rows: dict[str, str] = {}
        self.feed_rejected: dict[str, str] = {}
        self._cell: tuple[str, str] | None = None
        super().__init__(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        super().handle_starttag(tag, attrs)
        a = dict(attrs)
        for key, kind in (("data-feed-rows", "rows"), ("data-feed-rejected", "rejected")):
            if tag == "td" and a.get(key):
                self._cell = (kind, a[key] or "")

    def handle_data(self, data: str) -> None:
        super().handle_data(data)
        if self._cell is not None:
            kind, feed = self._cell
            (self.feed_rows if kind == "rows" else self.feed_rejected)[feed] = data.strip()
            self._cell = None


def render(pages: dict[str, Path], tmp: Path) -> dict[str, tuple[str, AreaDom]]:
    """Every page loaded by headless Chromium (three at a time); the DOM after its script
    ran. A console error or a CSP refusal fails the test."""

    def one(item: tuple[str, Path]) -> tuple[str, tuple[str, AreaDom]]:
        key, path = item
        profile = tmp / f"chromium-{re.sub(r'[^a-z0-9]', '-', key.lower())}"
        profile.mkdir()
        dom_text, stderr = chromium(path.as_uri(), profile, "--dump-dom")
        assert console_problems(stderr) == [], (key, console_problems(stderr))
        return key, (dom_text, AreaDom(dom_text))

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, pages.items()))


def report(demo: dict[str, Any], capsys: Any, name: str, *args: str) -> Path:
    out = Path(demo["tmp"]) / f"{name}.html"
    code, _ = run(demo, "report", "-o", str(out), *args, capsys=capsys)
    assert code == 0, demo["last_err"]
    return out


def apply(demo: dict[str, Any], capsys: Any) -> tuple[str, dict[str, Any]]:
    code, out = run(demo, "apply", "--format", "json", capsys=capsys)
    assert code in (0, 4), demo["last_err"]  # 4: held actions leave the run incomplete
    body = json.loads(out)
    return str(body["run_id"]), body


def identifiers(p: P, logons: dict[str, str]) -> list[str]:
    return [p.pid, p.name, p.email, *([logons[p.pid]] if p.pid in logons else [])]


def check_page(
    key: str,
    wda: str,
    page: tuple[str, AreaDom],
    expected: dict[str, set[str]],
    logons: dict[str, str],
    rejected: set[str],
) -> None:
    """Every own item listed (person named, with their organization); nothing that
    identifies another area's people; the area's counts."""
    text, dom = page
    rows = " ".join(r["text"] for r in dom.rows)
    mine = {pid for pid, areas in expected.items() if wda in areas}
    for pid in mine:
        p = PEOPLE[pid]
        assert pid in rows, (key, pid, "missing")
        if pid not in UNNAMED:
            assert p.name in rows, (key, pid, "not named")
        assert ORGS[p.org][0] in rows or pid == "P7100", (key, pid, "no organization")
    for pid, p in PEOPLE.items():
        if pid in mine:
            continue
        for ident in identifiers(p, logons):
            assert ident not in text, (key, pid, ident)
    for r in REQUESTERS.values():  # a requester's bare id may stay; nothing else of theirs
        if ORGS[r.org][1] != wda:
            for ident in (r.name, r.email):
                assert ident not in text, (key, r.pid, ident)
    for logon, pid, name in ORPHANS:
        for ident in (logon, pid, name):
            assert not ident or ident not in text, (key, "orphan", ident)
    assert "P6001" not in text and "Nowhere" not in text and "nowhere-at-all" not in text, key
    # the rejected rows of the area, and only those
    shown = set(re.findall(r"\b([a-z]+\.csv:\d+)", rows))
    assert shown == rejected, (key, shown, rejected)
    # counts are the area's: the summary counts what the page lists
    assert dom.counts["rejected"] == str(len(rejected)), key
    breaches = sum(1 for r in dom.rows if r["attrs"].get("data-severity") == "breach")
    assert dom.counts["breaches"] == str(breaches), key
    assert 'id="statewide-note"' in text, key


def test_each_area_sees_all_of_its_items_and_nothing_of_another(
    demo: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feeds = Path(demo["feeds"])
    write(feeds, first_world())
    run_a, body_a = apply(demo, capsys)
    logons = {
        o["person_id"]: o["logon_id"]
        for o in body_a["outcomes"]
        if o["person_id"] in PEOPLE and o["op"] == "create"
    }
    assert set(logons) == set(PEOPLE), body_a["outcomes"]

    write(feeds, second_world())
    plan_file = Path(demo["tmp"]) / "plan.json"
    code, _ = run(demo, "plan", "-o", str(plan_file), capsys=capsys)
    assert code == 0, demo["last_err"]
    whole = json.loads(plan_file.read_text(encoding="utf-8"))
    # the table above is the plan's: every person with an item is in it
    people_with_items = {
        x["person_id"]
        for x in (*whole["actions"], *whole["breaches"], *(h["action"] for h in whole["held"]))
        if x.get("person_id")
    }
    assert people_with_items == set(SECOND), people_with_items
    assert any(b["person_id"] == "P7100" for b in whole["breaches"])

    pages: dict[str, Path] = {}
    for wda in AREAS:
        pages[f"plan {wda}"] = report(demo, capsys, f"plan-{wda}", "--wda", wda)
        pages[f"reviewed {wda}"] = report(
            demo, capsys, f"reviewed-{wda}", "--plan", str(plan_file), "--wda", wda
        )
    statewide = report(demo, capsys, "statewide")
    later = e2e.NOW + timedelta(minutes=30)  # run B half an hour after run A
    monkeypatch.setattr(app, "now", lambda: later)
    run_b, _ = apply(demo, capsys)
    for wda in AREAS:
        pages[f"run B {wda}"] = report(demo, capsys, f"runb-{wda}", "--run", run_b, "--wda", wda)

    # who had access in WDA7 as run B read the directory: the mover's account too
    code, out = run(
        demo, "audit", "access", "--at", "2026-11-25T18:30:00Z", "--wda", "WDA7",
        "--format", "json", capsys=capsys,
    )  # fmt: skip
    assert code == 0, demo["last_err"]
    access = json.loads(out)
    assert access["run"]["run_id"] == run_b
    held_by = {r["person_id"] for r in access["accounts"]}
    assert {"P7001", "P7100"} <= held_by
    assert not held_by & {"P8001", "P8002", "P9001", "P9002"}

    # the feeds change after the runs: run pages show the runs as they were
    write(feeds, third_world())
    for wda in AREAS:
        pages[f"run A after {wda}"] = report(
            demo, capsys, f"runa-after-{wda}", "--run", run_a, "--wda", wda
        )
        pages[f"run B after {wda}"] = report(
            demo, capsys, f"runb-after-{wda}", "--run", run_b, "--wda", wda
        )
    pages["statewide"] = statewide
    dom = render(pages, Path(demo["tmp"]))

    for key, page in dom.items():
        if key == "statewide":
            continue
        wda = key.split()[-1]
        first = key.startswith("run A")
        check_page(
            key,
            wda,
            page,
            FIRST if first else SECOND,
            logons,
            set() if first else REJECTED[wda],
        )
        text, d = page
        if first:  # every account of the area was created by run A, and only those
            mine = sum(1 for a in FIRST.values() if wda in a)
            assert d.counts["create"] == str(mine), key
            assert text.count('class="out-ok"') == mine, key
            continue
        # Feed health counts the area's rows, and its rejected rows per feed
        for feed, n in ROWS[wda].items():
            assert d.feed_rows[feed] == str(n), (key, feed, d.feed_rows)
        per_feed: dict[str, int] = {}
        for row in REJECTED[wda]:
            per_feed[row.split(".")[0]] = per_feed.get(row.split(".")[0], 0) + 1
        for feed, got in d.feed_rejected.items():
            assert got == str(per_feed.get(feed, 0)), (key, feed, got)
        # held reasons are worded for the board: who acts, no statewide guard numbers
        assert "correct the row(s)" not in text, key
        assert "enabled accounts) exceed the guard" not in text, key
        assert "Who acts" in text, key

    # the mover is WDA7's local separated user: named, with the organization they left
    for key in ("plan WDA7", "reviewed WDA7", "run B WDA7", "run B after WDA7"):
        text, d = dom[key]
        mover = [r for r in d.rows if "P7100" in r["text"]]
        assert any(r["attrs"].get("data-severity") == "breach" for r in mover), key
        assert len(mover) >= 2, key  # the breach and the disable
        assert all("separated from Harbor Works (O7)" in r["text"] for r in mover), key
    # a run's page is the same page after the feeds changed (a transfer, a separation
    # row removed): it shows the run as it was
    for wda in AREAS:
        assert dom[f"run B {wda}"][0] == dom[f"run B after {wda}"][0], wda
    # a cross-area requester's bare id is actionable and stays
    assert "R800" in dom["plan WDA7"][0]
    # the statewide page has what no area has: the orphans and the unplaceable row
    text, d = dom["statewide"]
    assert "oldtemp" in text and "nowhere-at-all" in text
    assert set(re.findall(r"\b([a-z]+\.csv:\d+)", text)) >= STATEWIDE_ONLY_ROWS
