"""One self-contained HTML page for a plan or a run: no network, inline CSS, a few lines
of inline JavaScript for the filter box (the page reads fine without it).

Large plans stay usable: actions are grouped by operation in collapsed ``<details>``
sections (open when a group is small), the filter box narrows every table at once.
Every value from the feeds, the directory or the plan is escaped
(:mod:`connector.report.markup`), and a Content-Security-Policy allows only this
page's own script (by hash) and inline style, so the page loads nothing and runs
nothing else even if a value slipped through.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from connector import __version__
from connector.model.decisions import Reason
from connector.model.plan import Action, Breach, Op
from connector.reconcile.render import describe_read, human_duration
from connector.report.markup import Markup, el, join
from connector.report.model import Report
from connector.timefmt import when

OPEN_GROUP_MAX = 50  # a group with at most this many rows starts open

_CSS = Markup("""
:root { color-scheme: light; --line: #d0d7de; --muted: #57606a; --bad: #b42318;
  --warn: #9a6700; --ok: #1a7f37; --bg2: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  margin: 0 auto; max-width: 1200px; padding: 16px 24px 48px; color: #1f2328; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; }
.meta { color: var(--muted); margin: 0 0 12px; }
.meta code { color: #1f2328; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; word-break: break-all; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left;
  vertical-align: top; }
th { background: var(--bg2); font-weight: 600; }
.counts td, .counts th { text-align: center; width: 1%; white-space: nowrap; }
.counts td.zero { color: var(--muted); }
.banner { border: 1px solid; border-radius: 6px; padding: 8px 12px; margin: 10px 0; }
.banner.bad { border-color: var(--bad); background: #fff1f0; color: var(--bad); }
.banner.warn { border-color: var(--warn); background: #fff8e5; color: #6b4a00; }
.banner.ok { border-color: var(--ok); background: #effaf1; color: var(--ok); }
.sev-breach { color: var(--bad); font-weight: 600; }
.sev-warning { color: var(--warn); font-weight: 600; }
.out-ok, .feed-ok { color: var(--ok); font-weight: 600; }
.feed-bad { color: var(--bad); font-weight: 600; }
.out-failed, .out-held, .out-not-attempted { color: var(--bad); font-weight: 600; }
ul.reasons { margin: 0; padding-left: 18px; }
.clause { font-weight: 600; }
.code { color: var(--muted); }
details { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0;
  padding: 0 10px; }
details > summary { cursor: pointer; padding: 6px 0; font-weight: 600; }
details[open] > summary { border-bottom: 1px solid var(--line); margin-bottom: 6px; }
.matches { color: var(--muted); font-weight: 400; margin-left: 8px; }
#filterbar { position: sticky; top: 0; background: #fff; padding: 8px 0;
  border-bottom: 1px solid var(--line); z-index: 1; }
#filter { width: 420px; max-width: 100%; padding: 5px 8px; font-size: 14px; }
#filter-count { color: var(--muted); margin-left: 10px; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
""")

_JS = Markup("""
(function () {
  "use strict";
  var box = document.getElementById("filter");
  var count = document.getElementById("filter-count");
  if (!box) { return; }
  var rows = Array.prototype.slice.call(document.querySelectorAll("[data-row]"));
  var texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
  var groups = Array.prototype.slice.call(document.querySelectorAll("details[data-group]"));
  function apply() {
    var q = box.value.trim().toLowerCase();
    var shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var hit = !q || texts[i].indexOf(q) !== -1;
      rows[i].hidden = !hit;
      if (hit) { shown++; }
    }
    groups.forEach(function (g) {
      var n = g.querySelectorAll("[data-row]:not([hidden])").length;
      var label = g.querySelector(".matches");
      if (label) { label.textContent = q ? n + " match" + (n === 1 ? "" : "es") : ""; }
      if (q && n > 0) { g.open = true; }
    });
    count.textContent = q ? shown + " of " + rows.length + " rows match" : "";
  }
  box.addEventListener("input", apply);
  var m = /^#filter=(.*)$/.exec(window.location.hash);  // a link can carry a filter
  if (m) { box.value = decodeURIComponent(m[1]); }
  apply();
  document.documentElement.setAttribute("data-filter-ready", String(rows.length));
}());
""")


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode()
    return (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; img-src data:; base-uri 'none'; form-action 'none'"
    )


_duration = human_duration


class _Page:
    def __init__(self, report: Report) -> None:
        self.r = report
        self.plan = report.plan

    def when(self, value: datetime | None) -> str:
        if value is None:
            return "-"
        return when(value, self.r.tz)

    # --- pieces ---------------------------------------------------------------

    def reasons(self, reasons: Iterable[Reason]) -> Markup:
        items = []
        for r in reasons:
            evidence = []
            if r.source is not None:
                evidence.append(f"{r.source.file} line {r.source.line}")
            if r.deadline is not None:
                evidence.append(f"deadline {self.when(r.deadline)}")
            items.append(
                el(
                    "li",
                    el("span", r.clause or "?", class_="clause"),
                    ": ",
                    r.message,
                    " ",
                    el("span", f"[{r.code}]", class_="code"),
                    el("div", el("span", "evidence: ", "; ".join(evidence), class_="code"))
                    if evidence
                    else None,
                )
            )
        return el("ul", items, class_="reasons") if items else Markup("-")

    def account(self, a: Action) -> Markup:
        if a.account_id is None:
            return el("span", "new account ", el("code", a.logon_id or "?"))
        logon = [" (logon ", el("code", a.logon_id), ")"] if a.logon_id else []
        return el("span", el("code", a.account_id), logon)

    def changes(self, a: Action) -> Markup:
        if not a.changes:
            return Markup("-")
        return el(
            "ul",
            [
                el(
                    "li",
                    el("code", c.name),
                    ": ",
                    ", ".join(c.old) or "-",
                    " → ",
                    ", ".join(c.new) or "-",
                )
                for c in a.changes
            ],
            class_="reasons",
        )

    def outcome(self, a: Action) -> Markup | None:
        if self.r.run_id is None:
            return None
        o = self.r.outcomes.get(a.key)
        status = o.status if o else "not attempted"
        cls = "out-" + status.replace(" ", "-")
        return el(
            "td",
            el("span", status, class_=cls if status in _OUTCOMES else "out-failed"),
            el("div", o.detail, class_="code") if o and o.detail else None,
        )

    def action_row(self, a: Action) -> Markup:
        return el(
            "tr",
            el("td", a.person_id or "(no person)"),
            el("td", self.account(a)),
            el("td", self.reasons(a.reasons)),
            el("td", self.changes(a)),
            el("td", self.when(a.deadline) if a.deadline else "-"),
            self.outcome(a),
            data_row=True,
        )

    def action_table(self, actions: Iterable[Action]) -> Markup:
        head = ["person", "account", "reasons (clause: evidence)", "changes", "deadline"]
        if self.r.run_id is not None:
            head.append("outcome")
        return el(
            "table",
            el("thead", el("tr", [el("th", h) for h in head])),
            el("tbody", [self.action_row(a) for a in actions]),
        )

    def group(self, key: str, title: str, rows: Markup, n: int) -> Markup:
        return el(
            "details",
            el("summary", f"{title} ({n})", el("span", "", class_="matches")),
            rows,
            open=n <= OPEN_GROUP_MAX,
            data_group=key,
            id=f"group-{key}",
        )

    # --- sections -------------------------------------------------------------

    def header(self) -> Markup:
        p = self.plan
        scope = f" — WDA {self.r.wda}" if self.r.wda is not None else ""
        meta = [
            "as of ",
            el("code", self.when(p.as_of)),
            " · target ",
            el("code", p.target),
            " · plan ",
            el("code", p.checksum or "(unsealed)", id="checksum"),
        ]
        if self.r.run_id is not None:
            meta += [" · run ", el("code", self.r.run_id), " status ", el("b", self.r.run_status)]
        read = (
            el("p", describe_read(p.read, self.r.tz), class_="meta", id="directory-read")
            if p.read is not None
            else ""
        )
        return join(
            [
                el("h1", self.r.title, scope),
                el("p", meta, class_="meta"),
                read,
                [el("p", n, class_="meta") for n in self.r.notes],
                el(
                    "p",
                    "Scoped to the Workforce Development Area ",
                    el("b", self.r.wda),
                    ": only its people, their accounts, deadlines and rejected rows are "
                    "shown; the plan checksum names the whole plan this page was cut from.",
                    class_="meta",
                )
                if self.r.wda is not None
                else None,
            ]
        )

    def banners(self) -> Markup:
        p = self.plan
        out: list[Markup] = []
        bad = [f for f in p.feeds if not f.healthy]
        if bad:
            out.append(
                el(
                    "div",
                    el("b", "Feeds not usable: "),
                    ", ".join(f"{f.feed.value} ({f.state.value})" for f in bad),
                    ". Actions they would drive are held; this is not a clean plan.",
                    class_="banner bad",
                    id="feeds-banner",
                )
            )
        breaches = [b for b in p.breaches if b.severity == "breach"]
        if breaches:
            out.append(
                el(
                    "div",
                    el("b", f"{len(breaches)} deadline breach(es): "),
                    "enabled accounts past their deactivation deadline"
                    + (" when the run started" if self.r.run_id is not None else "")
                    + " (see Deadlines).",
                    class_="banner bad",
                )
            )
        if p.held:
            out.append(
                el(
                    "div",
                    el("b", f"{len(p.held)} action(s) held: "),
                    "not carried out until someone reviews them (see Held actions).",
                    class_="banner warn",
                )
            )
        if p.accepted:
            out.append(
                el(
                    "div",
                    el("b", f"{len(p.accepted)} held action(s) accepted: "),
                    "left as they are by an operator's decision (`misync held`; see Held actions).",
                    class_="banner",
                )
            )
        if not p.actions and not p.held and not bad and not p.breaches:
            out.append(
                el("div", "No changes: the directory matches Policy 1021.", class_="banner ok")
            )
        return join(out)

    def summary(self) -> Markup:
        s = self.plan.summary
        cells = [(k.replace("_", " "), v) for k, v in s.items()]
        section = [
            el("h2", "Summary", id="summary"),
            el(
                "table",
                el("tr", [el("th", k) for k, _ in cells]),
                el(
                    "tr",
                    [el("td", v, class_="zero" if not v else None, data_count=k) for k, v in cells],
                ),
                class_="counts",
                id="summary-counts",
            ),
        ]
        if self.plan.decisions:
            section.append(
                el(
                    "p",
                    "decisions: ",
                    ", ".join(f"{k} {v}" for k, v in self.plan.decisions.items()),
                    class_="meta",
                )
            )
        return join(section)

    def deadlines(self) -> Markup:
        p = self.plan
        if not p.breaches:
            return join([el("h2", "Deadlines", id="deadlines"), el("p", "None.", class_="meta")])
        # overdue first, the most overdue on top; then warnings, the nearest first
        order = sorted(p.breaches, key=lambda b: (b.severity != "breach", b.deadline))
        rows = [self.deadline_row(b) for b in order]
        table = el(
            "table",
            el(
                "thead",
                el(
                    "tr",
                    [el("th", h) for h in ("severity", "person", "account", "deadline", "why")],
                ),
            ),
            el("tbody", rows),
            id="deadlines-table",
        )
        n_b = sum(1 for b in p.breaches if b.severity == "breach")
        n_w = len(p.breaches) - n_b
        return join(
            [
                el("h2", f"Deadlines: {n_b} breached, {n_w} warning(s)", id="deadlines"),
                table,
            ]
        )

    def deadline_row(self, b: Breach) -> Markup:
        gap = self.plan.as_of - b.deadline
        if b.severity == "breach":
            when = f"overdue by {_duration(gap)}"
        else:
            when = f"due in {_duration(gap)}"
        return el(
            "tr",
            el("td", el("span", b.severity.upper(), class_=f"sev-{b.severity}")),
            el("td", b.person_id or "(no person)"),
            el(
                "td",
                el("code", b.account_id),
                [" (logon ", el("code", b.logon_id), ")"] if b.logon_id else None,
            ),
            el("td", self.when(b.deadline), el("div", when, class_=f"sev-{b.severity}")),
            el("td", self.reasons(b.reasons)),
            data_row=True,
            data_severity=b.severity,
        )

    def held(self) -> Markup:
        p = self.plan
        if not p.held and not p.accepted:
            return Markup("")
        by_code: dict[str, list[Markup]] = defaultdict(list)
        head = ["held because", "op", "person", "account", "reasons", "changes"]
        accepted = {id(h) for h in p.accepted}
        for h in (*p.held, *p.accepted):
            a = h.action
            d = h.decision
            by = f" by {d.by}: {d.reason}" if d is not None else ""
            state = f"accepted{by}" if id(h) in accepted else ""
            by_code[f"{h.code} (accepted)" if state else h.code].append(
                el(
                    "tr",
                    el("td", el("b", h.code), el("div", h.message), el("div", state)),
                    el("td", a.op.value),
                    el("td", a.person_id or "(no person)"),
                    el("td", self.account(a)),
                    el("td", self.reasons(a.reasons)),
                    el("td", self.changes(a)),
                    data_row=True,
                )
            )
        groups = [
            self.group(
                f"held-{code.replace(' (accepted)', '-accepted')}",
                f"held: {code}",
                el(
                    "table",
                    el("thead", el("tr", [el("th", x) for x in head])),
                    el("tbody", rows),
                ),
                len(rows),
            )
            for code, rows in sorted(by_code.items())
        ]
        title = f"Held actions ({len(p.held)}" + (
            f", {len(p.accepted)} accepted)" if p.accepted else ")"
        )
        return join([el("h2", title, id="held"), groups])

    def actions(self) -> Markup:
        p = self.plan
        by_op: dict[Op, list[Action]] = defaultdict(list)
        for a in p.actions:
            by_op[a.op].append(a)
        groups = [
            self.group(op.value, op.value, self.action_table(by_op[op]), len(by_op[op]))
            for op in (Op.DISABLE, Op.UPDATE, Op.ENABLE, Op.CREATE)
            if by_op.get(op)
        ]
        body: object = groups or el("p", "None.", class_="meta")
        return join([el("h2", f"Actions ({len(p.actions)})", id="actions"), body])

    def rejected(self) -> Markup:
        p = self.plan
        if not p.rejected:
            return join([el("h2", "Rejected rows", id="rejected"), el("p", "None.", class_="meta")])
        rows = [
            el(
                "tr",
                el("td", r.feed),
                el("td", el("code", f"{r.file}:{r.line}")),
                el("td", r.column or "-"),
                el("td", el("code", r.value) if r.value is not None else "-"),
                el("td", r.reason),
                data_row=True,
            )
            for r in p.rejected
        ]
        table = el(
            "table",
            el(
                "thead",
                el("tr", [el("th", h) for h in ("feed", "file:line", "column", "value", "why")]),
            ),
            el("tbody", rows),
            id="rejected-table",
        )
        return join(
            [
                el("h2", f"Rejected rows ({len(rows)})", id="rejected"),
                el(
                    "p",
                    "Nothing was guessed from these rows; what they could change is held.",
                    class_="meta",
                ),
                self.group("rejected", "rejected rows", table, len(rows)),
            ]
        )

    def feeds(self) -> Markup:
        p = self.plan
        if not p.feeds:
            return Markup("")
        rows = [
            el(
                "tr",
                el("td", f.feed.value),
                el("td", el("code", f.file)),
                el(
                    "td",
                    el("span", f.state.value, class_="feed-ok" if f.healthy else "feed-bad"),
                ),
                el("td", f.rows),
                el("td", f.rejected),
                el("td", self.when(f.modified_at) if f.modified_at else "-"),
                el("td", f.detail or ""),
            )
            for f in p.feeds
        ]
        head = ("feed", "file", "state", "rows", "rejected", "modified", "detail")
        return join(
            [
                el("h2", "Feed health", id="feeds"),
                el(
                    "table",
                    el("thead", el("tr", [el("th", h) for h in head])),
                    el("tbody", rows),
                    id="feeds-table",
                ),
            ]
        )

    def page(self) -> str:
        title = self.r.title + (f" — WDA {self.r.wda}" if self.r.wda is not None else "")
        body = join(
            [
                self.header(),
                self.banners(),
                el(
                    "div",
                    el(
                        "input",
                        type="search",
                        id="filter",
                        placeholder="filter: person, account, logon, clause, code…",
                        aria_label="filter rows",
                    ),
                    el("span", "", id="filter-count"),
                    id="filterbar",
                ),
                self.summary(),
                self.deadlines(),
                self.held(),
                self.actions(),
                self.rejected(),
                self.feeds(),
                el(
                    "footer",
                    f"misync {__version__} · generated {self.when(self.r.generated_at)} · "
                    f"times in {self.r.tz} · plan {self.plan.checksum}",
                ),
                el("script", _JS),
            ]
        )
        return (
            "<!DOCTYPE html>\n"
            + el(
                "html",
                el(
                    "head",
                    Markup('<meta charset="utf-8">'),
                    Markup(f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">'),
                    Markup('<meta name="viewport" content="width=device-width, initial-scale=1">'),
                    el("title", title),
                    el("style", _CSS),
                ),
                el("body", body),
                lang="en",
            )
            + "\n"
        )


_OUTCOMES = frozenset({"ok", "failed", "held", "accepted", "not attempted"})


def render_html(report: Report) -> str:
    """The whole page as one string (UTF-8 when written)."""
    return _Page(report).page()
