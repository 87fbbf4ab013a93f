"""``valid_until``: decisions reused until it are exactly those of a fresh evaluation.

Walks the demo feeds' whole history (every contract, request, separation, NDA and
training date in them) from threshold to threshold and evaluates inside each interval:
every decision must equal the one at the interval's start."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.app import policy_rules
from connector.feeds import read_feeds
from connector.model.decisions import Decision
from connector.policy import evaluate_all
from connector.policy.horizon import valid_until
from connector.settings import load_settings

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo"


def _strip(ds: dict[str, Decision]) -> dict[str, Decision]:
    return {
        k: dataclasses.replace(d, as_of=datetime.min.replace(tzinfo=UTC)) for k, d in ds.items()
    }


@pytest.mark.parametrize("restore_on_cure", [True, False])
def test_no_decision_changes_before_the_horizon(restore_on_cure: bool) -> None:
    settings = load_settings(DEMO / "misync.toml")
    rules = dataclasses.replace(policy_rules(settings), restore_on_cure=restore_on_cure)
    feeds = read_feeds(
        settings.feeds.model_copy(update={"max_age_hours": 0}),
        now=datetime(2026, 11, 25, 17, tzinfo=UTC),
        tz=rules.tz,
        previous_rows={},
    )
    t = datetime(2026, 6, 15, tzinfo=UTC)
    end = datetime(2026, 12, 15, tzinfo=UTC)
    steps = changes = 0
    while t < end:
        h = valid_until(feeds, t, rules, max_feed_age=None)
        if not restore_on_cure:
            assert h == t  # nothing is reused: a reason names the instant itself
            return
        assert h > t
        assert h <= t + timedelta(days=1, hours=1)  # at least every local midnight
        base = _strip(evaluate_all(feeds, t, rules))
        span = h - t
        for frac in (0.5,):
            assert _strip(evaluate_all(feeds, t + span * frac, rules)) == base, (t, h, frac)
        assert _strip(evaluate_all(feeds, h - timedelta(microseconds=1), rules)) == base, (t, h)
        changes += _strip(evaluate_all(feeds, h, rules)) != base
        t = h
        steps += 1
    assert steps > 150
    assert changes >= 3  # the walk crossed real changes (grants, separations, contract ends)
