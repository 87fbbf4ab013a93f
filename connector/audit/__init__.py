"""The tamper-evident audit trail (policy 3.l): SQLite (``AuditTrail``) or PostgreSQL
(``connector.audit.postgres``), both behind ``AuditLog``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector.audit.ports import AuditLog
from connector.audit.trail import (
    UNKEYED_WARNING,
    AuditError,
    AuditIntegrityError,
    AuditRecord,
    AuditTrail,
    AuditWriteError,
    VerifyResult,
    head_mac,
    record_hash,
)

if TYPE_CHECKING:
    from connector.settings import StateSettings

__all__ = [
    "UNKEYED_WARNING",
    "AuditError",
    "AuditIntegrityError",
    "AuditLog",
    "AuditRecord",
    "AuditTrail",
    "AuditWriteError",
    "VerifyResult",
    "head_mac",
    "open_audit",
    "record_hash",
]


def open_audit(state: StateSettings, key: bytes | None, *, read_only: bool = False) -> AuditLog:
    """The configured trail: in PostgreSQL if ``state.url`` is set, else the SQLite file
    in ``state.dir``. ``read_only`` (verify, export) writes nothing."""
    if state.url:
        from connector.state import require_postgresql

        require_postgresql()
        from connector.audit.postgres import PgAuditTrail
        from connector.state.postgres import connect_settings, safe_url

        return PgAuditTrail(
            connect_settings(state), key, read_only=read_only, where=safe_url(state.url)
        )
    return AuditTrail(state.audit_db, key=key, read_only=read_only)
