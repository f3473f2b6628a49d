"""The MQTT republish sink against a real broker: each new event once, in order, with origin."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sync.config.errors import ConfigError
from sync.config.spec import load_config
from sync.hub.config import HubConfig
from sync.hub.republish import Republisher
from sync.hub.republish_config import RepublishConfig
from sync.hub.service import Hub
from sync.hub.store import SqliteCentralStore
from sync.mqtt.config import MqttConnectionConfig
from sync.mqtt.connection import MqttConnection
from sync.mqtt.message import MqttMessage
from sync.outbox import StoredEvent
from sync.wire import Batch, decode, encode
from tests.brokers import MosquittoBroker


def batch(device: str, first: int, last: int, key: str | None = "k/1") -> bytes:
    events = [
        StoredEvent(s, 1000.0 + s, 1000.0 + s, key, "plant/x", b'{"n": %d}' % s)
        for s in range(first, last + 1)
    ]
    return encode(Batch(device, "e1", "temps", events, [], last))


async def until(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def config(mosquitto: MosquittoBroker) -> tuple[MqttConnectionConfig, HubConfig]:
    broker = MqttConnectionConfig(url=mosquitto.url, protocol="5", backoff_max=1.0)
    republish = RepublishConfig(topic="fleet/{device}/{stream}/{key}", read_batch=7)
    return broker, HubConfig(broker=broker, republish=republish)


async def test_committed_events_are_republished_once_in_order_with_their_origin(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    broker, hub_config = config(mosquitto)
    assert hub_config.republish is not None
    store = SqliteCentralStore(tmp_path / "central.db", republish=True)
    sink = Republisher(hub_config.republish, broker, store, "hub")
    hub = Hub(hub_config, store, sink)
    seen: list[MqttMessage] = []
    watcher = MqttConnection(
        broker, client_id="dashboard", subscriptions=[("fleet/#", 1)],
        on_message=seen.append, name="dashboard",
    )  # fmt: skip
    device = MqttConnection(broker, client_id="pi-1", name="pi-1")
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(c.run()) for c in (hub, watcher, device)]
        for connection in (hub.connection, watcher, device, sink.connection):
            assert await connection.wait_connected(10)
        await asyncio.sleep(0.3)
        for first, last in ((1, 10), (1, 10), (5, 25)):  # a retry and an overlapping resend
            await device.publish("edgestream/pi-1/up", batch("pi-1", first, last), qos=1)
        await until(lambda: len(seen) >= 25)
        await asyncio.sleep(0.5)  # a wrongly repeated event would arrive meanwhile
        for task in tasks:
            task.cancel()
    store.close_now()
    assert [m.topic for m in seen] == ["fleet/pi-1/temps/k_1"] * 25  # `/` in the key made safe
    assert [m.payload for m in seen] == [b'{"n": %d}' % s for s in range(1, 26)]
    origin = dict(seen[-1].user_properties)
    assert origin == {
        "device": "pi-1", "epoch": "e1", "stream": "temps", "seq": "25", "event_time": "1025.0",
    }  # fmt: skip
    assert sink.stats.published == 25


async def test_events_not_yet_republished_when_the_hub_stopped_go_out_after_restart(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    broker, hub_config = config(mosquitto)
    assert hub_config.republish is not None
    store = SqliteCentralStore(tmp_path / "central.db", republish=True)
    store.commit_now([decode(batch("pi-2", 1, 30, key=None))])  # committed, hub "down"
    store.republish_done(10)  # the first 10 went out before the stop
    seen: list[MqttMessage] = []
    watcher = MqttConnection(
        broker, client_id="dashboard2", subscriptions=[("fleet/#", 1)],
        on_message=seen.append, name="dashboard",
    )  # fmt: skip
    sink = Republisher(hub_config.republish, broker, store, "hub")
    async with asyncio.TaskGroup() as group:
        watching = group.create_task(watcher.run())
        assert await watcher.wait_connected(10)
        await asyncio.sleep(0.3)
        running = group.create_task(sink.run())
        await until(lambda: len(seen) >= 20)
        await asyncio.sleep(0.3)
        running.cancel()
        watching.cancel()
    assert [m.payload for m in seen] == [b'{"n": %d}' % s for s in range(11, 31)]
    assert {m.topic for m in seen} == {"fleet/pi-2/temps/_"}
    assert store.republish_pending(100) == []
    store.close_now()


def test_republish_is_refused_with_another_store() -> None:
    text = (
        'broker: {url: "mqtt://127.0.0.1:1"}\n'
        "store: {type: jetstream}\n"
        "republish: {topic: 'fleet/{device}/{nope}'}\n"
    )
    try:
        load_config(HubConfig, text, "hub.yaml", {})
    except ConfigError as error:
        lines = str(error).splitlines()
    else:
        raise AssertionError("accepted")
    assert any("republish: needs the sqlite store" in line for line in lines), lines
    assert any("unknown placeholder {nope}" in line for line in lines), lines
