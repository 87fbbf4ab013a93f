"""The apply executor against an in-memory fake target (the real-server proof is in
tests/integration): ordering, journaling before the target is touched, retries."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.apply import Executor
from connector.model import Account, Action, Change, DesiredAccount, Op, Plan
from connector.targets.base import PermanentTargetError, TemporaryTargetError

NOW = datetime(2026, 11, 25, tzinfo=UTC)


class FakeJournal:
    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.entries: dict[int, tuple[str, str | None]] = {}
        self.reserved: dict[str, str] = {}
        self._lock = threading.Lock()

    def journal_begin(
        self,
        run_id: str,
        key: str,
        op: str,
        person_id: str | None,
        account_id: str | None,
        payload: dict[str, Any],
    ) -> int:
        with self._lock:
            n = len(self.entries) + 1
            self.entries[n] = ("begun", None)
            self.events.append(f"begin {op} {key}")
            return n

    def journal_end(self, entry_id: int, outcome: str, account_id: str | None, detail: str) -> None:
        with self._lock:
            self.entries[entry_id] = (outcome, detail)
            self.events.append(f"end {outcome}")

    def reserve_logon_id(self, person_id: str, logon_id: str) -> None:
        held_by = {v: k for k, v in self.reserved.items()}.get(logon_id)
        if held_by not in (None, person_id):
            raise ValueError(f"{logon_id} belongs to {held_by}")
        self.reserved[person_id] = logon_id


class FakeTarget:
    """Scripted failures per account id: a list of exceptions raised in turn."""

    def __init__(
        self, events: list[str], script: dict[str, list[Exception]], created: set[str]
    ) -> None:
        self.events = events
        self.script = script
        self.created = created

    description = "fake"

    def _maybe_fail(self, key: str) -> None:
        queue = self.script.get(key)
        if queue:
            raise queue.pop(0)

    def snapshot(self) -> Iterator[Account]:
        return iter(())

    def read(self, account_id: str) -> Account | None:
        return None

    def find(self, person_id: str) -> Account | None:
        self.events.append(f"find {person_id}")
        if person_id in self.created:
            return Account(f"id-{person_id}", person_id, None, True)
        return None

    def create(self, desired: DesiredAccount) -> str:
        self.events.append(f"create {desired.person_id}")
        if desired.person_id in self.created:
            raise PermanentTargetError("entryAlreadyExists")
        self.created.add(desired.person_id)  # lands on the server ...
        self._maybe_fail(desired.person_id)  # ... and the answer may still be lost
        return f"id-{desired.person_id}"

    def update(self, account_id: str, changes: Sequence[Change]) -> None:
        self.events.append(f"update {account_id}")
        self._maybe_fail(account_id)

    def set_enabled(self, account_id: str, enabled: bool) -> None:
        self.events.append(f"{'enable' if enabled else 'disable'} {account_id}")
        self._maybe_fail(account_id)

    def close(self) -> None:
        pass


def action(op: Op, who: str) -> Action:
    desired = DesiredAccount(who, who.lower(), True, {}) if op is Op.CREATE else None
    account = None if op is Op.CREATE else who
    return Action(op, who, account, who.lower(), (), (), None, desired)


def execute(
    actions: list[Action],
    script: dict[str, list[Exception]],
    *,
    created: set[str] | None = None,
    max_attempts: int = 3,
) -> tuple[Any, list[str], list[float], FakeJournal]:
    events: list[str] = []
    sleeps: list[float] = []
    journal = FakeJournal(events)
    done = created if created is not None else set()
    ex = Executor(
        target_factory=lambda: FakeTarget(events, script, done),
        journal=journal,
        workers=1,
        max_attempts=max_attempts,
        backoff=1.0,
        backoff_max=60,
        sleep=sleeps.append,
    )
    report = ex.apply(Plan(as_of=NOW, target="fake", actions=tuple(actions)), "run1")
    return report, events, sleeps, journal


def test_journal_is_written_before_the_target_is_touched() -> None:
    _, events, _, _ = execute([action(Op.DISABLE, "A")], {})
    assert events == ["begin disable A", "disable A", "end ok"]


def test_phases_revoke_before_grant() -> None:
    acts = [
        action(Op.CREATE, "C"),
        action(Op.ENABLE, "E"),
        action(Op.UPDATE, "U"),
        action(Op.DISABLE, "D"),
    ]
    _, events, _, _ = execute(acts, {})
    touched = [e for e in events if not e.startswith(("begin", "end", "find"))]
    assert touched == ["disable D", "update U", "enable E", "create C"]


@pytest.mark.parametrize(
    ("failures", "status", "attempts", "sleeps"),
    [
        pytest.param([], "ok", 1, [], id="first-try"),
        pytest.param(
            [TemporaryTargetError("busy", retry_after=7)], "ok", 2, [7], id="honours-retry-after"
        ),
        pytest.param(
            [TemporaryTargetError("busy", retry_after=600)], "ok", 2, [60], id="retry-after-capped"
        ),
        pytest.param(
            [TemporaryTargetError("busy")] * 3, "failed", 3, None, id="gives-up-after-max"
        ),
        pytest.param(
            [PermanentTargetError("bad", detail="objectClassViolation")],
            "failed",
            1,
            [],
            id="permanent-no-retry",
        ),
    ],
)
def test_retry_table(
    failures: list[Exception], status: str, attempts: int, sleeps: list[float] | None
) -> None:
    report, _, slept, journal = execute([action(Op.DISABLE, "A")], {"A": list(failures)})
    (outcome,) = report.outcomes
    assert (outcome.status, outcome.attempts) == (status, attempts)
    if sleeps is not None:
        assert slept == sleeps
    else:
        assert len(slept) == attempts - 1 and all(0 < s <= 60 for s in slept)
    assert journal.entries[1][0] == status


def test_one_failure_does_not_stop_the_others() -> None:
    acts = [action(Op.DISABLE, x) for x in "ABC"]
    report, _, _, _ = execute(acts, {"B": [PermanentTargetError("no")]})
    assert [(o.action.person_id, o.status) for o in report.outcomes] == [
        ("A", "ok"),
        ("B", "failed"),
        ("C", "ok"),
    ]


def test_create_retry_looks_up_before_resending() -> None:
    # the first create lands on the server but the answer is lost (timeout)
    class LandedThenTimeout(TemporaryTargetError):
        pass

    created: set[str] = set()
    script: dict[str, list[Exception]] = {"P1": [LandedThenTimeout("timeout")]}
    report, events, _, _ = execute([action(Op.CREATE, "P1")], script, created=created)
    assert report.outcomes[0].status == "ok"
    assert report.outcomes[0].account_id == "id-P1"
    assert events.count("create P1") == 1  # not sent twice
    assert events.index("find P1") > events.index("create P1")


def test_logon_conflict_fails_before_touching_target() -> None:
    events: list[str] = []
    journal = FakeJournal(events)
    journal.reserved["OTHER"] = "p1"
    ex = Executor(target_factory=lambda: FakeTarget(events, {}, set()), journal=journal, workers=1)
    report = ex.apply(Plan(as_of=NOW, target="fake", actions=(action(Op.CREATE, "P1"),)), "r")
    assert report.failed and "logon ID" in report.failed[0].detail
    assert not any(e.startswith("create") for e in events)


@pytest.mark.parametrize("workers", [1, 3])
def test_outcomes_are_journaled_as_they_finish_with_bounded_work_in_flight(workers: int) -> None:
    """A crash may leave open only the entries of actions in flight: at most ``workers``
    begun-but-unfinished entries at any moment, and every outcome journaled as soon as
    its action finished (not after the whole phase). Outcomes still come back in plan order."""
    events: list[str] = []
    journal = FakeJournal(events)
    most_open = 0
    lock = threading.Lock()

    class Watching(FakeTarget):
        def set_enabled(self, account_id: str, enabled: bool) -> None:
            nonlocal most_open
            with lock:
                open_now = sum(1 for state, _ in journal.entries.values() if state == "begun")
                most_open = max(most_open, open_now)
            super().set_enabled(account_id, enabled)

    ex = Executor(
        target_factory=lambda: Watching(events, {}, set()),
        journal=journal,
        workers=workers,
        sleep=lambda _: None,
    )
    actions = tuple(action(Op.DISABLE, f"A{i:02}") for i in range(20))
    report = ex.apply(Plan(as_of=NOW, target="fake", actions=actions), "run1")
    assert 1 <= most_open <= workers
    assert [o.action.person_id for o in report.outcomes] == [a.person_id for a in actions]
    assert all(state == "ok" for state, _ in journal.entries.values())
