"""The state folder's lock: one run at a time, and a bounded wait for ``plan -o``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from connector.state import state_lock
from connector.state.lock import StateBusyError


@pytest.mark.parametrize(
    ("held_for", "wait", "taken"),
    [
        (5.0, 0.0, False),  # no wait: busy at once
        (5.0, 0.3, False),  # held past the wait: busy, after waiting
        (0.3, 5.0, True),  # released within the wait: taken
    ],
)
def test_a_busy_state_folder_is_waited_for_up_to_the_wait(
    tmp_path: Path, held_for: float, wait: float, taken: bool
) -> None:
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with state_lock(tmp_path):
            holding.set()
            release.wait(held_for)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert holding.wait(5)
        started = time.monotonic()
        if taken:
            with state_lock(tmp_path, wait_seconds=wait):
                assert time.monotonic() - started < wait
        else:
            with (
                pytest.raises(StateBusyError, match="another misync run"),
                state_lock(tmp_path, wait_seconds=wait),
            ):
                pass
            assert time.monotonic() - started >= wait
    finally:
        release.set()
        t.join()
