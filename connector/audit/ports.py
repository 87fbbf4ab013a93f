"""What runs and commands use of an audit trail: one Protocol, two implementations.

``connector.audit.AuditTrail`` keeps the chain in SQLite with a head anchor file beside
it (the default); ``connector.audit.postgres.PgAuditTrail`` keeps it in PostgreSQL with
the head anchor in a table. Both follow the same hash rules (``record_hash``,
``canonical``, ``head_mac`` in ``connector.audit.trail``) and the same anchor checks,
so ``audit verify`` means the same thing on either and ``state migrate`` copies a
trail with its hashes unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, Self, TextIO, runtime_checkable

from connector.audit.trail import AuditRecord, VerifyResult

__all__ = ["AuditLog"]


@runtime_checkable
class AuditLog(Protocol):
    """One hash chain: append under a lock that holds across processes, check the head
    anchor before appending, verify, export, and read a run's records back."""

    read_only: bool
    name: str  # where the records are, for messages

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def append(
        self, kind: str, data: Mapping[str, Any], run_id: str = "", at: datetime | None = None
    ) -> AuditRecord: ...

    def append_many(
        self,
        items: Iterable[tuple[str, Mapping[str, Any]]],
        run_id: str = "",
        at: datetime | None = None,
    ) -> AuditRecord | None: ...

    def check(self) -> None: ...

    def head(self) -> tuple[int, str]: ...

    def verify(self, anchor: tuple[int, str] | None = None) -> VerifyResult: ...

    def export(
        self,
        out: TextIO,
        fmt: str = "csv",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int: ...

    def run_records(self, run_id: str) -> list[AuditRecord]: ...

    def audited_journal_entries(self, after_seq: int) -> dict[int, int]: ...


if TYPE_CHECKING:  # mypy fails here if a trail drifts from the port
    from connector.audit.trail import AuditTrail

    def _sqlite_implements_the_port(trail: AuditTrail) -> None:
        _log: AuditLog = trail
