"""Feeds: read the eight CSV feeds into validated records, rejected rows and health."""

from connector.feeds.layout import FeedLayout, FeedLayoutError, load_feed_layout
from connector.feeds.reader import check_headers, read_feed, read_feeds

__all__ = [
    "FeedLayout",
    "FeedLayoutError",
    "check_headers",
    "load_feed_layout",
    "read_feed",
    "read_feeds",
]
