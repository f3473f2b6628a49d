"""End to end into JetStream: real agents, two real hubs on a shared subscription, a real
Mosquitto and a real nats-server, with a hub SIGKILLed and the server restarted twice.

The promise checked: JetStream ends up holding each (device, epoch, stream, seq) exactly
once, in seq order per device stream, and a device wiped to a new epoch is not mistaken
for duplicates.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest

from agent.queue.durable import DurableQueue
from agent.queue.records import NewEvent, StreamLimits
from sync.uplink import CONSUMER
from tests.brokers import BrokerFactory
from tests.e2e.harness import EdgestreamProcess, wait_until, write_yaml
from tests.hub.jetstream_read import Stored, read_stream
from tests.nats import NatsFactory

pytestmark = pytest.mark.slow

DEVICES = 4
PER_DEVICE = 12_500  # 50,000 events in all


def fill_queue(data_dir: Path, count: int, device: str) -> str:
    """Write `count` events into the agent's queue before it starts; returns its epoch."""

    async def fill() -> str:
        limits = {"sensors": StreamLimits(1 << 30, 30 * 86400.0)}
        queue = await DurableQueue.open(data_dir, limits, commit_interval=0.01)
        await queue.register_consumers({"sensors": [CONSUMER]})
        now = time.time()
        for start in range(0, count, 5000):
            chunk = [
                NewEvent(now + i * 0.001, now, f"probe-{i % 3}", f"plant/{device}",
                         orjson.dumps({"device": device, "i": i, "v": i % 97}))
                for i in range(start, min(count, start + 5000))
            ]  # fmt: skip
            await queue.append("sensors", chunk)
        epoch = queue.epoch
        await queue.close()
        return epoch

    return asyncio.run(fill())


def agent_yaml(tmp: Path, device: str, mqtt_url: str) -> Path:
    config: dict[str, Any] = {
        "device_id": device,
        "data_dir": str(tmp / device),
        "queue": {"commit_interval": "50ms"},
        "streams": {"sensors": {"uplink": True}},
        "sources": [],
        "uplink": {
            "broker": {"url": mqtt_url, "backoff_initial": "200ms", "backoff_max": "1s"},
            "batch_max_events": 2000, "batch_max_delay": "100ms", "ack_timeout": "3s",
        },
    }  # fmt: skip
    return write_yaml(tmp / f"{device}.yaml", config)


def hub_yaml(tmp: Path, hub_id: str, mqtt_url: str, nats_url: str) -> Path:
    config: dict[str, Any] = {
        "hub_id": hub_id,
        "shared_group": "hubs",
        "broker": {"url": mqtt_url, "backoff_initial": "200ms", "backoff_max": "1s"},
        "store": {"type": "jetstream", "servers": [nats_url], "publish_timeout": "2s"},
    }
    return write_yaml(tmp / f"{hub_id}.yaml", config)


def stream_count(url: str) -> int:
    async def count() -> int:
        try:
            nc = await nats.connect(url, connect_timeout=1, max_reconnect_attempts=0)
        except Exception:
            return -1
        try:
            return (await nc.jetstream().stream_info("EDGESTREAM")).state.messages
        except Exception:
            return -1
        finally:
            await nc.close()

    return asyncio.run(count())


def by_device_stream(stored: list[Stored]) -> dict[tuple[str, str, str], list[int]]:
    seqs: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for m in stored:
        h = m.headers
        seqs[(h["Edgestream-Device"], h["Edgestream-Epoch"], h["Edgestream-Stream"])].append(
            int(h["Edgestream-Seq"])
        )
    return seqs


def test_50k_events_through_two_hubs_with_a_hub_killed_and_nats_restarted_twice_land_once(
    tmp_path: Path,
    mosquitto_factory: BrokerFactory,
    nats_factory: NatsFactory,
    processes: list[EdgestreamProcess],
) -> None:
    broker, server = mosquitto_factory(), nats_factory()
    devices = [f"pi-{n}" for n in range(DEVICES)]
    epochs = {d: fill_queue(tmp_path / d, PER_DEVICE, d) for d in devices}
    hub_paths = [hub_yaml(tmp_path, f"hub-{n}", broker.url, server.url) for n in range(2)]
    hubs = [EdgestreamProcess("hub", p, p.with_suffix(".log")) for p in hub_paths]
    processes.extend(hub.start() for hub in hubs)
    time.sleep(1.0)  # both hubs subscribed before the devices start sending
    agents = [
        EdgestreamProcess("run", agent_yaml(tmp_path, d, broker.url), tmp_path / f"{d}.log")
        for d in devices
    ]
    processes.extend(agent.start() for agent in agents)
    total = DEVICES * PER_DEVICE

    wait_until(lambda: stream_count(server.url) >= total // 5, 60, "a fifth in JetStream", *hubs)
    hubs[0].kill()
    wait_until(lambda: stream_count(server.url) >= total * 2 // 5, 60, "two fifths", *hubs)
    server.stop()
    time.sleep(1.0)
    server.start()
    wait_until(lambda: stream_count(server.url) >= total * 3 // 5, 60, "three fifths", *hubs)
    server.kill()
    time.sleep(1.0)
    server.start()
    processes.append(hubs[0].start())  # its persistent session redelivers what it held
    wait_until(lambda: stream_count(server.url) >= total, 90, "all 50,000", *hubs, *agents)
    time.sleep(3.0)  # anything duplicated late would land by now

    stored = asyncio.run(read_stream(server.url, "EDGESTREAM"))
    seqs = by_device_stream(stored)
    assert len(stored) == total
    for device in devices:
        assert seqs[(device, epochs[device], "sensors")] == list(range(1, PER_DEVICE + 1))

    # A device whose database is wiped comes back with a new epoch: nothing is a duplicate.
    agents[0].terminate()
    shutil.rmtree(tmp_path / devices[0])
    new_epoch = fill_queue(tmp_path / devices[0], 500, devices[0])
    assert new_epoch != epochs[devices[0]]
    processes.append(agents[0].start())
    wait_until(lambda: stream_count(server.url) >= total + 500, 60, "the new epoch", *hubs)
    time.sleep(2.0)
    stored = asyncio.run(read_stream(server.url, "EDGESTREAM"))
    assert len(stored) == total + 500
    assert by_device_stream(stored)[(devices[0], new_epoch, "sensors")] == list(range(1, 501))
