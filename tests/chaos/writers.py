"""The writer processes the power-cut tests snapshot, and the workloads they write.

Each writer is a real process (`python -m tests.chaos.writers <kind> ...`) that writes
through the project's own code (DurableQueue, PipelineRunner, SqliteCentralStore) as
hard as it can for a few seconds. After each commit RETURNS it appends one line to an
acknowledgement log: a line in that log is a promise the component made ("this is
durable"), so a snapshot taken after the line was written must keep what it names.

Every payload is a pure function of its identity (transaction and index, or device and
sequence number), so a checker can tell a byte-exact event from a torn or foreign one
without the writer having to tell it anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import os
import random
import time
from pathlib import Path
from typing import Any, TextIO

import orjson

from agent.config.load import parse_agent_config
from agent.pipeline.build import compile_pipeline
from agent.pipeline.runner import PipelineRunner
from agent.queue import DurableQueue, NewEvent, StreamLimits
from sync.hub.store import SqliteCentralStore
from sync.outbox import StoredEvent
from sync.wire_types import Batch

QUEUE_STREAM = "chaos"
CONSUMER = "chaos-reader"
CURSOR_LAG = 500
"""The writer's consumer cursor trails its own appends, so housekeeping deletes events
(B-tree pages freed and reused under the writes) while a backlog remains."""
NOW = time.time()
HUB_DEVICES = ("d0", "d1", "d2", "d3")
HUB_EPOCH = "e1"
HUB_STREAM = "s"
PIPELINE_STREAMS = ("in", "out")
PIPELINE_CONFIG = """\
device_id: chaos
streams: {in: {}, out: {}}
pipelines:
  - name: win
    input: in
    output: out
    steps:
      - window: {type: tumbling, size: 1s, idle: 1h,
                 aggregates: {n: count(), s: sum(v), lo: min(i), hi: max(i)}}
"""


def _pad(*parts: object) -> str:
    """Deterministic, poorly compressible filler of 100..1600 characters."""
    seed = ":".join(map(str, parts)).encode()
    size = 100 + int.from_bytes(hashlib.sha256(seed).digest()[:2], "big") % 1500
    return hashlib.shake_128(seed).hexdigest(size // 2)


@functools.cache
def queue_payload(txn: int, index: int, count: int) -> bytes:
    """Event `index` of `count` in writer transaction `txn`."""
    return orjson.dumps({"t": txn, "i": index, "n": count, "pad": _pad("q", txn, index)})


def pipeline_input(number: int) -> NewEvent:
    """Input event `number` (1-based) of the pipeline workload: 3 keys, 100 events/s."""
    body = {"i": number, "v": number % 17, "key": f"k{number % 3}"}
    return NewEvent(1000.0 + number * 0.01, NOW, f"k{number % 3}", "t", orjson.dumps(body))


@functools.cache
def hub_payload(device: str, seq: int) -> bytes:
    """Event `seq` of `device` as the hub store must hold it."""
    return orjson.dumps({"d": device, "q": seq, "pad": _pad("h", device, seq)})


def _ack(log: TextIO, line: str) -> None:
    """One acknowledgement, written before the next commit starts (never buffered)."""
    log.write(line + "\n")
    log.flush()


async def write_queue(
    data_dir: Path, log: TextIO, sync: str, rnd: random.Random, until: float
) -> None:
    """Concurrent producers append transactions of events and move a cursor in each."""
    limits = {QUEUE_STREAM: StreamLimits(1 << 34, 1e9)}
    queue = await DurableQueue.open(data_dir, limits, commit_interval=0.005, synchronous=sync)
    txns = iter(range(1, 1 << 30))

    async def producer() -> None:
        while time.monotonic() < until:
            txn, count = next(txns), rnd.randint(1, 30)
            events = [
                NewEvent(NOW, NOW, None, "c", queue_payload(txn, i, count)) for i in range(count)
            ]

            def job(tx: Any, events: list[NewEvent] = events) -> list[int]:
                seqs: list[int] = tx.append(QUEUE_STREAM, events)
                tx.set_cursor(CONSUMER, QUEUE_STREAM, max(0, seqs[0] - 1 - CURSOR_LAG))
                return seqs

            seqs = await queue.transact(job, weight=count)
            _ack(log, f"{txn} {seqs[0]} {seqs[-1]}")

    await asyncio.gather(*(producer() for _ in range(4)))
    await queue.close()


def pipeline_limits() -> dict[str, StreamLimits]:
    """Streams of the pipeline workload, large enough that retention never drops."""
    return {name: StreamLimits(1 << 34, 1e9) for name in PIPELINE_STREAMS}


def pipeline_runner(queue: DurableQueue) -> PipelineRunner:
    """The tumbling-window pipeline every run (writer, resume, reference) uses."""
    config = parse_agent_config(PIPELINE_CONFIG).pipelines[0]
    return PipelineRunner(compile_pipeline(config), queue, 500)


async def write_pipeline(
    data_dir: Path, log: TextIO, sync: str, rnd: random.Random, until: float
) -> None:
    """A producer appends input while a real PipelineRunner windows it concurrently."""
    queue = await DurableQueue.open(
        data_dir, pipeline_limits(), commit_interval=0.005, synchronous=sync
    )
    runner = pipeline_runner(queue)
    task = asyncio.create_task(runner.run(), name="edgestream[chaos].pipeline")
    number = 0
    while time.monotonic() < until:
        count = rnd.randint(1, 50)
        seqs = await queue.append("in", [pipeline_input(number + i + 1) for i in range(count)])
        number += count
        _ack(log, f"{seqs[0]} {seqs[-1]}")
        await asyncio.sleep(0.005)  # input arrives at sensor speed, not in one burst
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await queue.close()


def hub_batch(device: str, first: int, last: int) -> Batch:
    """A decoded batch of `device` carrying sequence numbers first..last."""
    events = [
        StoredEvent(seq, NOW, NOW, None, "t", hub_payload(device, seq))
        for seq in range(first, last + 1)
    ]
    return Batch(device, HUB_EPOCH, HUB_STREAM, events, [], last)


def write_hub(data_dir: Path, log: TextIO, sync: str, rnd: random.Random, until: float) -> None:
    """Commit groups of batches from several devices, one transaction per group."""
    store = SqliteCentralStore(data_dir / "hub.db", sync)
    upto = dict.fromkeys(HUB_DEVICES, 0)
    while time.monotonic() < until:
        batches = []
        for device in rnd.sample(HUB_DEVICES, rnd.randint(1, 3)):
            last = upto[device] + rnd.randint(1, 10)
            batches.append(hub_batch(device, upto[device] + 1, last))
            upto[device] = last
        store.commit_now(batches)
        _ack(log, " ".join(f"{b.device}:{b.upto_seq}" for b in batches))
    store.close_now()


def main() -> None:
    """Run one writer until its time is up; exit 0 after a clean close."""
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("queue", "pipeline", "hub"))
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("ack_log", type=Path)
    parser.add_argument("--sync", default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    until = time.monotonic() + args.seconds
    with open(args.ack_log, "w", encoding="utf-8") as log:
        if args.kind == "queue":
            asyncio.run(write_queue(args.data_dir, log, args.sync, rnd, until))
        elif args.kind == "pipeline":
            asyncio.run(write_pipeline(args.data_dir, log, args.sync, rnd, until))
        else:
            write_hub(args.data_dir, log, args.sync, rnd, until)
        os.fsync(log.fileno())


if __name__ == "__main__":
    main()
