"""The HTML report, loaded from disk by a real headless Chromium (Debian's ``chromium``).

The page is made by the real ``misync report`` command on the demo feeds against a real
slapd; the assertions are on the DOM Chromium rendered, after its script ran, and on
the browser's console (an error, or a script the page's CSP refused, fails the test).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_end_to_end import run

pytestmark = pytest.mark.slapd

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (deploy/install.sh test installs it; CI has it)",
)
EVIL = "<script>alert(1)</script>"


class Dom(HTMLParser):
    """The rendered DOM, as far as the tests look at it."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.scripts = 0
        self.rows: list[dict[str, Any]] = []  # every [data-row] with its text and attrs
        self.counts: dict[str, str] = {}  # summary: data-count -> text
        self.root: dict[str, str | None] = {}
        self._open: list[tuple[str, dict[str, str | None], list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.root = a
        if tag == "script":
            self.scripts += 1
        if tag in ("tr", "td"):
            self._open.append((tag, a, []))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("tr", "td") and self._open and self._open[-1][0] == tag:
            _, a, text = self._open.pop()
            joined = "".join(text)
            if self._open:
                self._open[-1][2].append(joined + " ")
            if tag == "tr" and "data-row" in a:
                self.rows.append({"attrs": a, "text": joined, "hidden": "hidden" in a})
            if tag == "td" and "data-count" in a:
                self.counts[a["data-count"] or ""] = joined.strip()

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][2].append(data)


def chromium(url: str, tmp: Path, *extra: str) -> tuple[str, str]:
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def console_problems(stderr: str) -> list[str]:
    """Console messages the page caused: errors, uncaught exceptions, CSP refusals."""
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line or "Uncaught" in line or "Content Security Policy" in line
    ]


def make_report(demo: dict[str, Any], capsys: pytest.CaptureFixture[str], *args: str) -> Path:
    out = demo["tmp"] / "report.html"
    code, _ = run(demo, "report", "-o", str(out), *args, capsys=capsys)
    assert code == 0, demo["last_err"]
    return out


def inject_name(demo: dict[str, Any]) -> None:
    """P1001 (a create) gets a given name that is markup."""
    roster = demo["feeds"] / "workers.csv"
    roster.write_text(
        roster.read_text(encoding="utf-8").replace("Ana María", EVIL), encoding="utf-8"
    )


@needs_chromium
def test_report_renders_in_chromium(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    inject_name(demo)
    page = make_report(demo, capsys)
    dom_text, stderr = chromium(page.as_uri(), demo["tmp"], "--dump-dom")
    assert console_problems(stderr) == []
    dom = Dom(dom_text)
    # the inline script ran (its CSP hash matched) and is the only script on the page
    assert dom.root.get("data-filter-ready"), "the page script did not run"
    assert dom.scripts == 1
    # the injected name is text, escaped, in the create's changes
    assert EVIL in "".join(r["text"] for r in dom.rows)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom_text
    # summary counts
    assert dom.counts["create"] == "2"
    assert dom.counts["disable"] == "4"
    assert dom.counts["breaches"] == "3"
    assert dom.counts["rejected"] == "1"
    text = {r["text"] for r in dom.rows}
    # an action with its clause and evidence: P1003's contract DS-0417 ended (3.e.vii)
    assert any("P1003" in t and "3.e.vii" in t and "DS-0417" in t for t in text)
    # a breach, overdue, with how late, overdue ones first
    deadlines = [r for r in dom.rows if r["attrs"].get("data-severity")]
    assert deadlines[0]["attrs"]["data-severity"] == "breach"
    assert any("P1004" in r["text"] and "overdue by" in r["text"] for r in deadlines)
    # the rejected row, with file, line, column and value
    assert any("training.csv:11" in t and "2025-13-01" in t for t in text)
    # the checksum and as_of are shown
    assert re.search(r'id="checksum">sha256:[0-9a-f]{64}<', dom_text)
    assert "2026-11-25T09:00:00-08:00" in dom_text  # as_of, in policy.timezone, to the second
    assert all(not r["hidden"] for r in dom.rows)

    # the filter box narrows every table (a link can carry the filter)
    dom2 = Dom(chromium(page.as_uri() + "#filter=P1004", demo["tmp"], "--dump-dom")[0])
    shown = [r for r in dom2.rows if not r["hidden"]]
    assert shown
    assert all("P1004" in r["text"] for r in shown)
    assert any(r["hidden"] for r in dom2.rows)


def test_report_for_one_wda_shows_nothing_of_another(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """3.h.viii: each LWDB monitors its own area. CBO2 (P1003, a contract breach) moves
    to WDA-05; the WDA-04 page must not name P1003, their account, contract or org."""
    orgs = demo["feeds"] / "organizations.csv"
    orgs.write_text(
        orgs.read_text(encoding="utf-8").replace(
            "CBO2,Riverside Career Services,wioa_contractor,WDA-04",
            "CBO2,Riverside Career Services,wioa_contractor,WDA-05",
        ),
        encoding="utf-8",
    )
    p04 = make_report(demo, capsys, "--wda", "WDA-04").read_text(encoding="utf-8")
    p05 = make_report(demo, capsys, "--wda", "WDA-05").read_text(encoding="utf-8")
    for leak in ("P1003", "cnguyen", "DS-0417", "CBO2", "Riverside"):
        assert leak not in p04, leak
    assert "P1003" in p05 and "DS-0417" in p05
    for other in ("P1001", "P1004", "P1010", "2025-13-01", "oldtemp"):
        assert other not in p05, other
    # WDA-04 keeps its own people, breaches and rejected rows
    assert "P1004" in p04 and "training.csv:11" in p04 and "WDA-04" in p04
    # an orphan belongs to no WDA: only the whole-plan page shows it
    assert "oldtemp" not in p04
    whole = make_report(demo, capsys).read_text(encoding="utf-8")
    assert "oldtemp" in whole and "P1003" in whole

    code, _ = run(demo, "report", "--wda", "WDA-99", capsys=capsys)
    assert code == 2
    assert "WDA-99" in demo["last_err"]


def test_a_run_report_is_rendered_from_the_audit_trail_and_kept(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.app import Runtime
    from connector.report.service import write_run_report
    from connector.settings import load_settings

    code, out = run(demo, "apply", capsys=capsys)
    assert code == 0, demo["last_err"]
    run_id = re.search(r"applied run ([0-9a-f]{12})", out)
    assert run_id is not None
    page = make_report(demo, capsys, "--run", run_id[1]).read_text(encoding="utf-8")
    assert f"misync run {run_id[1]}" in page
    assert "P1003" in page and "3.e.vii" in page
    assert page.count('class="out-ok"') == 8  # every action, with its outcome
    assert "overdue by" in page  # the breaches it opened

    code, _ = run(demo, "report", "--run", "nosuchrun", capsys=capsys)
    assert code == 2 and "nosuchrun" in demo["last_err"]

    # the daemon keeps one page per run, the newest report.keep_runs of them
    rt = Runtime(load_settings(demo["config"], report={"keep_runs": 2}))
    runs = [run_id[1]]
    for _ in range(2):
        code, out = run(demo, "apply", capsys=capsys)
        assert code == 0, demo["last_err"]
        m = re.search(r"applied run ([0-9a-f]{12})", out)
        assert m is not None
        runs.append(m[1])
    for r in runs:
        write_run_report(rt, r)
    again = write_run_report(rt, runs[-1])  # the same run rewrites its page
    kept = sorted(p.name for p in rt.settings.state.reports.glob("run-*.html"))
    assert kept == sorted(f"run-{r}.html" for r in runs[1:])
    assert again is not None and again.stat().st_mode & 0o077 == 0o040
    assert "No changes" in again.read_text(encoding="utf-8")
