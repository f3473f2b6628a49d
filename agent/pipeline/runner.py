"""Run one pipeline over its input stream with exactly-once local processing.

Protocol of one step (`step_once`), the heart of promise 4:
  1. Read a batch of events after the pipeline's own cursor (bounded; never the backlog).
  2. Run the filters and the window over it in memory; collect closed windows (or, with
     no window, the events that passed the filters) as output events.
  3. In ONE queue transaction: append the outputs to the output stream, store the window
     snapshot, move the cursor to the batch's end.
  4. Only after that commit does the in-memory state count as the new truth.
A kill at any point before 3 commits leaves the old cursor and the old snapshot: the
batch is processed again from the same state and yields the same outputs. A kill after
3 leaves the new ones. No window is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from agent.pipeline.build import CompiledPipeline
from agent.pipeline.expr import EventMeta
from agent.pipeline.windows.tumbling import ClosedWindow
from agent.queue import DurableQueue, NewEvent, QueueError
from agent.queue.transaction import WriteTx
from sync.outbox import StoredEvent

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PipelineStats:
    """Counters of one pipeline since start."""

    events_in: int = 0
    passed: int = 0
    windows_out: int = 0
    errors: int = 0


class PipelineRunner:
    """Owns one pipeline's cursor, state and loop."""

    def __init__(self, pipeline: CompiledPipeline, queue: DurableQueue, read_batch: int) -> None:
        self.pipeline = pipeline
        self.queue = queue
        self.read_batch = read_batch
        self.stats = PipelineStats()
        self.name = pipeline.config.name
        self.consumer = f"pipeline:{self.name}"
        self.position = 0
        self._last_event_at = time.monotonic()

    async def restore(self) -> None:
        """Load the committed cursor and window snapshot."""
        self.position = await self.queue.cursor(self.pipeline.config.input, self.consumer)
        state = await self.queue.load_state(self.consumer)
        window = self.pipeline.window
        snapshot = state.get(self.pipeline.state_name)
        if window is not None:
            window.reset()
        if window is not None and snapshot is not None:
            window.restore(snapshot)
        elif window is not None and state:
            log.warning("Pipeline %s changed definition; its window state starts afresh", self.name)

    async def run(self) -> None:
        """Process the input stream until cancelled; a failed commit is retried."""
        await self.restore()
        while True:
            try:
                if not await self.step_once():
                    await self._wait_or_idle()
            except QueueError as exc:
                log.error("Pipeline %s could not commit (%s); retrying in 1s", self.name, exc)
                await self.restore()  # back to the committed state: nothing half-applied
                await asyncio.sleep(1.0)

    async def step_once(self) -> bool:
        """Process one batch; False when there was nothing to read (Steps 1-4)."""
        cfg = self.pipeline.config
        batch = await self.queue.read_after(cfg.input, self.position, self.read_batch, 1 << 24)
        if batch.empty:
            return False
        outputs = self.process(batch.events)  # Step 2
        await self._commit(outputs, batch.upto_seq)  # Step 3
        self.position = batch.upto_seq  # Step 4
        self._last_event_at = time.monotonic()
        return True

    def process(self, events: list[StoredEvent] | Any) -> list[NewEvent]:
        """Filters and window over a batch, in memory; returns the output events.

        An event that makes a step fail is counted and skipped: one odd payload must
        never stop the pipeline (it would fail again at every restart).
        """
        outputs: list[NewEvent] = []
        passed = 0
        for event in events:
            try:
                passed += self._process_one(event, outputs)
            except Exception as exc:  # bad input never stops the pipeline
                self.stats.errors += 1
                if self.stats.errors == 1 or self.stats.errors % 1000 == 0:
                    log.warning("Pipeline %s skipped event %d (%d so far): %r",
                                self.name, event.seq, self.stats.errors, exc)  # fmt: skip
        self._count(len(events), passed, outputs)
        return outputs

    def _process_one(self, event: StoredEvent, outputs: list[NewEvent]) -> int:
        p = self.pipeline
        payload = _decode(event.payload)
        meta = EventMeta(event.topic or "", event.key, event.event_time, event.ingest_time)
        if not all(f(payload, meta) for f in p.filters):
            return 0
        window = p.window
        if window is None:
            outputs.append(_passthrough(event))
            return 1
        key = event.key if p.window_key is None else _key_text(p.window_key(payload, meta))
        ts = event.ingest_time if p.use_ingest_time else event.event_time
        outputs.extend(_window_event(closed) for closed in window.add(key, ts, payload, meta))
        return 1

    async def _commit(self, outputs: list[NewEvent], upto_seq: int) -> None:
        cfg, window, state_name = (
            self.pipeline.config,
            self.pipeline.window,
            self.pipeline.state_name,
        )
        snapshot = window.snapshot() if window is not None else None

        def write(tx: WriteTx) -> None:
            if outputs:
                tx.append(cfg.output, outputs)
            if snapshot is not None:
                tx.put_state(self.consumer, state_name, snapshot)
            tx.set_cursor(self.consumer, cfg.input, upto_seq)

        if outputs:
            await self.queue.wait_for_room(cfg.output)
        await self.queue.transact(write, weight=max(1, len(outputs)))

    async def _wait_or_idle(self) -> None:
        """Wait for input; after `idle` seconds without any, close the open windows."""
        idle = self.pipeline.idle
        window = self.pipeline.window
        silent_for = time.monotonic() - self._last_event_at
        timeout = max(0.05, min(5.0, idle - silent_for))
        if await self.queue.wait_for_data(self.pipeline.config.input, self.position, timeout):
            return
        if window is not None and window.open and time.monotonic() - self._last_event_at >= idle:
            outputs = [_window_event(c) for c in window.flush()]
            self.stats.windows_out += len(outputs)
            await self._commit(outputs, self.position)

    def _count(self, seen: int, passed: int, outputs: list[NewEvent]) -> None:
        self.stats.events_in += seen
        self.stats.passed += passed
        if self.pipeline.window is not None:
            self.stats.windows_out += len(outputs)


def _decode(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _key_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _passthrough(event: StoredEvent) -> NewEvent:
    headers = orjson.dumps(event.headers).decode() if event.headers else None
    return NewEvent(event.event_time, time.time(), event.key, event.topic, event.payload, headers)


def _window_event(closed: ClosedWindow) -> NewEvent:
    body = {"key": closed.key, "window_start": closed.start, "window_end": closed.end}
    body.update(closed.values)
    return NewEvent(closed.end, time.time(), closed.key, None, orjson.dumps(body))
