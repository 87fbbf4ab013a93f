"""Logon IDs (3.j.ii): assigned by the connector from a template, unique, stable for a
person for life, never reused.

Stability and non-reuse come from the state store, which remembers every ID ever
assigned; this module only proposes an ID for a person who has none yet. Proposals
are deterministic for the same inputs, so a dry-run plan shows the ID that apply will
reserve.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from connector.mapping.templates import render


def fold(text: str) -> str:
    """Lower-case ASCII letters and digits only: ``"Ana-María O'Neil"`` -> ``"anamariaoneil"``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in ascii_text.lower() if ch.isalnum())


def propose_logon_id(
    template: str,
    fields: Mapping[str, str | tuple[str, ...]],
    *,
    max_length: int,
    taken: set[str],
) -> str:
    """A new logon ID not in ``taken`` (lower-cased IDs ever assigned or present in the target).

    Collisions get the smallest numeric suffix that is free (``alee``, ``alee2``, ...),
    truncating the base so the result stays within ``max_length``. An empty rendering
    falls back to ``u`` + the folded person_id.
    """
    rendered = render(template, fields)
    base = fold(rendered[0] if rendered else "")
    if not base:
        base = "u" + fold(str(fields.get("person_id", "")))
    base = base[:max_length]
    if base not in taken:
        return base
    n = 2
    while True:
        suffix = str(n)
        candidate = base[: max_length - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        n += 1
