"""The per-person fast paths of a plan give what the general code gives.

Each fast path (issue 18, cold plans) skips work in a common case: a template that is
one field, an attribute with at most one value, a DN without white space, the account
digest's JSON encoder built once. The oracles below are the code as it was before
(commit 1309951), kept here verbatim; hypothesis compares them on generated inputs,
white space, empty values and non-ASCII text included.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.mapping.templates import _compiled, _render_one, render
from connector.model.accounts import Account, Values, normalize
from connector.reconcile.diff import account_digest
from connector.targets.ldap.adapter import norm_dn

TEXT = st.text(st.sampled_from("aZ é\t\u3000\u00a0,=;x1"), max_size=8)
VALUES = st.lists(TEXT, max_size=3).map(tuple)


def _render_before(template: str, values: Mapping[str, str | tuple[str, ...]]) -> Values:
    parts, multi = _compiled(template)
    if multi:
        offices = values.get("offices", ())
        items = (offices,) if isinstance(offices, str) else offices
        out = [_render_one(parts, {**values, "offices": office}) for office in items]
    else:
        out = [_render_one(parts, values)]
    return tuple(sys.intern(v) for v in out if v.strip())


def _normalize_before(values: Values) -> Values:
    return tuple(sorted({v for v in values if v != ""}))


def _norm_dn_before(dn: str) -> str:
    return ",".join(
        "=".join(part.strip() for part in rdn.split("=", 1)) for rdn in dn.lower().split(",")
    )


def _digest_before(account: Account) -> str:
    body = {
        "id": account.account_id.lower(),
        "correlation": account.correlation,
        "logon": account.logon_id,
        "enabled": account.enabled,
        "attributes": {
            k.lower(): list(_normalize_before(v)) for k, v in sorted(account.attributes.items())
        },
        "groups": sorted(account.groups),
    }
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


TEMPLATES = [
    "{email}",
    "{offices}",
    "{org_name}",
    "{given_name} {family_name}",
    "{given_name:.1}{family_name}",
    "mis-{offices}",
    "{offices:>4}",
    "Provisioned by misync",
]


@settings(max_examples=300, deadline=None)
@given(
    template=st.sampled_from(TEMPLATES),
    given_name=TEXT,
    family_name=TEXT,
    email=TEXT,
    org_name=TEXT,
    offices=st.one_of(TEXT, VALUES),
)
def test_render_gives_what_it_gave(
    template: str,
    given_name: str,
    family_name: str,
    email: str,
    org_name: str,
    offices: str | tuple[str, ...],
) -> None:
    values: dict[str, str | tuple[str, ...]] = {
        "given_name": given_name,
        "family_name": family_name,
        "email": email,
        "org_name": org_name,
        "offices": offices,
    }
    assert render(template, values) == _render_before(template, values)


@given(VALUES)
def test_normalize_gives_what_it_gave(values: Values) -> None:
    assert normalize(values) == _normalize_before(values)
    assert type(normalize(values)) is tuple


@given(st.text(st.sampled_from("uidUID=, ,\t\u3000\u00a0xé"), max_size=24))
def test_norm_dn_gives_what_it_gave(dn: str) -> None:
    assert norm_dn(dn) == _norm_dn_before(dn)


@given(
    account_id=TEXT,
    correlation=st.one_of(st.none(), TEXT),
    attributes=st.dictionaries(st.sampled_from(["cn", "CN", "mail", "o"]), VALUES, max_size=3),
    groups=st.frozensets(TEXT, max_size=3),
)
def test_account_digest_gives_what_it_gave(
    account_id: str,
    correlation: str | None,
    attributes: dict[str, Values],
    groups: frozenset[str],
) -> None:
    acc = Account(account_id, correlation, "logon", True, attributes, groups)
    assert account_digest(acc) == _digest_before(acc)
