"""When two person ids are the same person: the way the target's correlation attribute
matches them.

A directory compares ``employeeNumber`` with its EQUALITY matching rule, not as
Python strings: under LDAP's ``caseIgnoreMatch`` (RFC 4517 4.2.11, prepared as RFC 4518
says) ``P1001``, ``p1001`` and ``P１００１`` (full-width digits) are one value. If misync
compared them as exact strings, an account carrying ``p1001`` would read as an orphan of
person ``P1001`` and a second account would be created for her. So every comparison of
person ids (correlation, the drift check, the feeds' own ids) goes through
:func:`id_key` with the rule the mapping declares (``correlation_match``).

The keys fold at least as much as the server does (for ``caseIgnoreMatch``: NFKC,
full case folding, insignificant spaces). Folding a little more than a server (Python's
full case folding maps ``ß`` to ``ss``; OpenLDAP's does not) errs on the safe side:
two ids that might be one person are held or rejected, never given two accounts.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum


class IdMatch(StrEnum):
    """How the target's correlation attribute compares values."""

    CASE_IGNORE = "caseIgnoreMatch"  # LDAP employeeNumber: NFKC, case folded, spaces folded
    CASE_EXACT = "caseExactMatch"  # LDAP caseExactMatch: NFKC, spaces folded, case kept
    EXACT = "exact"  # code point for code point (SCIM externalId: caseExact, RFC 7643 3.1)


def id_key(match: IdMatch, value: str) -> str:
    """The form of ``value`` under which two ids the target holds equal are equal."""
    if match is IdMatch.EXACT:
        return value
    if value.isascii():  # the common case: NFKC changes no ASCII text
        text = value.lower() if match is IdMatch.CASE_IGNORE else value
    else:
        text = unicodedata.normalize("NFKC", value)
        if match is IdMatch.CASE_IGNORE:
            text = unicodedata.normalize("NFKC", text.casefold())
    # RFC 4518 2.6.1 insignificant space handling: no leading or trailing space, and any
    # run of spaces inside compares as one
    return " ".join(text.split()) if not text.isalnum() else text
