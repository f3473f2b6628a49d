"""Per-device HMAC: with a key file the hub stores only batches signed by their device."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sync.hub.config import HubConfig
from sync.hub.service import Hub
from sync.hub.store import SqliteCentralStore
from sync.mqtt.config import MqttConnectionConfig
from sync.mqtt.connection import MqttConnection
from sync.outbox import StoredEvent
from sync.wire import Ack, Batch, encode
from tests.brokers import MosquittoBroker

KEY_A = bytes.fromhex("a1" * 32)
KEY_B = bytes.fromhex("b2" * 32)


def batch(device: str, first: int, key: bytes | None) -> bytes:
    events = [StoredEvent(s, 1.0, 1.0, None, "t", b"%d" % s) for s in (first, first + 1)]
    return encode(Batch(device, "e", "s", events, [], first + 1), hmac_key=key)


async def test_only_batches_signed_by_their_own_device_are_stored(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    keys = tmp_path / "device-keys"
    keys.write_text(f"pi-a {KEY_A.hex()}\npi-b {KEY_B.hex()}\n")
    broker = MqttConnectionConfig(url=mosquitto.url, backoff_max=1.0)
    store = SqliteCentralStore(tmp_path / "central.db")
    hub = Hub(HubConfig(broker=broker, device_keys_file=str(keys)), store)
    acks: list[Ack] = []
    sender = MqttConnection(
        broker, client_id="sender", subscriptions=[("edgestream/+/ack", 1)],
        on_message=lambda m: acks.append(Ack.from_bytes(m.payload)), name="sender",
    )  # fmt: skip
    attempts = [
        ("pi-a", batch("pi-a", 1, KEY_A)),  # signed by its own key: stored
        ("pi-a", batch("pi-a", 3, KEY_B)),  # signed with another device's key
        ("pi-a", batch("pi-a", 5, None)),  # not signed at all
        ("pi-c", batch("pi-c", 1, KEY_A)),  # a device without a key
        ("pi-b", batch("pi-b", 1, KEY_B)),  # stored
    ]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(c.run()) for c in (hub, sender)]
        assert await hub.connection.wait_connected(10) and await sender.wait_connected(10)
        await asyncio.sleep(0.3)
        for device, data in attempts:
            await sender.publish(f"edgestream/{device}/up", data, qos=1)
        for _ in range(100):
            if len(acks) >= len(attempts):
                break
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
    store.close_now()
    assert sorted(a.status for a in acks) == ["ok", "ok", "rejected", "rejected", "rejected"]
    reasons = " | ".join(a.reason for a in acks if a.status == "rejected")
    assert "signature" in reasons and "'pi-c' has no key in device_keys_file" in reasons
    with sqlite3.connect(tmp_path / "central.db") as db:
        rows = sorted(db.execute("SELECT device, seq FROM events"))
        rejected = dict(db.execute("SELECT device, rejected FROM devices"))
    assert rows == [("pi-a", 1), ("pi-a", 2), ("pi-b", 1), ("pi-b", 2)]
    assert rejected == {"pi-a": 2, "pi-b": 0, "pi-c": 1}
