"""The fast path's incremental evaluation (connector.runs.incremental) against the full
one: after each kind of feed change, either it declines (the caller reads the feeds
whole) or it gives exactly what ``connector.runs.planning.evaluate`` gives at the same
instant: the same records, rejected rows, health and decisions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.app import Runtime
from connector.policy.horizon import valid_until
from connector.runs.incremental import FeedDeltas
from connector.runs.planning import Evaluation, evaluate, horizon
from connector.settings import load_settings
from tests.configs import ldap_toml
from tests.integration.test_daemon import LA, append_row, write_world

PEOPLE = 30


def _runtime(tmp_path: Path) -> Runtime:
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    write_world(feeds, PEOPLE)
    pw = tmp_path / "pw"
    pw.write_text("unused")
    body = ldap_toml(
        feeds=feeds,
        url="ldap://127.0.0.1:9",  # never contacted: nothing here reads the directory
        bind_dn="cn=admin,dc=example",
        password_file=pw,
        base_dn="ou=people,dc=example",
        group_base_dn="ou=groups,dc=example",
    ).replace("max_age_hours = 0", "max_age_hours = 0\nsettle_seconds = 0")
    cfg.write_text(f'{body}\n\n[state]\ndir = "{state}"\n', encoding="utf-8")
    return Runtime(load_settings(cfg))


def _rewrite(path: Path, edit: Callable[[list[str]], list[str]], *, end: str = "\n") -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(edit(lines)) + end, encoding="utf-8")
    tmp.replace(path)


def _sep(pid: str, at: str = "") -> str:
    when = at or (datetime.now(LA) - timedelta(minutes=5)).isoformat()
    return f"{pid},LWDB04,{when},quit"


def _roster_separated(lines: list[str]) -> list[str]:
    return [
        line.replace(",active,", ",separated,2025-11-01") if line.startswith("P5003,") else line
        for line in lines
    ]


def _two_halves(feeds: Path) -> None:
    """A separation row written in two halves: the first half has no line end."""
    path = feeds / "separations.csv"
    path.write_text(path.read_text(encoding="utf-8") + "P5004,LWDB04,2025-", encoding="utf-8")


#: (case, change, what the incremental path should do: "delta" or "full")
CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("appended separation", lambda f: append_row(f / "separations.csv", _sep("P5001")), "delta"),
    (
        "two appended separations and a roster edit",
        lambda f: (
            append_row(f / "separations.csv", _sep("P5001")),
            append_row(f / "separations.csv", _sep("P5002")),
            _rewrite(f / "workers.csv", _roster_separated),
        ),
        "delta",
    ),
    ("edited roster row", lambda f: _rewrite(f / "workers.csv", _roster_separated), "delta"),
    ("removed last roster row", lambda f: _rewrite(f / "workers.csv", lambda ls: ls[:-1]), "delta"),
    (
        "removed roster row in the middle (later rows move)",
        lambda f: _rewrite(f / "workers.csv", lambda ls: ls[:5] + ls[6:]),
        "delta",
    ),
    (
        "rejected separation row (bad instant)",
        lambda f: append_row(f / "separations.csv", "P5005,LWDB04,not-a-date,quit"),
        "delta",
    ),
    ("separation written in two halves (first half)", _two_halves, "delta"),
    (
        "separation dated ahead",
        lambda f: append_row(
            f / "separations.csv", _sep("P5006", (datetime.now(LA) + timedelta(days=2)).isoformat())
        ),
        "delta",
    ),
    (
        "organization row change",
        lambda f: _rewrite(
            f / "organizations.csv", lambda ls: [ls[0], ls[1].replace("lwdb", "other")]
        ),
        "full",
    ),
    (
        "contract row change",
        lambda f: append_row(
            f / "contracts.csv", "W-2,LWDB04,wioa_services,dol,,2025-06-01,2025-07-01,,,,,"
        ),
        "full",
    ),
    (
        "header change",
        lambda f: _rewrite(
            f / "separations.csv", lambda ls: ["person_id,org_id,separated_at,reason,extra"]
        ),
        "full",
    ),
    (
        "duplicate roster row appended",
        lambda f: append_row(
            f / "workers.csv", "P5007,LWDB04,Again,Twice,x@example.org,Seattle,R900,active,"
        ),
        "full",
    ),
    (
        "separation of the designated requester",
        lambda f: append_row(f / "separations.csv", _sep("R900")),
        "full",
    ),
    (
        "separation of a person no feed named (ids folded by the target)",
        lambda f: append_row(f / "separations.csv", _sep("p5001")),
        "full",
    ),
    (
        "roster rows re-sorted (every line changes; small file: still by row)",
        lambda f: _rewrite(f / "workers.csv", lambda ls: [*ls[:2], *reversed(ls[2:])]),
        "delta",
    ),
    (
        "roster re-sorted, the requester's row moved",
        lambda f: _rewrite(f / "workers.csv", lambda ls: [ls[0], *reversed(ls[1:])]),
        "full",
    ),
    (
        "roster line with an open quote",
        lambda f: append_row(f / "workers.csv", 'P5999,"LWDB04,x,y,z@example.org,S,,active,'),
        "full",
    ),
]


def _same(inc: Evaluation, full: Evaluation) -> None:
    """The incremental evaluation is the full one (decisions compared as of one instant:
    an untouched person's decision keeps the baseline's ``as_of``, as a reused one does)."""
    assert inc.feeds == full.feeds
    assert inc.decisions.keys() == full.decisions.keys()
    for pid, d in full.decisions.items():
        assert dataclasses.replace(inc.decisions[pid], as_of=d.as_of) == d, pid


def _baseline(rt: Runtime) -> tuple[FeedDeltas, Evaluation]:
    deltas = FeedDeltas()
    with rt.store() as store:
        ev = evaluate(rt, store, rt.clock())
    deltas.offer(rt, ev)
    deltas.resolved(rt)
    return deltas, ev


@pytest.mark.parametrize(("case", "change", "expected"), CASES, ids=[c[0] for c in CASES])
def test_incremental_evaluation_equals_the_full_one(
    tmp_path: Path, case: str, change: Callable[[Path], Any], expected: str
) -> None:
    rt = _runtime(tmp_path)
    deltas, base = _baseline(rt)
    change(rt.settings.feeds.dir)
    now = rt.clock()
    with rt.store() as store:
        inc = deltas.evaluate(rt, store, now)
        full = evaluate(rt, store, now)
    if expected == "full":
        assert inc is None, case
        return
    assert inc is not None, case
    _same(inc.evaluation, full)
    # only the people on changed rows were evaluated again; everyone else is the baseline's
    again = {p for p, d in inc.evaluation.decisions.items() if d is not base.decisions.get(p)}
    assert again <= inc.touched


def test_a_chain_of_changes_stays_equal_to_the_full_evaluation(tmp_path: Path) -> None:
    """Each incremental evaluation, once its run finished, is the next one's baseline:
    a separation written in two halves, then completed, then a roster edit."""
    rt = _runtime(tmp_path)
    deltas, _ = _baseline(rt)
    feeds = rt.settings.feeds.dir
    steps: list[Callable[[], Any]] = [
        lambda: _two_halves(feeds),
        lambda: (feeds / "separations.csv").write_text(
            (feeds / "separations.csv").read_text(encoding="utf-8") + "11-20T17:00:00-08:00,quit\n",
            encoding="utf-8",
        ),
        lambda: _rewrite(feeds / "workers.csv", _roster_separated),
        lambda: _rewrite(feeds / "workers.csv", lambda ls: ls[:-2]),
    ]
    for step in steps:
        step()
        now = rt.clock()
        with rt.store() as store:
            inc = deltas.evaluate(rt, store, now)
            full = evaluate(rt, store, now)
        assert inc is not None
        _same(inc.evaluation, full)
        # the horizon it carries (from the baseline's and the changed rows') is never
        # later than a pass over every row gives
        assert horizon(rt, inc.evaluation) <= valid_until(
            full.feeds, now, rt.rules, max_feed_age=None
        )
        deltas.offer(rt, inc.evaluation)
        deltas.resolved(rt)
    sep = next(r for r in full.feeds.separations if r.person_id == "P5004")
    assert sep.separated_at.isoformat().startswith("2025-11-20")


def test_no_baseline_after_a_failed_run(tmp_path: Path) -> None:
    """An evaluation offered by a run that did not finish is never a baseline: its
    decisions may not be recorded, so the next fast path must read the feeds whole."""
    rt = _runtime(tmp_path)
    deltas, ev = _baseline(rt)
    deltas.offer(rt, ev)
    deltas.forget()  # what the daemon does when the run failed
    append_row(rt.settings.feeds.dir / "separations.csv", _sep("P5001"))
    with rt.store() as store:
        assert deltas.evaluate(rt, store, rt.clock()) is None


def test_past_the_horizon_the_feeds_are_read_whole(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    deltas, ev = _baseline(rt)
    append_row(rt.settings.feeds.dir / "separations.csv", _sep("P5001"))
    with rt.store() as store:
        assert deltas.evaluate(rt, store, ev.as_of + timedelta(days=400)) is None
        assert deltas.evaluate(rt, store, ev.as_of - timedelta(seconds=1)) is None


def test_a_file_replaced_wholesale_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``MAX_CHANGED_SHARE`` of its lines changed, a file is read whole (the row
    path would cost as much); the floor that lets a small file change whole is off."""
    from connector.feeds import delta

    monkeypatch.setattr(delta, "MIN_CHANGED_LINES", 0)
    rt = _runtime(tmp_path)
    deltas, _ = _baseline(rt)
    _rewrite(rt.settings.feeds.dir / "workers.csv", lambda ls: [*ls[:2], *reversed(ls[2:])])
    with rt.store() as store:
        assert deltas.evaluate(rt, store, rt.clock()) is None


def test_a_file_still_being_written_is_never_read_by_row(tmp_path: Path) -> None:
    """The settle rule holds on this path too: a file changed less than
    ``feeds.settle_seconds`` ago is waited for, and one still changing when
    ``feeds.settle_max_seconds`` runs out is not read (the whole read then decides)."""
    rt = _runtime(tmp_path)
    deltas, _ = _baseline(rt)
    feeds = rt.settings.feeds.model_copy(update={"settle_seconds": 30.0, "settle_max_seconds": 0.3})
    rt.settings = rt.settings.model_copy(update={"feeds": feeds})
    _two_halves(rt.settings.feeds.dir)  # just written: younger than 30 s
    with rt.store() as store:
        assert deltas.evaluate(rt, store, rt.clock()) is None
