"""What a run notes while its source plans: the planner's inputs and every account
streamed past. ``connector.runs.run.Run`` opens a ``recording`` around its source;
``connector.runs.planning.plan_inputs`` (the one place every source gathers its inputs)
passes them through ``note``. Without a recording (``misync plan``) ``note`` does
nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from connector.model.accounts import Account
from connector.reconcile import PlanInputs

_current: ContextVar[Recorder | None] = ContextVar("misync_archive_recorder", default=None)


class Recorder:
    """The last plan inputs noted in a run, and the accounts its planner read."""

    def __init__(self) -> None:
        self.inputs: PlanInputs | None = None
        self.accounts: list[Account] = []

    def note(self, inputs: PlanInputs) -> PlanInputs:
        self.inputs = inputs
        self.accounts = []
        return dataclasses.replace(inputs, accounts=self._tee(inputs.accounts))

    def _tee(self, accounts: Iterable[Account]) -> Iterator[Account]:
        seen = self.accounts
        for a in accounts:
            seen.append(a)
            yield a


@contextmanager
def recording() -> Iterator[Recorder]:
    rec = Recorder()
    token = _current.set(rec)
    try:
        yield rec
    finally:
        _current.reset(token)


def note(inputs: PlanInputs) -> PlanInputs:
    """``inputs``, noted by the run's recording (if any) with its accounts teed."""
    rec = _current.get()
    return inputs if rec is None else rec.note(inputs)
