"""The feed's email check answers exactly as email-validator does on the whole address.

``connector.feeds.values._email`` accepts plain ASCII addresses by asking email-validator
about their domain once (the roster's speed, docs/PERFORMANCE.md); these tests compare
its verdict with ``validate_email`` on the whole address, for hand-picked edge cases and
for generated ones near the boundary of the plain form.
"""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.feeds.values import BadValue, _email


def _library_accepts(raw: str) -> bool:
    try:
        validate_email(raw, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def _feed_accepts(raw: str) -> bool:
    try:
        assert _email(raw) == raw  # never rewritten
    except BadValue:
        return False
    return True


LABEL63 = "d" * 63
EDGE_CASES = [
    "ann.lee@esd.wa.gov",
    "Ann.Lee+mis@ESD.WA.GOV",
    "a_b-c@x-y.example.org",
    "a@localhost",  # single label
    "a@b",  # single label
    "a@example.local",  # special-use domain
    "a@example.invalid",
    "a@example.arpa",
    "a@b.123",  # numeric top-level label
    "a@1.2.3.4",
    "a@-b.org",  # label starting with a hyphen
    "a@b-.org",
    "a@xn--bcher-kva.example",  # punycode label
    "a@xn--zz.example",  # invalid punycode
    "a..b@c.org",
    ".a@c.org",
    "a.@c.org",
    "a@c..org",
    f"a@{LABEL63}.org",
    f"a@{LABEL63}d.org",  # a 64-character label
    "l" * 64 + "@c.org",
    "l" * 65 + "@c.org",  # over RFC 5321's local-part limit (email-validator: strict only)
    "l" * 248 + "@c.org",  # 254 characters
    "l" * 249 + "@c.org",  # 255 characters
    "a" * 10 + "@" + ".".join([LABEL63] * 3) + ".org",  # long domain
    "a@" + ".".join([LABEL63] * 4) + ".org",  # domain over 253 characters
    "a b@c.org",
    "a@c.org ",
    "a<b@c.org",
    '"a"@c.org',
    "a@[127.0.0.1]",
    "ann@exämple.org",
    "änn@example.org",
    "a@@c.org",
    "a@c.org@d.org",
]


@pytest.mark.parametrize("raw", EDGE_CASES)
def test_the_feed_accepts_an_address_exactly_when_email_validator_does(raw: str) -> None:
    assert _feed_accepts(raw) == _library_accepts(raw)


LOCAL_CHARS = "aZ09_+-.!#'~\"<(@ é"
DOMAIN_CHARS = "az09-.Xé_"


@settings(max_examples=400, deadline=None)
@given(
    local=st.text(LOCAL_CHARS, min_size=0, max_size=12),
    domain=st.text(DOMAIN_CHARS, min_size=0, max_size=14),
    pad=st.sampled_from([0, 40, 63, 64, 200, 240, 250]),
    where=st.sampled_from(["local", "label", "none"]),
)
def test_generated_addresses_get_email_validators_verdict(
    local: str, domain: str, pad: int, where: str
) -> None:
    if where == "local":
        local = "x" * pad + local
    elif where == "label":
        domain = "y" * pad + domain
    raw = f"{local}@{domain}"
    assert _feed_accepts(raw) == _library_accepts(raw), raw


def test_a_rejection_carries_email_validators_reason() -> None:
    with pytest.raises(BadValue, match=r"not a valid email address: 'a@localhost' \(.+\)"):
        _email("a@localhost")
