"""The runner: every output stream, every snapshot and every cursor in one commit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.config.load import parse_agent_config
from agent.pipeline.batch import Batch
from agent.pipeline.build import compile_pipeline
from agent.pipeline.operator import Operator, SideOutputs
from agent.pipeline.runner import PipelineRunner
from agent.queue import DEADLETTER_STREAM, DurableQueue, NewEvent, StreamLimits

STREAMS = ("raw", "out", "alerts", "late", "cal", DEADLETTER_STREAM)

CONFIG = """\
device_id: pi
streams: {raw: {}, out: {}, alerts: {}, late: {}, cal: {}}
pipelines:
  - name: p
    input: raw
    output: out
    steps:
"""


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[DurableQueue]:
    limits = {name: StreamLimits(1 << 30, 1e9) for name in STREAMS}
    opened = await DurableQueue.open(tmp_path, limits, commit_interval=0.01, synchronous="normal")
    yield opened
    await opened.close()


def runner(queue: DurableQueue, steps: str) -> PipelineRunner:
    config = parse_agent_config(CONFIG + steps).pipelines[0]
    return PipelineRunner(compile_pipeline(config), queue, 1000)


async def put(queue: DurableQueue, stream: str, *bodies: dict[str, Any]) -> None:
    now = time.time()
    events = [
        NewEvent(float(b.get("ts", now)), now, b.get("device"), "t", orjson.dumps(b))
        for b in bodies
    ]
    await queue.append(stream, events)


async def payloads(queue: DurableQueue, stream: str) -> list[Any]:
    batch = await queue.read_after(stream, 0, 10_000, 1 << 24)
    return [orjson.loads(e.payload) for e in batch.events]


async def test_routes_late_events_and_results_commit_with_the_cursor(queue: DurableQueue) -> None:
    run = runner(
        queue,
        """\
      - route: [{when: "value > 100", to: alerts}]
      - window: {size: 10s, key: device, late: late, aggregates: {n: count()}}
""",
    )
    await run.restore()
    readings = [(1, 1), (2, 500), (12, 1), (3, 1), (25, 1)]
    await put(queue, "raw", *[{"device": "a", "ts": t, "value": v} for t, v in readings])
    assert await run.step_once()
    assert await payloads(queue, "alerts") == [{"device": "a", "ts": 2, "value": 500}]
    assert await payloads(queue, "late") == [{"device": "a", "ts": 3, "value": 1}]
    assert [p["window_start"] for p in await payloads(queue, "out")] == [0.0, 10.0]
    assert await queue.cursor("raw", "pipeline:p") == 5
    assert not await run.step_once()


async def test_a_restart_resumes_from_the_committed_state(queue: DurableQueue) -> None:
    steps = "      - window: {size: 10s, key: device, aggregates: {n: count()}}\n"
    first = runner(queue, steps)
    await first.restore()
    await put(queue, "raw", {"device": "a", "ts": 1}, {"device": "a", "ts": 2})
    await first.step_once()
    second = runner(queue, steps)  # a new process: state only from the database
    await second.restore()
    await put(queue, "raw", {"device": "a", "ts": 11})
    assert await second.step_once()
    assert await payloads(queue, "out") == [
        {"key": "a", "window_start": 0.0, "window_end": 10.0, "n": 2}
    ]


async def test_idle_windows_are_committed_with_the_cursor_unchanged(queue: DurableQueue) -> None:
    run = runner(queue, "      - window: {size: 10s, idle: 1ms, aggregates: {n: count()}}\n")
    await run.restore()
    await put(queue, "raw", {"device": "a", "ts": 1})
    await run.step_once()
    await asyncio.sleep(0.01)
    await run.release_idle()
    assert [p["n"] for p in await payloads(queue, "out")] == [1]
    assert await queue.cursor("raw", "pipeline:p") == 1


class Exploding(Operator):
    """A step with a bug: it raises on one particular event."""

    def process(self, batch: Batch, side: SideOutputs) -> Batch:
        if any(type(p) is dict and p.get("boom") for p in batch.payloads):
            raise RuntimeError("bug in a step")
        return batch


async def test_an_event_that_makes_a_step_raise_is_dead_lettered(queue: DurableQueue) -> None:
    run = runner(queue, "      - filter: 'true'\n")
    run.chain.operators.append(Exploding())
    await run.restore()
    await put(queue, "raw", {"n": 1}, {"n": 2, "boom": True}, {"n": 3})
    assert await run.step_once()
    assert [p["n"] for p in await payloads(queue, "out")] == [1, 3]
    dead = (await queue.read_after(DEADLETTER_STREAM, 0, 10, 1 << 20)).events
    assert [orjson.loads(e.payload)["n"] for e in dead] == [2]
    assert dead[0].headers is not None and dead[0].headers["reason"] == "pipeline_error"
    assert run.stats.errors == 1


async def test_a_stopped_runner_lets_its_handed_over_commit_land_first(tmp_path: Path) -> None:
    """A reload restarts a changed pipeline: the new runner reads the committed cursor and
    snapshots. A commit the old runner had handed to the writer lands anyway (a cancelled
    caller does not withdraw a queued job), so the old runner must not return before it
    has: else the new one processes that slice again and writes its outputs twice."""
    limits = {name: StreamLimits(1 << 30, 1e9) for name in STREAMS}
    slow = await DurableQueue.open(tmp_path, limits, commit_interval=0.5, synchronous="normal")
    try:
        await put(slow, "raw", *({"v": i} for i in range(500)))
        old = runner(slow, "      - filter: 'v >= 0'\n")
        task = asyncio.create_task(old.run())
        deadline = time.monotonic() + 10
        while not (old._handed_over and old._inflight is not None and not old._inflight.done()):
            assert time.monotonic() < deadline, "no commit was ever in flight"
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # What a new runner would restore from, read right after the old one stopped:
        assert await slow.cursor("raw", "pipeline:p") == 500
        assert slow.last_seq("out") == 500
    finally:
        await slow.close()
