"""Feed values: the strict parsing of one field, and ``Row``, typed access to one CSV row.

Values are strict: dates ``YYYY-MM-DD``, instants ``YYYY-MM-DDTHH:MM[:SS[.fff]]`` (1 to 6
digits) then ``Z`` or ``±HH:MM``, booleans ``true``/``false``, enumerations exactly as
SPEC.md spells them; a value with an invisible character (Unicode Cc, Cf, Zl, Zp: a
control character, a stray BOM, a zero-width space) is rejected. A field that fails
raises ``BadValue``; ``Row`` collects every field error of a row, not only the first.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeVar

from email_validator import EmailNotValidError, validate_email

from connector.errors import MisyncError

#: Columns whose values repeat across many rows (a course, an organization): the rows of
#: one read share one string object per value, to keep memory near the data kept.
SHARED_TEXT = frozenset(
    {
        "course",
        "org_id",
        "wda",
        "counterparty",
        "designated_by",
        "profile",
        "office",
        "given_name",
        "reason",
    }
)
#: Columns that hold person ids: interned, so that the rows of every feed (a person has
#: about six) and the accounts read (``connector.targets.ldap`` interns the values it
#: reads) share one string object per person.
ID_TEXT = frozenset({"person_id", "requester_id", "supervisor_id"})
#: Unicode categories of characters that cannot be seen in a value: control (Cc, which
#: includes tab, CR and LF), format (Cf: BOM, zero-width space, bidi marks), and the
#: line and paragraph separators (Zl, Zp).
INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LOCAL = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
_INSTANT = re.compile(_LOCAL + r"(?:Z|[+-][0-9]{2}:[0-9]{2})")
_NAIVE = re.compile(_LOCAL)

E = TypeVar("E", bound=StrEnum)


class BadValue(MisyncError):
    """One field failed; the message is the reason (caught per field: a rejected row)."""


def invisible(value: str) -> list[str]:
    """The invisible characters in ``value``, each once, in order of appearance."""
    if value.isprintable():  # the fast path: Cc, Cf, Zl and Zp are all non-printable
        return []
    return list(dict.fromkeys(ch for ch in value if unicodedata.category(ch) in INVISIBLE))


def describe(chars: Sequence[str]) -> str:
    return ", ".join(
        f"U+{ord(ch):04X} ({unicodedata.name(ch, 'control character')})" for ch in chars
    )


def clean(value: str) -> str:
    """``value`` without invisible characters or surrounding blanks (to attribute a row)."""
    if value.isprintable():
        return value.strip()
    return "".join(ch for ch in value if unicodedata.category(ch) not in INVISIBLE).strip()


class Row:
    """Typed access to one CSV row by logical column; collects every field error."""

    def __init__(self, values: Mapping[str, str], memo: dict[str, str] | None = None) -> None:
        self.values = values
        self.errors: dict[str, str] = {}
        self._memo = memo if memo is not None else {}

    def convert(self, col: str, conv: Callable[[str], Any], *, required: bool) -> Any:
        if col in self.errors:  # already rejected (an invisible character): no second guess
            return None
        raw = self.values.get(col, "").strip()
        if raw == "":
            if required:
                self.errors[col] = "required value is empty"
            return None
        try:
            return conv(raw)
        except BadValue as exc:
            self.errors[col] = str(exc)
            return None

    def text(self, col: str, *, required: bool = True) -> str:
        # ``convert(col, str, ...)`` without the call of ``str``: a text is any value
        if col in self.errors:
            return ""
        value = self.values.get(col, "").strip()
        if value == "":
            if required:
                self.errors[col] = "required value is empty"
            return ""
        if col in SHARED_TEXT:  # one string object for a value many rows repeat
            return self._memo.setdefault(value, value)
        if col in ID_TEXT:
            return sys.intern(value)
        return value

    def date(self, col: str, *, required: bool = True) -> date | None:
        return self.convert(col, _date, required=required)  # type: ignore[no-any-return]

    def instant(self, col: str) -> datetime | None:
        return self.convert(col, _instant, required=True)  # type: ignore[no-any-return]

    def enum(self, col: str, kind: type[E]) -> E | None:
        return self.convert(col, _enum_of(kind), required=True)  # type: ignore[no-any-return]

    def email(self, col: str, *, required: bool) -> str:
        value = self.convert(col, _email, required=required)
        return value if isinstance(value, str) else ""

    def boolean(self, col: str, *, required: bool) -> bool:
        value = self.convert(col, _bool, required=required)
        return bool(value)

    def items(self, col: str) -> tuple[str, ...]:
        return _items(self.values.get(col, ""))

    def fail(self, col: str, reason: str) -> None:
        self.errors.setdefault(col, reason)


@functools.lru_cache(maxsize=4096)  # lists of offices repeat: one tuple each
def _items(raw: str) -> tuple[str, ...]:
    # interned: the same office names are the values the accounts read hold
    return tuple(sys.intern(p.strip()) for p in raw.split(";") if p.strip())


@functools.lru_cache(maxsize=4096)  # feeds repeat dates: one object each (errors not cached)
def _date(raw: str) -> date:
    if _DATE.fullmatch(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise BadValue(f"not a date (YYYY-MM-DD): {raw!r}")


_INSTANT_FORM = "YYYY-MM-DDTHH:MM[:SS[.fff]] then Z or ±HH:MM, e.g. 2026-11-25T17:00:00-08:00"


@functools.lru_cache(maxsize=4096)  # as dates (a batch of requests shares its instant)
def _instant(raw: str) -> datetime:
    if _NAIVE.fullmatch(raw):
        raise BadValue(f"instant {raw!r} needs a UTC offset (e.g. 2026-11-25T17:00:00-08:00)")
    if _INSTANT.fullmatch(raw):
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass
    raise BadValue(f"not an ISO 8601 instant ({_INSTANT_FORM}): {raw!r}")


#: The plain addresses of a roster: an ASCII dot-atom local part of letters, digits and
#: ``_+-`` (a subset of RFC 5322's atext) and an ASCII domain of two or more labels.
#: email-validator accepts such a local part by that very test (``DOT_ATOM_TEXT``, no
#: length limit outside ``strict``), so for these its verdict is the verdict on the
#: domain alone, which repeats across a roster (one per organization) and is asked once.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)
#: RFC 5321's limit on a whole address (email-validator's ``EMAIL_MAX_LENGTH``).
_EMAIL_MAX = 254


def _email(raw: str) -> str:
    """An email address as written, if it is one (RFC 5322 addr-spec, checked by
    email-validator without any DNS query); never rewritten, so the value kept is the
    value read.

    A plain ASCII address (``_PLAIN_EMAIL``, at most 254 characters) is accepted when
    email-validator accepts its domain (asked once per domain, with the local part
    ``a``): ~0.1 ms less per roster row. Everything else, and every rejection with its
    message, is email-validator's own answer on the whole address
    (tests/unit/test_feed_values.py proves the two agree)."""
    plain = _PLAIN_EMAIL.fullmatch(raw)
    if plain is not None and len(raw) <= _EMAIL_MAX and _domain_accepted(plain.group(1)):
        return raw
    try:
        validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        raise BadValue(f"not a valid email address: {raw!r} ({exc})") from None
    return raw


@functools.lru_cache(maxsize=4096)
def _domain_accepted(domain: str) -> bool:
    """Whether email-validator accepts an address at ``domain`` with the plainest local
    part (``a``): its length checks, special-use and single-label domains, IDNA rules."""
    try:
        validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def _bool(raw: str) -> bool:
    if raw in ("true", "false"):
        return raw == "true"
    raise BadValue(f"not a boolean (true/false): {raw!r}")


@functools.lru_cache(maxsize=64)
def _enum_of(kind: type[E]) -> Callable[[str], E]:
    """``_enum`` for one enumeration (one function per kind, not a closure per field)."""
    return functools.partial(_enum, kind=kind)


def _enum(raw: str, kind: type[E]) -> E:
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise BadValue(f"{raw!r} is not one of: {allowed}") from None
