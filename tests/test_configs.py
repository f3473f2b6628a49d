"""Every example in configs/ validates, so the examples can never rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.common import looks_like_hub_config
from agent.config.load import load_agent_config
from agent.pipeline.build import compile_pipeline
from sync.hub.config import load_hub_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_loads(path: Path) -> None:
    if looks_like_hub_config(path):
        assert load_hub_config(path).store.path
    else:
        config = load_agent_config(path)
        assert config.streams
        for pipeline in config.pipelines:  # every step builds into a runnable operator
            assert len(compile_pipeline(pipeline).chain.operators) == len(pipeline.steps)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_passes_the_cli_validate(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "validate", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
