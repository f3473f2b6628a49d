"""The tumbling window and the pipeline runner: semantics, snapshots, exactly-once commit."""

from __future__ import annotations

import random
import time
from pathlib import Path

import orjson

from agent.config.load import parse_agent_config
from agent.pipeline.batch import Batch
from agent.pipeline.build import CompiledPipeline, compile_pipeline
from agent.pipeline.operator import SideOutputs
from agent.pipeline.runner import PipelineRunner
from agent.pipeline.windows.time_window import TimeWindow
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


def pipeline(lateness: str = "0s") -> CompiledPipeline:
    config = parse_agent_config(CONFIG.format(lateness=lateness)).pipelines[0]
    return compile_pipeline(config)


def window_of(compiled: CompiledPipeline) -> TimeWindow:
    window = compiled.chain.operators[1]
    assert isinstance(window, TimeWindow)
    return window


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
    compiled: CompiledPipeline, events: list[StoredEvent], batch: int
) -> list[dict[str, object]]:
    result = []
    for start in range(0, len(events), batch):
        chunk = Batch.of_stored(events[start : start + batch])
        out = compiled.chain.process(chunk, SideOutputs())
        result += [orjson.loads(e.payload) for e in out.to_new_events()]
    return result


def test_w_window_matches_the_reference_checksum() -> None:
    """Counts and averages over all closed windows equal the hand-written loop's."""
    events = w_window(1_000_000)
    compiled = pipeline()
    closed = outputs(compiled, events, 5000)
    closed += compiled.chain.flush(SideOutputs()).payloads
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
    snapshot = orjson.dumps(window_of(first).snapshot())
    second = pipeline()
    window_of(second).restore(orjson.loads(snapshot))
    assert part + outputs(second, events[23_456:], 1000) == whole


def test_late_events_are_dropped_and_counted() -> None:
    compiled = pipeline(lateness="2s")
    body = {"device": "a", "value": 20.0}
    events = [stored(1, {**body, "ts": 100.0}), stored(2, {**body, "ts": 113.0}),
              stored(3, {**body, "ts": 104.0}), stored(4, {**body, "ts": 111.0})]  # fmt: skip
    closed = outputs(compiled, events, 10)
    assert closed == [{"key": "a", "window_start": 100.0, "window_end": 110.0,
                       "n": 1, "avg": 20.0, "lo": 20.0, "hi": 20.0}]  # fmt: skip
    assert window_of(compiled).late == 1


def test_missing_and_non_numeric_values_never_raise() -> None:
    compiled = pipeline()
    events = [
        stored(1, {"device": "a", "ts": 1.0}),
        stored(2, {"device": "a", "ts": 2.0, "value": "x"}),
        StoredEvent(3, 3.0, 3.0, None, "t", b"not json"),
    ]
    assert outputs(compiled, events, 10) == []


async def test_runner_commits_outputs_state_and_cursor_together(tmp_path: Path) -> None:
    limits = {"raw": StreamLimits(1 << 30, 1e9), "out": StreamLimits(1 << 30, 1e9)}
    queue = await DurableQueue.open(tmp_path, limits, commit_interval=0.01, synchronous="normal")
    now = time.time()
    bodies = [{"device": "a", "value": 20.0, "ts": float(t)} for t in (1, 5, 12, 25)]
    await queue.append("raw", [NewEvent(b["ts"], now, None, "t", orjson.dumps(b)) for b in bodies])
    runner = PipelineRunner(pipeline(), queue, 1000)
    await runner.restore()
    assert await runner.step_once()
    assert await queue.cursor("raw", "pipeline:w") == 4
    out = await queue.read_after("out", 0, 100, 1 << 20)
    assert [orjson.loads(e.payload)["window_start"] for e in out.events] == [0.0, 10.0]
    state = await queue.load_state("pipeline:w")
    assert list(state) == list(runner.pipeline.state_names.values())
    await queue.close()

    queue = await DurableQueue.open(tmp_path, limits, commit_interval=0.01, synchronous="normal")
    again = PipelineRunner(pipeline(), queue, 1000)
    await again.restore()
    assert again.position == 4
    assert list(window_of(again.pipeline).open) == [("a", 20.0)]
    assert not await again.step_once()
    await queue.close()


def test_non_finite_times_are_dropped_and_counted() -> None:
    """A NaN or infinite time cannot be placed in a window; the state stays restorable."""
    compiled = pipeline()
    window = window_of(compiled)
    bodies = [{"device": "a", "value": 20.0, "ts": t} for t in (5.0, 6.0)]
    events = [stored(i + 1, b) for i, b in enumerate(bodies)]
    batch = Batch.of_stored(events)
    batch.times = [float("nan"), 5.0]
    compiled.chain.process(batch, SideOutputs())
    batch = Batch.of_stored(events)
    batch.times = [float("inf"), 7.0]
    compiled.chain.process(batch, SideOutputs())
    assert window.counters["bad_time"] == 2
    assert list(window.open) == [("a", 0.0)] and window.watermark == 7.0
    window_of(pipeline()).restore(orjson.loads(orjson.dumps(window.snapshot())))
