"""Target-neutral accounts: what a target holds, and what the policy wants it to hold.

Attribute names are the target's own, as declared in the mapping (``givenName`` for
LDAP, ``name.givenName`` for SCIM). Values are tuples of strings; order does not
matter for comparison (see ``normalize``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

Values = tuple[str, ...]


def normalize(values: Values) -> Values:
    """Canonical form for comparing multi-valued attributes: sorted, no duplicates, no blanks."""
    if type(values) is tuple and len(values) <= 1:  # most attributes: already canonical
        return values if not values or values[0] != "" else ()
    return tuple(sorted({v for v in values if v != ""}))


@dataclass(frozen=True, slots=True)
class Account:
    """An account as read from the target, restricted to the managed attributes."""

    account_id: str  # LDAP DN or SCIM id
    correlation: str | None  # person_id read from the correlation attribute
    logon_id: str | None
    enabled: bool
    attributes: Mapping[str, Values] = field(default_factory=dict)
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DesiredAccount:
    """What the policy and the mapping say the account of one person must look like."""

    person_id: str
    logon_id: str
    enabled: bool
    attributes: Mapping[str, Values]  # written on create and kept in line afterwards
    create_only: Mapping[str, Values] = field(default_factory=dict)  # written on create only
    groups: frozenset[str] = frozenset()


class ChangeKind(StrEnum):
    ATTRIBUTE = "attribute"
    GROUPS = "groups"


@dataclass(frozen=True, slots=True)
class Change:
    """One field of one account: old and new values (kopf-style diff tuple)."""

    kind: ChangeKind
    name: str  # attribute name; for GROUPS, "groups"
    old: Values
    new: Values
