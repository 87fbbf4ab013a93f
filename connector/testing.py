"""Test helpers shipped with the package (as ``structlog.testing`` and kopf's testing
module are): an in-memory target for fast tests of the layers above the target port.

``MemoryDirectory`` holds accounts in memory and hands out ``MemoryTarget``
connections to it (``Runtime(target_factory=directory.connect)``), one per apply
worker, all seeing the same data. It implements the whole ``Target`` port and the
``IncrementalTarget`` read, keeps the order of every write (``writes``), can be told to
fail (``fail``) or to accept a write that does not take (``stuck``), and calls
``before_write`` before each write reaches it — the place where a test checks what the
journal and the audit trail hold at that instant.

It proves the code above the port (the run ordering, the executor, the planner's
inputs). It is never the proof that a target adapter works: that is the contract suite
against a real slapd and a real scim2-server (tests/integration).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from connector.model.accounts import Account, Change, ChangeKind, DesiredAccount
from connector.targets.base import (
    PermanentTargetError,
    TargetChanges,
    TargetError,
)

__all__ = ["MemoryDirectory", "MemoryTarget", "Write"]


@dataclass(frozen=True, slots=True)
class Write:
    """One write that reached the directory, in order: ``op`` is create, update,
    enable or disable; ``subject`` the account id (for a create: the person id)."""

    op: str
    subject: str


@dataclass
class MemoryDirectory:
    """Accounts in memory, shared by every connection opened with ``connect``.

    ``fold`` is how the correlation value is compared (``str.casefold`` for LDAP's
    caseIgnoreMatch, ``str`` itself for SCIM's exact ``externalId``).
    """

    description: str = "memory://directory"
    fold: Callable[[str], str] = str.casefold
    before_write: Callable[[Write], None] | None = None
    accounts: dict[str, Account] = field(default_factory=dict)
    writes: list[Write] = field(default_factory=list)
    stuck: set[str] = field(default_factory=set)  # enable/disable accepted, not taken
    _faults: dict[str, list[TargetError]] = field(default_factory=dict)
    _modified: dict[str, int] = field(default_factory=dict)  # account id -> change tick
    _tick: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # -- arranging a test -------------------------------------------------------------

    def add(self, account: Account) -> Account:
        """Put an account in the directory as it is (no write is recorded)."""
        with self._lock:
            self.accounts[account.account_id] = account
            self._modified[account.account_id] = next(self._tick)
        return account

    def fail(self, subject: str, *errors: TargetError) -> None:
        """The next writes to ``subject`` (account id, or person id for a create) raise
        these errors in turn; a ``"*"`` subject fails any write (a stalled server)."""
        with self._lock:
            self._faults.setdefault(subject, []).extend(errors)

    def connect(self) -> MemoryTarget:
        """A new connection (the ``Runtime.target_factory``)."""
        return MemoryTarget(self)

    # -- what a test reads back -------------------------------------------------------

    def by_person(self, person_id: str) -> Account | None:
        want = self.fold(person_id)
        with self._lock:
            for account in self.accounts.values():
                if account.correlation is not None and self.fold(account.correlation) == want:
                    return account
        return None

    # -- used by MemoryTarget ---------------------------------------------------------

    def _write(self, op: str, subject: str) -> None:
        w = Write(op, subject)
        if self.before_write is not None:
            self.before_write(w)
        with self._lock:
            for key in (subject, "*"):
                queue = self._faults.get(key)
                if queue:
                    raise queue.pop(0)
            self.writes.append(w)

    def _put(self, account: Account) -> None:
        with self._lock:
            self.accounts[account.account_id] = account
            self._modified[account.account_id] = next(self._tick)


class MemoryTarget:
    """One connection to a ``MemoryDirectory``; implements ``Target`` and
    ``IncrementalTarget`` (the mark is a change counter)."""

    def __init__(self, directory: MemoryDirectory) -> None:
        self._dir = directory
        self.closed = False

    @property
    def description(self) -> str:
        return self._dir.description

    def snapshot(self) -> Iterator[Account]:
        with self._dir._lock:
            accounts = list(self._dir.accounts.values())
        return iter(accounts)

    def read(self, account_id: str) -> Account | None:
        with self._dir._lock:
            return self._dir.accounts.get(account_id)

    def find(self, person_id: str) -> Account | None:
        return self._dir.by_person(person_id)

    def create(self, desired: DesiredAccount) -> str:
        self._dir._write("create", desired.person_id)
        if self._dir.by_person(desired.person_id) is not None:
            raise PermanentTargetError(
                f"an account of {desired.person_id} exists already", detail="entryAlreadyExists"
            )
        account_id = f"uid={desired.logon_id},ou=people,dc=memory"
        attributes = {**desired.create_only, **desired.attributes}
        self._dir._put(
            Account(
                account_id,
                desired.person_id,
                desired.logon_id,
                desired.enabled,
                attributes,
                desired.groups,
            )
        )
        return account_id

    def update(self, account_id: str, changes: Sequence[Change]) -> None:
        self._dir._write("update", account_id)
        account = self._existing(account_id)
        attributes = dict(account.attributes)
        groups = account.groups
        for c in changes:
            if c.kind is ChangeKind.GROUPS:
                groups = frozenset(c.new)
            elif c.new:
                attributes[c.name] = c.new
            else:
                attributes.pop(c.name, None)
        self._dir._put(replace(account, attributes=attributes, groups=groups))

    def set_enabled(self, account_id: str, enabled: bool) -> None:
        self._dir._write("enable" if enabled else "disable", account_id)
        account = self._existing(account_id)
        if account_id not in self._dir.stuck:
            self._dir._put(replace(account, enabled=enabled))

    def close(self) -> None:
        self.closed = True

    # -- IncrementalTarget ------------------------------------------------------------

    def high_water_mark(self) -> str | None:
        with self._dir._lock:
            return str(max(self._dir._modified.values(), default=-1) + 1)

    def changed_since(self, mark: str) -> TargetChanges:
        since = int(mark)
        with self._dir._lock:
            changed = tuple(
                a for i, a in self._dir.accounts.items() if self._dir._modified[i] >= since
            )
        return TargetChanges(changed)

    def _existing(self, account_id: str) -> Account:
        account = self.read(account_id)
        if account is None:
            raise PermanentTargetError(f"{account_id}: no such account", account_id=account_id)
        return account
