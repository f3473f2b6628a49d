"""Every YAML example in docs/pipelines.md runs, and every one in docs/sources.md loads.

An example is either a `pipelines:` section or a list of steps; it is wrapped into an
agent config whose streams are every stream the example names, then sample events
run through the chain and out at the end (flush), so a doc example can never rot.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config.load import parse_agent_config
from agent.pipeline.batch import Batch
from agent.pipeline.build import compile_pipeline
from agent.pipeline.operator import SideOutputs

DOC = Path(__file__).parent.parent / "docs" / "pipelines.md"
EXAMPLES = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
STREAM_KEYS = ("input", "output", "to", "late", "stream")
SAMPLE = [
    {"device": f"d{i % 3}", "temp": 20.0 + i, "value": i * 1.5, "hum": 40, "level": "ok",
     "readings": [{"t": i}, i], "msg_id": i // 2, "ts": 1_000_000 + i, "cpu": 45000,
     "t": 1, "sensor": "temp", "counter": i * 10}
    for i in range(40)
]  # fmt: skip


def as_pipelines(example: Any) -> list[dict[str, Any]]:
    if isinstance(example, dict) and "pipelines" in example:
        return list(example["pipelines"])
    steps = example if isinstance(example, list) else [example]
    return [{"name": "example", "input": "in", "output": "out", "steps": steps}]


def stream_names(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {v for k, v in node.items() if k in STREAM_KEYS and isinstance(v, str)}
        return found.union(*(stream_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(stream_names(v) for v in node))
    return set()


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("text", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_doc_example_runs(text: str) -> None:
    pipelines = as_pipelines(yaml.safe_load(text))
    names = (stream_names(pipelines) | {"in", "out"}) - {"drop"}
    config = {"device_id": "doc", "streams": {n: {} for n in sorted(names)}, "pipelines": pipelines}
    loaded = parse_agent_config(yaml.safe_dump(config))
    for pipeline in loaded.pipelines:
        chain = compile_pipeline(pipeline).chain
        side = SideOutputs()
        batch = Batch.of_payloads(list(SAMPLE), [float(e["ts"]) for e in SAMPLE])
        batch.keys = [e["device"] for e in SAMPLE]
        chain.process(batch, side)
        chain.flush(side)


SOURCES_DOC = Path(__file__).parent.parent / "docs" / "sources.md"
SOURCE_EXAMPLES = re.findall(r"```yaml\n(.*?)```", SOURCES_DOC.read_text(), re.DOTALL)


def test_every_source_kind_has_an_example() -> None:
    kinds = {s["type"] for text in SOURCE_EXAMPLES for s in yaml.safe_load(text)["sources"]}
    assert kinds == {
        "mqtt", "simulated", "system", "thermal", "w1", "iio", "gpio", "command", "file", "http",
    }  # fmt: skip


@pytest.mark.parametrize(
    "text", SOURCE_EXAMPLES, ids=[f"source{i}" for i in range(len(SOURCE_EXAMPLES))]
)
def test_source_doc_example_loads(text: str) -> None:
    example = yaml.safe_load(text)
    streams = {s["stream"]: {} for s in example["sources"]}
    config = {"device_id": "doc", "streams": streams, **example}
    loaded = parse_agent_config(yaml.safe_dump(config))
    assert [s.name for s in loaded.sources] == [s["name"] for s in example["sources"]]
