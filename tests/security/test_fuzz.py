"""Property-based fuzzing (hypothesis) of the feed reader, the policy engine and the
planner, on the demo feeds and on damaged copies of them.

- the reader never raises, and every rejected row names its file, a real line and a
  column of the header (or, for a row of the wrong shape, says so);
- no create or enable is planned for anybody a rejected row names (their person id, or
  their organization for the organization and contract feeds);
- shuffling the rows of every feed changes no decision and no planned action;
- a feed truncated at any byte never yields more disables than the mass-disable guard
  lets through, and none of them counts as evidenced.

Profiles: ``fast`` (default, a few seconds per property) and ``long``
(``HYPOTHESIS_PROFILE=long``, 1200 examples per property), registered in tests/security/conftest.py.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from connector.app import policy_rules
from connector.feeds import load_feed_layout, read_feeds
from connector.mapping import load_mapping
from connector.model import Account, FeedName, FeedSet, Op
from connector.policy import evaluate_all
from connector.reconcile import PlanInputs, build_plan
from connector.settings import FeedsSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo" / "feeds"
NOW = datetime(2026, 11, 25, 17, tzinfo=UTC)
TZ = ZoneInfo("America/Los_Angeles")
LAYOUT = load_feed_layout(ROOT / "mappings" / "feeds.toml")
MAPPING = load_mapping(ROOT / "mappings" / "openldap-ppolicy.toml")
RULES = policy_rules(
    Settings(target={"ldap": {"base_dn": "ou=people,dc=x", "group_base_dn": "ou=g,dc=x"}})
)
FILES = {name: LAYOUT.files[name] for name in FeedName}
BASE = {name: (DEMO / FILES[name]).read_bytes() for name in FeedName}
ORG_FEEDS = (FeedName.ORGANIZATIONS, FeedName.CONTRACTS)
SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@pytest.fixture
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="misync-fuzz-") as d:
        yield Path(d)


def write(folder: Path, files: dict[FeedName, bytes]) -> None:
    for name in FeedName:
        (folder / FILES[name]).write_bytes(files.get(name, BASE[name]))


def read(folder: Path, previous: dict[FeedName, int] | None = None) -> FeedSet:
    s = FeedsSettings(
        dir=folder, mapping=ROOT / "mappings" / "feeds.toml", max_age_hours=0, settle_seconds=0
    )
    return read_feeds(s, now=NOW, tz=TZ, previous_rows=previous, layout=LAYOUT)


def plan(feeds: FeedSet, accounts: list[Account], max_unexplained: int = 25):  # type: ignore[no-untyped-def]
    decisions = evaluate_all(feeds, NOW, RULES)
    inputs = PlanInputs(
        as_of=NOW,
        feeds=feeds,
        decisions=decisions,
        accounts=accounts,
        mapping=MAPPING,
        target="fuzz",
        max_unexplained=max_unexplained,
    )
    return decisions, build_plan(inputs)


def rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def to_bytes(table: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(table)
    return out.getvalue().encode("utf-8")


# -- damage --------------------------------------------------------------------------------

junk = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12
) | st.sampled_from(["", " ", "P1001", "2026-02-30", "true", "approved", "add", "\ufeff", "a\nb"])


@st.composite
def damaged(draw: st.DrawFn) -> dict[FeedName, bytes]:
    """One to three feeds, each with a few damages: a field replaced by junk, a junk
    line, a deleted or duplicated line, raw bytes, a truncation."""
    files: dict[FeedName, bytes] = {}
    for name in draw(st.lists(st.sampled_from(list(FeedName)), min_size=1, max_size=3)):
        data = files.get(name, BASE[name])
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["field", "line", "drop", "dup", "bytes", "cut"]))
            try:
                table = rows(data)
            except (UnicodeDecodeError, csv.Error):
                table = []  # damaged already: only line-level damage from here
            if kind == "field" and len(table) > 1:
                r = draw(st.integers(1, len(table) - 1))
                if table[r]:  # (an empty line has no field)
                    table[r][draw(st.integers(0, len(table[r]) - 1))] = draw(junk)
                    data = to_bytes(table)
            elif kind == "line":
                lines = data.split(b"\n")
                at = draw(st.integers(1, len(lines)))
                lines.insert(at, ",".join(draw(st.lists(junk, max_size=14))).encode())
                data = b"\n".join(lines)
            elif kind in ("drop", "dup") and len(table) > 2:
                r = draw(st.integers(1, len(table) - 1))
                table[r : r + 1] = [] if kind == "drop" else [table[r], table[r]]
                data = to_bytes(table)
            elif kind == "bytes":
                at = draw(st.integers(0, len(data)))
                data = data[:at] + draw(st.binary(min_size=1, max_size=6)) + data[at:]
            elif kind == "cut":
                data = data[: draw(st.integers(0, len(data)))]
        files[name] = data
    return files


@settings(suppress_health_check=SUPPRESS)
@given(files=damaged())
def test_the_reader_never_raises_and_names_every_bad_row(
    folder: Path, files: dict[FeedName, bytes]
) -> None:
    write(folder, files)
    got = read(folder)  # never raises
    for r in got.rejected:
        name = FeedName(r.feed)
        data = files.get(name, BASE[name])
        assert r.file == FILES[name]
        assert 2 <= r.line <= data.count(b"\n") + 1, r
        if r.column is None:  # a row rejected whole: its shape, or a last line cut short
            assert "fields where the header has" in r.reason or (
                "no line end" in r.reason and not data.endswith(b"\n")
            ), r
        else:
            header = data.decode("utf-8-sig").splitlines()[0].split(",")
            assert r.column in [h.strip() for h in header], r
        assert r.reason
    for h in got.health.values():
        if not h.healthy:
            assert h.detail.startswith(h.file), h


@settings(suppress_health_check=SUPPRESS)
@given(files=damaged())
def test_no_access_is_granted_to_anybody_a_rejected_row_names(
    folder: Path, files: dict[FeedName, bytes]
) -> None:
    write(folder, files)
    feeds = read(folder)
    _, p = plan(feeds, [])
    people = {r.key for r in feeds.rejected if FeedName(r.feed) not in ORG_FEEDS}
    orgs = {r.key for r in feeds.rejected if FeedName(r.feed) in ORG_FEEDS}
    org_of = {w.person_id: w.org_id for w in feeds.workers}
    for a in p.actions:
        if a.op in (Op.CREATE, Op.ENABLE):
            assert a.person_id not in people, (a.person_id, feeds.rejected)
            assert org_of.get(a.person_id or "") not in orgs, (a.person_id, feeds.rejected)


def decision_view(decisions):  # type: ignore[no-untyped-def]
    return {
        pid: (
            d.status,
            sorted((r.code, r.clause) for r in d.reasons),
            sorted((r.code, r.clause) for r in d.flags),
            d.grant.request_id if d.grant else None,
            d.profile,
            d.offices,
        )
        for pid, d in decisions.items()
    }


def plan_view(p):  # type: ignore[no-untyped-def]
    return sorted(
        (a.op.value, a.key, tuple(sorted((c.name, c.new) for c in a.changes))) for a in p.actions
    ), sorted((h.action.op.value, h.action.key, h.code) for h in p.held)


@settings(suppress_health_check=SUPPRESS)
@given(data=st.data())
def test_shuffling_rows_changes_no_decision_and_no_action(
    folder: Path, data: st.DataObject
) -> None:
    write(folder, {})
    base_decisions, base_plan = plan(read(folder), [])
    shuffled: dict[FeedName, bytes] = {}
    for name in FeedName:
        table = rows(BASE[name])
        body = data.draw(st.permutations(table[1:]), label=name.value)
        shuffled[name] = to_bytes([table[0], *body])
    write(folder, shuffled)
    decisions, p = plan(read(folder), [])
    assert decision_view(decisions) == decision_view(base_decisions)
    assert plan_view(p) == plan_view(base_plan)


# -- truncation and the mass-disable guard --------------------------------------------------

CROWD = 40  # entitled people added to the demo, each with an enabled account


def crowd() -> dict[FeedName, bytes]:
    """The demo plus CROWD people entitled exactly as P1001 is (same organization,
    contracts, requester), with their own rows in every personal feed."""
    files = dict(BASE)
    for name in FeedName:
        table = rows(BASE[name])
        template = [r for r in table[1:] if "P1001" in r]
        for i in range(CROWD):
            pid = f"P7{i:03d}"
            for r in template:
                row = [v.replace("P1001", pid).replace("REQ-001", f"REQ-7{i:03d}") for v in r]
                row = [v.replace("ana.ortiz@", f"p7{i:03d}@") for v in row]
                table.append(row)
        files[name] = to_bytes(table)
    return files


CROWD_FILES = crowd()
CROWD_ACCOUNTS = [
    Account(f"uid=p7{i:03d},ou=people,dc=x", f"P7{i:03d}", f"p7{i:03d}", True, {}, frozenset())
    for i in range(CROWD)
]
GUARD = 2  # max unexplained disables in the fuzz plans (share: the default 5% of 40 = 2)


@settings(suppress_health_check=SUPPRESS)
@given(feed=st.sampled_from(list(FeedName)), cut=st.floats(0, 1), data=st.data())
def test_a_truncated_feed_never_yields_an_unguarded_mass_disable(
    folder: Path, feed: FeedName, cut: float, data: st.DataObject
) -> None:
    write(folder, CROWD_FILES)
    full = read(folder)
    decisions, p = plan(full, CROWD_ACCOUNTS, GUARD)
    assert all(decisions[f"P7{i:03d}"].entitled for i in range(CROWD))
    assert not [a for a in p.actions if a.op is Op.DISABLE and a.person_id in decisions]
    previous = {h.feed: h.rows for h in full.health.values()}

    body = CROWD_FILES[feed]
    at = int(len(body) * cut)
    assume(at < len(body))
    write(folder, {**CROWD_FILES, feed: body[:at]})
    _, p = plan(read(folder, previous), CROWD_ACCOUNTS, GUARD)
    crowd_ids = {a.account_id for a in CROWD_ACCOUNTS}
    disables = [a for a in p.actions if a.op is Op.DISABLE and a.account_id in crowd_ids]
    assert len(disables) <= GUARD, [(a.person_id, [r.code for r in a.reasons]) for a in disables]
    assert not [a for a in disables if a.evidenced], disables


def test_a_row_cut_after_a_separator_is_rejected_not_read_with_empty_values(folder: Path) -> None:
    """The case the fuzzer found: the contracts feed cut inside DS-100's row, just after
    the comma before its Data Owner approval, still has every field (the last one empty),
    so the row read as "not approved by the Data Owner": evidence, never held by the
    guard, 40 entitled people disabled. The last line has no line end: it is rejected
    with its key, and what it drives is held for that organization."""
    write(folder, CROWD_FILES)
    previous = {h.feed: h.rows for h in read(folder).health.values()}
    body = CROWD_FILES[FeedName.CONTRACTS]
    cut = body[: int(len(body) * 0.419921875)]
    assert cut.endswith(b",2025-06-12,")  # every field there, the last one empty
    write(folder, {**CROWD_FILES, FeedName.CONTRACTS: cut})
    feeds = read(folder, previous)
    _, p = plan(feeds, CROWD_ACCOUNTS, GUARD)
    crowd_ids = {a.account_id for a in CROWD_ACCOUNTS}
    assert not [a for a in p.actions if a.op is Op.DISABLE and a.account_id in crowd_ids]
    (rejected,) = [r for r in feeds.rejected if r.feed == FeedName.CONTRACTS.value]
    assert (rejected.line, rejected.key) == (3, "LWDB04")  # the subject: its organization
    assert "no line end" in rejected.reason


def test_the_fuzz_profile_is_documented() -> None:
    text = (ROOT / "docs" / "SECURITY.md").read_text(encoding="utf-8")
    assert "HYPOTHESIS_PROFILE=long" in text
