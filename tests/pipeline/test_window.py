"""The tumbling window and the pipeline runner: semantics, snapshots, exactly-once commit."""

from __future__ import annotations

import random
import time
from pathlib import Path

import orjson

from agent.config.load import parse_agent_config
from agent.pipeline.build import compile_pipeline
from agent.pipeline.runner import PipelineRunner
from agent.queue import DurableQueue, NewEvent, StreamLimits
from sync.outbox import StoredEvent

CONFIG = """\
device_id: pi
streams: {{raw: {{}}, out: {{}}}}
pipelines:
  - name: w
    input: raw
    output: out
    steps:
      - filter: "value > 15"
      - window:
          size: 10s
          key: device
          lateness: {lateness}
          idle: 1h
          aggregates: {{n: count(), avg: avg(value), lo: min(value), hi: max(value)}}
"""


def pipeline(lateness: str = "0s") -> PipelineRunner:
    config = parse_agent_config(CONFIG.format(lateness=lateness)).pipelines[0]
    return PipelineRunner(compile_pipeline(config), None, 1000)  # type: ignore[arg-type]


def stored(seq: int, body: dict[str, object]) -> StoredEvent:
    ts = float(body["ts"])  # type: ignore[arg-type]
    return StoredEvent(seq, ts, ts, None, "t", orjson.dumps(body))


def w_window(n: int) -> list[StoredEvent]:
    """The W-window workload of PERFORMANCE.md (first n events)."""
    rnd = random.Random(7)
    return [
        stored(i + 1, {"device": f"pi-{i % 100:03d}", "sensor": "temp",
                       "ts": 1764201600.0 + i * 0.001, "value": rnd.gauss(20, 3)})
        for i in range(n)
    ]  # fmt: skip


def outputs(
    runner: PipelineRunner, events: list[StoredEvent], batch: int
) -> list[dict[str, object]]:
    result = []
    for start in range(0, len(events), batch):
        result += [orjson.loads(e.payload) for e in runner.process(events[start : start + batch])]
    return result


def test_w_window_matches_the_reference_checksum() -> None:
    """Counts and averages over all closed windows equal the hand-written loop's."""
    events = w_window(1_000_000)
    runner = pipeline()
    closed = outputs(runner, events, 5000)
    assert runner.pipeline.window is not None
    closed += [{"n": c.values["n"], "avg": c.values["avg"]} for c in runner.pipeline.window.flush()]
    assert len(closed) == 10_000
    assert sum(int(w["n"]) for w in closed) == 952_209  # type: ignore[call-overload]
    assert round(sum(float(w["avg"]) for w in closed), 3) == 203_153.733  # type: ignore[arg-type]


def test_results_do_not_depend_on_batching() -> None:
    events = w_window(60_000)
    assert outputs(pipeline(), events, 1) == outputs(pipeline(), events, 7777)


def test_snapshot_restore_continues_exactly() -> None:
    events = w_window(50_000)
    whole = outputs(pipeline(), events, 1000)
    first = pipeline()
    part = outputs(first, events[:23_456], 1000)
    assert first.pipeline.window is not None
    snapshot = first.pipeline.window.snapshot()
    second = pipeline()
    assert second.pipeline.window is not None
    second.pipeline.window.restore(snapshot)
    assert part + outputs(second, events[23_456:], 1000) == whole


def test_late_events_are_dropped_and_counted() -> None:
    runner = pipeline(lateness="2s")
    body = {"device": "a", "value": 20.0}
    events = [stored(1, {**body, "ts": 100.0}), stored(2, {**body, "ts": 113.0}),
              stored(3, {**body, "ts": 104.0}), stored(4, {**body, "ts": 111.0})]  # fmt: skip
    closed = outputs(runner, events, 10)
    assert closed == [{"key": "a", "window_start": 100.0, "window_end": 110.0,
                       "n": 1, "avg": 20.0, "lo": 20.0, "hi": 20.0}]  # fmt: skip
    assert runner.pipeline.window is not None and runner.pipeline.window.late == 1


def test_missing_and_non_numeric_values_never_raise() -> None:
    runner = pipeline()
    events = [
        stored(1, {"device": "a", "ts": 1.0}),
        stored(2, {"device": "a", "ts": 2.0, "value": "x"}),
        StoredEvent(3, 3.0, 3.0, None, "t", b"not json"),
    ]
    assert outputs(runner, events, 10) == []


async def test_runner_commits_outputs_state_and_cursor_together(tmp_path: Path) -> None:
    limits = {"raw": StreamLimits(1 << 30, 1e9), "out": StreamLimits(1 << 30, 1e9)}
    queue = await DurableQueue.open(tmp_path, limits, commit_interval=0.01, synchronous="normal")
    now = time.time()
    bodies = [{"device": "a", "value": 20.0, "ts": float(t)} for t in (1, 5, 12, 25)]
    await queue.append("raw", [NewEvent(b["ts"], now, None, "t", orjson.dumps(b)) for b in bodies])
    runner = pipeline()
    runner.queue = queue
    await runner.restore()
    assert await runner.step_once()
    assert await queue.cursor("raw", "pipeline:w") == 4
    out = await queue.read_after("out", 0, 100, 1 << 20)
    assert [orjson.loads(e.payload)["window_start"] for e in out.events] == [0.0, 10.0]
    state = await queue.load_state("pipeline:w")
    assert list(state) == [runner.pipeline.state_name]
    await queue.close()

    queue = await DurableQueue.open(tmp_path, limits, commit_interval=0.01, synchronous="normal")
    again = pipeline()
    again.queue = queue
    await again.restore()
    assert again.position == 4
    assert again.pipeline.window is not None and list(again.pipeline.window.open) == [("a", 20.0)]
    assert not await again.step_once()
    await queue.close()
