"""Carry out a plan's actions against a target.

Guarantees:

- **Journaled before, audited and journaled after.** Each action is written to the
  state journal (and committed) before the directory is touched. Its outcome is then
  written on the entry, audited, and only then is the entry closed with the seq of its
  audit record: no entry is ever closed without its audit record. Outcomes are
  committed in groups (``commit_batch`` outcomes or ``commit_interval`` seconds,
  whichever comes first): one journal transaction, one audit append with one head
  write. A crash leaves entries open (never closed-but-unaudited), and the next run
  audits and closes them (``connector.runs.recovery``).
- **An audit write that fails stops the run** (:class:`connector.audit.AuditWriteError`,
  with the cause, e.g. "database or disk is full"): nothing more is started, the
  outcomes already known stay written on their open entries for the next run to audit.
- **Revoke before grant.** Phases run in order: disables, updates, enables, creates.
- **One bad account never stops the run.** A permanent error fails that object; a
  temporary one is retried with exponential backoff (honouring the server's
  ``retry_after``) up to ``max_attempts``; then the object fails and its consecutive
  failure count grows; the planner quarantines it past ``quarantine_after``.
- **A stalled target does.** After ``circuit_breaker_after`` consecutive attempts that
  got no answer (timeout, connection lost or refused), or past the run's deadline, the
  run stops: nothing new is started, the remaining actions are journaled and audited
  as ``not_attempted``, and the next run plans them again.
- **A write that did not take is not done.** After an enable or disable the account is
  read back; if it still shows the old state the action fails (``not_effective``).
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from connector.model.plan import Action, FailureCode, Op, OutcomeStatus, Plan
from connector.reconcile.serialize import change_to_dict
from connector.state.rows import JournalClose, LogonIdConflictError
from connector.targets.base import (
    PermanentTargetError,
    Target,
    TargetError,
    TargetNotEffectiveError,
    TargetNotRespondingError,
    TargetUnavailableError,
    TemporaryTargetError,
)

PHASES = (Op.DISABLE, Op.UPDATE, Op.ENABLE, Op.CREATE)
NOT_ATTEMPTED = OutcomeStatus.NOT_ATTEMPTED


class Journal(Protocol):
    """What the executor needs from the state store (connector.state.StateStore)."""

    def journal_begin_many(
        self,
        run_id: str,
        items: Sequence[tuple[str, str, str | None, str | None, dict[str, Any]]],
    ) -> list[int]: ...

    def journal_record(self, items: Sequence[tuple[int, str, str | None, str]]) -> None: ...

    def journal_close(self, items: Sequence[JournalClose]) -> None: ...

    def reserve_logon_id(self, person_id: str, logon_id: str) -> None:
        """Raises ``LogonIdConflictError`` if the ID is someone else's or the person has
        another one (the create is then refused, not attempted)."""
        ...


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What the executor did with one action (``connector.report.Outcome`` is how a report
    shows it)."""

    action: Action
    status: OutcomeStatus
    account_id: str | None
    attempts: int
    detail: str = ""
    temporary: bool = False  # failed only because retries ran out (or the run stopped)
    code: str = ""  # why, for failures: a FailureCode


# Audits a batch of (journal entry id, outcome); returns the audit seq of each, in order.
AuditBatch = Callable[[Sequence[tuple[int, ActionOutcome]]], Sequence[int | None]]


@dataclass(frozen=True, slots=True)
class ApplyReport:
    run_id: str
    outcomes: tuple[ActionOutcome, ...]
    stopped: str = ""  # why the run stopped early (circuit breaker, deadline, audit)

    @property
    def failed(self) -> tuple[ActionOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status != OutcomeStatus.OK)

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
        "changes": [change_to_dict(c) for c in action.changes],
        "reasons": [{"code": r.code, "clause": r.clause} for r in action.reasons],
    }


class Executor:
    def __init__(  # noqa: PLR0913 -- keyword-only configuration (settings.apply), each named
        self,
        *,
        target_factory: Callable[[], Target],
        journal: Journal,
        workers: int = 4,
        max_attempts: int = 4,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        on_outcome: Callable[[ActionOutcome], None] | None = None,
        audit: AuditBatch | None = None,
        commit_batch: int = 200,
        commit_interval: float = 0.2,
        circuit_breaker_after: int = 8,
        deadline_seconds: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self._factory = target_factory
        self._journal = journal
        self._workers = max(1, workers)
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._on_outcome = on_outcome
        self._audit = audit
        self._batch = max(1, commit_batch)
        self._interval = max(0.0, commit_interval)
        self._breaker_after = circuit_breaker_after  # 0: never
        self._deadline_seconds = deadline_seconds  # 0: none
        self._sleep = sleep
        self._clock = clock
        self._should_stop = should_stop or (lambda: False)  # the daemon's SIGTERM
        self._local = threading.local()
        self._targets: list[Target] = []
        self._targets_lock = threading.Lock()
        self._log = structlog.get_logger("misync.apply")
        # run state
        self._state_lock = threading.Lock()
        self._stalls = 0  # consecutive attempts that got no answer
        self._stop_reason = ""
        self._deadline: float | None = None
        self._audit_error: BaseException | None = None

    # -- the run ----------------------------------------------------------------------

    def apply(self, plan: Plan, run_id: str) -> ApplyReport:
        """Carry out the plan phase by phase; outcomes come back in plan order.

        At most ``workers`` actions are in flight. Outcomes are committed in groups as
        they come (see the module docstring), so a crash leaves open only the entries of
        the actions in flight or not yet committed. Journal and audit writes stay on this
        thread. Raises :class:`connector.audit.AuditWriteError` (after the actions in
        flight have finished and their outcomes are written on their entries) when an
        audit write failed.
        """
        self._stalls, self._stop_reason, self._audit_error = 0, "", None
        self._deadline = (
            self._clock() + self._deadline_seconds if self._deadline_seconds > 0 else None
        )
        outcomes: dict[int, ActionOutcome] = {}
        pending: list[tuple[int, int, ActionOutcome]] = []  # (plan index, entry, outcome)
        oldest: list[float] = []  # when the oldest pending outcome came (empty: none)

        def add(i: int, entry: int, outcome: ActionOutcome) -> None:
            if not pending:
                oldest[:] = [self._clock()]
            pending.append((i, entry, outcome))

        with self._pool() as pool:
            for phase in PHASES:
                todo = deque((i, a) for i, a in enumerate(plan.actions) if a.op is phase)
                begun: deque[tuple[int, Action, int]] = deque()
                running: dict[Future[ActionOutcome], tuple[int, Action, int]] = {}
                while todo or begun or running:
                    self._check_deadline()
                    if self._stop_reason:
                        self._give_up(todo, begun, plan.checksum, run_id, add)
                    while (todo or begun) and len(running) < self._workers:
                        if not begun:
                            begun.extend(self._begin(todo, plan.checksum, run_id, add))
                            continue
                        i, action, entry = begun.popleft()
                        # in the caller's context: the run's log fields (run_id, command)
                        ctx = contextvars.copy_context()
                        running[pool.submit(ctx.run, self._perform, action)] = (i, action, entry)
                    if running:
                        timeout = None
                        if pending and self._interval:
                            timeout = max(0.0, oldest[0] + self._interval - self._clock())
                        done, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
                        for fut in done:
                            i, action, entry = running.pop(fut)
                            try:
                                outcome = fut.result()
                            except Exception as exc:  # noqa: BLE001 -- a bug, not a target error: journaled as internal, logged with its traceback
                                self._log.error(
                                    "operation.internal_error",
                                    person_id=action.person_id,
                                    op=action.op.value,
                                    exc_info=exc,
                                )
                                outcome = ActionOutcome(
                                    action,
                                    OutcomeStatus.FAILED,
                                    action.account_id,
                                    0,
                                    f"internal: {exc!r}",
                                    code=FailureCode.INTERNAL,
                                )
                            add(i, entry, outcome)
                    due = bool(pending) and (
                        len(pending) >= self._batch
                        or not (running or todo or begun)  # the phase is done
                        or self._clock() - oldest[0] >= self._interval
                    )
                    if due:
                        self._commit(pending, outcomes)
            if pending:
                self._commit(pending, outcomes)
        if self._audit_error is not None:
            raise self._audit_error
        return ApplyReport(
            run_id=run_id,
            outcomes=tuple(outcomes[i] for i in sorted(outcomes)),
            stopped=self._stop_reason,
        )

    def _stop(self, reason: str) -> None:
        with self._state_lock:
            if not self._stop_reason:
                self._stop_reason = reason
                self._log.error("apply.stopped", reason=reason)

    def _stopped(self) -> str:
        self._check_deadline()
        return self._stop_reason

    def _check_deadline(self) -> None:
        if self._should_stop():  # finish what is in flight, record the rest
            self._stop("misync was told to stop (SIGTERM, or its leadership lease was lost)")
        if self._deadline is not None and self._clock() >= self._deadline:
            self._stop(
                f"the run deadline (apply.run_deadline_seconds = {self._deadline_seconds:g}) passed"
            )

    # -- journal ------------------------------------------------------------------------

    def _begin(
        self,
        todo: deque[tuple[int, Action]],
        checksum: str,
        run_id: str,
        add: Callable[[int, int, ActionOutcome], None],
    ) -> list[tuple[int, Action, int]]:
        """Journal the next actions of ``todo`` in one commit (reserving new logon IDs
        first); those that cannot start get their failed outcome at once."""
        take = [todo.popleft() for _ in range(min(self._batch, len(todo)))]
        refused: dict[int, str] = {}
        for i, action in take:
            if action.op is Op.CREATE and action.person_id and action.logon_id:
                try:
                    self._journal.reserve_logon_id(action.person_id, action.logon_id)
                except LogonIdConflictError as exc:
                    refused[i] = f"logon ID not reserved: {exc}"
        entries = self._journal.journal_begin_many(
            run_id,
            [
                (
                    a.key,
                    a.op.value,
                    a.person_id,
                    None if i in refused else a.account_id,
                    action_payload(a, checksum),
                )
                for i, a in take
            ],
        )
        out: list[tuple[int, Action, int]] = []
        for (i, action), entry in zip(take, entries, strict=True):
            if i in refused:  # failed before touching the target
                add(i, entry, ActionOutcome(action, OutcomeStatus.FAILED, None, 0, refused[i]))
            else:
                out.append((i, action, entry))
        return out

    def _give_up(
        self,
        todo: deque[tuple[int, Action]],
        begun: deque[tuple[int, Action, int]],
        checksum: str,
        run_id: str,
        add: Callable[[int, int, ActionOutcome], None],
    ) -> None:
        """The run stopped: journal (and so audit) every action left as not attempted."""
        detail = f"not attempted: {self._stop_reason}; the next run plans it again"

        def left(action: Action) -> ActionOutcome:
            return ActionOutcome(
                action, NOT_ATTEMPTED, action.account_id, 0, detail, True, FailureCode.NOT_ATTEMPTED
            )

        while begun:
            i, action, entry = begun.popleft()
            add(i, entry, left(action))
        if self._audit_error is not None:
            todo.clear()  # nothing can be audited: leave them unbegun, nothing was touched
            return
        while todo:
            take = [todo.popleft() for _ in range(min(self._batch, len(todo)))]
            entries = self._journal.journal_begin_many(
                run_id,
                [
                    (a.key, a.op.value, a.person_id, a.account_id, action_payload(a, checksum))
                    for _, a in take
                ],
            )
            for (i, action), entry in zip(take, entries, strict=True):
                add(i, entry, left(action))

    def _commit(
        self, pending: list[tuple[int, int, ActionOutcome]], outcomes: dict[int, ActionOutcome]
    ) -> None:
        """One group commit: outcomes written on their entries, audited in one append,
        then the entries closed with their audit seqs (and failure counts) in one
        transaction. A failed audit write stops the run; the entries stay open with
        their outcomes for the next run to audit."""
        batch = list(pending)
        pending.clear()
        for i, _, o in batch:
            outcomes[i] = o
        self._journal.journal_record(
            [(entry, o.status, o.account_id, o.detail) for _, entry, o in batch]
        )
        if self._audit_error is not None:
            return
        seqs: Sequence[int | None] = [None] * len(batch)
        if self._audit is not None:
            try:
                seqs = self._audit([(entry, o) for _, entry, o in batch])
            except Exception as exc:  # noqa: BLE001 -- kept and raised by apply() once the workers stop
                self._audit_error = exc
                self._stop(f"the audit trail could not be written: {exc}")
                return
        self._journal.journal_close(
            [
                JournalClose(
                    entry,
                    seq,
                    o.action.key,
                    None if o.status is OutcomeStatus.OK else o.detail,
                    count_failure=o.code not in (FailureCode.NOT_ATTEMPTED, FailureCode.STOPPED),
                    op=o.action.op.value,
                )
                for (_, entry, o), seq in zip(batch, seqs, strict=True)
            ]
        )
        for _, _, o in batch:
            self._log_outcome(o)
            if self._on_outcome is not None:
                self._on_outcome(o)

    def _log_outcome(self, outcome: ActionOutcome) -> None:
        log = self._log.bind(
            op=outcome.action.op.value,
            person_id=outcome.action.person_id,
            account_id=outcome.account_id,
            attempts=outcome.attempts,
            reasons=[r.code for r in outcome.action.reasons],
        )
        if outcome.status is OutcomeStatus.OK:
            log.info("operation.ok")
        elif outcome.status == NOT_ATTEMPTED:
            log.warning("operation.not_attempted", detail=outcome.detail)
        else:
            log.error(
                "operation.failed",
                detail=outcome.detail,
                temporary=outcome.temporary,
                code=outcome.code or None,
            )

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

    def _answered(self) -> None:
        with self._state_lock:
            self._stalls = 0

    def _stalled(self, detail: str) -> None:
        with self._state_lock:
            self._stalls += 1
            trip = self._breaker_after and self._stalls >= self._breaker_after
        if trip:
            self._stop(
                f"circuit breaker: {self._stalls} attempts in a row got no answer from the "
                f"target (apply.circuit_breaker_after = {self._breaker_after}); last: {detail}"
            )

    def _perform(self, action: Action) -> ActionOutcome:
        account_id = action.account_id
        last = ""
        for attempt in range(1, self._max_attempts + 1):
            try:
                target = self._target()
                account_id = self._do(target, action, account_id, retry=attempt > 1)
                self._answered()
                return ActionOutcome(action, OutcomeStatus.OK, account_id, attempt)
            except TargetNotEffectiveError as exc:
                self._answered()
                return ActionOutcome(
                    action,
                    OutcomeStatus.FAILED,
                    account_id,
                    attempt,
                    _describe(exc),
                    code=FailureCode.NOT_EFFECTIVE,
                )
            except PermanentTargetError as exc:
                self._answered()
                return ActionOutcome(
                    action, OutcomeStatus.FAILED, account_id, attempt, _describe(exc)
                )
            except (TemporaryTargetError, TargetUnavailableError) as exc:
                last = _describe(exc)
                if isinstance(exc, TargetUnavailableError | TargetNotRespondingError):
                    self._stalled(last)
                else:
                    self._answered()  # busy or rate-limited: the server is there
                if isinstance(exc, TargetUnavailableError | TargetNotRespondingError):
                    self._drop_target()  # reconnect on the next attempt
                if attempt == self._max_attempts:
                    break
                if self._stopped():
                    return ActionOutcome(
                        action,
                        OutcomeStatus.FAILED,
                        account_id,
                        attempt,
                        f"{last}; not retried: {self._stop_reason}",
                        temporary=True,
                        code=FailureCode.STOPPED,
                    )
                retry_after = getattr(exc, "retry_after", None)
                delay = self._delay(attempt, retry_after)
                if self._deadline is not None:
                    delay = min(delay, max(0.0, self._deadline - self._clock()))
                self._sleep(delay)
            except TargetError as exc:
                return ActionOutcome(
                    action, OutcomeStatus.FAILED, account_id, attempt, _describe(exc)
                )
        return ActionOutcome(
            action, OutcomeStatus.FAILED, account_id, self._max_attempts, last, temporary=True
        )

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
            _check_effective(target, account_id, enabled=False)
        elif action.op is Op.ENABLE:
            if action.changes:
                target.update(account_id, action.changes)
            target.set_enabled(account_id, True)
            _check_effective(target, account_id, enabled=True)
        else:
            target.update(account_id, action.changes)
        return account_id


def _check_effective(target: Target, account_id: str, *, enabled: bool) -> None:
    """Read the account back after an enable or disable: a write the server accepted
    may still not take (a 389 DS role computing ``nsAccountLock``, a lock merged in by
    an overlay or a policy), and reporting it done would repeat it every run, forever."""
    account = target.read(account_id)
    want, other = ("enabled", "disabled") if enabled else ("disabled", "enabled")
    op = "enable" if enabled else "disable"
    if account is None:
        raise TargetNotEffectiveError(
            f"{account_id} cannot be read back after {op}: it left the managed scope",
            account_id=account_id,
        )
    if account.enabled != enabled:
        cause = (
            "locked by a server role or policy outside misync's attribute"
            if enabled
            else "the server keeps it enabled (a role, policy or overlay outside misync's "
            "attribute)"
        )
        raise TargetNotEffectiveError(
            f"still {other} after {op}: {cause}; the write was accepted but did not take, "
            f"so the account is not {want}; investigate the directory",
            account_id=account_id,
        )


def _describe(exc: TargetError) -> str:
    return f"{exc} ({exc.detail})" if exc.detail else str(exc)
