"""The MQTT source: subscribe, decode, store durably, and only then acknowledge.

Protocol for each group of received messages (`_store_and_ack`):
  1. paho delivers a QoS 1/2 message; it is NOT acknowledged (manual ack).
  2. Messages gathered while the previous commit was running are decoded together;
     bad ones become dead letters with their reason.
  3. One queue transaction stores the events, the dead letters, their counters and
     each message id's fingerprint (`mqtt_inflight`).
  4. After that commit -- never before -- every message of the group is acknowledged to
     the broker, in the order received.
A kill between 3 and 4 makes the broker redeliver those messages (same id, DUP set)
after restart; their fingerprints are found in step 3's table and they are acknowledged
without being stored twice. When more than `max_pending` messages wait for a commit,
the source stops reading its socket: the broker holds the excess (backpressure).

A retained message is sent again by the broker at every (re)subscription; the source
remembers the fingerprint of the last retained message stored per topic and stores a
retained message only when it differs, so reconnects do not duplicate it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.config.mqtt_source import MqttSourceConfig
from agent.queue import DEADLETTER_STREAM, DurableQueue, InflightMark, NewEvent, QueueError
from agent.queue.transaction import WriteTx
from agent.sources.decode import DeadLetter, MessageDecoder, digest
from agent.sources.polling import ConditionLog
from agent.sources.rate_limit import TopicRateLimiter
from sync.backoff import retry_until_done
from sync.mqtt.connection import MqttConnection
from sync.mqtt.message import MqttMessage

log = logging.getLogger(__name__)

# Payload bytes that may wait for a commit before the source stops reading its socket.
MAX_PENDING_BYTES = 32 * 1024 * 1024
# A mark is kept until its PUBACK has surely reached the broker: written this long ago,
# on a connection that has stayed up at least as long since.
MARK_HORIZON = 60.0
PRUNE_EVERY = 10.0


@dataclass(slots=True)
class SourceStats:
    """Counters of one source since start."""

    received: int = 0
    stored: int = 0
    dead_lettered: int = 0
    redeliveries_skipped: int = 0
    retained_repeats: int = 0
    rate_limited: int = 0


class MqttSource:
    """One configured MQTT source feeding one stream."""

    def __init__(
        self, config: MqttSourceConfig, queue: DurableQueue, device_id: str, max_pending: int
    ) -> None:
        self.config = config
        self.queue = queue
        self.stats = SourceStats()
        self._id = f"mqtt.{config.name}"
        self._max_pending = max_pending
        self._buffer: list[MqttMessage] = []
        self._buffered_bytes = 0
        self._retained: dict[str, bytes] = {}
        self._next_prune = 0.0
        self._wake = asyncio.Event()
        self._decoder = MessageDecoder(config)
        limit = config.rate_limit
        self._limiter = (
            None if limit is None else TopicRateLimiter(limit.per_second, limit.capacity)
        )
        self._limit_log = ConditionLog(config.name)
        self.connection = MqttConnection(
            config.broker,
            client_id=config.broker.client_id or f"edgestream-{device_id}-{config.name}",
            clean_session=config.clean_session,
            manual_ack=True,
            subscriptions=[(t.topic, _subscription_qos(t.qos)) for t in config.topics],
            on_message=self._on_message,
            name=f"src.{config.name}",
            max_inflight=1000,
        )

    @property
    def name(self) -> str:
        """The configured source name (task names, logs)."""
        return self.config.name

    async def run(self) -> None:
        """Connect and store messages until cancelled."""
        self._retained = await self.queue.load_state(self._retained_owner)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.connection.run(), name=f"edgestream[{self._id}].mqtt")
            tasks.create_task(self._store_loop(), name=f"edgestream[{self._id}].store")

    @property
    def _retained_owner(self) -> str:
        return f"{self._id}.retained"

    def _on_message(self, message: MqttMessage) -> None:
        self.stats.received += 1
        self._buffer.append(message)
        self._buffered_bytes += len(message.payload)
        self._wake.set()
        if self._too_full():
            self.connection.pause_reading()

    def _too_full(self) -> bool:
        """Bound what waits in memory by count and by bytes (large payloads on a Pi)."""
        return len(self._buffer) >= self._max_pending or self._buffered_bytes >= MAX_PENDING_BYTES

    async def _store_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            group, self._buffer, self._buffered_bytes = self._buffer, [], 0
            await retry_until_done(
                functools.partial(self._store_and_ack, group),
                what=f"Storing {len(group)} messages of source {self.config.name}",
                errors=(QueueError,),
                logger=log,
            )
            if not self._too_full():
                self.connection.resume_reading()

    async def _store_and_ack(self, group: list[MqttMessage]) -> None:
        fresh = await self._skip_redeliveries(group)
        events: list[NewEvent] = []
        dead: list[DeadLetter] = []
        admitted = self._within_rate([m for m, _ in fresh])
        limited = len(fresh) - len(admitted)
        for message in admitted:  # Step 2
            decoded = self._decoder.decode(message)
            if isinstance(decoded, DeadLetter):
                dead.append(decoded)
            else:
                events.append(decoded)
        marks = [InflightMark(self._id, m.mid, f) for m, f in fresh if m.qos > 0]
        retained = {m.topic: f for m, f in fresh if m.retain}
        await self.queue.wait_for_room(self.config.stream)
        write = self._writer(events, dead, marks, retained, limited)
        await self.queue.transact(write, weight=len(fresh))  # Step 3
        self._retained.update(retained)
        for message in group:  # Step 4
            if message.qos > 0:
                self.connection.ack(message.mid, message.qos)
        self.stats.stored += len(events)
        self.stats.dead_lettered += len(dead)
        self.stats.rate_limited += limited

    def _within_rate(self, messages: list[MqttMessage]) -> list[MqttMessage]:
        """The messages the per-topic rate limit lets through; the rest are dropped.

        Dropped messages are still acknowledged (with their group) and counted, and the
        condition is logged when it starts and when it clears, not per message.
        """
        if self._limiter is None:
            return messages
        allow = self._limiter.allow
        admitted = [m for m in messages if allow(m.topic, m.received_at)]
        if len(admitted) < len(messages):
            self._limit_log.failed("messages above the per-topic rate limit are dropped")
        elif messages:
            self._limit_log.cleared()
        return admitted

    def _writer(
        self,
        events: list[NewEvent],
        dead: list[DeadLetter],
        marks: list[InflightMark],
        retained: dict[str, bytes],
        limited: int,
    ) -> Callable[[WriteTx], None]:
        stream = self.config.stream
        prune_before = self._prune_horizon()
        future = sum(1 for e in events if e.headers and "time_in_future" in e.headers)

        def write(tx: WriteTx) -> None:
            if events:
                tx.append(stream, events)
            if future:
                tx.incr(stream, "time_in_future", future)
            if limited:
                tx.incr(stream, "rate_limited", limited)
            if dead:
                tx.append(DEADLETTER_STREAM, [d.event for d in dead])
                for d in dead:
                    tx.incr(stream, f"dead_lettered.{d.reason}")
            tx.mark_inflight(marks)
            if prune_before is not None:
                tx.forget_inflight(self._id, prune_before)
            for topic, fingerprint in retained.items():
                tx.put_state(self._retained_owner, topic, fingerprint)

        return write

    def _prune_horizon(self) -> float | None:
        """When due, the write time before which redelivery marks can go.

        A mark matters only while its message's PUBACK may not have reached the broker.
        Once the connection has stayed up `MARK_HORIZON` seconds past a mark, TCP has
        delivered that PUBACK; pruning keeps the table small and the chance that a new
        message is mistaken for an old one (same id, topic and payload) tiny.
        """
        now = time.monotonic()
        if now < self._next_prune or self.connection.connected_for < MARK_HORIZON:
            return None
        self._next_prune = now + PRUNE_EVERY
        return time.time() - MARK_HORIZON

    async def _skip_redeliveries(self, group: list[MqttMessage]) -> list[tuple[MqttMessage, bytes]]:
        """Drop copies of messages already stored, or already in this group.

        A DUP message whose id and fingerprint match a committed mark was stored before
        a crash or a lost connection (see Step 4); one matching an earlier message of the
        same group is the broker's resend after a connection flap. A retained message
        equal to the last one stored for its topic is the broker's replay on subscribe.
        """
        fresh: list[tuple[MqttMessage, bytes]] = []
        seen: set[tuple[int, bytes]] = set()
        for message in group:
            fingerprint = digest(message) if message.qos or message.retain else b""
            if message.retain and self._retained.get(message.topic) == fingerprint:
                self.stats.retained_repeats += 1
                continue
            if await self._is_redelivery(message, fingerprint, seen):
                self.stats.redeliveries_skipped += 1
                continue
            seen.add((message.mid, fingerprint))
            fresh.append((message, fingerprint))
        return fresh

    async def _is_redelivery(
        self, message: MqttMessage, fingerprint: bytes, seen: set[tuple[int, bytes]]
    ) -> bool:
        if not message.dup or message.qos == 0:
            return False
        if (message.mid, fingerprint) in seen:
            return True
        return await self.queue.inflight_digest(self._id, message.mid) == fingerprint


def _subscription_qos(qos: int) -> int:
    """Subscribe at QoS 1 at most: our own dedup already gives exactly-once storage.

    paho sends PUBREC for a QoS 2 message on arrival but keeps no state across a
    restart, so with manual acknowledgement a QoS 2 message in flight during a crash is
    never delivered again (the broker only re-sends PUBREL). QoS 1 redelivers it, and
    the `mqtt_inflight` fingerprints drop the copy we had already stored.
    """
    return min(qos, 1)
