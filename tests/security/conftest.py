"""Fixtures shared with the end-to-end tests: the demo configuration on a real slapd."""

import os

from hypothesis import settings

from tests.integration.test_end_to_end import demo, pinned_now  # noqa: F401 (fixtures)

# Fuzzing profiles: "fast" in the default run (a few seconds per property), "long" on
# demand: HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/security/test_fuzz.py
settings.register_profile("fast", max_examples=40, deadline=None)
settings.register_profile("long", max_examples=1200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
