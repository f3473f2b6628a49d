"""The hub's MQTT republish sink: committed events on a topic tree, for MQTT-only consumers.

Dashboards, Node-RED and Home Assistant speak MQTT, not SQL or JetStream. The sink
reads what the store queued for it (every newly committed event, never a duplicate;
see `republish_outbox`), publishes each event's payload on a topic built from the
template, in commit order, waits for the broker's acknowledgements, and only then
forgets those rows. A hub that stops or crashes in between publishes them again:
delivery to MQTT consumers is at least once, and in MQTT 5 each message carries
its origin as user properties (device, epoch, stream, seq) to recognise a repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from typing import Protocol

from sync.hub.republish_config import RepublishConfig
from sync.hub.republish_outbox import Pending
from sync.mqtt.config import MqttConnectionConfig
from sync.mqtt.connection import MqttConnection
from sync.mqtt.errors import MqttPublishError
from sync.mqtt.topics import topic_level, topic_safe

log = logging.getLogger(__name__)

IDLE_POLL = 1.0
"""Seconds between looks at the outbox when no commit woke the sink."""


class RepublishQueue(Protocol):
    """What the sink needs of the store (SqliteCentralStore provides it)."""

    def republish_pending(self, limit: int) -> list[Pending]:
        """The oldest events not yet republished."""
        ...

    def republish_done(self, upto_id: int) -> None:
        """Everything up to `upto_id` was published."""
        ...


@dataclass(slots=True)
class RepublishStats:
    """Counters of the sink since start."""

    published: int = 0
    refused: int = 0


class Republisher:
    """Publishes the store's queued events, in order, acknowledged, then forgets them."""

    def __init__(
        self,
        config: RepublishConfig,
        hub_broker: MqttConnectionConfig,
        queue: RepublishQueue,
        hub_id: str,
    ) -> None:
        self.config = config
        self.queue = queue
        self.stats = RepublishStats()
        self._wake = asyncio.Event()
        broker = config.broker or replace(hub_broker, client_id=None)
        self.connection = MqttConnection(
            broker,
            client_id=broker.client_id or f"edgestream-hub-{hub_id}-republish",
            clean_session=False,
            name=f"hub.{hub_id}.republish",
        )

    def wake(self) -> None:
        """A commit queued new events: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Connect and republish until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.connection.run(), name="edgestream[hub].republish.mqtt")
            tasks.create_task(self._loop(), name="edgestream[hub].republish")

    async def _loop(self) -> None:
        while True:
            rows = await asyncio.to_thread(self.queue.republish_pending, self.config.read_batch)
            if not rows:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_POLL):  # not wait_for: see durable.py
                        await self._wake.wait()
                self._wake.clear()
                continue
            await asyncio.gather(*(self._publish(row) for row in rows))
            await asyncio.to_thread(self.queue.republish_done, rows[-1].id)

    async def _publish(self, row: Pending) -> None:
        """Publish one event; one the broker refuses is counted and skipped, not retried."""
        try:
            await self.connection.publish(
                self.topic_for(row), row.event.payload, self.config.qos, self.config.retain,
                origin(row),
            )  # fmt: skip
            self.stats.published += 1
        except (ValueError, MqttPublishError) as exc:
            self.stats.refused += 1
            log.warning("Republish skipped %s/%s/%d: %s", row.device, row.stream,
                        row.event.seq, exc)  # fmt: skip

    def topic_for(self, row: Pending) -> str:
        """Fill the topic template; every value is made safe for a topic name."""
        return self.config.topic.format_map(
            {
                "device": topic_level(row.device),
                "epoch": topic_level(row.epoch),
                "stream": topic_level(row.stream),
                "key": topic_level(row.event.key or "_"),
                "seq": str(row.event.seq),
                "topic": topic_safe(row.event.topic or "_"),
            }
        )


def origin(row: Pending) -> tuple[tuple[str, str], ...]:
    """MQTT 5 user properties naming the event, so a consumer can drop a repeat."""
    return (
        ("device", row.device),
        ("epoch", row.epoch),
        ("stream", row.stream),
        ("seq", str(row.event.seq)),
        ("event_time", repr(row.event.event_time)),
    )
