"""The seeded chaos scenario CI runs: real brokers, hub and agent under a mix of faults.

Process kills and pauses, link partitions, black holes, slow links, clock jumps
(libfaketime), disk full (a tmpfs) and a corrupted queue page; docs/reliability-chaos.md
describes the faults and the proof. The kinds this machine cannot apply (no faketime,
no root to mount a tmpfs) are left out and logged.

EDGESTREAM_CHAOS_SEED and EDGESTREAM_CHAOS_SECONDS override the seed and the seconds of
faults; `python -m tests.chaos.run` runs longer scenarios outside pytest.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.faults import KINDS, make_schedule
from tests.chaos.scenario import ScenarioConfig, markdown, run_scenario

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

SEED = int(os.environ.get("EDGESTREAM_CHAOS_SEED", "7"))
SECONDS = float(os.environ.get("EDGESTREAM_CHAOS_SECONDS", "120"))


def test_schedule_is_a_function_of_the_seed() -> None:
    """The same seed replays the same faults; another seed gives another schedule."""
    first, again = make_schedule(SEED, 600), make_schedule(SEED, 600)
    assert first == again
    assert make_schedule(SEED + 1, 600) != first
    assert {f.kind for f in first} == set(KINDS)  # ten minutes draw every kind
    assert all(a.at + a.hold < b.at for a, b in itertools.pairwise(first))
    assert first[-1].at + first[-1].hold <= 600


@pytest.mark.timeout(int(SECONDS) + 600)  # faults, then at most 300 s of drain, then stops
def test_seeded_scenario_keeps_every_promise(tmp_path: Path) -> None:
    """Every PUBACKed reading and committed seq at the hub once, in order; windows equal."""
    result = run_scenario(tmp_path, ScenarioConfig(SEED, SECONDS))
    table = markdown([result])
    print(table)
    kinds = Counter(f.kind for f in result.faults)
    assert set(KINDS) <= set(result.kinds), "every process and link fault is always possible"
    if len(result.faults) >= len(result.kinds):
        assert kinds.keys() == set(result.kinds), f"the deck should deal every kind: {kinds}"
    assert result.drained, f"the hub never caught up with the agent\n{table}"
    assert result.check.problems == [], table
    check = result.check
    set_aside = check.streams["sensors"].set_aside  # only after a queue_corrupt fault
    assert check.acked > 0 and check.acked_at_hub + set_aside >= check.acked
    assert check.duplicated == 0
    assert check.windows_expected > 0 and check.windows_matched == check.windows_expected
    assert all(s.lost == 0 and s.holes == 0 for s in check.streams.values())
