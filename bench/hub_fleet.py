"""W-fleet: 1,000 simulated devices uplinking into the hub; SQLite, JetStream, 1-3 hubs.

What it measures and why:
- Devices are light clients: `--clients` processes each speak for devices/clients
  devices over one MQTT connection, with the uplink's protocol: a device publishes its
  next batch (wire-encoded W-wire events, `--batch` events) on `edgestream/<id>/up`
  only after the hub's ack for the previous one arrived on `edgestream/<id>/ack`, so
  each device has one batch in flight, as a real agent per stream.
- The hubs are real `edgestream hub` processes on one Mosquitto (no persistence, no
  queue limits); several hubs share `$share/hubs/...` and a JetStream store.
- Reported: events committed per second (all devices' events / time from the first
  publish to the last ack), and each hub's peak RSS (VmHWM).
Target (PERFORMANCE.md): >= 50,000 ev/s into SQLite on one hub; JetStream beside it.

Run: python3 bench/hub_fleet.py [--devices 1000 --batches 4 --batch 50]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from benchkit import (
    REPO,
    Edgestream,
    Mosquitto,
    host_port,
    print_machine,
    print_table,
    temp_dir,
    w_wire,
    write_yaml,
)
from paho.mqtt.enums import CallbackAPIVersion

from sync.outbox import StoredEvent
from sync.wire import Ack, Batch, encode

sys.path.insert(0, str(REPO))
from bench.uplink_drain import as_new_events
from tests.nats import NatsServer, nats_server_binary

CASES: tuple[tuple[str, str, int], ...] = (
    ("SQLite store", "sqlite", 1),
    ("JetStream, granularity event", "event", 1),
    ("JetStream, granularity batch", "batch", 1),
    ("JetStream batch, 2 hubs", "batch", 2),
    ("JetStream batch, 3 hubs", "batch", 3),
)


# ------------------------------------------------------------------ the device side


def device_batches(device: int, batches: int, size: int) -> list[bytes]:
    """One device's backlog as encoded batches, seq 1.., W-wire payloads."""
    events = as_new_events(w_wire(batches * size))
    stored = [
        StoredEvent(i + 1, e.event_time, e.ingest_time, e.key, e.topic, e.payload)
        for i, e in enumerate(events)
    ]
    name = f"fleet-{device:04d}"
    return [
        encode(Batch(name, "bench", "sensors", stored[i : i + size], [], i + size))
        for i in range(0, len(stored), size)
    ]


def run_client(url: str, first: int, count: int, batches: int, size: int) -> None:
    """Devices first..first+count-1 over one connection; prints first send and last ack."""
    backlog = {
        f"fleet-{d:04d}": device_batches(d, batches, size) for d in range(first, first + count)
    }
    sent = dict.fromkeys(backlog, 0)
    done = threading.Event()
    remaining = [len(backlog)]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-client-{first}")
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)

    def send_next(device: str) -> None:
        client.publish(f"edgestream/{device}/up", backlog[device][sent[device]], qos=1)
        sent[device] += 1

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        device = message.topic.split("/")[1]
        if Ack.from_bytes(message.payload).status != "ok":
            raise SystemExit(f"{device}: batch refused")
        if sent[device] < len(backlog[device]):
            send_next(device)
            return
        remaining[0] -= 1
        if remaining[0] == 0:
            done.set()

    def on_connect(*_: Any) -> None:
        client.subscribe([(f"edgestream/{d}/ack", 1) for d in backlog])

    client.on_message, client.on_connect = on_message, on_connect
    host, port = host_port(url)
    client.connect(host, port)
    client.loop_start()
    time.sleep(1.0)  # subscriptions in place before the first batch
    started = time.time()
    for device in backlog:
        send_next(device)
    done.wait()
    print(json.dumps({"started": started, "finished": time.time()}), flush=True)
    client.loop_stop()


# ------------------------------------------------------------------ the hub side


def hub_yaml(tmp: Path, hub_id: str, url: str, store: dict[str, Any], hubs: int) -> Path:
    config: dict[str, Any] = {"hub_id": hub_id, "broker": {"url": url}, "store": store}
    if hubs > 1:
        config["shared_group"] = "hubs"
    return write_yaml(tmp / f"{hub_id}.yaml", config)


def store_for(tmp: Path, kind: str, nats_url: str | None) -> dict[str, Any]:
    if kind == "sqlite":
        return {"type": "sqlite", "path": str(tmp / "central.db")}
    return {"type": "jetstream", "servers": [nats_url], "granularity": kind}


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_case(tmp: Path, kind: str, hubs: int, args: argparse.Namespace) -> tuple[float, str]:
    nats: NatsServer | None = None
    if kind != "sqlite":
        nats = NatsServer(nats_server_binary(), tmp / "nats")
        nats.start()
    try:
        with Mosquitto(tmp / "mosquitto") as broker:
            store = store_for(tmp, kind, nats.url if nats else None)
            procs = [
                Edgestream("hub", hub_yaml(tmp, f"hub-{i}", broker.url, store, hubs)).start()
                for i in range(hubs)
            ]
            try:
                time.sleep(2.0)
                rate = drive(broker.url, args)
                rss = " / ".join(f"{vm_hwm_mib(p.pid):.0f}" for p in procs)
            finally:
                for proc in procs:
                    proc.stop()
    finally:
        if nats is not None:
            nats.stop()
    return rate, rss


def drive(url: str, args: argparse.Namespace) -> float:
    """Start the client processes, wait for all, return committed events per second."""
    per = args.devices // args.clients
    command = [sys.executable, __file__, "--client", url]
    sizes = [str(per), str(args.batches), str(args.batch)]
    clients = [
        subprocess.Popen([*command, str(i * per), *sizes], stdout=subprocess.PIPE, cwd=REPO)
        for i in range(args.clients)
    ]
    times = [json.loads(c.communicate(timeout=900)[0].splitlines()[-1]) for c in clients]
    elapsed = max(t["finished"] for t in times) - min(t["started"] for t in times)
    return per * args.clients * args.batches * args.batch / elapsed


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url, first, count, batches, size = sys.argv[2], *map(int, sys.argv[3:7])
        run_client(url, first, count, batches, size)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batches", type=int, default=4, help="batches per device")
    parser.add_argument("--batch", type=int, default=50, help="events per batch")
    parser.add_argument("--cases", default=",".join(str(i) for i in range(len(CASES))))
    args = parser.parse_args()
    print_machine()
    rows = []
    for index in map(int, args.cases.split(",")):
        title, kind, hubs = CASES[index]
        with temp_dir("fleet") as tmp:
            rate, rss = run_case(tmp, kind, hubs, args)
        rows.append([title, f"{rate:,.0f}", rss])
        print(f"{title}: {rate:,.0f} ev/s, hub RSS {rss} MiB", flush=True)
    total = args.devices * args.batches * args.batch
    print_table(
        f"W-fleet: {args.devices} devices, {total:,} events in batches of {args.batch}",
        ["hub store", "events/s committed", "hub peak RSS (MiB, per hub)"],
        rows,
    )


if __name__ == "__main__":
    main()
