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
from typing import Any

from connector.feeds.delta import NoDelta, _split, _text, parse_header, parse_rows
from connector.feeds.layout import FeedLayout
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
    head = parse_header(name, file, pieces[0], layout)
    last = len(pieces)
    sparse = [(n, _text(pieces[n - 1], terminated or n < last, n, file)) for n in wanted]
    records, rejected, _ = parse_rows(name, file, layout, head, sparse)
    if rejected or len(records) != len(wanted):
        where = rejected[0].line if rejected else "?"
        raise NoDelta(f"{file} line {where}: not the accepted row the memo indexed")
    return records
