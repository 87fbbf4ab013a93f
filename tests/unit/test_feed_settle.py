"""The settle rule of the feed reader (connector.feeds.settle), on real files: a file that
changed since it was last evaluated is read only once it has stopped changing, a file
that moves during its read is read again, one that never stops is held as unusable, and
a file that did not change since it was evaluated is read at once.

The settings are made with ``model_copy(update=...)`` so that this file also runs
against a reader without the settle rule (it then fails on its assertions)."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from connector.feeds import read_feeds, reader
from connector.model import FeedName, FeedState
from connector.settings import FeedsSettings

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo" / "feeds"
LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 11, 25, 17, tzinfo=UTC)
NEW_WORKER = "P7777,LWDB04,New,Person,new@example.org,Seattle,,active,\n"


@pytest.fixture
def feeds(tmp_path: Path) -> Path:
    d = tmp_path / "feeds"
    shutil.copytree(DEMO, d)
    old = time.time() - 600  # delivered ten minutes ago
    for p in d.iterdir():
        os.utime(p, (old, old))
    return d


def settings(d: Path, **settle: float) -> FeedsSettings:
    return FeedsSettings(dir=d, max_age_hours=0).model_copy(update=settle)


def read(s: FeedsSettings, **kw: Any) -> Any:
    return read_feeds(s, now=NOW, tz=LA, **kw)


def test_a_file_replaced_during_its_read_is_read_again(
    feeds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = feeds / "workers.csv"
    replaced = workers.read_text(encoding="utf-8") + NEW_WORKER
    parse = reader._parse

    def parse_then_replace(name: FeedName, *args: Any, **kw: Any) -> Any:
        out = parse(name, *args, **kw)
        if name is FeedName.WORKERS and not (feeds / "done").exists():
            (feeds / "done").touch()  # once: a new version arrives while this one is read
            tmp = feeds / "workers.csv.tmp"
            tmp.write_text(replaced, encoding="utf-8")
            tmp.replace(workers)
        return out

    monkeypatch.setattr(reader, "_parse", parse_then_replace)
    with capture_logs() as logs:
        fs = read(settings(feeds, settle_seconds=0.3, settle_max_seconds=10))
    assert "P7777" in {w.person_id for w in fs.workers}  # the version that stayed
    stamp = fs.health[FeedName.WORKERS].stamp
    assert stamp.digest == hashlib.sha256(replaced.encode()).hexdigest()
    assert (stamp.size, stamp.mtime_ns) == (workers.stat().st_size, workers.stat().st_mtime_ns)
    assert [e["file"] for e in logs if e["event"] == "feed.changed_during_read"] == ["workers.csv"]


def test_a_file_that_keeps_changing_is_held_as_still_being_written(feeds: Path) -> None:
    workers = feeds / "workers.csv"
    stop, writing = threading.Event(), threading.Event()

    def keep_writing() -> None:  # a slow copy: a row every 0.05 s
        n = 0
        while not stop.is_set():
            with workers.open("a", encoding="utf-8") as fh:
                fh.write(NEW_WORKER.replace("P7777", f"P8{n:04d}"))
            writing.set()
            n += 1
            time.sleep(0.05)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        assert writing.wait(10)
        started = time.monotonic()
        # a window no scheduling hiccup of a loaded machine reaches
        fs = read(settings(feeds, settle_seconds=1.0, settle_max_seconds=2.5))
        took = time.monotonic() - started
    finally:
        stop.set()
        writer.join()
    h = fs.health[FeedName.WORKERS]
    assert h.state is FeedState.UNREADABLE and "still being written" in h.detail, h
    assert fs.workers == () and h.stamp is None  # nothing of it was read
    assert FeedName.WORKERS in fs.unhealthy()
    assert 2.4 <= took < 15  # bounded by settle_max_seconds
    # the other feeds were read as usual
    assert fs.health[FeedName.TRAINING].state is FeedState.OK


def test_a_changed_file_waits_and_an_evaluated_one_is_read_at_once(feeds: Path) -> None:
    workers = feeds / "workers.csv"
    workers.write_text(workers.read_text(encoding="utf-8") + NEW_WORKER, encoding="utf-8")
    s = settings(feeds, settle_seconds=1.0, settle_max_seconds=10)
    started = time.monotonic()
    first = read(s)  # just written, never evaluated: read once it is 1 s old
    assert time.monotonic() - started >= 0.9
    assert "P7777" in {w.person_id for w in first.workers}
    seen = {name: h.stamp for name, h in first.health.items() if h.stamp is not None}
    assert set(seen) == set(FeedName)
    started = time.monotonic()
    again = read(s, seen=seen)  # the very files evaluated: no wait
    assert time.monotonic() - started < 0.9
    assert again.health[FeedName.WORKERS].stamp == seen[FeedName.WORKERS]


def test_the_bound_is_at_least_the_window() -> None:
    with pytest.raises(ValueError, match="settle_max_seconds"):
        FeedsSettings(settle_seconds=10, settle_max_seconds=5)
