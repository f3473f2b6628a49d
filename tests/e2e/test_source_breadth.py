"""The widened MQTT source against real Mosquitto brokers.

Shared subscriptions split one topic's messages between sources, two brokers feed one
stream, MQTT 5 user properties arrive in headers, and a per-topic rate limit drops
(and counts) the excess while still acknowledging it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config.load import parse_agent_config
from agent.config.mqtt_source import MqttSourceConfig
from agent.queue import DurableQueue, StreamLimits
from agent.sources.mqtt import MqttSource
from sync.outbox import StoredEvent
from tests.brokers import BrokerFactory, MosquittoBroker
from tests.e2e.harness import Publisher

SOURCE = """\
  - type: mqtt
    name: {name}
    stream: {stream}
    broker: {{url: "{url}", protocol: "{protocol}", backoff_initial: 100ms}}
    topics: ["{topic}"]
{extra}"""


def sources(*entries: dict[str, str]) -> list[MqttSourceConfig]:
    text = "device_id: pi\nstreams: {s: {}, t: {}}\nsources:\n"
    for entry in entries:
        fields = {"stream": "s", "protocol": "3.1.1", "extra": "", **entry}
        text += SOURCE.format(**fields)
    parsed = [s for s in parse_agent_config(text).sources if isinstance(s, MqttSourceConfig)]
    assert len(parsed) == len(entries)
    return parsed


async def open_queue(tmp_path: Path) -> DurableQueue:
    limits = {name: StreamLimits(1 << 24, 3600.0) for name in ("s", "t")}
    return await DurableQueue.open(tmp_path / "q", limits, commit_interval=0.01)


async def events(queue: DurableQueue, stream: str) -> list[StoredEvent]:
    batch = await queue.read_after(stream, 0, 100_000, 1 << 26)
    return list(batch.events)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def run_sources(
    queue: DurableQueue,
    configs: list[MqttSourceConfig],
    body: Callable[[list[MqttSource]], Awaitable[None]],
) -> list[MqttSource]:
    running = [MqttSource(c, queue, "pi", 1000) for c in configs]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(s.run()) for s in running]
        for source in running:
            assert await source.connection.wait_connected(10)
        await asyncio.sleep(0.3)  # subscriptions are sent right after CONNACK
        await body(running)
        for task in tasks:
            task.cancel()
    return running


async def test_a_shared_subscription_splits_messages_between_sources_exactly_once(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    shared = "$share/edge/plant/#"
    configs = sources(
        {"name": "a", "url": mosquitto.url, "topic": shared},
        {"name": "b", "url": mosquitto.url, "topic": shared, "stream": "t", "protocol": "5"},
    )
    queue = await open_queue(tmp_path)

    async def publish(running: list[MqttSource]) -> None:
        publisher = Publisher(mosquitto.url)
        await asyncio.to_thread(
            publisher.publish_many, ((f"plant/{i % 7}", b'{"n": %d}' % i) for i in range(600))
        )
        publisher.close()

        async def all_stored() -> bool:
            return queue.last_seq("s") + queue.last_seq("t") >= 600

        await eventually(all_stored)
        await asyncio.sleep(0.3)

    await run_sources(queue, configs, publish)
    first, second = await events(queue, "s"), await events(queue, "t")
    numbers = [orjson.loads(e.payload)["n"] for e in first + second]
    assert sorted(numbers) == list(range(600))  # each message once, in one of the two
    assert first and second  # the broker shared the load
    await queue.close()


async def test_two_brokers_feed_one_stream(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    one, two = mosquitto_factory(), mosquitto_factory()
    configs = sources(
        {"name": "one", "url": one.url, "topic": "x/#", "extra": "    tags: {broker: one}\n"},
        {"name": "two", "url": two.url, "topic": "x/#", "extra": "    tags: {broker: two}\n"},
    )
    queue = await open_queue(tmp_path)

    async def publish(running: list[MqttSource]) -> None:
        for broker in (one, two):
            publisher = Publisher(broker.url, client_id=f"pub-{broker.port}")
            await asyncio.to_thread(
                publisher.publish_many, ((f"x/{i}", b'{"n": %d}' % i) for i in range(50))
            )
            publisher.close()

        async def all_stored() -> bool:
            return queue.last_seq("s") >= 100

        await eventually(all_stored)

    await run_sources(queue, configs, publish)
    stored = [orjson.loads(e.payload) for e in await events(queue, "s")]
    assert sorted((p["broker"], p["n"]) for p in stored) == sorted(
        (b, n) for b in ("one", "two") for n in range(50)
    )
    await queue.close()


async def test_mqtt5_user_properties_arrive_in_the_event_headers(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    configs = sources({"name": "v5", "url": mosquitto.url, "topic": "p/#", "protocol": "5"})
    queue = await open_queue(tmp_path)

    async def publish(running: list[MqttSource]) -> None:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="pub-v5", protocol=mqtt.MQTTv5
        )
        client.connect("127.0.0.1", mosquitto.port)
        client.loop_start()
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.UserProperty = [("unit", "C"), ("origin", "plc-7")]
        client.publish("p/1", b'{"t": 21}', qos=1, properties=properties).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()

        async def stored() -> bool:
            return queue.last_seq("s") >= 1

        await eventually(stored)

    await run_sources(queue, configs, publish)
    (event,) = await events(queue, "s")
    assert event.headers == {"user_properties": {"unit": "C", "origin": "plc-7"}}
    await queue.close()


async def test_a_rate_limited_topic_is_capped_counted_and_still_acknowledged(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    extra = "    rate_limit: {per_second: 1, burst: 5}\n    clean_session: false\n"
    configs = sources({"name": "rl", "url": mosquitto.url, "topic": "r/#", "extra": extra})
    queue = await open_queue(tmp_path)

    async def publish(running: list[MqttSource]) -> None:
        publisher = Publisher(mosquitto.url)
        await asyncio.to_thread(
            publisher.publish_many,
            [("r/noisy", b'{"n": %d}' % i) for i in range(200)] + [("r/quiet", b'{"n": 0}')],
        )
        publisher.close()

        async def seen_all() -> bool:
            return sum(s.stats.received for s in running) >= 201

        await eventually(seen_all)
        await asyncio.sleep(0.3)

    (source,) = await run_sources(queue, configs, publish)
    stored = await events(queue, "s")
    noisy = [e for e in stored if e.topic == "r/noisy"]
    assert 5 <= len(noisy) <= 8  # the burst, plus what one per second refilled meanwhile
    assert [e.topic for e in stored].count("r/quiet") == 1  # its own bucket
    (stats,) = [s for s in await queue.stats() if s.name == "s"]
    assert stats.counters["rate_limited"] == 200 - len(noisy) == source.stats.rate_limited
    # Everything was acknowledged: the same session gets nothing more after a reconnect.
    again = await run_sources(queue, configs, lambda _: asyncio.sleep(1.0))
    assert again[0].stats.received == 0
    await queue.close()
