"""Resource limits on input: a feed over ``feeds.max_bytes`` or ``feeds.max_rows`` is
refused (unusable, named with its file and the limit) and contributes nothing; under
the limits the feed is read line by line (never whole in memory). The memory figures
are measured by ``bench/feed_memory.py``, not asserted here."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connector.feeds import read_feeds
from connector.model import FeedName, FeedState
from connector.settings import FeedsSettings

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo" / "feeds"
NOW = datetime(2026, 11, 25, 17, tzinfo=UTC)
TZ = ZoneInfo("America/Los_Angeles")


@pytest.fixture
def feeds(tmp_path: Path) -> Path:
    d = tmp_path / "feeds"
    shutil.copytree(DEMO, d)
    return d


def read(d: Path, **kw: object):  # type: ignore[no-untyped-def]
    s = FeedsSettings(
        dir=d, mapping=ROOT / "mappings" / "feeds.toml", max_age_hours=0, settle_seconds=0, **kw
    )
    return read_feeds(s, now=NOW, tz=TZ)


@dataclass(frozen=True)
class Limit:
    settings: dict[str, int]
    state: FeedState
    detail: str  # a fragment of the health detail ("" when OK)


def _training_rows() -> int:
    return len((DEMO / "training.csv").read_text().splitlines()) - 1


LIMITS = {
    "no limit": Limit({"max_bytes": 0, "max_rows": 0}, FeedState.OK, ""),
    "rows at the limit": Limit({"max_rows": _training_rows()}, FeedState.OK, ""),
    "one row over": Limit(
        {"max_rows": _training_rows() - 1}, FeedState.UNREADABLE, "feeds.max_rows ("
    ),
    "bytes at the limit": Limit(
        {"max_bytes": (DEMO / "training.csv").stat().st_size}, FeedState.OK, ""
    ),
    "one byte over": Limit(
        {"max_bytes": (DEMO / "training.csv").stat().st_size - 1},
        FeedState.UNREADABLE,
        "more than feeds.max_bytes (",
    ),
}


@pytest.mark.parametrize("limit", LIMITS.values(), ids=LIMITS.keys())
def test_a_feed_over_a_limit_is_refused_and_named(feeds: Path, limit: Limit) -> None:
    # the other feeds are smaller than training.csv, except where the limit says rows
    others = {n: (feeds / f"{n.value}.csv") for n in FeedName}
    got = read(feeds, **limit.settings)
    h = got.health[FeedName.TRAINING]
    assert h.state is limit.state, h.detail
    if limit.detail:
        assert h.detail.startswith("training.csv"), h.detail
        assert limit.detail in h.detail, h.detail
        assert got.training == ()  # contributes nothing: no half-read feed
    else:
        assert len(got.training) == _training_rows() - 1  # the demo's one rejected row
    assert set(others) == set(got.health)


def test_defaults_are_set_and_documented() -> None:
    s = FeedsSettings()
    assert (s.max_bytes, s.max_rows) == (256 * 1024 * 1024, 2_000_000)
    readme = (ROOT / "README.md").read_text()
    assert "max_bytes" in readme and "max_rows" in readme


def test_a_feed_that_grows_past_the_limit_while_read_is_refused(
    feeds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size is checked before reading and again while reading (a file still being
    written): a file that measured small but yields more is refused, not half-read."""
    import os

    real = os.fstat
    size = (feeds / "training.csv").stat().st_size

    def small(fd: int) -> os.stat_result:
        st = real(fd)
        return os.stat_result((*st[:6], 10, *st[7:]))  # st_size = 10: looks tiny

    monkeypatch.setattr("connector.feeds.reader.os.fstat", small)
    got = read(feeds, max_bytes=size - 1)
    h = got.health[FeedName.TRAINING]
    assert (h.state, "grew past" in h.detail) == (FeedState.UNREADABLE, True), h.detail


def test_the_digest_covers_the_whole_file_even_when_reading_stops_early(feeds: Path) -> None:
    import hashlib

    path = feeds / "training.csv"
    path.write_bytes(path.read_bytes() + b'P1,"unterminated\n' + b"P2,MIS Basic,2026-01-01\n" * 5)
    h = read(feeds).health[FeedName.TRAINING]
    assert h.state is FeedState.UNREADABLE
    assert h.digest == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("damage", "state", "detail"),
    [
        pytest.param(lambda b: b.replace(b"\n", b"\r\n"), FeedState.OK, "", id="CR LF"),
        pytest.param(lambda b: b + b"P1\r", FeedState.OK, "", id="CR at the very end"),
        pytest.param(
            lambda b: b.replace(b"\n", b"\r"),
            FeedState.UNREADABLE,
            "ndas.csv line 1: malformed",
            id="CR",
        ),
        pytest.param(  # found by the fuzzer: line numbers counted CRs, grep -n does not
            lambda b: b.replace(b"\n", b"\n\r", 2),
            FeedState.UNREADABLE,
            "ndas.csv line 2: malformed",
            id="one CR",
        ),
    ],
)
def test_lines_end_with_lf_or_crlf_so_every_line_number_is_grep_n(
    feeds: Path,
    damage,
    state: FeedState,
    detail: str,  # type: ignore[no-untyped-def]
) -> None:
    path = feeds / "ndas.csv"
    path.write_bytes(damage(path.read_bytes()))
    h = read(feeds).health[FeedName.NDAS]
    assert (h.state, detail in h.detail) == (state, True), h.detail
