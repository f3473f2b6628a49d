"""The edge side of sync: drain uplink streams to the hub, batch by batch, end to end.

For each uplink stream one sender runs this protocol (`_drain`):
  1. Plan a batch (`StreamDrain.next_batch`): oldest first after the acked position,
     or newest first then backfill, bounded by the adaptive batch size and bytes,
     lingering up to `batch_max_delay` for a fuller batch.
  2. Encode it (version byte, zstd, checksum), wait for the daily budget and the
     bandwidth cap's tokens (highest priority first), then publish it at QoS 1 on
     `<prefix>/<device>/up`.
  3. Wait for the hub's ack on `<prefix>/<device>/ack` for this batch id. The broker's
     PUBACK is not enough: only the hub's ack says the batch is committed centrally.
  4. Record the acked range; the cursor moves over the contiguous acked prefix in the
     queue (durably), the commits trailing behind the sends, coalesced.
  On no ack within `ack_timeout`, a publish failure or a rejection, the batch is planned
  again (smaller after a timeout) after a jittered exponential backoff; the hub
  deduplicates, so a retry never duplicates. One batch per stream is in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sync import set_aside
from sync.backoff import Backoff
from sync.batch_sizer import BatchSizer
from sync.condition_log import ConditionLog, Wording
from sync.daily_budget import STATE_NAME as BUDGET_STATE
from sync.daily_budget import DailyBudget
from sync.device_keys import load_device_key, load_dictionary
from sync.mqtt.config import MqttConnectionConfig
from sync.mqtt.connection import MqttConnection
from sync.mqtt.errors import MqttPublishError
from sync.mqtt.message import MqttMessage
from sync.outbox import Outbox
from sync.stream_drain import CONSUMER, PlannedBatch, StreamDrain
from sync.token_bucket import TokenBucket
from sync.uplink_config import UplinkConfig, UplinkStreamConfig
from sync.uplink_state import StateWriter
from sync.wire import Ack, Batch, WireFormatError, ack_topic, encode, up_topic

__all__ = ["CONSUMER", "BatchRejectedError", "Uplink", "UplinkStats"]

log = logging.getLogger(__name__)

_RETRY_WORDING = Wording(
    started="%(detail)s",
    still="Batches of %(key)s still not acknowledged: %(count)s more retries in the last "
    "%(interval)s; latest: %(detail)s",
    cleared="Batches of %(key)s are acknowledged again after %(total)s retries in %(duration)s",
)
_REJECTED_WORDING = Wording(
    started="Hub rejected a batch: %(detail)s",
    still="Hub still rejects batches: %(count)s more rejections in the last %(interval)s; "
    "latest: %(detail)s",
    cleared="Hub accepts batches again after %(total)s rejection(s) in %(duration)s",
)
_MALFORMED_WORDING = Wording(
    started="Ignored a malformed ack on %(key)s: %(detail)s",
    still="Still ignoring malformed acks on %(key)s: %(count)s more in the last %(interval)s; "
    "latest: %(detail)s",
    cleared="Acks on %(key)s are well-formed again after %(total)s malformed one(s) in "
    "%(duration)s",
)


class BatchRejectedError(RuntimeError):
    """The hub refused a batch; its reason is the message."""


@dataclass(slots=True)
class UplinkStats:
    """Counters the demo, `status` and tests read; cumulative since start."""

    batches: int = 0
    events: int = 0
    gaps: int = 0
    bytes_sent: int = 0
    """Encoded bytes of acked batches (each batch once)."""
    raw_bytes: int = 0
    retries: int = 0
    last_ack_at: float | None = None
    bytes_published: int = 0
    """Encoded bytes of every publish, retries included: what the link carried."""
    throttled_seconds: float = 0.0
    """Time senders waited for the bandwidth cap's tokens, summed over streams."""
    budget_spent_today: int = 0
    budget_stops: int = 0
    """How many days the daily budget ran out (each stop is logged once); kept over restarts."""
    batch_sizes: dict[str, int] = field(default_factory=dict)
    """Current adaptive batch size (events) per stream."""


class Uplink:
    """Replicates the marked streams of an outbox to the hub."""

    def __init__(
        self,
        config: UplinkConfig,
        outbox: Outbox,
        device_id: str,
        streams: list[str],
        *,
        wall_clock: Callable[[], float] = time.time,
        budget_recheck: float = 60.0,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.device_id = device_id
        self.streams = streams
        self._stats = UplinkStats()
        for name in sorted(set(config.streams) - set(streams)):
            log.warning("uplink.streams names %s, which is not a stream with uplink: true; "
                        "its settings are ignored", name)  # fmt: skip
        self._pending: dict[str, asyncio.Future[Ack]] = {}
        self._retries = ConditionLog("uplink", logger=log, wording=_RETRY_WORDING)
        self._rejections = ConditionLog(
            "uplink", logger=log, wording=_REJECTED_WORDING, level=logging.ERROR
        )
        self._malformed = ConditionLog("uplink", logger=log, wording=_MALFORMED_WORDING)
        self._hmac_key = load_device_key(config.hmac_key_file) if config.hmac_key_file else None
        self._dictionary = (
            load_dictionary(config.dictionary_file) if config.dictionary_file else None
        )
        self._state = StateWriter(outbox)
        self._sizers = {s: self._sizer() for s in streams}
        self.bucket = _bucket(config.max_bytes_per_second)
        self.budget = _budget(config.daily_budget, wall_clock, budget_recheck)
        if self.budget is not None:
            self.budget.on_change = self._save_budget
        broker = link_settings(config)
        self.connection = MqttConnection(
            broker,
            client_id=broker.client_id or f"edgestream-{device_id}-uplink",
            clean_session=False,
            subscriptions=[(ack_topic(config.topic_prefix, device_id), 1)],
            on_message=self._on_ack,
            name="uplink",
        )

    @property
    def stats(self) -> UplinkStats:
        """The counters, with the live figures of the budget, the cap and the batch sizes."""
        stats = self._stats
        stats.batch_sizes = {stream: sizer.size for stream, sizer in self._sizers.items()}
        if self.bucket is not None:
            stats.throttled_seconds = self.bucket.waited
        if self.budget is not None:
            self.budget.allows(0)  # rolls the day over, so a stale count is not shown
            stats.budget_spent_today, stats.budget_stops = self.budget.spent, self.budget.stops
        return stats

    async def run(self) -> None:
        """Connect and drain every uplink stream until cancelled."""
        saved = await self._state.load()
        if self.budget is not None:
            self.budget.restore(saved.get(BUDGET_STATE))
        drains = [StreamDrain(self.config, self.outbox, s, self._state) for s in self.streams]
        for drain in drains:
            await drain.restore(saved)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.connection.run(), name="edgestream[uplink].mqtt")
                tasks.create_task(self._state.run(), name="edgestream[uplink].state")
                for notice in set_aside.pending(saved):
                    name = f"edgestream[uplink.{notice.stream}].set_aside"
                    tasks.create_task(self._report_set_aside(notice), name=name)
                for drain in drains:
                    name = f"edgestream[uplink.{drain.stream}]"
                    tasks.create_task(self._drain(drain), name=name)
        finally:
            await self._save_on_stop()

    async def _save_on_stop(self) -> None:
        """Save the last ranges and byte count on the way out, so a restart resends less.

        Bounded: a queue that cannot commit now must not hold up the daemon's stop.
        """
        try:
            async with asyncio.timeout(5.0):
                await self._state.flush()
        except Exception as exc:  # the stop goes on; a restart resends, the hub dedupes
            log.warning("Could not save the uplink state on stop: %s", exc)

    async def _drain(self, drain: StreamDrain) -> None:
        """Send batches one after another while a companion task commits the cursor."""
        broker = self.config.broker
        backoff = Backoff(broker.backoff_initial, broker.backoff_max)
        sizer = self._sizers[drain.stream]
        async with asyncio.TaskGroup() as tasks:
            name = f"edgestream[uplink.{drain.stream}].cursor"
            tasks.create_task(drain.commit_cursor(), name=name)
            while True:
                planned = await drain.next_batch(sizer.size)  # Step 1
                try:
                    round_trip = await self._deliver(planned)  # Steps 2 and 3
                except (TimeoutError, BatchRejectedError, MqttPublishError) as exc:
                    if not isinstance(exc, BatchRejectedError):
                        sizer.failed()
                    await self._retry_later(planned, exc, backoff)
                    continue
                sizer.acked(round_trip, len(planned.batch.events))
                backoff.reset()
                self._retries.cleared(key=drain.stream)
                drain.acked(planned)  # Step 4

    async def _report_set_aside(self, notice: set_aside.SetAsideRange) -> None:
        """Tell the hub, until it acknowledges, which numbers of an old epoch are gone."""
        backoff = Backoff(self.config.broker.backoff_initial, self.config.broker.backoff_max)
        while True:
            batch = notice.batch(self.device_id, time.time())
            data = await self._encode(batch)
            await self.connection.wait_connected()
            try:
                await self._send_one(batch, data)
            except (TimeoutError, BatchRejectedError, MqttPublishError) as exc:
                self._retries.failed(f"Set-aside gap of {notice.stream} not acknowledged "
                                     f"({_why(exc)})", key=notice.state_name,
                                     kind=type(exc).__name__)  # fmt: skip
                await asyncio.sleep(backoff.next_delay())
                continue
            self._retries.cleared(key=notice.state_name)
            self._stats.gaps += notice.last_seq - notice.first_seq + 1
            self._state.put(notice.state_name, b"")
            log.info("Hub acknowledged the set-aside gap %s %d-%d of epoch %s", notice.stream,
                     notice.first_seq, notice.last_seq, notice.epoch)  # fmt: skip
            return

    async def _retry_later(self, planned: PlannedBatch, exc: Exception, backoff: Backoff) -> None:
        self._stats.retries += 1
        delay = backoff.next_delay()
        size = self._sizers[planned.batch.stream].size
        stream = planned.batch.stream
        self._retries.failed(
            f"Batch {_first_to_last(planned)} of {stream} not acknowledged ({_why(exc)}); "
            f"retrying in {delay:.1f}s with at most {size} events",
            key=stream,
            kind=type(exc).__name__,
        )
        await asyncio.sleep(delay)

    async def _deliver(self, planned: PlannedBatch) -> float:
        """Encode, pass the budget and the cap, publish, wait for the ack; the round trip."""
        outbox_batch = planned.batch
        batch = Batch(
            self.device_id, self.outbox.epoch, outbox_batch.stream,
            outbox_batch.events, outbox_batch.gaps, outbox_batch.upto_seq, time.time(),
        )  # fmt: skip
        data = await self._encode(batch)
        await self.connection.wait_connected()
        await self._gate(outbox_batch.stream, len(data))
        started = time.monotonic()
        ack = await self._send_one(batch, data)
        self._count(batch, data, ack)
        return time.monotonic() - started

    async def _gate(self, stream: str, size: int) -> None:
        """Wait for the cap's tokens, then the budget; count the bytes as spent at once.

        No await lies between the budget's check and the spend, so concurrent senders
        can never together pass the budget.
        """
        settings: UplinkStreamConfig = self.config.stream(stream)
        if self.bucket is not None:
            await self.bucket.acquire(size, settings.priority)
        if self.budget is not None:
            if not settings.budget_exempt:
                await self.budget.wait_for(size)
            self.budget.spend(size)
        self._stats.bytes_published += size

    def _save_budget(self) -> None:
        assert self.budget is not None
        self._state.put(BUDGET_STATE, self.budget.snapshot())

    async def _encode(self, batch: Batch) -> bytes:
        encoder = functools.partial(
            encode, batch, self.config.compression_level,
            version=self.config.wire_version, dictionary=self._dictionary,
            hmac_key=self._hmac_key,
        )  # fmt: skip
        if len(batch.events) > 200:
            return await asyncio.to_thread(encoder)
        return encoder()

    async def _send_one(self, batch: Batch, data: bytes) -> Ack:
        """Publish one batch and wait for the hub's verdict (Steps 2 and 3)."""
        waiter: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[batch.batch_id] = waiter
        try:
            async with asyncio.timeout(self.config.ack_timeout):
                await self.connection.publish(
                    up_topic(self.config.topic_prefix, self.device_id), data, qos=self.config.qos
                )
                return await waiter
        finally:
            self._pending.pop(batch.batch_id, None)

    def _on_ack(self, message: MqttMessage) -> None:
        try:
            ack = Ack.from_bytes(message.payload, self._hmac_key)
        except WireFormatError as exc:
            self._malformed.failed(str(exc), key=message.topic, kind="malformed")
            return
        self._malformed.cleared(key=message.topic)
        if ack.status != "ok":
            self._fail_pending(ack.reason or "rejected by the hub", ack.batch_id)
            return
        self._rejections.cleared()
        waiter = self._pending.get(ack.batch_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(ack)

    def _fail_pending(self, reason: str, batch_id: str) -> None:
        """A rejection names its batch when the hub could decode it; else all in flight."""
        self._rejections.failed(reason)
        targets = [batch_id] if batch_id in self._pending else list(self._pending)
        for target in targets:
            waiter = self._pending[target]
            if not waiter.done():
                waiter.set_exception(BatchRejectedError(reason))

    def _count(self, batch: Batch, data: bytes, ack: Ack) -> None:
        stats = self._stats
        stats.batches += 1
        stats.events += len(batch.events)
        stats.gaps += sum(g.count for g in batch.gaps)
        stats.bytes_sent += len(data)
        stats.raw_bytes += sum(len(e.payload) for e in batch.events)
        stats.last_ack_at = time.time()
        if ack.duplicates:
            log.info("Hub already had %d events of batch %s", ack.duplicates, batch.batch_id)

    def _sizer(self) -> BatchSizer:
        cfg = self.config
        return BatchSizer(cfg.batch_min_events, cfg.batch_max_events, cfg.ack_timeout,
                          cfg.adaptive_batch)  # fmt: skip


def _why(exc: Exception) -> str:
    return str(exc) or ("no ack in time" if isinstance(exc, TimeoutError) else type(exc).__name__)


def _first_to_last(planned: PlannedBatch) -> str:
    return f"{planned.after + 1}-{planned.batch.upto_seq}"


def _bucket(rate: int | None) -> TokenBucket | None:
    return None if rate is None else TokenBucket(float(rate))


def _budget(limit: int | None, clock: Callable[[], float], recheck: float) -> DailyBudget | None:
    return None if limit is None else DailyBudget(limit, clock, recheck)


def link_settings(config: UplinkConfig) -> MqttConnectionConfig:
    """The broker settings with the uplink's own connect timeout, keepalive and backoff."""
    broker = config.broker
    backoff_max = config.reconnect_backoff_max or broker.backoff_max
    return dataclasses.replace(
        broker,
        connect_timeout=config.connect_timeout or broker.connect_timeout,
        keepalive=broker.keepalive if config.keepalive is None else config.keepalive,
        backoff_max=backoff_max,
        backoff_initial=min(broker.backoff_initial, backoff_max),
    )
