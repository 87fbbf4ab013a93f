"""The target port. Adapters (ldap/, scim/) implement it; the core never imports them.

Error tree (one root, in the spirit of scim2-client's ``SCIMClientError``):

- ``TargetError``
  - ``TargetUnavailableError``: cannot connect, bind, or finish reading the snapshot.
    The run stops before any action: a partial read never turns into actions.
  - ``TemporaryTargetError``: this object may succeed later (busy, timeout, 429/503);
    carries ``retry_after`` seconds when the server said so.
    - ``TargetNotRespondingError``: no answer at all (timeout, connection lost or
      refused); counted by apply's circuit breaker.
  - ``PermanentTargetError``: this object will fail the same way again (schema
    violation, 400/409/412); the object fails, the run goes on.
    - ``TargetNotEffectiveError``: accepted, but read back it did not take.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from connector.errors import ExitCode, MisyncError
from connector.model.accounts import Account, Change, DesiredAccount


class TargetError(MisyncError):
    """Root of every error a target adapter raises (exit 3: nothing was changed)."""

    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, message: str, *, account_id: str | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.account_id = account_id
        self.detail = detail  # the server's own words (LDAP result, SCIM scimType/detail)


class TargetUnavailableError(TargetError):
    """The target cannot be reached or read completely; nothing may be planned from it."""


class TemporaryTargetError(TargetError):
    """Retry this object later, after ``retry_after`` seconds when known."""

    temporary = True

    def __init__(
        self,
        message: str,
        *,
        account_id: str | None = None,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, account_id=account_id, detail=detail)
        self.retry_after = retry_after


class TargetNotRespondingError(TemporaryTargetError):
    """The server did not answer (timeout, connection lost or refused). Whether a write
    landed is unknown. Many in a row trip apply's circuit breaker."""


class PermanentTargetError(TargetError):
    """This object fails; the run goes on with the others."""


class TargetNotEffectiveError(PermanentTargetError):
    """The server accepted a write, but reading the account back shows it did not take
    (e.g. still locked by a server role after an enable)."""


@runtime_checkable
class Target(Protocol):
    """A directory holding MIS accounts, seen through a mapping.

    Every method either succeeds or raises a ``TargetError``; none returns a silent
    failure flag. Implementations hold their own connections (no process-wide state)
    and are used from one thread at a time; ``apply`` opens one per worker.
    """

    @property
    def description(self) -> str:
        """Names the target and its managed scope, e.g. ``ldap://h:389 ou=people,dc=x``."""
        ...

    def snapshot(self) -> Iterator[Account]:
        """Stream every account in the managed scope (paged; never one round trip per entry).

        Raises ``TargetUnavailableError`` if the read cannot be completed.
        """
        ...

    def read(self, account_id: str) -> Account | None:
        """Read one account of the managed scope; None if it does not exist there."""
        ...

    def find(self, person_id: str) -> Account | None:
        """Find the account correlated to ``person_id`` (fast path: no full scan)."""
        ...

    def create(self, desired: DesiredAccount) -> str:
        """Create the account (enabled or not, as ``desired.enabled`` says); return its id."""
        ...

    def update(self, account_id: str, changes: Sequence[Change]) -> None:
        """Apply attribute and group changes to an existing account."""
        ...

    def set_enabled(self, account_id: str, enabled: bool) -> None:
        """Enable or disable the account the way the mapping declares. Never deletes."""
        ...

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...


@dataclass(frozen=True)
class TargetChanges:
    """What changed in the managed scope since a high-water mark.

    ``accounts``: every account created or modified since the mark (in scope now), with
    its current groups. ``groups_of``: when any group changed, the current groups of any
    account id (for every account in the snapshot); None when no group changed.
    Deletions and accounts moved out of scope are not reported: only a full snapshot
    shows them.
    """

    accounts: tuple[Account, ...]
    groups_of: Callable[[str], frozenset[str]] | None = None


def no_mark_warning(description: str) -> str:
    """What an ``IncrementalTarget`` that gives no mark costs, and how to fix it (config
    check --connect, misync status and the daemon's log say the same)."""
    return (
        f"incremental reads are off: {description} gives no change mark (LDAP: the bind "
        "DN cannot read modifyTimestamp on the base entry), so every daemon cycle reads the "
        "whole directory; grant the bind DN read and search on modifyTimestamp in the "
        "managed scope and the groups (389 DS: deploy/ldap-acl/389ds-misync.ldif)"
    )


@runtime_checkable
class IncrementalTarget(Target, Protocol):
    """A target that can say what changed since a mark (LDAP; SCIM has no such read)."""

    def high_water_mark(self) -> str | None:
        """A mark to pass to ``changed_since`` later. Take it *before* a read: every
        change the read may miss is at or after it. None: the target cannot tell."""
        ...

    def changed_since(self, mark: str) -> TargetChanges:
        """Accounts (and groups) changed at or after ``mark``; raises
        ``TargetUnavailableError`` if the read cannot be completed."""
        ...
