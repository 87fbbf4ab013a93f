"""Row builders: one per feed, ``(row, source) -> record or None`` (the errors are in
``row.errors``). Cross-field rules of one row live here (a contract's counterparty for
its type, an end before a start, a separated worker's last day)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from connector.feeds.values import BadValue, Row
from connector.model.feeds import FeedName
from connector.model.records import (
    DEFAULT_REQUEST_STATUSES,
    AccessRequest,
    Contract,
    ContractType,
    Nda,
    Organization,
    OrgKind,
    RequestAction,
    RequesterDesignation,
    RequestStatus,
    Separation,
    SourceRef,
    Training,
    Worker,
    WorkerStatus,
)


def _organization(r: Row, src: SourceRef) -> Organization | None:
    rec = Organization(
        r.text("org_id"),
        r.text("name", required=False),
        r.enum("kind", OrgKind) or OrgKind.OTHER,
        r.text("wda"),
        src,
    )
    return None if r.errors else rec


_COUNTERPARTIES = {
    ContractType.WIOA_SERVICES: ("lwdb", "esd", "dol"),
    ContractType.DATA_SHARING: ("esd", "lwdb"),
}
_ANY_COUNTERPARTY = tuple(dict.fromkeys(c for cs in _COUNTERPARTIES.values() for c in cs))


def _contract(r: Row, src: SourceRef) -> Contract | None:
    ctype = r.enum("type", ContractType)
    counterparty = r.text("counterparty")
    if ctype is not None and counterparty and counterparty not in _COUNTERPARTIES[ctype]:
        r.fail(
            "counterparty",
            f"{counterparty!r} is not a valid counterparty for a {ctype} "
            f"contract ({', '.join(_COUNTERPARTIES[ctype])})",
        )
    elif ctype is None and counterparty and counterparty not in _ANY_COUNTERPARTY:
        r.fail("counterparty", f"{counterparty!r} is not one of: {', '.join(_ANY_COUNTERPARTY)}")
    starts, ends = r.date("starts_on"), r.date("ends_on", required=False)
    signed, terminated = (
        r.date("signed_on", required=False),
        r.date("terminated_on", required=False),
    )
    if starts and ends and ends < starts:
        r.fail("ends_on", f"ends_on {ends} is before starts_on {starts}")
    if signed and terminated and terminated < signed:
        r.fail("terminated_on", f"terminated_on {terminated} is before signed_on {signed}")
    rec = Contract(
        r.text("contract_id"),
        r.text("org_id"),
        ctype or ContractType.WIOA_SERVICES,
        counterparty,
        r.text("business_case", required=False),
        signed,
        starts or date.min,
        ends,
        terminated,
        r.date("security_admin_approved_on", required=False),
        r.date("contracts_office_approved_on", required=False),
        r.date("data_owner_approved_on", required=False),
        src,
    )
    return None if r.errors else rec


def _worker(r: Row, src: SourceRef) -> Worker | None:
    status = r.enum("status", WorkerStatus)
    separated_on = r.date("separated_on", required=False)
    if status is WorkerStatus.SEPARATED and separated_on is None and "separated_on" not in r.errors:
        r.fail("separated_on", "required when status is separated (the last day worked)")
    elif status not in (None, WorkerStatus.SEPARATED) and r.values.get("separated_on", "").strip():
        r.fail(
            "separated_on",
            f"status {status} contradicts separated_on (only a separated worker has a last "
            "day worked)",
        )
    rec = Worker(
        r.text("person_id"),
        r.text("org_id"),
        r.text("given_name"),
        r.text("family_name"),
        r.email("email", required=False),
        r.text("office", required=False),
        r.text("supervisor_id", required=False),
        status or WorkerStatus.ACTIVE,
        separated_on,
        src,
    )
    return None if r.errors else rec


def _separation(r: Row, src: SourceRef) -> Separation | None:
    at = r.instant("separated_at")
    rec = Separation(
        r.text("person_id"),
        r.text("org_id", required=False),
        at or datetime.min.replace(tzinfo=UTC),
        r.text("reason", required=False),
        src,
    )
    return None if r.errors else rec


def _training(r: Row, src: SourceRef) -> Training | None:
    rec = Training(r.text("person_id"), r.text("course"), r.date("completed_on") or date.min, src)
    return None if r.errors else rec


def _nda(r: Row, src: SourceRef) -> Nda | None:
    rec = Nda(r.text("person_id"), r.date("signed_on") or date.min, src)
    return None if r.errors else rec


def _requester(r: Row, src: SourceRef) -> RequesterDesignation | None:
    starts, ends = r.date("starts_on"), r.date("ends_on", required=False)
    if starts and ends and ends < starts:
        r.fail("ends_on", f"ends_on {ends} is before starts_on {starts}")
    rec = RequesterDesignation(
        r.text("person_id"), r.text("wda"), r.text("designated_by"), starts or date.min, ends, src
    )
    return None if r.errors else rec


def _status(raw: str, words: Mapping[str, RequestStatus]) -> RequestStatus:
    meaning = words.get(raw)
    if meaning is None:
        approved = ", ".join(w for w, m in words.items() if m is RequestStatus.APPROVED)
        other = ", ".join(w for w, m in words.items() if m is not RequestStatus.APPROVED)
        raise BadValue(
            f"{raw!r} is not a request status (acting: {approved}; read and ignored: "
            f"{other or 'none'}; see [feeds.requests.statuses] in the feed layout)"
        )
    return meaning


def _request(
    r: Row, src: SourceRef, statuses: Mapping[str, RequestStatus] = DEFAULT_REQUEST_STATUSES
) -> AccessRequest | None:
    action = r.enum("action", RequestAction)
    is_add = action is RequestAction.ADD
    profile = r.text("profile", required=is_add)
    rec = AccessRequest(
        r.text("request_id"),
        action or RequestAction.ADD,
        r.text("person_id"),
        r.text("requester_id"),
        r.instant("submitted_at") or datetime.min.replace(tzinfo=UTC),
        r.date("effective_on") or date.min,
        r.convert("status", lambda raw: _status(raw, statuses), required=True)
        or RequestStatus.NOT_APPROVED,
        profile,
        r.items("offices"),
        r.boolean("cert_training", required=is_add),
        r.boolean("cert_profile_approved", required=is_add),
        r.boolean("cert_nda", required=is_add),
        r.text("supervisor_id", required=False),
        src,
    )
    return None if r.errors else rec


BUILDERS: dict[FeedName, Callable[[Row, SourceRef], Any]] = {
    FeedName.ORGANIZATIONS: _organization,
    FeedName.CONTRACTS: _contract,
    FeedName.WORKERS: _worker,
    FeedName.SEPARATIONS: _separation,
    FeedName.TRAINING: _training,
    FeedName.NDAS: _nda,
    FeedName.REQUESTERS: _requester,
    FeedName.REQUESTS: _request,
}


def builder(
    name: FeedName, statuses: Mapping[str, RequestStatus]
) -> Callable[[Row, SourceRef], Any]:
    """The builder of ``name``'s rows; requests read their status words from ``statuses``
    (the feed layout's ``[feeds.requests.statuses]``)."""
    if name is FeedName.REQUESTS:
        return functools.partial(_request, statuses=statuses)
    return BUILDERS[name]
