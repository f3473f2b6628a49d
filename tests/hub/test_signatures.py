"""Per-device HMAC: with a key file the hub stores only batches signed by their device."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sync.hub.config import HubConfig
from sync.hub.service import Hub
from sync.hub.store import SqliteCentralStore
from sync.mqtt.config import MqttConnectionConfig
from sync.mqtt.connection import MqttConnection
from sync.outbox import StoredEvent
from sync.wire import Ack, Batch, encode
from tests.brokers import MosquittoBroker
from tests.e2e.harness import EdgestreamProcess, hub_config, wait_until, write_yaml

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


def test_sighup_rereads_the_key_file_to_admit_and_revoke_devices(
    tmp_path: Path, mosquitto: MosquittoBroker, processes: list[EdgestreamProcess]
) -> None:
    """A real hub process: SIGHUP admits a new device, revokes another, keeps keys on error."""
    keys = tmp_path / "device-keys"
    keys.write_text(f"pi-a {KEY_A.hex()}\n")
    config = hub_config(tmp_path, mosquitto.url)
    config["device_keys_file"] = str(keys)
    hub = EdgestreamProcess("hub", write_yaml(tmp_path / "hub.yaml", config), tmp_path / "hub.log")
    processes.append(hub.start())
    acks: list[tuple[str, bytes]] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="signer")
    client.on_message = lambda _c, _u, m: acks.append((m.topic.split("/")[1], m.payload))
    client.connect("127.0.0.1", mosquitto.port)
    client.subscribe("edgestream/+/ack", qos=1)
    client.loop_start()
    key_of = {"pi-a": KEY_A, "pi-b": KEY_B}

    def send(device: str, first: int) -> Ack:
        count = len(acks)
        client.publish(f"edgestream/{device}/up", batch(device, first, key_of[device]), qos=1)
        wait_until(lambda: len(acks) > count, 30, f"the hub's answer to {device}", hub)
        answered, payload = acks[-1]
        assert answered == device
        return Ack.from_bytes(payload)

    def reload(expect: str) -> None:
        assert hub.process is not None
        os.kill(hub.process.pid, signal.SIGHUP)
        wait_until(lambda: expect in hub.log_tail(50), 20, expect, hub)

    try:
        wait_until(lambda: "serving" in hub.log_tail(20), 30, "the hub to serve", hub)
        assert send("pi-a", 1).status == "ok"
        assert send("pi-b", 1).status == "rejected"  # not in the file yet
        keys.write_text(f"pi-a {KEY_A.hex()}\npi-b {KEY_B.hex()}\n")
        reload("Reloaded 2 device key(s)")
        ok = send("pi-b", 1)
        assert ok.status == "ok" and ok.committed == 2
        assert Ack.from_bytes(acks[-1][1], KEY_B) == ok  # signed with pi-b's key
        keys.write_text("pi-b not-hex\n")
        reload("Key reload refused")
        assert send("pi-a", 3).status == "ok"  # the previous keys are still in use
        keys.write_text(f"pi-b {KEY_B.hex()}\n")  # pi-a revoked (stolen)
        reload("Reloaded 1 device key(s)")
        assert send("pi-a", 5).status == "rejected"
    finally:
        client.loop_stop()
        client.disconnect()
    assert hub.terminate() == 0
