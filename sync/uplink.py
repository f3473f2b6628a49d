"""The edge side of sync: drain uplink streams to the hub, batch by batch, end to end.

For each uplink stream one sender runs this protocol (`_send_one`):
  1. Read a batch after the stream's `uplink` cursor (bounded by events and bytes),
     lingering up to `batch_max_delay` for a fuller batch.
  2. Encode it (version byte, zstd, checksum) and publish it at QoS 1 on
     `<prefix>/<device>/up`.
  3. Wait for the hub's ack on `<prefix>/<device>/ack` for this batch id. The broker's
     PUBACK is not enough: only the hub's ack says the batch is committed centrally.
  4. Move the cursor to the batch's `upto_seq` in the queue (durably); these commits
     trail behind the sends, coalesced (see `_drain`).
  On no ack within `ack_timeout`, or a rejection, the same batch is published again
  after a jittered exponential backoff; the hub deduplicates, so a retry never
  duplicates. One batch per stream is in flight, so order per stream holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from sync.backoff import Backoff, retry_until_done
from sync.mqtt.connection import MqttConnection
from sync.mqtt.errors import MqttPublishError
from sync.mqtt.message import MqttMessage
from sync.outbox import Outbox, OutboxBatch
from sync.uplink_config import UplinkConfig
from sync.wire import Ack, Batch, WireFormatError, ack_topic, encode, up_topic

log = logging.getLogger(__name__)

CONSUMER = "uplink"


class BatchRejectedError(RuntimeError):
    """The hub refused a batch; its reason is the message."""


@dataclass(slots=True)
class UplinkStats:
    """Counters the demo and `status` print; cumulative since start."""

    batches: int = 0
    events: int = 0
    gaps: int = 0
    bytes_sent: int = 0
    raw_bytes: int = 0
    retries: int = 0
    last_ack_at: float | None = None


class _CursorTrail:
    """The acked position of one stream, and how far its commits have caught up."""

    def __init__(self, committed: int) -> None:
        self.committed = committed
        self.target = committed
        self._moved = asyncio.Event()

    def advance(self, position: int) -> None:
        """The hub acked everything up to `position`."""
        self.target = max(self.target, position)
        self._moved.set()

    async def next_target(self) -> int:
        """Wait until there is something newer than the last commit to commit."""
        while self.target <= self.committed:
            self._moved.clear()
            await self._moved.wait()
        return self.target


class Uplink:
    """Replicates the marked streams of an outbox to the hub."""

    def __init__(
        self, config: UplinkConfig, outbox: Outbox, device_id: str, streams: list[str]
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.device_id = device_id
        self.streams = streams
        self.stats = UplinkStats()
        self._pending: dict[str, asyncio.Future[Ack]] = {}
        self.connection = MqttConnection(
            config.broker,
            client_id=config.broker.client_id or f"edgestream-{device_id}-uplink",
            clean_session=False,
            subscriptions=[(ack_topic(config.topic_prefix, device_id), 1)],
            on_message=self._on_ack,
            name="uplink",
        )

    async def run(self) -> None:
        """Connect and drain every uplink stream until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.connection.run(), name="edgestream[uplink].mqtt")
            for stream in self.streams:
                tasks.create_task(self._drain(stream), name=f"edgestream[uplink.{stream}].sender")

    async def _drain(self, stream: str) -> None:
        """Send batches one after another while a companion task commits the cursor.

        The position of the next read is kept in memory: once the hub has acked a
        batch, the next one is sent at once, and the cursor commits trail behind,
        coalesced (one commit can cover several acked batches, so the group commit's
        interval never paces the drain). A crash before a cursor commit resends those
        batches, which the hub drops as duplicates: nothing is lost or doubled.
        """
        backoff = Backoff(self.config.broker.backoff_initial, self.config.broker.backoff_max)
        position = await self.outbox.cursor(stream, CONSUMER)
        trail = _CursorTrail(position)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                self._commit_cursor(stream, trail), name=f"edgestream[uplink.{stream}].cursor"
            )
            while True:
                batch = await self._next_batch(stream, position)  # Step 1
                await self._deliver(batch, backoff)
                backoff.reset()
                position = batch.upto_seq
                trail.advance(position)  # Step 4, committed by _commit_cursor

    async def _commit_cursor(self, stream: str, trail: _CursorTrail) -> None:
        while True:
            target = await trail.next_target()
            await self._move_cursor(stream, target)
            trail.committed = target

    async def _next_batch(self, stream: str, position: int) -> OutboxBatch:
        cfg = self.config
        while True:
            batch = await self.outbox.read_after(
                stream, position, cfg.batch_max_events, cfg.batch_max_bytes
            )
            if batch.empty:
                await self.outbox.wait_for_data(stream, batch.upto_seq, 5.0)
                continue
            if len(batch.events) >= cfg.batch_max_events or not batch.events:
                return batch
            return await self._linger(batch, position)

    async def _linger(self, batch: OutboxBatch, position: int) -> OutboxBatch:
        """Wait for a fuller batch, but never hold the oldest event past `batch_max_delay`."""
        waited = time.time() - batch.events[0].ingest_time
        # Clamped: after the wall clock steps back, `waited` is negative.
        remaining = min(self.config.batch_max_delay, self.config.batch_max_delay - waited)
        if remaining <= 0:
            return batch
        await asyncio.sleep(remaining)
        return await self.outbox.read_after(
            batch.stream, position, self.config.batch_max_events, self.config.batch_max_bytes
        )

    async def _deliver(self, outbox_batch: OutboxBatch, backoff: Backoff) -> None:
        batch = Batch(
            self.device_id, self.outbox.epoch, outbox_batch.stream,
            outbox_batch.events, outbox_batch.gaps, outbox_batch.upto_seq,
        )  # fmt: skip
        data = await self._encode(batch)  # Step 2
        while True:
            try:
                ack = await self._send_one(batch, data)
                break
            except (TimeoutError, BatchRejectedError, MqttPublishError) as exc:
                self.stats.retries += 1
                delay = backoff.next_delay()
                log.warning("Batch %s not acknowledged (%s); retrying in %.1fs",
                            batch.batch_id, exc or "timeout", delay)  # fmt: skip
                await asyncio.sleep(delay)
        self._count(batch, data, ack)

    async def _move_cursor(self, stream: str, upto_seq: int) -> None:
        """Commit the new cursor; retried on failure, since the hub already has the batch."""
        await retry_until_done(
            lambda: self.outbox.ack(stream, CONSUMER, upto_seq),
            what=f"Moving the uplink cursor of {stream}",
            errors=(Exception,),  # the outbox's own error type belongs to the agent
            logger=log,
        )

    async def _encode(self, batch: Batch) -> bytes:
        level = self.config.compression_level
        if len(batch.events) > 200:
            return await asyncio.to_thread(encode, batch, level)
        return encode(batch, level)

    async def _send_one(self, batch: Batch, data: bytes) -> Ack:
        """Publish one batch and wait for the hub's verdict (Steps 2 and 3)."""
        waiter: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[batch.batch_id] = waiter
        try:
            await self.connection.wait_connected()
            async with asyncio.timeout(self.config.ack_timeout):
                await self.connection.publish(
                    up_topic(self.config.topic_prefix, self.device_id), data, qos=self.config.qos
                )
                return await waiter
        finally:
            self._pending.pop(batch.batch_id, None)

    def _on_ack(self, message: MqttMessage) -> None:
        try:
            ack = Ack.from_bytes(message.payload)
        except WireFormatError as exc:
            log.warning("Ignored a malformed ack on %s: %s", message.topic, exc)
            return
        if ack.status != "ok":
            self._fail_pending(ack.reason or "rejected by the hub", ack.batch_id)
            return
        waiter = self._pending.get(ack.batch_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(ack)

    def _fail_pending(self, reason: str, batch_id: str) -> None:
        """A rejection names its batch when the hub could decode it; else all in flight."""
        log.error("Hub rejected a batch: %s", reason)
        targets = [batch_id] if batch_id in self._pending else list(self._pending)
        for target in targets:
            waiter = self._pending[target]
            if not waiter.done():
                waiter.set_exception(BatchRejectedError(reason))

    def _count(self, batch: Batch, data: bytes, ack: Ack) -> None:
        self.stats.batches += 1
        self.stats.events += len(batch.events)
        self.stats.gaps += sum(g.count for g in batch.gaps)
        self.stats.bytes_sent += len(data)
        self.stats.raw_bytes += sum(len(e.payload) for e in batch.events)
        self.stats.last_ack_at = time.time()
        if ack.duplicates:
            log.info("Hub already had %d events of batch %s", ack.duplicates, batch.batch_id)
