"""Example counts of the fuzz tests: small in CI, scaled up by hand for a long campaign.

`EDGESTREAM_FUZZ_SCALE=50 python3 -m pytest tests/fuzz --timeout=0` runs fifty times
as many examples per test (the per-test timeout of pyproject.toml would stop it; with
HYPOTHESIS_PROFILE=default it explores new examples on every run).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = max(1, int(os.environ.get("EDGESTREAM_FUZZ_SCALE", "1")))


def fuzz(examples: int) -> settings:
    """Settings for a fuzz test of `examples` examples (times the scale), no deadline."""
    return settings(
        max_examples=examples * SCALE, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )  # fmt: skip
