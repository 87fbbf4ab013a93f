"""A tiny HTML builder that escapes by default.

Every ``str`` that reaches the page goes through :func:`html.escape`; only
:class:`Markup` (built here, or a constant of this package such as the stylesheet)
passes through as is. That is the rule a template engine's autoescape gives, in the
few lines this one page needs (no template engine is a dependency of misync).
"""

from __future__ import annotations

import html
from collections.abc import Iterable

_VOID = frozenset({"br", "hr", "img", "input", "meta", "link"})


class Markup(str):
    """Text known to be HTML (built by :func:`el`); never escaped again."""

    __slots__ = ()


def esc(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def _children(items: Iterable[object]) -> Iterable[str]:
    for c in items:
        if c is None or c is False:
            continue
        if isinstance(c, str | int):
            yield esc(c)
        else:
            yield from _children(c)  # type: ignore[arg-type]


def el(tag: str, *children: object, **attrs: object) -> Markup:
    """``<tag attrs>children</tag>``; ``class_`` -> ``class``, ``data_x`` -> ``data-x``;
    an attribute that is None or False is left out, True is written bare."""
    parts = [tag]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(name if value is True else f'{name}="{esc(value)}"')
    if tag in _VOID:
        return Markup(f"<{' '.join(parts)}>")
    return Markup(f"<{' '.join(parts)}>" + "".join(_children(children)) + f"</{tag}>")


def join(items: Iterable[object]) -> Markup:
    return Markup("".join(_children(items)))
