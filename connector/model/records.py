"""Validated feed records. Every record remembers the file and line it came from,
so that every decision can cite its evidence (``contracts.csv line 112``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a record came from: the logical feed, the file as read, the 1-based line."""

    feed: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file} line {self.line}"


class OrgKind(StrEnum):
    ESD = "esd"
    LWDB = "lwdb"
    WORKSOURCE_PARTNER = "worksource_partner"
    WIOA_CONTRACTOR = "wioa_contractor"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Organization:
    org_id: str
    name: str
    kind: OrgKind
    wda: str
    source: SourceRef


class ContractType(StrEnum):
    WIOA_SERVICES = "wioa_services"
    DATA_SHARING = "data_sharing"


@dataclass(frozen=True, slots=True)
class Contract:
    contract_id: str
    org_id: str
    type: ContractType
    counterparty: str  # wioa_services: lwdb|esd|dol; data_sharing: esd|lwdb
    business_case: str
    signed_on: date | None
    starts_on: date
    ends_on: date | None  # inclusive; None = open-ended
    terminated_on: date | None  # takes effect at the start of that day
    security_admin_approved_on: date | None
    contracts_office_approved_on: date | None
    data_owner_approved_on: date | None
    source: SourceRef


class WorkerStatus(StrEnum):
    ACTIVE = "active"
    LEAVE = "leave"
    SEPARATED = "separated"


@dataclass(frozen=True, slots=True)
class Worker:
    """One row of the HR roster."""

    person_id: str
    org_id: str
    given_name: str
    family_name: str
    email: str
    office: str
    supervisor_id: str
    status: WorkerStatus
    separated_on: date | None  # last day worked; separation effective at the end of it
    source: SourceRef


@dataclass(frozen=True, slots=True)
class Separation:
    """One row of the HR separation feed; the newest one wins over the roster."""

    person_id: str
    org_id: str
    separated_at: datetime  # timezone-aware
    reason: str
    source: SourceRef


@dataclass(frozen=True, slots=True)
class Training:
    person_id: str
    course: str
    completed_on: date
    source: SourceRef


@dataclass(frozen=True, slots=True)
class Nda:
    person_id: str
    signed_on: date
    source: SourceRef


@dataclass(frozen=True, slots=True)
class RequesterDesignation:
    """A designated MIS Access Requester (3.g.i, 3.h.i); wda "*" is ESD central office."""

    person_id: str
    wda: str
    designated_by: str
    starts_on: date
    ends_on: date | None  # inclusive; None = open-ended
    source: SourceRef


class RequestAction(StrEnum):
    ADD = "add"
    CHANGE = "change"
    DISABLE = "disable"


class RequestStatus(StrEnum):
    """What a request's status word means. The words are the feed layout's
    (``[feeds.requests.statuses]`` in mappings/feeds.toml); only an approved request acts."""

    APPROVED = "approved"
    NOT_APPROVED = "not_approved"  # submitted, pending, denied, cancelled...: read, ignored


#: The status words read by default: SPEC.md's, and the other words request forms use.
DEFAULT_REQUEST_STATUSES: dict[str, RequestStatus] = {
    "approved": RequestStatus.APPROVED,
    **dict.fromkeys(
        (
            "submitted",
            "pending",
            "rejected",
            "withdrawn",
            "denied",
            "declined",
            "cancelled",
            "canceled",
            "expired",
        ),
        RequestStatus.NOT_APPROVED,
    ),
}


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """One Add/Change/Disable form (3.k). Only ``approved`` requests act."""

    request_id: str
    action: RequestAction
    person_id: str
    requester_id: str
    submitted_at: datetime  # timezone-aware
    effective_on: date  # takes effect at the start of that day
    status: RequestStatus  # the meaning of the status word as read
    profile: str
    offices: tuple[str, ...]
    cert_training: bool
    cert_profile_approved: bool
    cert_nda: bool
    supervisor_id: str
    source: SourceRef
