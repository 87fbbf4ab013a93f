"""Diff an account as read against the desired one: immutable (kind, name, old, new) tuples."""

from __future__ import annotations

import hashlib
import json

from connector.model.accounts import Account, Change, ChangeKind, DesiredAccount, normalize


def diff_account(
    actual: Account, desired: DesiredAccount, *, manage_groups: bool
) -> tuple[Change, ...]:
    """Changes that make ``actual`` hold ``desired``'s managed attributes (and groups).

    Only attributes the mapping manages with policy ``force`` are compared; ``keep``
    attributes are written on create and left alone afterwards. Multi-valued
    attributes compare as sets. The enabled flag is not a change here: it is the
    action's op (enable/disable).
    """
    changes: list[Change] = []
    current = {k.lower(): v for k, v in actual.attributes.items()}
    for name, values in desired.attributes.items():
        old = normalize(current.get(name.lower(), ()))
        new = normalize(values)
        if old != new:
            changes.append(Change(ChangeKind.ATTRIBUTE, name, old, new))
    if manage_groups and actual.groups != desired.groups:
        changes.append(
            Change(
                ChangeKind.GROUPS,
                "groups",
                tuple(sorted(actual.groups)),
                tuple(sorted(desired.groups)),
            )
        )
    return tuple(changes)


def creation_changes(desired: DesiredAccount, *, manage_groups: bool) -> tuple[Change, ...]:
    """A create shown as changes from nothing, for review."""
    changes = [
        Change(ChangeKind.ATTRIBUTE, name, (), normalize(values))
        for name, values in {**desired.create_only, **desired.attributes}.items()
        if normalize(values)
    ]
    if manage_groups and desired.groups:
        changes.append(Change(ChangeKind.GROUPS, "groups", (), tuple(sorted(desired.groups))))
    return tuple(changes)


def account_digest(account: Account) -> str:
    """A fingerprint of everything the connector manages on one account.

    ``apply --plan`` compares it with a fresh read to refuse a plan whose target drifted.
    """
    body = {
        "id": account.account_id.lower(),
        "correlation": account.correlation,
        "logon": account.logon_id,
        "enabled": account.enabled,
        "attributes": {
            k.lower(): list(normalize(v)) for k, v in sorted(account.attributes.items())
        },
        "groups": sorted(account.groups),
    }
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()[:32]


# ``json.dumps`` with these options, without building an encoder per call (one per
# account of a 100k read)
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
