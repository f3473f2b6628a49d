"""Fixtures for uplink tests: a real Mosquitto, a real hub process, a real queue in process.

The uplink runs in the test's event loop (so its clock can be injected and its
counters read), against the agent's SQLite queue and a hub started as
`edgestream hub` on a Mosquitto broker of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from agent.queue.durable import DurableQueue
from agent.queue.records import NewEvent, StreamLimits
from sync.config.spec import build
from sync.outbox import StoredEvent
from sync.uplink import Uplink
from sync.uplink_config import UplinkConfig
from sync.wire import Batch, ack_topic, encode, up_topic
from tests.brokers import MosquittoBroker
from tests.e2e.harness import EdgestreamProcess, hub_config, query, write_yaml

DEVICE = "pi-metered"


@dataclass
class Hub:
    """A running hub process, its broker and its central store."""

    broker: MosquittoBroker
    process: EdgestreamProcess
    db: Path

    def seqs(self, stream: str) -> list[int]:
        """Sequence numbers of a stream at the hub, in commit order (then seq within a batch)."""
        rows = query(
            self.db,
            "SELECT seq FROM events WHERE device = ? AND stream = ? ORDER BY received_at, seq",
            DEVICE, stream,
        )  # fmt: skip
        return [int(seq) for (seq,) in rows]


def probe_hub(url: str, timeout: float = 15.0) -> None:
    """Send a batch as device `probe` and wait for its ack: the hub is subscribed and serving."""
    host, port = url.removeprefix("mqtt://").split(":")
    acked = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe")
    client.on_message = lambda *_: acked.set()
    client.connect(host, int(port))
    client.subscribe(ack_topic("edgestream", "probe"), 1)
    client.loop_start()
    event = StoredEvent(1, time.time(), time.time(), None, None, b"{}")
    data = encode(Batch("probe", "probe-epoch", "probe", [event], [], 1))
    deadline = time.monotonic() + timeout
    try:
        while not acked.wait(0.5):
            assert time.monotonic() < deadline, "the hub did not ack a probe batch"
            client.publish(up_topic("edgestream", "probe"), data, qos=1)
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.fixture
def hub(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoBroker], processes: list[Any]
) -> Iterator[Hub]:
    """A hub process serving its own broker, proven ready by an acked probe batch."""
    broker = mosquitto_factory()
    config = write_yaml(tmp_path / "hub.yaml", hub_config(tmp_path, broker.url))
    process = EdgestreamProcess("hub", config, tmp_path / "hub.log").start()
    processes.append(process)
    probe_hub(broker.url)
    yield Hub(broker, process, tmp_path / "hub-data" / "central.db")


def uplink_config(url: str, **settings: Any) -> UplinkConfig:
    """An uplink config as the YAML loader builds it, with test-friendly timings."""
    raw = {
        "broker": {"url": url, "backoff_initial": "100ms", "backoff_max": "500ms"},
        "batch_max_delay": "50ms",
        "ack_timeout": "3s",
        **settings,
    }
    return build(UplinkConfig, raw, source="uplink.yaml")


async def open_queue(data_dir: Path, *streams: str) -> DurableQueue:
    """The agent's durable queue with the uplink registered as the consumer of `streams`."""
    limits = {name: StreamLimits(1 << 30, 86400.0, "block") for name in streams}
    queue = await DurableQueue.open(data_dir, limits, commit_interval=0.02)
    await queue.register_consumers({name: ["uplink"] for name in streams})
    return queue


def random_payload(i: int, size: int) -> bytes:
    """A JSON payload that zstd cannot shrink much (hex of random bytes)."""
    return orjson.dumps({"i": i, "blob": os.urandom(size // 2).hex()})


async def append(queue: DurableQueue, stream: str, start: int, stop: int, size: int = 60) -> None:
    """Append events whose payload is `{"i": n, ...}` for n in [start, stop)."""
    now = time.time()
    for lo in range(start, stop, 5000):
        events = [
            NewEvent(now, now, None, None, random_payload(i, size))
            for i in range(lo, min(stop, lo + 5000))
        ]
        await queue.append(stream, events)


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[Uplink]:
    """Run the uplink in the background; cancel it (like a stop) on exit."""
    task = asyncio.create_task(uplink.run(), name="test-uplink")
    try:
        yield uplink
    finally:
        task.cancel()
        # Bounded: an uplink that ignored its cancellation fails here instead of hanging
        # the suite until pytest's timeout (seen once on a heavily loaded machine).
        done, _ = await asyncio.wait([task], timeout=30)
        assert done, f"the uplink did not stop within 30 s of its cancellation: {task}"
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


async def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` on the loop until it holds, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)
