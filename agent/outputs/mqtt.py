"""The MQTT output: publish a stream's events to a broker, at least once, in order.

It reads the stream through its own cursor and moves the cursor only after the broker
acknowledged every message of the batch (PUBACK/PUBCOMP), so a crash or an outage
re-publishes rather than loses. Topics come from a template with `{device_id}`,
`{stream}`, `{key}` and `{topic}` (the event's original topic).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from agent.config.model import MqttOutputConfig
from agent.queue import DurableQueue, QueueError
from sync.backoff import retry_until_done
from sync.condition_log import ConditionLog, Wording
from sync.mqtt.connection import MqttConnection
from sync.mqtt.errors import MqttPublishError
from sync.mqtt.topics import topic_level, topic_safe
from sync.outbox import StoredEvent

log = logging.getLogger(__name__)

_SKIP_WORDING = Wording(
    started="Output %(subject)s %(detail)s",
    still="Output %(subject)s still skips events to %(key)s: %(count)s more in the last "
    "%(interval)s; latest: %(detail)s",
    cleared="Output %(subject)s publishes to %(key)s again after skipping %(total)s event(s) "
    "in %(duration)s",
)


@dataclass(slots=True)
class OutputStats:
    """Counters of one output since start."""

    published: int = 0
    refused: int = 0


class MqttOutput:
    """Publishes one stream to one broker."""

    def __init__(
        self, config: MqttOutputConfig, queue: DurableQueue, device_id: str, read_batch: int
    ) -> None:
        self.config = config
        self.queue = queue
        self.device_id = device_id
        self.read_batch = read_batch
        self.stats = OutputStats()
        self.consumer = f"output:{config.name}"
        self._reads_payload = "{payload." in config.topic
        self._skips = ConditionLog(config.name, logger=log, wording=_SKIP_WORDING)
        self.connection = MqttConnection(
            config.broker,
            client_id=config.broker.client_id or f"edgestream-{device_id}-out-{config.name}",
            clean_session=True,
            name=f"out.{config.name}",
        )

    async def run(self) -> None:
        """Connect and publish until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                self.connection.run(), name=f"edgestream[out.{self.config.name}].mqtt"
            )
            tasks.create_task(self._publish_loop(), name=f"edgestream[out.{self.config.name}].pub")

    async def _publish_loop(self) -> None:
        stream = self.config.stream
        position = await self.queue.cursor(stream, self.consumer)
        while True:
            batch = await self.queue.read_after(stream, position, self.read_batch, 1 << 24)
            if batch.empty:
                await self.queue.wait_for_data(stream, position, 5.0)
                continue
            await asyncio.gather(*(self._publish(e) for e in batch.events))
            await self._ack(stream, batch.upto_seq)
            position = batch.upto_seq

    async def _ack(self, stream: str, upto_seq: int) -> None:
        """Move the cursor; a failed commit is retried (republishing would duplicate)."""
        await retry_until_done(
            functools.partial(self.queue.ack, stream, self.consumer, upto_seq),
            what=f"Moving the cursor of output {self.config.name}",
            errors=(QueueError,),
            logger=log,
        )

    async def _publish(self, event: StoredEvent) -> None:
        """Publish one event; one the broker refuses is counted and skipped, not retried."""
        topic = self.topic_for(event)
        try:
            await self.connection.publish(topic, event.payload, self.config.qos, self.config.retain)
            self.stats.published += 1
        except (ValueError, MqttPublishError) as exc:
            self.stats.refused += 1
            kind = f"refused {exc.code}" if isinstance(exc, MqttPublishError) else "invalid"
            self._skips.failed(f"skipped event {event.seq}: {exc}", key=topic, kind=kind)
            return
        self._skips.cleared(key=topic)

    def topic_for(self, event: StoredEvent) -> str:
        """Fill the topic template; a missing key, topic or payload field becomes `_`.

        Values are made safe for a topic name: the wildcards `+` and `#` and NUL become
        `_` in every value, and `/` too in the key and payload fields (each is one level).
        """
        values: dict[str, str | PayloadField] = {
            "device_id": topic_level(self.device_id),
            "stream": topic_level(self.config.stream),
            "key": topic_level(event.key or "_"),
            "topic": topic_safe(event.topic or "_"),
        }
        if self._reads_payload:
            values["payload"] = PayloadField(_decoded(event.payload))
        return self.config.topic.format_map(values)


class PayloadField:
    """A payload value reachable as ``{payload.a.b}`` in a topic template."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def __getattr__(self, name: str) -> PayloadField:
        value = self._value
        return PayloadField(value.get(name) if type(value) is dict else None)

    def __format__(self, spec: str) -> str:
        value = self._value
        if value is None or type(value) in (dict, list):
            return "_"
        text = ("true" if value else "false") if type(value) is bool else str(value)
        return topic_level(text)


def _decoded(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
