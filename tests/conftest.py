"""Shared fixtures: real Mosquitto brokers (tests/brokers.py), real edgestream processes.

Hypothesis profiles: by default every run explores new random examples (what finds
bugs while developing). CI sets HYPOTHESIS_PROFILE=ci, which derandomises the search:
each CI run checks the same examples, so a landing is never refused because this run
happened to draw a case the previous one did not. A case found while developing is
kept in the local example database and added as an explicit test.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

pytest_plugins = ["tests.brokers", "tests.e2e.harness"]
