"""Every reason and flag code, the Policy 1021 clause it enforces, and what it means."""
# ruff: noqa: E501 - one code per line reads best as a table

from __future__ import annotations

from connector.model.feeds import FeedName

CLAUSES: dict[str, tuple[str, str]] = {
    # failing conditions
    "no_add_request": (
        "3.i, 3.k",
        "no approved add request from a designated requester is in force",
    ),
    "add_request_invalid_requester": (
        "3.i, 3.e.v, 3.g.i, 3.h.i",
        "the add request's requester was not a designated requester for the WDA at submission",
    ),
    "add_request_uncertified": (
        "3.i.i–iii",
        "the add request does not certify training, supervisor approval and NDA",
    ),
    "disabled_by_request": ("3.i, 3.k", "an approved disable request took effect"),
    "separated": ("3.g.ix, 3.h.viii", "the person separated from the organization"),
    "not_on_roster": ("3.g.vi", "the person is not on the organization's HR roster"),
    "org_unknown": ("3.e.viii", "the person's organization is not in organizations.csv"),
    "org_ineligible": (
        "3.e.viii",
        "the organization is not ESD, an LWDB, a WorkSource partner or a WIOA contractor",
    ),
    "no_wioa_contract": ("3.a.i", "the organization has no WIOA services contract"),
    "wioa_contract_ended": ("3.a.i", "the organization's WIOA services contract ended"),
    "wioa_contract_not_started": ("3.a.i", "the WIOA services contract has not started"),
    "wioa_contract_unsigned": ("3.a.i", "the WIOA services contract is not signed"),
    "no_data_sharing_contract": ("3.a.ii", "the organization has no MIS data-sharing contract"),
    "data_sharing_ended": (
        "3.e.vii",
        "the data-sharing contract expired or was terminated: access is revoked immediately",
    ),
    "data_sharing_not_started": ("3.a.ii", "the data-sharing contract has not started"),
    "data_sharing_unsigned": ("3.a.ii", "the data-sharing contract is not signed"),
    "data_sharing_no_business_case": ("3.b", "the data-sharing contract states no business case"),
    "data_sharing_unapproved": (
        "3.c",
        "the data-sharing contract lacks an approval (Security Administrator, Contracts Office, Data Owner)",
    ),
    "training_missing": ("3.a.iii", "no state-approved MIS training completed"),
    "nda_missing": (
        "3.g.iv, 3.h.v, 3.i.iii",
        "no NDA signed and the grace period after access was granted is over",
    ),
    "lapse_not_restored": (
        "3.a",
        "access lapsed since the grant started and restore_on_cure is off",
    ),
    # review flags (do not change the outcome)
    "nda_within_grace": ("3.g.iv, 3.h.v, 3.i.iii", "no NDA yet; still within the grace period"),
    "late_notice_disable": (
        "3.i",
        "disable request submitted less than 24 hours before it took effect",
    ),
    "disable_invalid_requester": (
        "3.i",
        "disable request from a requester who was not designated; carried out anyway",
    ),
    "change_invalid_requester": (
        "3.i",
        "change request from a requester who was not designated; ignored",
    ),
    "disable_superseded": (
        "3.i, 3.k",
        "a disable request was superseded by an add request submitted after it",
    ),
    "add_invalid_ignored": (
        "3.i",
        "an invalid add request was ignored because a grant is already in force",
    ),
}


_W, _O, _S = FeedName.WORKERS, FeedName.ORGANIZATIONS, FeedName.SEPARATIONS
_REQUESTER_CHECK = frozenset({FeedName.REQUESTS, FeedName.REQUESTERS, _W, _O, _S})
_ORG_CHECK = frozenset({_W, _O, FeedName.CONTRACTS})

RELIES_ON: dict[str, frozenset[FeedName]] = {
    # Every feed a failing condition rests on. A disable or a breach is driven only by a
    # reason whose feeds are all usable: a missing roster must never read as "no WDA",
    # nor a missing designations file as "no requester" (SPEC: never act on a partial feed).
    "no_add_request": frozenset({FeedName.REQUESTS}),
    "add_request_invalid_requester": _REQUESTER_CHECK,
    "add_request_uncertified": frozenset({FeedName.REQUESTS}),
    "disabled_by_request": frozenset({FeedName.REQUESTS}),
    "not_on_roster": frozenset({_W}),
    "org_unknown": frozenset({_W, _O}),
    "org_ineligible": frozenset({_W, _O}),
    "no_wioa_contract": _ORG_CHECK,
    "wioa_contract_ended": _ORG_CHECK,
    "wioa_contract_not_started": _ORG_CHECK,
    "wioa_contract_unsigned": _ORG_CHECK,
    "no_data_sharing_contract": _ORG_CHECK,
    "data_sharing_ended": _ORG_CHECK,
    "data_sharing_not_started": _ORG_CHECK,
    "data_sharing_unsigned": _ORG_CHECK,
    "data_sharing_no_business_case": _ORG_CHECK,
    "data_sharing_unapproved": _ORG_CHECK,
    "training_missing": frozenset({FeedName.TRAINING}),
    "nda_missing": frozenset({FeedName.NDAS, FeedName.REQUESTS}),
    "lapse_not_restored": frozenset({FeedName.CONTRACTS, FeedName.NDAS, FeedName.REQUESTS}),
}
