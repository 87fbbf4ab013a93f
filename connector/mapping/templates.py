"""``{field}`` templates rendered without eval.

Only plain field names are allowed, with an optional format spec (``{given_name:.1}``
takes the first letter). Attribute access and indexing (``{x.y}``, ``{x[0]}``) are
refused when the mapping is loaded, so a mapping file can never reach into objects.
"""

from __future__ import annotations

import string
import sys
from collections.abc import Mapping
from functools import lru_cache

from connector.errors import MisyncError

# Fields a template may use; ``offices`` is the only multi-valued one.
PERSON_FIELDS = frozenset(
    {
        "person_id",
        "logon_id",
        "given_name",
        "family_name",
        "email",
        "office",
        "org_id",
        "org_name",
        "wda",
        "supervisor_id",
        "profile",
        "offices",
        "value",  # group templates: the profile or one office
    }
)
MULTI_FIELD = "offices"

_formatter = string.Formatter()


class MappingTemplateError(MisyncError):
    """A mapping's attribute or logon template is not plain ``{field}`` (exit 2)."""


def fields_of(template: str) -> tuple[str, ...]:
    """Field names used by ``template``; raises ``MappingTemplateError`` for anything but
    plain names."""
    names: list[str] = []
    try:
        parsed = list(_formatter.parse(template))
    except ValueError as exc:
        raise MappingTemplateError(f"malformed template {template!r}: {exc}") from exc
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if conversion:
            raise MappingTemplateError(
                f"template {template!r}: conversions (!r, !s) are not allowed"
            )
        if spec and "{" in spec:
            raise MappingTemplateError(f"template {template!r}: nested fields are not allowed")
        if name not in PERSON_FIELDS:
            allowed = ", ".join(sorted(PERSON_FIELDS))
            raise MappingTemplateError(
                f"template {template!r}: unknown field {name!r} (allowed: {allowed})"
            )
        names.append(name)
    return tuple(names)


@lru_cache(maxsize=512)
def _compiled(template: str) -> tuple[tuple[tuple[str, str | None, str], ...], bool]:
    """The template's (literal, field, spec) parts and whether it uses ``{offices}``,
    parsed once per template (a mapping has a handful; a plan renders them 100k times)."""
    names = fields_of(template)
    parts = tuple((lit, name, spec or "") for lit, name, spec, _c in _formatter.parse(template))
    return parts, MULTI_FIELD in names


def render(template: str, values: Mapping[str, str | tuple[str, ...]]) -> tuple[str, ...]:
    """Render to zero or more values. A template with ``{offices}`` yields one value per
    office; a rendering that is empty or whitespace yields no value."""
    parts, multi = _compiled(template)
    if len(parts) == 1 and not parts[0][0] and not parts[0][2]:  # the whole template is
        return _render_field(values.get(parts[0][1] or "", ""), multi)  # one field: "{email}"
    if multi:
        offices = values.get(MULTI_FIELD, ())
        items = (offices,) if isinstance(offices, str) else offices
        out = [_render_one(parts, {**values, MULTI_FIELD: office}) for office in items]
    else:
        out = [_render_one(parts, values)]
    # interned: the same values repeat across people and in the accounts read
    return tuple(sys.intern(v) for v in out if v.strip())


def _render_field(raw: str | tuple[str, ...], multi: bool) -> tuple[str, ...]:
    """``render`` of a template that is one field and nothing else: the same values,
    without formatting (most of a mapping's templates are such)."""
    items = (raw,) if isinstance(raw, str) or not multi else raw
    out = []
    for item in items:
        text = (item if isinstance(item, str) else ";".join(item)).strip()
        if text:
            out.append(sys.intern(text))
    return tuple(out)


def _render_one(
    parts: tuple[tuple[str, str | None, str], ...], values: Mapping[str, str | tuple[str, ...]]
) -> str:
    out: list[str] = []
    for literal, name, spec in parts:
        out.append(literal)
        if name is None:
            continue
        raw = values.get(name, "")
        text = raw if isinstance(raw, str) else ";".join(raw)
        out.append(format(text, spec) if spec else text)
    return "".join(out).strip()
