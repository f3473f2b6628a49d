"""The hub against a real broker: hostile batches are rejected, good ones still commit."""

from __future__ import annotations

import asyncio
import sqlite3
import struct
import zlib
from pathlib import Path

from sync.hub.config import HubConfig
from sync.hub.service import Hub
from sync.hub.store import SqliteCentralStore
from sync.mqtt.config import MqttConnectionConfig
from sync.mqtt.connection import MqttConnection
from sync.outbox import StoredEvent
from sync.wire import Ack, Batch, encode
from tests.brokers import MosquittoBroker


def good_batch(device: str) -> bytes:
    events = [StoredEvent(s, 1.0, 1.0, None, "t", b"%d" % s) for s in (1, 2, 3)]
    return encode(Batch(device, "e", "s", events, [], 3))


def no_count_batch() -> bytes:
    header = b'{"device":"devA","epoch":"e","stream":"s","upto_seq":0,"gaps":[]}'
    data = struct.pack(">BBI", 1, 0, len(header)) + header + b"[]"
    return data + struct.pack(">I", zlib.crc32(data))


async def test_hostile_batches_are_rejected_and_the_hub_keeps_committing(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    broker = MqttConnectionConfig(url=mosquitto.url, backoff_initial=0.2, backoff_max=1.0)
    store = SqliteCentralStore(tmp_path / "central.db")
    hub = Hub(HubConfig(broker=broker), store)
    acks: list[Ack] = []
    device = MqttConnection(
        broker, client_id="devA", subscriptions=[("edgestream/devA/ack", 1)],
        on_message=lambda m: acks.append(Ack.from_bytes(m.payload)), name="devA",
    )  # fmt: skip
    async with asyncio.TaskGroup() as group:
        hub_task = group.create_task(hub.run())
        dev_task = group.create_task(device.run())
        assert await hub.connection.wait_connected(10)
        assert await device.wait_connected(10)
        for payload in (b"garbage", good_batch("devB"), no_count_batch(), good_batch("devA")):
            await device.publish("edgestream/devA/up", payload, qos=1)
        for _ in range(100):
            if len(acks) >= 4:
                break
            await asyncio.sleep(0.1)
        hub_task.cancel()
        dev_task.cancel()
    store.close_now()
    assert sorted(a.status for a in acks) == ["ok", "rejected", "rejected", "rejected"]
    reasons = " | ".join(a.reason for a in acks)
    assert "batch too short" in reasons
    assert "arrived on the topic of 'devA'" in reasons
    assert "malformed batch fields" in reasons
    rows = sqlite3.connect(tmp_path / "central.db").execute("SELECT device, seq FROM events")
    assert sorted(rows) == [("devA", 1), ("devA", 2), ("devA", 3)]
    assert hub.stats.rejected == 3


async def test_a_flood_of_batches_from_many_devices_is_all_committed_and_acked(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """More batches at once than the hub holds: it pauses reading, and still acks them all.

    Acks once went out on the receiving connection: with its reading paused (more than
    256 batches waiting) the ack's PUBACK could not be read, the commit loop waited for
    it forever and the hub stopped (found by bench/hub_fleet.py with 1,000 devices).
    """
    devices = 600
    broker = MqttConnectionConfig(url=mosquitto.url, backoff_initial=0.2, backoff_max=1.0)
    store = SqliteCentralStore(tmp_path / "central.db")
    hub = Hub(HubConfig(broker=broker), store)
    acked: set[str] = set()
    fleet = MqttConnection(
        broker, client_id="fleet", subscriptions=[("edgestream/+/ack", 1)],
        on_message=lambda m: acked.add(m.topic.split("/")[1]), name="fleet",
    )  # fmt: skip
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(c.run()) for c in (fleet, hub)]
        assert await fleet.wait_connected(10)
        assert await hub.connection.wait_connected(10)
        await asyncio.sleep(0.3)  # the hub's subscription is in place
        sends = [
            fleet.publish(f"edgestream/dev{i}/up", good_batch(f"dev{i}"), qos=1)
            for i in range(devices)
        ]
        await asyncio.gather(*sends)
        for _ in range(300):
            if len(acked) >= devices:
                break
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
    store.close_now()
    assert len(acked) == devices
    assert hub.stats.events == 3 * devices
