"""The apply executor against an in-memory fake target (the real-server proof is in
tests/integration): ordering, journaling before the target is touched, retries."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from connector.executor import Executor
from connector.model import Account, Action, Change, DesiredAccount, Op, Plan
from connector.state import JournalClose, LogonIdConflictError
from connector.targets.base import (
    PermanentTargetError,
    TargetNotRespondingError,
    TemporaryTargetError,
)

NOW = datetime(2026, 11, 25, tzinfo=UTC)


class FakeJournal:
    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.entries: dict[int, tuple[str, str | None]] = {}
        self.closed: dict[int, int | None] = {}  # entry -> audit seq
        self.reserved: dict[str, str] = {}
        self._lock = threading.Lock()

    def journal_begin_many(
        self,
        run_id: str,
        items: Sequence[tuple[str, str, str | None, str | None, dict[str, Any]]],
    ) -> list[int]:
        with self._lock:
            ids = []
            for key, op, _pid, _aid, _payload in items:
                n = len(self.entries) + 1
                self.entries[n] = ("begun", None)
                self.events.append(f"begin {op} {key}")
                ids.append(n)
            return ids

    def journal_record(self, items: Sequence[tuple[int, str, str | None, str]]) -> None:
        with self._lock:
            for entry, outcome, _account, detail in items:
                self.entries[entry] = (outcome, detail)

    def journal_close(self, items: Sequence[JournalClose]) -> None:
        with self._lock:
            for c in items:
                self.closed[c.entry_id] = c.audit_seq
                self.events.append(f"end {self.entries[c.entry_id][0]}")

    def reserve_logon_id(self, person_id: str, logon_id: str) -> None:
        held_by = {v: k for k, v in self.reserved.items()}.get(logon_id)
        if held_by not in (None, person_id):
            raise LogonIdConflictError(f"{logon_id} belongs to {held_by}")
        self.reserved[person_id] = logon_id


class FakeTarget:
    """Scripted failures per account id: a list of exceptions raised in turn."""

    def __init__(
        self,
        events: list[str],
        script: dict[str, list[Exception]],
        created: set[str],
        stuck: frozenset[str] = frozenset(),
    ) -> None:
        self.events = events
        self.script = script
        self.created = created
        self.stuck = stuck  # accounts whose enable/disable is accepted but does not take
        self.disabled: set[str] = set()

    description = "fake"

    def _maybe_fail(self, key: str) -> None:
        queue = self.script.get(key)
        if queue:
            raise queue.pop(0)

    def snapshot(self) -> Iterator[Account]:
        return iter(())

    def read(self, account_id: str) -> Account | None:
        return Account(account_id, account_id, None, account_id not in self.disabled)

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
        if account_id in self.stuck:
            return
        if enabled:
            self.disabled.discard(account_id)
        else:
            self.disabled.add(account_id)

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


def test_a_bug_in_an_action_is_journaled_as_internal_and_logged_with_its_traceback() -> None:
    """The executor catches everything a worker raises (a bug must not lose the run's
    other outcomes), so the traceback is logged: a swallowed bug stays visible."""
    with capture_logs() as logs:
        report, _, _, journal = execute([action(Op.DISABLE, "A")], {"A": [RuntimeError("boom")]})
    (failed,) = report.failed
    assert failed.detail == "internal: RuntimeError('boom')"
    assert journal.entries[1] == ("failed", "internal: RuntimeError('boom')")
    (logged,) = [e for e in logs if e["event"] == "operation.internal_error"]
    assert logged["person_id"] == "A"
    assert isinstance(logged["exc_info"], RuntimeError)
    assert logged["exc_info"].__traceback__ is not None


def test_logon_conflict_fails_before_touching_target() -> None:
    events: list[str] = []
    journal = FakeJournal(events)
    journal.reserved["OTHER"] = "p1"
    ex = Executor(target_factory=lambda: FakeTarget(events, {}, set()), journal=journal, workers=1)
    report = ex.apply(Plan(as_of=NOW, target="fake", actions=(action(Op.CREATE, "P1"),)), "r")
    assert report.failed and "logon ID" in report.failed[0].detail
    assert not any(e.startswith("create") for e in events)


@pytest.mark.parametrize(("workers", "batch"), [(1, 1), (3, 1), (3, 5)])
def test_outcomes_are_journaled_as_they_finish_with_bounded_work_in_flight(
    workers: int, batch: int
) -> None:
    """A crash may leave open only the entries of actions in flight or not yet committed:
    at most ``workers`` plus two commit batches begun-but-unrecorded entries at any
    moment, and every outcome committed as its batch fills (not after the whole phase).
    Outcomes still come back in plan order."""
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
        commit_batch=batch,
        sleep=lambda _: None,
    )
    actions = tuple(action(Op.DISABLE, f"A{i:02}") for i in range(20))
    report = ex.apply(Plan(as_of=NOW, target="fake", actions=actions), "run1")
    assert 1 <= most_open <= workers + 2 * batch
    if batch == 1:
        assert most_open <= workers
    assert [o.action.person_id for o in report.outcomes] == [a.person_id for a in actions]
    assert all(state == "ok" for state, _ in journal.entries.values())


def run_with(
    actions: list[Action],
    target: Any,
    *,
    audit: Any = None,
    **kwargs: Any,
) -> tuple[Any, FakeJournal]:
    events: list[str] = []
    journal = FakeJournal(events)
    ex = Executor(
        target_factory=lambda: target,
        journal=journal,
        workers=1,
        backoff=0,
        sleep=lambda _: None,
        audit=audit,
        **kwargs,
    )
    report = ex.apply(Plan(as_of=NOW, target="fake", actions=tuple(actions)), "run1")
    return report, journal


def test_one_audit_append_per_group_and_entries_closed_with_their_seq() -> None:
    appends: list[int] = []

    def audit(batch: Sequence[tuple[int, Any]]) -> list[int]:
        start = sum(appends) + 1
        appends.append(len(batch))
        return list(range(start, start + len(batch)))

    target = FakeTarget([], {}, set())
    acts = [action(Op.DISABLE, f"A{i:02}") for i in range(10)]
    report, journal = run_with(acts, target, audit=audit, commit_batch=4, commit_interval=60)
    assert all(o.status == "ok" for o in report.outcomes)
    assert appends == [4, 4, 2]  # one append per group, never one per outcome
    assert sorted(journal.closed.values()) == list(range(1, 11))


def test_a_failed_audit_write_stops_the_run_and_closes_nothing() -> None:
    class DiskFull(Exception):
        pass

    def audit(batch: Sequence[tuple[int, Any]]) -> list[int]:
        raise DiskFull("database or disk is full")

    target = FakeTarget([], {}, set())
    acts = [action(Op.DISABLE, f"A{i:02}") for i in range(6)]
    with pytest.raises(DiskFull, match="disk is full"):
        run_with(acts, target, audit=audit, commit_batch=2, commit_interval=60)
    journal = FakeJournal([])
    with pytest.raises(DiskFull):
        Executor(
            target_factory=lambda: target,
            journal=journal,
            workers=1,
            audit=audit,
            commit_batch=2,
            commit_interval=60,
        ).apply(Plan(as_of=NOW, target="fake", actions=tuple(acts)), "run2")
    assert journal.closed == {}  # no entry closed without its audit record
    recorded = [state for state, _ in journal.entries.values()]
    assert recorded.count("ok") == 2  # the outcomes known are kept for the next run
    assert len(recorded) == 2  # nothing more was started


def test_circuit_breaker_stops_a_stalled_run() -> None:
    acts = [action(Op.DISABLE, f"A{i:02}") for i in range(10)]
    script: dict[str, list[Exception]] = {
        f"A{i:02}": [TargetNotRespondingError("timeout")] * 5 for i in range(10)
    }
    target = FakeTarget([], script, set())
    report, journal = run_with(acts, target, max_attempts=4, circuit_breaker_after=3)
    assert "circuit breaker" in report.stopped
    statuses = [o.status for o in report.outcomes]
    assert statuses[0] == "failed"  # three timeouts in a row, then no more tries
    assert statuses[1:] == ["not_attempted"] * 9
    assert all(state != "begun" for state, _ in journal.entries.values())
    assert len(journal.closed) == 10  # every action journaled (and audited) as such


def test_busy_answers_do_not_trip_the_breaker() -> None:
    acts = [action(Op.DISABLE, f"A{i:02}") for i in range(4)]
    script: dict[str, list[Exception]] = {
        f"A{i:02}": [TemporaryTargetError("busy")] * 2 for i in range(4)
    }
    report, _ = run_with(acts, FakeTarget([], script, set()), circuit_breaker_after=2)
    assert report.stopped == ""
    assert [o.status for o in report.outcomes] == ["ok"] * 4


def test_run_deadline_stops_starting_actions() -> None:
    now = [0.0]

    class Slow(FakeTarget):
        def set_enabled(self, account_id: str, enabled: bool) -> None:
            now[0] += 10  # every write takes ten "seconds"
            super().set_enabled(account_id, enabled)

    acts = [action(Op.DISABLE, f"A{i:02}") for i in range(10)]
    report, _ = run_with(
        acts, Slow([], {}, set()), deadline_seconds=25, clock=lambda: now[0], commit_batch=1
    )
    assert "deadline" in report.stopped
    statuses = [o.status for o in report.outcomes]
    assert statuses[:3] == ["ok"] * 3
    assert set(statuses[3:]) == {"not_attempted"}


@pytest.mark.parametrize("op", [Op.ENABLE, Op.DISABLE])
def test_a_write_that_does_not_take_is_never_ok(op: Op) -> None:
    target = FakeTarget([], {}, set(), stuck=frozenset({"A"}))
    if op is Op.ENABLE:
        target.disabled.add("A")  # locked, and the enable will not change that
    report, _ = run_with([action(op, "A")], target)
    (o,) = report.outcomes
    assert (o.status, o.code) == ("failed", "not_effective")
    assert ("still disabled after enable" if op is Op.ENABLE else "still enabled after") in o.detail


def test_a_run_told_to_stop_says_what_can_tell_it_to() -> None:
    """``should_stop`` is the daemon's SIGTERM and a command's lost leadership lease
    (connector.runs.fence): the stop reason names both, not SIGTERM alone."""
    acts = [action(Op.DISABLE, f"A{i:02}") for i in range(3)]
    report, _ = run_with(acts, FakeTarget([], {}, set()), should_stop=lambda: True)
    assert "SIGTERM" in report.stopped
    assert "lease was lost" in report.stopped
    assert {o.status for o in report.outcomes} == {"not_attempted"}
