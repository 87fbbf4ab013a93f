"""Read given lines of a feed file whose bytes are known: the rows a plan memo indexed
(connector.runs.memo), parsed again by the reader's own row parser.

A dry run that may reuse the last whole plan (the feed files are byte for byte the ones
that plan read) needs the rows of a few people only. The memo keeps where each person's
accepted rows are (their line numbers); ``read_lines`` parses those lines, with their
true line numbers, exactly as a full read parses them (``connector.feeds.reader._Rows``,
as the fast path's ``connector.feeds.delta`` does), so each record is the one a full
read makes of that line. Whatever does not come out as one accepted record per line
asked for (the line is not there, not one CSV record, rejected, a changed header)
raises ``NoDelta``: the caller plans the whole way instead.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

from connector.feeds.delta import NoDelta, _fields, _Sparse, _split, _text
from connector.feeds.layout import FeedLayout
from connector.feeds.reader import _header, _Rows, _Unreadable
from connector.feeds.rows import builder
from connector.model.feeds import FeedName

FIRST_ROW = 2  # line 1 is the header


def read_lines(
    name: FeedName, file: str, data: bytes, lines: Collection[int], layout: FeedLayout
) -> list[Any]:
    """The records on ``lines`` (1-based line numbers, the header is line 1) of the feed
    file ``file`` whose bytes are ``data``, in line order; NoDelta unless every line
    asked for is one row the reader accepts."""
    pieces, terminated = _split(data)
    if not pieces:
        raise NoDelta(f"{file}: empty")
    wanted = sorted(set(lines))
    outside = [n for n in (wanted[:1] + wanted[-1:]) if not FIRST_ROW <= n <= len(pieces)]
    if outside:
        raise NoDelta(f"{file}: no row on line {outside[0]}")
    try:
        header, columns, index = _header(
            name, file, iter([_fields(_text(pieces[0], True, 1, file), 1, file)]), layout
        )
    except _Unreadable as exc:
        raise NoDelta(str(exc)) from None
    last = len(pieces)
    sparse = [(n, _text(pieces[n - 1], terminated or n < last, n, file)) for n in wanted]
    rows = _Rows(name, file, header, index, builder(name, layout.request_statuses))
    source = _Sparse(sparse, file)
    try:
        rows.read(source, cast("Any", source), 0)  # ``source`` is the reader and its source
    except _Unreadable as exc:
        raise NoDelta(str(exc)) from None
    rows.reject_duplicates(columns)
    records, rejected, _ = rows.result(columns)
    if rejected or len(records) != len(wanted):
        where = rejected[0].line if rejected else "?"
        raise NoDelta(f"{file} line {where}: not the accepted row the memo indexed")
    return records
