"""The tamper-evident audit trail (policy 3.l)."""

from connector.audit.trail import AuditRecord, AuditTrail, VerifyResult, record_hash

__all__ = ["AuditRecord", "AuditTrail", "VerifyResult", "record_hash"]
