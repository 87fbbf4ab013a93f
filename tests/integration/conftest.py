"""The demo world of test_end_to_end (a seeded slapd branch, the demo feeds, a config,
a pinned clock) for every integration test module."""

from tests.integration.test_end_to_end import demo, pinned_now  # noqa: F401
