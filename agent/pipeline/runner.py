"""Run one pipeline over its input stream with exactly-once local processing.

Protocol of one slice (`step_once`), the heart of promise 4:
  1. Read bounded batches after the pipeline's in-memory positions on each side input
     (joined streams) and on its input, for up to one commit interval.
  2. Run the chain over them in memory: side inputs first, so a table is fresh
     before the events that look it up; collect the output events and the events
     sent to other streams (routes, late events).
  3. In ONE queue transaction: append every output, store the snapshot of every
     stateful step, move every committed cursor to the end of what was read.
  4. Only after that commit does the in-memory state count as the new truth.
A kill at any point before 3 commits leaves the old cursors and snapshots: the
slice is processed again from the same state and yields the same outputs. A kill
after 3 leaves the new ones. No result is lost or produced twice.

Processing-time releases (a key's idle windows, held events) are committed the same
way with unchanged cursors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import orjson

from agent.pipeline.batch import Batch
from agent.pipeline.build import CompiledPipeline
from agent.pipeline.operator import SideOutputs
from agent.queue import DEADLETTER_STREAM, DurableQueue, NewEvent, QueueError
from agent.queue.transaction import WriteTx
from sync.condition_log import ConditionLog, Wording
from sync.outbox import OutboxBatch

log = logging.getLogger(__name__)

_COMMIT_WORDING = Wording(
    started="Pipeline %(subject)s could not commit (%(detail)s); retrying in 1s",
    still="Pipeline %(subject)s still cannot commit: %(count)s more failures in the last "
    "%(interval)s (%(detail)s)",
    cleared="Pipeline %(subject)s committed again after %(total)s failures in %(duration)s",
)

IDLE_CHECK_INTERVAL = 1.0
"""How often (seconds) processing-time releases are checked while events keep coming."""

MAX_BATCH_BYTES = 1 << 24
SLICE_MAX_EVENTS = 100_000
"""Input events processed in memory at most before their results are committed."""
SLICE_MAX_OUTPUTS = 20_000
"""Output events held in memory at most before they are committed (bounds RSS)."""


class _Replay(Exception):
    """A step raised: drop the uncommitted slice and re-run it from the committed state."""


@dataclass(frozen=True, slots=True)
class PreparedCommit:
    """What one commit of a slice writes, frozen when the slice ended."""

    events: dict[str, list[NewEvent]]
    snapshots: dict[str, bytes]
    cursors: dict[str, int]
    main_outputs: int


@dataclass(slots=True)
class PipelineStats:
    """Counters of one pipeline since start."""

    events_in: int = 0
    events_out: int = 0
    side_out: int = 0
    errors: int = 0
    state_bytes: int = 0
    """Size of the step snapshots (window state) written by the last commit."""


class PipelineRunner:
    """Owns one pipeline's cursors, state and loop."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        queue: DurableQueue,
        read_batch: int,
        slice_seconds: float = 0.1,
    ) -> None:
        self.pipeline = pipeline
        self.slice_seconds = slice_seconds
        self.chain = pipeline.chain
        self.queue = queue
        self.read_batch = read_batch
        self.stats = PipelineStats()
        self.name = pipeline.config.name
        self._commit_failures = ConditionLog(
            self.name, logger=log, wording=_COMMIT_WORDING, level=logging.ERROR
        )
        self.consumer = f"pipeline:{self.name}"
        self.input = pipeline.config.input
        self.positions: dict[str, int] = {}
        self._last_idle_check = time.monotonic()
        self._careful_until = 0
        self._read_ahead: tuple[int, asyncio.Future[OutboxBatch]] | None = None
        self._inflight: asyncio.Task[None] | None = None
        """The commit of the previous slice, while the next one is processed."""
        self._handed_over = False
        """Whether the in-flight commit's job is already with the queue's writer."""

    @property
    def position(self) -> int:
        """The committed cursor on the main input."""
        return self.positions.get(self.input, 0)

    async def restore(self) -> None:
        """Load the committed cursors and step snapshots."""
        if self._read_ahead is not None:
            self._read_ahead[1].cancel()
            self._read_ahead = None
        streams = [self.input] + [stream for _, stream in self.pipeline.side_inputs]
        self.positions = {s: await self.queue.cursor(s, self.consumer) for s in streams}
        state = await self.queue.load_state(self.consumer)
        self._restore_steps(state)

    def _restore_steps(self, state: dict[str, bytes]) -> None:
        operators = self.chain.operators
        for index, name in self.pipeline.state_names.items():
            data = state.get(name)
            operators[index].restore(None if data is None else orjson.loads(data))
        stale = set(state) - set(self.pipeline.state_names.values())
        if stale:
            log.warning(
                "Pipeline %s changed definition; the state of %d changed step(s) starts afresh",
                self.name, len(stale),
            )  # fmt: skip

    async def run(self) -> None:
        """Process the input streams until cancelled; a failed commit is retried.

        Commits are pipelined: while slice N commits (the queue allows one commit per
        `commit_interval`), slice N+1 is processed in memory. Slice N+1 is submitted
        only after N's commit succeeded, so a failed commit can never be followed by a
        later one that skips its outputs; after a failure everything in memory is
        thrown away and the committed state is reloaded.
        """
        try:
            await self._run_slices()
        finally:
            if self._read_ahead is not None:
                self._read_ahead[1].cancel()
                self._read_ahead = None
            await self._settle_inflight()

    async def _settle_inflight(self) -> None:
        """On stop: let a commit the writer already holds land; drop one not yet handed over.

        A job handed to the writer commits whatever happens to its caller. A runner
        started next (a config reload) must read the cursor and snapshots AFTER it, or
        it would process that slice again and write its outputs twice (promise 4).
        """
        task, self._inflight = self._inflight, None
        if task is None or task.done():
            return
        if not self._handed_over:
            task.cancel()  # still waiting for room: nothing of it was written
            return
        with contextlib.suppress(Exception):  # a failed commit wrote nothing either
            await asyncio.shield(task)

    async def _run_slices(self) -> None:
        await self.restore()
        while True:
            try:
                prepared = await self._process_slice()
                if self._inflight is not None:
                    await asyncio.shield(self._inflight)  # a stop must not cancel a commit
                    self._inflight = None
                    self._commit_failures.cleared()
                if prepared is not None:
                    self._inflight = asyncio.ensure_future(self._submit(prepared))
                    if time.monotonic() - self._last_idle_check >= IDLE_CHECK_INTERVAL:
                        await asyncio.shield(self._inflight)
                        self._inflight = None
                        await self.release_idle()
                else:
                    await self._wait_or_idle()
            except (QueueError, _Replay) as exc:
                if self._inflight is not None:
                    await asyncio.gather(self._inflight, return_exceptions=True)
                    self._inflight = None
                await self.restore()  # back to the committed state: nothing half-applied
                if isinstance(exc, QueueError):
                    self._commit_failures.failed(str(exc), kind=type(exc).__name__)
                    await asyncio.sleep(1.0)

    async def step_once(self) -> bool:
        """Process one slice and commit it; False when there was nothing to read."""
        try:
            prepared = await self._process_slice()
        except _Replay:
            await self.restore()
            prepared = await self._process_slice()
        if prepared is None:
            return False
        await self._submit(prepared)
        return True

    async def _process_slice(self) -> PreparedCommit | None:
        """Read and process batches until the slice is full or the inputs are drained.

        A slice ends after `slice_seconds`, SLICE_MAX_EVENTS input events or
        SLICE_MAX_OUTPUTS output events (bounding memory), whichever comes first.
        The in-memory positions move on; the committed ones move with the commit.
        """
        side, out, reads = SideOutputs(), Batch.empty(), {}
        dead: list[NewEvent] = []
        started, seen = time.monotonic(), 0
        while True:
            round_reads = await self._read_round(out, side, dead)
            if not round_reads:
                break
            reads.update(round_reads)
            self.positions.update(round_reads)
            seen += self.read_batch
            produced = len(out) + sum(len(b) for b in side.streams.values())
            if (
                seen >= SLICE_MAX_EVENTS
                or produced >= SLICE_MAX_OUTPUTS
                or time.monotonic() - started >= self.slice_seconds
            ):
                break
        if not reads:
            return None
        return self._prepare(out, side, reads, dead)

    async def _read_round(
        self, out: Batch, side: SideOutputs, dead: list[NewEvent]
    ) -> dict[str, int]:
        """One batch of each input through the chain (side inputs first)."""
        reads = {}
        for index, stream in self.pipeline.side_inputs:
            read = await self._read(stream)
            if read is not None:
                batch, reads[stream] = read
                out.extend(self.chain.absorb(index, stream, batch, side))
        read = await self._read(self.input)
        if read is not None:
            batch, reads[self.input] = read
            self.stats.events_in += len(batch)
            out.extend(await self._process(batch, side, dead, reads[self.input]))
        return reads

    async def _read(self, stream: str) -> tuple[Batch, int] | None:
        """The next batch of a stream; the main input's next one is read ahead.

        Reads run on the queue's reader thread. While this batch goes through the
        chain, the read of the following one is already under way, so reading and
        processing overlap instead of taking turns.
        """
        position = self.positions[stream]
        ahead = self._read_ahead
        self._read_ahead = None
        if ahead is not None and ahead[0] == position:
            read = await ahead[1]
        else:
            if ahead is not None:
                ahead[1].cancel()
            read = await self._read_from(stream, position)
        if read.empty:
            return None
        if stream == self.input and len(read.events) >= self.read_batch:
            task = asyncio.ensure_future(self._read_from(stream, read.upto_seq))
            self._read_ahead = (read.upto_seq, task)
        return Batch.of_stored(read.events), read.upto_seq

    async def _read_from(self, stream: str, position: int) -> OutboxBatch:
        return await self.queue.read_after(stream, position, self.read_batch, MAX_BATCH_BYTES)

    async def _process(
        self, batch: Batch, side: SideOutputs, dead: list[NewEvent], upto: int
    ) -> Batch:
        """Run the chain over a batch of the main input.

        Steps must not raise; if one does (a bug), the chain's state is unknown, so the
        whole uncommitted slice is thrown away (`_Replay`) and re-run from the committed
        state, this time event by event up to the failed batch's end.
        """
        if self.positions[self.input] < self._careful_until:
            return self._process_carefully(batch, side, dead)
        try:
            return self.chain.process(batch, side)
        except Exception:
            log.exception("Pipeline %s failed on a batch; re-running it event by event", self.name)
            self._careful_until = upto
            raise _Replay from None

    def _process_carefully(self, batch: Batch, side: SideOutputs, dead: list[NewEvent]) -> Batch:
        """One event at a time, each from a saved state: an event that makes a step raise
        is dead-lettered with the error, because it would fail again at every restart."""
        out = Batch.empty()
        for i in range(len(batch)):
            saved = encode_state(self._snapshots())
            own_side = SideOutputs()
            try:
                out.extend(self.chain.process(batch.take([i]), own_side))
            except Exception as exc:
                state = orjson.loads(saved)
                self._restore_steps({k: orjson.dumps(v) for k, v in state.items()})
                dead.append(self._dead_letter(batch, i, exc))
                continue
            for stream, events in own_side.streams.items():
                side.send(stream, events)
        return out

    def _dead_letter(self, batch: Batch, index: int, exc: Exception) -> NewEvent:
        self.stats.errors += 1
        log.warning("Pipeline %s dead-lettered an event: %r", self.name, exc)
        (event,) = batch.take([index]).to_new_events()
        reason = {"reason": "pipeline_error", "detail": repr(exc)[:500], "pipeline": self.name}
        return replace(event, headers=orjson.dumps(reason).decode())

    def _snapshots(self) -> dict[str, Any]:
        operators = self.chain.operators
        return {name: operators[i].snapshot() for i, name in self.pipeline.state_names.items()}

    def _prepare(
        self, out: Batch, side: SideOutputs, reads: dict[str, int], dead: list[NewEvent]
    ) -> PreparedCommit:
        """Freeze what one commit writes: outputs, side outputs, snapshots, cursors."""
        writes = {self.pipeline.config.output: out} if len(out) else {}
        writes.update(side.streams)
        events = {stream: batch.to_new_events() for stream, batch in writes.items()}
        if dead:
            events.setdefault(DEADLETTER_STREAM, []).extend(dead)
        snapshots = {name: encode_state(state) for name, state in self._snapshots().items()}
        self.stats.state_bytes = sum(len(data) for data in snapshots.values())
        return PreparedCommit(events, snapshots, dict(reads), len(out))

    async def _submit(self, prepared: PreparedCommit) -> None:
        """Everything of one slice in one transaction (Step 3)."""

        def write(tx: WriteTx) -> None:
            for stream, new in prepared.events.items():
                tx.append(stream, new)
            for name, data in prepared.snapshots.items():
                tx.put_state(self.consumer, name, data)
            for stream, upto in prepared.cursors.items():
                tx.set_cursor(self.consumer, stream, upto)

        self._handed_over = False
        for stream in prepared.events:
            if stream != DEADLETTER_STREAM:
                await self.queue.wait_for_room(stream)
        weight = max(1, sum(len(e) for e in prepared.events.values()))
        self._handed_over = True  # transact() queues the job before its first await
        await self.queue.transact(write, weight=weight)
        self.stats.events_out += prepared.main_outputs
        self.stats.side_out += weight - prepared.main_outputs if prepared.events else 0

    async def _wait_or_idle(self) -> None:
        """Wait for input on any stream; meanwhile release what processing time makes due."""
        timeout = 0.05 if self.chain.has_pending() else 5.0
        if await self.queue.wait_for_any(self.positions, min(timeout, IDLE_CHECK_INTERVAL)):
            return
        await self.release_idle()

    async def release_idle(self) -> None:
        """Commit what the steps release on processing time (cursors unchanged)."""
        self._last_idle_check = time.monotonic()
        if not self.chain.has_pending():
            return
        side = SideOutputs()
        out = self.chain.idle(time.monotonic(), side)
        if len(out) or side.streams:
            await self._submit(self._prepare(out, side, {}, []))


def encode_state(state: Any) -> bytes:
    """A step's snapshot as JSON bytes, even when it holds an integer beyond 64 bits.

    Expressions can build such integers (``x ** 70``) and `first`/`last` or a held
    event may keep one; orjson refuses them, and a snapshot that cannot be written
    would stop the pipeline at every commit. They are stored as floats (or text when
    too large even for a float) instead.
    """
    try:
        return b"".join((orjson.dumps(state), b""))
    except TypeError:
        return orjson.dumps(_json_safe(state))


def _json_safe(value: Any) -> Any:
    if type(value) is int and not -(2**63) <= value < 2**64:
        try:
            return float(value)
        except OverflowError:
            return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
