"""The MQTT source in process against a real broker: retained replays, backpressure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agent.config.load import parse_agent_config
from agent.queue import DurableQueue, StreamLimits
from agent.sources import mqtt as source_module
from agent.sources.mqtt import MqttSource
from tests.brokers import MosquittoBroker
from tests.e2e.harness import Publisher, query

CONFIG = """\
device_id: pi
streams: {{s: {{}}}}
sources:
  - type: mqtt
    name: src
    stream: s
    broker: {{url: "{url}", backoff_initial: 100ms, backoff_max: 500ms}}
    topics: ["cfg/#"]
"""


async def stored(queue: DurableQueue) -> int:
    return queue.last_seq("s")


async def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_retained_message_is_stored_once_across_reconnects(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    publisher = Publisher(mosquitto.url)
    publisher.client.publish("cfg/dev1", b'{"gain": 2}', qos=1, retain=True).wait_for_publish(5)
    publisher.close()
    config = parse_agent_config(CONFIG.format(url=mosquitto.url))
    queue = await DurableQueue.open(
        tmp_path, {"s": StreamLimits(1 << 20, 3600.0)}, commit_interval=0.01
    )
    source = MqttSource(config.sources[0], queue, "pi", 1000)
    async with asyncio.TaskGroup() as group:
        task = group.create_task(source.run())
        assert await wait_for(lambda: stored(queue))
        for _ in range(2):
            mosquitto.stop()
            mosquitto.start()
            assert await source.connection.wait_connected(15)
            await asyncio.sleep(0.5)
        task.cancel()
    assert queue.last_seq("s") == 1
    assert source.stats.retained_repeats >= 1
    # A changed retained value is new data and is stored.
    publisher = Publisher(mosquitto.url)
    publisher.client.publish("cfg/dev1", b'{"gain": 3}', qos=1, retain=True).wait_for_publish(5)
    publisher.close()
    source = MqttSource(config.sources[0], queue, "pi", 1000)
    async with asyncio.TaskGroup() as group:
        task = group.create_task(source.run())
        assert await wait_for(lambda: _at_least(queue, 2))
        task.cancel()
    await queue.close()


async def _at_least(queue: DurableQueue, n: int) -> bool:
    return queue.last_seq("s") >= n


async def test_a_full_block_stream_holds_acks_back_until_room_frees(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    config = parse_agent_config(CONFIG.format(url=mosquitto.url))
    limits = {"s": StreamLimits(2000, 3600.0, "block")}
    queue = await DurableQueue.open(tmp_path, limits, commit_interval=0.01)
    await queue.register_consumers({"s": ["reader"]})
    source = MqttSource(config.sources[0], queue, "pi", 1000)
    async with asyncio.TaskGroup() as group:
        task = group.create_task(source.run())
        assert await source.connection.wait_connected(10)
        publisher = Publisher(mosquitto.url)
        publisher.publish_many((f"cfg/d{i}", b'{"v": %d}' % i) for i in range(50))
        assert await wait_for(lambda: _at_least(queue, 50))  # the stream is now over its limit
        publisher.publish_many((f"cfg/d{i}", b'{"v": %d}' % i) for i in range(50, 100))
        publisher.close()
        await asyncio.sleep(1.5)
        assert queue.last_seq("s") == 50  # the second wave waits at the broker, unacked
        position = 0
        while position < 100:  # a consumer frees room; everything arrives, in order
            batch = await queue.read_after("s", position, 10, 1 << 20)
            if batch.events:
                position = batch.upto_seq
                await queue.ack("s", "reader", position)
            else:
                await queue.wait_for_data("s", position, 5)
        task.cancel()
    assert queue.last_seq("s") == 100
    await queue.close()


async def test_redelivery_marks_are_pruned_once_their_acks_are_surely_delivered(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: Any
) -> None:
    monkeypatch.setattr(source_module, "MARK_HORIZON", 0.5)
    monkeypatch.setattr(source_module, "PRUNE_EVERY", 0.1)
    config = parse_agent_config(CONFIG.format(url=mosquitto.url))
    queue = await DurableQueue.open(
        tmp_path, {"s": StreamLimits(1 << 20, 3600.0)}, commit_interval=0.01
    )
    source = MqttSource(config.sources[0], queue, "pi", 1000)
    marks = tmp_path / "queue.db"
    async with asyncio.TaskGroup() as group:
        task = group.create_task(source.run())
        assert await source.connection.wait_connected(10)
        publisher = Publisher(mosquitto.url)
        publisher.publish_many((f"cfg/d{i}", b'{"v": %d}' % i) for i in range(20))
        assert await wait_for(lambda: _at_least(queue, 20))
        assert query(marks, "SELECT count(*) FROM mqtt_inflight") == [(20,)]
        await asyncio.sleep(0.7)
        publisher.publish_many(iter([("cfg/late", b'{"v": 99}')]))  # the next commit prunes
        publisher.close()
        assert await wait_for(lambda: _at_least(queue, 21))
        task.cancel()
    assert query(marks, "SELECT count(*) FROM mqtt_inflight") == [(1,)]
    await queue.close()


async def test_qos1_ack_only_after_commit_survives_a_full_disk(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """Disk full: nothing is acked, so the broker keeps the messages for the next run."""
    config = parse_agent_config(CONFIG.format(url=mosquitto.url))
    limits = {"s": StreamLimits(1 << 20, 3600.0)}
    queue = await DurableQueue.open(tmp_path, limits, commit_interval=0.01)
    source = MqttSource(config.sources[0], queue, "pi", 1000)
    async with asyncio.TaskGroup() as group:
        task = group.create_task(source.run())
        assert await source.connection.wait_connected(10)
        await queue.transact(lambda tx: tx._conn.execute("PRAGMA max_page_count = 1"))
        publisher = Publisher(mosquitto.url)
        publisher.publish_many(
            (f"cfg/d{i}", b'{"v": %d, "pad": "%s"}' % (i, b"x" * 500)) for i in range(10)
        )
        publisher.close()
        await asyncio.sleep(1.0)
        assert queue.last_seq("s") == 0 and source.stats.received == 10
        task.cancel()  # the agent stops while its disk is full: nothing was acknowledged
    await queue.close()

    queue = await DurableQueue.open(tmp_path, limits, commit_interval=0.01)  # space is back
    source = MqttSource(config.sources[0], queue, "pi", 1000)
    async with asyncio.TaskGroup() as group:
        task = group.create_task(source.run())
        assert await wait_for(lambda: _at_least(queue, 10))
        await asyncio.sleep(0.5)
        task.cancel()
    batch = await queue.read_after("s", 0, 100, 1 << 20)
    assert [e.topic for e in batch.events] == [f"cfg/d{i}" for i in range(10)]
    await queue.close()
