"""``read_lines`` (connector.feeds.lines): given lines of a feed file parse into exactly
the records a whole read makes of them; anything else is NoDelta, never a guess."""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import pytest

from connector.feeds import load_feed_layout
from connector.feeds.delta import NoDelta
from connector.feeds.lines import read_lines
from connector.feeds.reader import read_feed
from connector.model.feeds import FeedName
from connector.settings import FeedsSettings

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo" / "feeds"
sys.path.insert(0, str(ROOT / "bench"))
import generate as gen  # noqa: E402

LAYOUT = load_feed_layout(None)


@pytest.fixture(scope="module")
def feed_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("lines")
    gen.generate(work, 80, drift=0.0, missing=0.0, orphans=0)
    demo = work / "demo"
    shutil.copytree(DEMO, demo)
    return {"demo": demo, "generated": work / "feeds"}


def whole(d: Path, name: FeedName) -> list[object]:
    records, _, _ = read_feed(FeedsSettings(dir=d, max_age_hours=0, settle_seconds=0), name)
    return records


@pytest.mark.parametrize("which", ["demo", "generated"])
@pytest.mark.parametrize("name", list(FeedName), ids=[n.value for n in FeedName])
def test_given_lines_are_the_records_a_whole_read_makes(
    feed_dirs: dict[str, Path], which: str, name: FeedName
) -> None:
    d = feed_dirs[which]
    records = whole(d, name)
    assert records, f"{which}/{name.value}: no rows to test with"
    by_line = {r.source.line: r for r in records}  # type: ignore[attr-defined]
    data = (d / LAYOUT.files[name]).read_bytes()
    rnd = random.Random(f"{which}/{name.value}")  # noqa: S311 -- reproducible, not a secret
    lines = sorted(by_line)
    subsets = [lines, lines[:1], lines[-1:]]
    subsets += [rnd.sample(lines, rnd.randint(1, len(lines))) for _ in range(8)]
    for subset in subsets:
        got = read_lines(name, LAYOUT.files[name], data, subset, LAYOUT)
        assert got == [by_line[n] for n in sorted(set(subset))]


BAD_WORKER = "P9999999,ORG001,Bad,Row,not-an-address,Olympia,S1,active,"


@pytest.mark.parametrize(
    ("case", "edit", "lines"),
    [
        ("a rejected line", lambda t: t + BAD_WORKER + "\n", "last"),
        ("the header line", lambda t: t, [1]),
        ("a line past the end", lambda t: t, "past"),
        ("line 0", lambda t: t, [0]),
        ("a changed header", lambda t: t.replace("given_name", "first_name", 1), [2]),
        ("a blank line", lambda t: t + "\n", "last"),
        ("a line of two records", lambda t: t.replace("\n", '\n"', 1), [2]),
    ],
)
def test_anything_but_accepted_rows_is_no_delta(
    feed_dirs: dict[str, Path], case: str, edit: object, lines: object
) -> None:
    text = (feed_dirs["generated"] / "workers.csv").read_text(encoding="utf-8")
    assert callable(edit)
    data = edit(text)
    count = len(data.splitlines())
    wanted = (
        {"last": [count], "past": [count + 1]}.get(lines, lines)
        if isinstance(lines, str)
        else lines
    )
    assert isinstance(wanted, list)
    with pytest.raises(NoDelta):
        read_lines(FeedName.WORKERS, "workers.csv", data.encode(), [2, *wanted], LAYOUT)


def test_an_accepted_row_beside_a_rejected_one_is_still_read(feed_dirs: dict[str, Path]) -> None:
    """Only the lines asked for are judged: a bad row elsewhere does not matter."""
    path = feed_dirs["generated"] / "workers.csv"
    data = (path.read_text(encoding="utf-8") + BAD_WORKER + "\n").encode()
    got = read_lines(FeedName.WORKERS, "workers.csv", data, [2, 3], LAYOUT)
    assert got == [
        r for r in whole(feed_dirs["generated"], FeedName.WORKERS) if r.source.line in (2, 3)
    ]  # type: ignore[attr-defined]
