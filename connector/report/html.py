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
from connector.model.feeds import FeedHealth, Rejection
from connector.model.plan import Action, Breach, HeldAction, HeldCode, Op
from connector.reconcile.render import describe_read, human_duration
from connector.report.markup import Markup, el, esc, join
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
        self.rejected_by_key: dict[str, list[Rejection]] = defaultdict(list)
        for rej in report.plan.rejected:
            self.rejected_by_key[rej.key].append(rej)

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

    def person(self, person_id: str | None, reasons: Iterable[Reason] = ()) -> Markup:
        """The person's id, and (when the feeds are known) their name and organization,
        and the organization they separated from when that is another one: what the
        reader needs to know whom to call. Only people the page is about reach here."""
        if person_id is None:
            return Markup("(no person)")
        areas = self.r.areas
        who = areas.who(person_id) if areas is not None else None
        if areas is None or who is None:
            return esc(person_id)
        org = f"{who.org_name} ({who.org_id})" if who.org_name else who.org_id
        left = [
            f"{areas.org_names.get(o, o)} ({o})"
            for o in areas.separated_from(person_id, reasons)
            if o != who.org_id
        ]
        return join(
            [
                person_id,
                el("div", el("b", who.name), class_="who") if who.name else None,
                el("div", org, class_="org") if org else None,
                el("div", "separated from ", "; ".join(left), class_="org") if left else None,
            ]
        )

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
            el("td", self.person(a.person_id, a.reasons)),
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
                    "shown, and every count is the area's; the plan checksum names the whole "
                    "plan this page was cut from.",
                    class_="meta",
                )
                if self.r.wda is not None
                else None,
                el(
                    "p",
                    "Items whose area cannot be read (an account that matches no person, a "
                    "rejected row with no organization, area or known person on it) are on "
                    "the statewide page only (misync report without --wda).",
                    class_="meta",
                    id="statewide-note",
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
            el("td", self.person(b.person_id, b.reasons)),
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

    def held_why(self, h: HeldAction) -> str:
        """Why the action is held, for the reader of this page. The statewide page (ITSD)
        has the planner's own words; an area's page (the board) says who must do what,
        and no statewide count (the mass-disable guard's numbers are the state's)."""
        if self.r.wda is None:
            return h.message
        pid = h.action.person_id
        who = self.r.areas.who(pid) if self.r.areas is not None else None
        subjects = [k for k in (pid, who.org_id if who else None) if k]
        rows = [r for key in subjects for r in self.rejected_by_key.get(key, ())]
        cited = ", ".join(dict.fromkeys(f"{r.file} line {r.line}" for r in rows))
        row_words = (
            f"a row about this person could not be read ({cited or 'see Rejected rows'}); "
            "it may change their access, so misync neither confirms nor removes it. "
            "Who acts: whoever keeps that row (the organization's HR for the roster and "
            "separations, the requester for a request) corrects it and ITSD delivers "
            "the feed again; misync then acts at its next run."
        )
        bad = [f for f in self.plan.feeds if not f.healthy]
        if h.code == HeldCode.REJECTED_ROW or (
            h.code == HeldCode.FEED_UNHEALTHY and rows and not bad
        ):
            return row_words
        if h.code == HeldCode.FEED_UNHEALTHY:
            if not bad:  # a rejected row of another area's (a requester's) is the cause
                return (
                    "not carried out: a row it relies on (its requester's, say) could not be "
                    "read; that row is not this area's and is on the statewide page. Who "
                    "acts: ITSD has it corrected; nothing in this person's rows is for the "
                    "board to correct."
                )
            files = ", ".join(f"{f.file} ({f.state.value})" for f in bad)
            return (
                f"not carried out while {files} cannot be used. Who acts: ITSD and the "
                "feed's owner fix the file; nothing in this person's rows is for the board "
                "to correct. misync acts at the first run after a good delivery."
                + (f" Also: {row_words}" if rows else "")
            )
        return _HELD_FOR_AREA.get(HeldCode(h.code), h.message)

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
                    el("td", el("b", h.code), el("div", self.held_why(h)), el("div", state)),
                    el("td", a.op.value),
                    el("td", self.person(a.person_id, a.reasons)),
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
        wda = self.r.wda
        rows = [
            el(
                "tr",
                el("td", f.feed.value),
                el("td", el("code", f.file)),
                el(
                    "td",
                    el("span", f.state.value, class_="feed-ok" if f.healthy else "feed-bad"),
                ),
                el("td", f.rows, data_feed_rows=f.feed.value),
                el("td", f.rejected, data_feed_rejected=f.feed.value),
                el("td", self.when(f.modified_at) if f.modified_at else "-"),
                el("td", self.feed_detail(f)),
            )
            for f in p.feeds
        ]
        head: tuple[str, ...] = ("feed", "file", "state", "rows", "rejected", "modified", "detail")
        if wda is not None:
            head = (
                "feed",
                "file",
                "state (whole file)",
                f"rows in {wda}",
                f"rejected in {wda}",
                "modified",
                "detail (whole file)",
            )
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

    def feed_detail(self, f: FeedHealth) -> str:
        """Why a feed is not usable. On an area's page the file's own numbers (a shrunk
        feed's row counts) are the whole file's, so only the state is said there."""
        if not f.detail or self.r.wda is None:
            return f.detail or ""
        if f.healthy:
            return ""
        return (
            f"the whole file is {f.state.value}; ITSD and the feed's owner fix it "
            "(the statewide page has the details)"
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


#: What an area's page says of a hold that is not about the area's own rows: who acts.
_HELD_FOR_AREA: dict[HeldCode, str] = {
    HeldCode.MASS_DISABLE_GUARD: (
        "held by the statewide mass-disable guard: this plan disables more accounts at once "
        "without positive evidence (such as a separation or a contract end) than misync "
        "allows across the state. Who acts: ITSD reviews the statewide plan and carries it "
        "out (--override-guard); the board can confirm whether this person still needs access."
    ),
    HeldCode.QUARANTINED: (
        "the directory refused this change at several runs in a row. Who acts: ITSD "
        "investigates and releases it (misync held approve); nothing for the board."
    ),
    HeldCode.AMBIGUOUS_CORRELATION: (
        "more than one directory account carries this person's id. Who acts: ITSD resolves "
        "the duplicate accounts; nothing for the board."
    ),
    HeldCode.DISABLED_OUTSIDE_MISYNC: (
        "the account was locked outside misync (perhaps for an incident), so misync does not "
        "unlock it. Who acts: the security administrator decides (misync held approve or "
        "accept); the board can confirm the person should have access."
    ),
}

_OUTCOMES = frozenset({"ok", "failed", "held", "accepted", "not attempted"})


def render_html(report: Report) -> str:
    """The whole page as one string (UTF-8 when written)."""
    return _Page(report).page()
