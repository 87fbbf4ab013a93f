"""The tamper-evident audit trail (policy 3.l)."""

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

__all__ = [
    "UNKEYED_WARNING",
    "AuditError",
    "AuditIntegrityError",
    "AuditRecord",
    "AuditTrail",
    "AuditWriteError",
    "VerifyResult",
    "head_mac",
    "record_hash",
]
