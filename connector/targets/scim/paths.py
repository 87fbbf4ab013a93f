"""Flat attribute paths (as written in a SCIM mapping) <-> SCIM JSON payloads.

- ``userName``, ``title`` ...: a simple attribute (one value).
- ``name.givenName``: a sub-attribute of a single complex attribute.
- ``emails.value``, ``addresses.locality``: a multi-valued complex attribute
  (RFC 7643 section 2.4): one element per value, each with ``type = "work"``.
- ``urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department``: an
  attribute of a schema extension (RFC 7643 section 3.3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.model.accounts import Values

MULTI_VALUED = frozenset(
    {
        "emails",
        "phoneNumbers",
        "ims",
        "photos",
        "addresses",
        "entitlements",
        "roles",
        "x509Certificates",
    }
)
WORK = "work"


def split(path: str) -> tuple[str, str, str | None]:
    """(kind, attribute, sub) with kind in simple | complex | multi | extension."""
    if path.startswith("urn:"):
        urn, attr = path.rsplit(":", 1)
        return "extension", urn, attr
    if "." in path:
        attr, sub = path.split(".", 1)
        return ("multi" if attr in MULTI_VALUED else "complex"), attr, sub
    return "simple", path, None


def to_payload(attrs: Mapping[str, Values]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, values in attrs.items():
        vals = [v for v in values if v != ""]
        if not vals:
            continue
        kind, attr, sub = split(path)
        if kind == "simple":
            out[attr] = vals[0]
        elif kind == "complex":
            out.setdefault(attr, {})[sub] = vals[0]
        elif kind == "multi":
            out[attr] = [{sub: v, "type": WORK} for v in vals]
        else:
            out.setdefault(attr, {})[str(sub)] = vals[0]
    return out


def patch_value(path: str, values: Values) -> tuple[str, Any]:
    """The PATCH (path, value) that replaces one mapped attribute (RFC 7644 section 3.5.2.3)."""
    kind, attr, sub = split(path)
    vals = [v for v in values if v != ""]
    if kind == "multi":
        return attr, [{sub: v, "type": WORK} for v in vals]
    return path, vals[0] if vals else None


def from_payload(payload: Mapping[str, Any], paths: list[str]) -> dict[str, Values]:
    out: dict[str, Values] = {}
    for path in paths:
        kind, attr, sub = split(path)
        value: Any
        if kind == "simple":
            value = payload.get(attr)
            vals: Values = (_text(value),) if value not in (None, "") else ()
        elif kind in ("complex", "extension"):
            node = payload.get(attr) or {}
            value = node.get(sub) if isinstance(node, dict) else None
            vals = (_text(value),) if value not in (None, "") else ()
        else:
            items = payload.get(attr) or []
            vals = tuple(_text(i.get(sub)) for i in items if isinstance(i, dict) and i.get(sub))
        if vals:
            out[path] = vals
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
