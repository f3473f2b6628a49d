"""The durable queue as the event loop sees it: appends, transactions, reads, cursors.

This is the object sources, pipelines, outputs and the uplink share. Writes go to the
group-commit writer thread and resolve after their commit; reads go to the reader
thread. Nothing here blocks the loop on disk. It satisfies `sync.outbox.Outbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agent.queue import reader, schema
from agent.queue.errors import QueueClosedError, QueueError, UnknownStreamError
from agent.queue.integrity import set_aside_if_corrupt, unsent_ranges
from agent.queue.records import InflightMark, NewEvent, StreamLimits, StreamStats
from agent.queue.streams import DEADLETTER_LIMITS, DEADLETTER_STREAM, load_streams
from agent.queue.transaction import WriteTx
from agent.queue.writer import GroupCommitWriter
from sync.outbox import OutboxBatch
from sync.stream_drain import CONSUMER as UPLINK_CONSUMER
from sync.uplink_state import OWNER as UPLINK_OWNER

log = logging.getLogger(__name__)

T = TypeVar("T")

DATABASE_NAME = "queue.db"


class DurableQueue:
    """Named streams of events in one SQLite file, with cursors and group commit."""

    def __init__(
        self,
        path: Path,
        epoch: str,
        writer: GroupCommitWriter,
        read_worker: reader.ReadWorker,
        limits: dict[str, StreamLimits],
        sizes: dict[str, int],
        last_seqs: dict[str, int],
    ) -> None:
        self.path = path
        self._epoch = epoch
        self._writer = writer
        self._reader = read_worker
        self._limits = limits
        self._sizes = sizes
        self._last_seqs = last_seqs
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self.set_aside: Path | None = None
        """Where a corrupt database found at start was moved (agent/queue/integrity.py)."""

    @classmethod
    async def open(
        cls,
        data_dir: str | Path,
        streams: Mapping[str, StreamLimits],
        *,
        commit_interval: float = 0.1,
        commit_max_events: int = 50000,
        synchronous: str = "full",
    ) -> DurableQueue:
        """Open (or create) the queue in `data_dir` and start its threads."""
        path = Path(data_dir) / DATABASE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        set_aside = await asyncio.to_thread(set_aside_if_corrupt, path)
        limits = {DEADLETTER_STREAM: DEADLETTER_LIMITS, **streams}
        loop = asyncio.get_running_loop()
        try:
            conn, epoch, states = await asyncio.to_thread(
                _open_writer_conn, path, synchronous, limits
            )
        except (sqlite3.Error, schema.SchemaError) as exc:
            msg = (
                f"cannot open the queue database {path}: {exc}; nothing was deleted "
                "(move the file aside to start with an empty queue)"
            )
            raise QueueError(msg) from exc
        queue: DurableQueue | None = None

        def on_commit(last_seqs: dict[str, int], sizes: dict[str, int]) -> None:
            assert queue is not None
            queue._committed(last_seqs, sizes)

        writer = GroupCommitWriter(
            conn,
            states,
            loop,
            commit_interval=commit_interval,
            commit_max_events=commit_max_events,
            on_commit=on_commit,
        )
        read_worker = reader.ReadWorker(lambda: schema.connect(str(path), synchronous))
        sizes = {name: s.bytes for name, s in states.items()}
        last = {name: s.next_seq - 1 for name, s in states.items()}
        queue = cls(path, epoch, writer, read_worker, limits, sizes, last)
        queue.set_aside = set_aside
        writer.start()
        if set_aside is not None:
            await queue._keep_unsent_ranges(set_aside)
        return queue

    async def _keep_unsent_ranges(self, set_aside: Path) -> None:
        """Hand the uplink what the set-aside file had not sent (sync/set_aside.py)."""
        ranges = await asyncio.to_thread(unsent_ranges, set_aside, UPLINK_CONSUMER)
        if ranges:
            await self.save_state(UPLINK_OWNER, {r.state_name: r.to_bytes() for r in ranges})
            log.error(
                "The set-aside queue held unsent events the hub will be told about as gaps: %s",
                ", ".join(f"{r.stream} {r.first_seq}-{r.last_seq}" for r in ranges),
            )

    @property
    def epoch(self) -> str:
        """The random id made with this database (see sync/outbox.py)."""
        return self._epoch

    @property
    def streams(self) -> list[str]:
        """Names of every stream the queue holds, dead letters included."""
        return list(self._limits)

    def last_seq(self, stream: str) -> int:
        """The last committed sequence number of a stream (0 when empty)."""
        return self._last_seqs.get(stream, 0)

    async def append(
        self, stream: str, events: Sequence[NewEvent], marks: Sequence[InflightMark] = ()
    ) -> list[int]:
        """Store events durably; returns their sequence numbers after the commit.

        With `overflow: block` this waits while the stream is full, so the caller (an
        MQTT source holding back its acknowledgements) applies backpressure.
        """
        await self.wait_for_room(stream)

        def job(tx: WriteTx) -> list[int]:
            seqs = tx.append(stream, events)
            if marks:
                tx.mark_inflight(marks)
            return seqs

        result: list[int] = await self.transact(job, weight=len(events))
        return result

    async def transact(self, fn: Callable[[WriteTx], T], weight: int = 1) -> T:
        """Run `fn` on the writer thread inside the next group transaction.

        Everything `fn` writes commits together or not at all; the result is returned
        only after the commit, so the caller may acknowledge upstream.
        """
        if self._closed:
            raise QueueClosedError("queue is closed")
        result: T = await self._writer.submit(fn, weight)
        return result

    async def ack(self, stream: str, consumer: str, upto_seq: int) -> None:
        """Move a consumer's cursor durably; consumed events are deleted in housekeeping."""
        await self.transact(lambda tx: tx.set_cursor(consumer, stream, upto_seq))

    async def read_batch(
        self, stream: str, consumer: str, max_events: int, max_bytes: int
    ) -> OutboxBatch:
        """Events after the consumer's cursor (see `reader.read_after`)."""
        position = await self.cursor(stream, consumer)
        return await self.read_after(stream, position, max_events, max_bytes)

    async def read_after(
        self,
        stream: str,
        after_seq: int,
        max_events: int,
        max_bytes: int,
        before_seq: int | None = None,
    ) -> OutboxBatch:
        """Events after a given sequence number (and before `before_seq`), bounded."""
        batch: OutboxBatch = await self._read(
            reader.read_after, stream, after_seq, max_events, max_bytes, before_seq
        )
        return batch

    async def newest_start(
        self, stream: str, after_seq: int, max_events: int, max_bytes: int
    ) -> int:
        """The read position of the newest batch after `after_seq` (see `reader.newest_start`)."""
        start: int = await self._read(reader.newest_start, stream, after_seq, max_events, max_bytes)
        return start

    async def cursor(self, stream: str, consumer: str) -> int:
        """A consumer's committed position (0 before its first acknowledgement)."""
        position: int = await self._read(reader.cursor_position, stream, consumer)
        return position

    async def register_consumers(self, consumers: Mapping[str, Sequence[str]]) -> None:
        """Declare which consumers read which stream; others stop holding events back.

        A consumer that is no longer configured is marked inactive rather than
        deleted, so a config rolled back later resumes where it stood.
        """

        def job(tx: WriteTx) -> None:
            for stream in self._limits:
                tx.set_active_consumers(stream, consumers.get(stream, ()))

        await self.transact(job)

    async def reconfigure(
        self, streams: Mapping[str, StreamLimits], consumers: Mapping[str, Sequence[str]]
    ) -> None:
        """Apply a reloaded config: new streams, new limits and consumers, in one commit.

        A stream no longer configured stays in the database with its events and its
        limits (nothing is deleted by a reload); its consumers become inactive.
        """
        limits = {DEADLETTER_STREAM: DEADLETTER_LIMITS, **streams}
        known = list(dict.fromkeys([*self._limits, *limits]))

        def job(tx: WriteTx) -> dict[str, tuple[int, int]]:
            defined = {name: tx.define_stream(name, value) for name, value in limits.items()}
            for stream in known:
                tx.set_active_consumers(stream, consumers.get(stream, ()))
            return {name: (s.next_seq - 1, s.bytes) for name, s in defined.items()}

        counters = await self.transact(job)
        self._limits = {**self._limits, **limits}
        for name, (last_seq, size) in counters.items():
            self._last_seqs.setdefault(name, last_seq)
            self._sizes.setdefault(name, size)

    async def wait_for_data(self, stream: str, after_seq: int, timeout: float) -> bool:
        """Wait until the stream has a sequence number past `after_seq`, or time out."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.last_seq(stream) <= after_seq:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await self._wait_change(remaining):
                return self.last_seq(stream) > after_seq
        return True

    async def wait_for_any(self, positions: dict[str, int], timeout: float) -> bool:
        """`wait_for_data` over several streams: any one past its position wakes it."""
        deadline = asyncio.get_running_loop().time() + timeout

        def ready() -> bool:
            return any(self.last_seq(stream) > seq for stream, seq in positions.items())

        while not ready():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await self._wait_change(remaining):
                return ready()
        return True

    async def load_state(self, owner: str) -> dict[str, bytes]:
        """All named state a component committed (see `WriteTx.put_state`)."""
        state: dict[str, bytes] = await self._read(reader.load_state, owner)
        return state

    async def save_state(self, owner: str, values: Mapping[str, bytes]) -> None:
        """Commit named pieces of a component's state together (see `load_state`)."""

        def job(tx: WriteTx) -> None:
            for name, value in values.items():
                tx.put_state(owner, name, value)

        await self.transact(job)

    async def inflight_digest(self, source: str, mid: int) -> bytes | None:
        """The digest committed with an MQTT message id (redelivery detection)."""
        digest: bytes | None = await self._read(reader.inflight_digest, source, mid)
        return digest

    async def stats(self) -> list[StreamStats]:
        """Depth, bytes, ages, cursors and counters of every stream."""
        stats: list[StreamStats] = await self._read(reader.stream_stats)
        return stats

    def request_housekeeping(self) -> None:
        """Run retention and consumed-event deletion at the next commit."""
        self._writer.request_housekeeping()

    async def close(self) -> None:
        """Commit what is pending, checkpoint and close both threads."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._writer.close)
        await asyncio.to_thread(self._reader.close)
        await asyncio.sleep(0)  # let the last commit's callbacks run
        self._committed({}, {})

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.wrap_future(self._reader.call(fn, *args))

    async def wait_for_room(self, stream: str) -> None:
        """With `overflow: block`, wait while the stream is full (backpressure).

        Every writer into a `block` stream awaits this before it writes, so a full
        stream holds back its producers instead of growing past `max_bytes`.
        """
        if stream not in self._limits:
            raise UnknownStreamError(stream)
        limits = self._limits[stream]
        if limits.overflow != "block":
            return
        while self._sizes.get(stream, 0) >= limits.max_bytes and not self._closed:
            self.request_housekeeping()
            await self._wait_change(1.0)

    async def _wait_change(self, timeout: float) -> bool:
        """Wait for the next commit that touched any stream; False on timeout."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation
            # that lands as the waiter completes, and the cancelled task runs on (a
            # component a reload or a stop had cancelled, never stopping).
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            return False
        finally:
            if not waiter.done() or waiter.cancelled():
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        return True

    def _committed(self, last_seqs: dict[str, int], sizes: dict[str, int]) -> None:
        """On the loop after each commit: new last seqs and sizes, then wake waiters."""
        self._last_seqs.update(last_seqs)
        self._sizes.update(sizes)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _open_writer_conn(
    path: Path, synchronous: str, limits: dict[str, StreamLimits]
) -> tuple[Any, str, Any]:
    conn = schema.connect(str(path), synchronous)
    epoch = schema.ensure_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    states = load_streams(conn, limits)
    conn.execute("COMMIT")
    return conn, epoch, states
