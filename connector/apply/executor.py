"""Carry out a plan's actions against a target.

Guarantees:

- **Journaled before and after.** Each action is written to the state journal (and
  committed) before the directory is touched, and its outcome after. A crash in
  between leaves an open journal entry that the next run reports; the next run
  re-plans from a fresh snapshot and converges.
- **Revoke before grant.** Phases run in order: disables, updates, enables, creates.
- **One bad account never stops the run.** A permanent error fails that object; a
  temporary one is retried with exponential backoff (honouring the server's
  ``retry_after``) up to ``max_attempts``; then the object fails and its consecutive
  failure count grows; the planner quarantines it past ``quarantine_after``.
- **Bounded concurrency over reused connections.** ``workers`` threads, each with its
  own target (connection) for the whole run.
- **No blind re-sends.** A create that timed out is looked up (``find``) before it is
  tried again, so a retry cannot create a second account.
"""

from __future__ import annotations

import contextvars
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from connector.model.plan import Action, Op, Plan
from connector.targets.base import (
    PermanentTargetError,
    Target,
    TargetError,
    TargetUnavailableError,
    TemporaryTargetError,
)

PHASES = (Op.DISABLE, Op.UPDATE, Op.ENABLE, Op.CREATE)


class Journal(Protocol):
    """What the executor needs from the state store (connector.state.StateStore)."""

    def journal_begin(
        self,
        run_id: str,
        key: str,
        op: str,
        person_id: str | None,
        account_id: str | None,
        payload: dict[str, Any],
    ) -> int: ...

    def journal_end(
        self, entry_id: int, outcome: str, account_id: str | None, detail: str
    ) -> None: ...

    def reserve_logon_id(self, person_id: str, logon_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    status: str  # "ok" | "failed"
    account_id: str | None
    attempts: int
    detail: str = ""
    temporary: bool = False  # failed only because retries ran out


@dataclass(frozen=True, slots=True)
class ApplyReport:
    run_id: str
    outcomes: tuple[Outcome, ...]

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.status != "ok")

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            k = f"{o.action.op.value}_{o.status}"
            out[k] = out.get(k, 0) + 1
        return out


def action_payload(action: Action, plan_checksum: str) -> dict[str, Any]:
    """What the journal records before an operation: enough to know what was attempted."""
    return {
        "plan": plan_checksum,
        "op": action.op.value,
        "logon_id": action.logon_id,
        "before": action.before,
        "changes": [
            {"kind": c.kind.value, "name": c.name, "old": list(c.old), "new": list(c.new)}
            for c in action.changes
        ],
        "reasons": [{"code": r.code, "clause": r.clause} for r in action.reasons],
    }


class Executor:
    def __init__(
        self,
        *,
        target_factory: Callable[[], Target],
        journal: Journal,
        workers: int = 4,
        max_attempts: int = 4,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        on_outcome: Callable[[Outcome], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._factory = target_factory
        self._journal = journal
        self._workers = max(1, workers)
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._on_outcome = on_outcome
        self._sleep = sleep
        self._local = threading.local()
        self._targets: list[Target] = []
        self._targets_lock = threading.Lock()
        self._log = structlog.get_logger("misync.apply")

    def apply(self, plan: Plan, run_id: str) -> ApplyReport:
        """Carry out the plan phase by phase; outcomes come back in plan order.

        At most ``workers`` actions are in flight, and each outcome is journaled (and
        handed to ``on_outcome``) as soon as it is known, so a crash leaves open only
        the entries of the actions that were in flight. Journal writes stay on this
        thread.
        """
        outcomes: dict[int, Outcome] = {}
        with self._pool() as pool:
            for phase in PHASES:
                batch = deque((i, a) for i, a in enumerate(plan.actions) if a.op is phase)
                running: dict[Future[Outcome], tuple[int, Action, int]] = {}
                while batch or running:
                    while batch and len(running) < self._workers:
                        i, action = batch.popleft()
                        entry = self._begin(action, plan.checksum, run_id)
                        if isinstance(entry, Outcome):  # failed before touching the target
                            outcomes[i] = entry
                            continue
                        # in the caller's context: the run's log fields (run_id, command)
                        ctx = contextvars.copy_context()
                        running[pool.submit(ctx.run, self._perform, action)] = (i, action, entry)
                    if not running:
                        continue
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        i, action, entry = running.pop(fut)
                        try:
                            outcome = fut.result()
                        except Exception as exc:  # a bug, not a target error: journal it
                            outcome = Outcome(
                                action, "failed", action.account_id, 0, f"internal: {exc!r}"
                            )
                        self._end(entry, outcome)
                        outcomes[i] = outcome
        return ApplyReport(run_id=run_id, outcomes=tuple(outcomes[i] for i in sorted(outcomes)))

    # -- journal ------------------------------------------------------------------------

    def _begin(self, action: Action, checksum: str, run_id: str) -> int | Outcome:
        """Journal the action (and reserve a new logon ID); an Outcome if it cannot start."""
        if action.op is Op.CREATE and action.person_id and action.logon_id:
            try:
                self._journal.reserve_logon_id(action.person_id, action.logon_id)
            except Exception as exc:  # LogonIdConflict from the store
                entry = self._journal.journal_begin(
                    run_id,
                    action.key,
                    action.op.value,
                    action.person_id,
                    None,
                    action_payload(action, checksum),
                )
                outcome = Outcome(action, "failed", None, 0, f"logon ID not reserved: {exc}")
                self._end(entry, outcome)
                return outcome
        return self._journal.journal_begin(
            run_id,
            action.key,
            action.op.value,
            action.person_id,
            action.account_id,
            action_payload(action, checksum),
        )

    def _end(self, entry: int, outcome: Outcome) -> None:
        self._journal.journal_end(entry, outcome.status, outcome.account_id, outcome.detail)
        log = self._log.bind(
            op=outcome.action.op.value,
            person_id=outcome.action.person_id,
            account_id=outcome.account_id,
            attempts=outcome.attempts,
            reasons=[r.code for r in outcome.action.reasons],
        )
        if outcome.status == "ok":
            log.info("operation.ok")
        else:
            log.error("operation.failed", detail=outcome.detail, temporary=outcome.temporary)
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    # -- workers ------------------------------------------------------------------------

    @contextmanager
    def _pool(self) -> Iterator[ThreadPoolExecutor]:
        pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="misync-apply")
        try:
            yield pool
        finally:
            pool.shutdown(wait=True)
            with self._targets_lock:
                for t in self._targets:
                    t.close()
                self._targets.clear()

    def _target(self) -> Target:
        target: Target | None = getattr(self._local, "target", None)
        if target is None:
            target = self._factory()
            self._local.target = target
            with self._targets_lock:
                self._targets.append(target)
        return target

    def _drop_target(self) -> None:
        target: Target | None = getattr(self._local, "target", None)
        if target is not None:
            target.close()
            self._local.target = None

    def _perform(self, action: Action) -> Outcome:
        account_id = action.account_id
        last = ""
        for attempt in range(1, self._max_attempts + 1):
            try:
                target = self._target()
                account_id = self._do(target, action, account_id, retry=attempt > 1)
                return Outcome(action, "ok", account_id, attempt)
            except PermanentTargetError as exc:
                return Outcome(action, "failed", account_id, attempt, _describe(exc))
            except (TemporaryTargetError, TargetUnavailableError) as exc:
                last = _describe(exc)
                if isinstance(exc, TargetUnavailableError):
                    self._drop_target()  # reconnect on the next attempt
                if attempt == self._max_attempts:
                    break
                retry_after = getattr(exc, "retry_after", None)
                self._sleep(self._delay(attempt, retry_after))
            except TargetError as exc:
                return Outcome(action, "failed", account_id, attempt, _describe(exc))
        return Outcome(action, "failed", account_id, self._max_attempts, last, temporary=True)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self._backoff_max)
        base: float = min(self._backoff * 2.0 ** (attempt - 1), self._backoff_max)
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security

    @staticmethod
    def _do(target: Target, action: Action, account_id: str | None, *, retry: bool) -> str | None:
        if action.op is Op.CREATE:
            assert action.desired is not None, "a create carries its desired account"
            if retry and action.person_id:
                existing = target.find(action.person_id)  # the timed-out try may have landed
                if existing is not None:
                    return existing.account_id
            return target.create(action.desired)
        assert account_id is not None, f"{action.op} needs an account id"
        if action.op is Op.DISABLE:
            target.set_enabled(account_id, False)
        elif action.op is Op.ENABLE:
            if action.changes:
                target.update(account_id, action.changes)
            target.set_enabled(account_id, True)
        else:
            target.update(account_id, action.changes)
        return account_id


def _describe(exc: TargetError) -> str:
    return f"{exc} ({exc.detail})" if exc.detail else str(exc)
