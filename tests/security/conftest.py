"""Fixtures shared with the end-to-end tests: the demo configuration on a real slapd."""

from tests.integration.test_end_to_end import demo, pinned_now  # noqa: F401 (fixtures)
