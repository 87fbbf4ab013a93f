"""Frozen domain types shared by every layer. No I/O, no third-party imports."""

from connector.model.accounts import Account, Change, ChangeKind, DesiredAccount
from connector.model.decisions import Decision, Grant, Reason, Status
from connector.model.feeds import FeedHealth, FeedName, FeedSet, FeedState, Rejection
from connector.model.plan import Action, Breach, HeldAction, Op, Plan
from connector.model.records import (
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

__all__ = [
    "AccessRequest",
    "Account",
    "Action",
    "Breach",
    "Change",
    "ChangeKind",
    "Contract",
    "ContractType",
    "Decision",
    "DesiredAccount",
    "FeedHealth",
    "FeedName",
    "FeedSet",
    "FeedState",
    "Grant",
    "HeldAction",
    "Nda",
    "Op",
    "OrgKind",
    "Organization",
    "Plan",
    "Reason",
    "Rejection",
    "RequestAction",
    "RequestStatus",
    "RequesterDesignation",
    "Separation",
    "SourceRef",
    "Status",
    "Training",
    "Worker",
    "WorkerStatus",
]
