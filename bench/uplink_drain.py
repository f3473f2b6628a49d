"""W-backlog and W-wire: uplink drain rate and bytes on the wire, against in-run baselines.

What it measures and why:
- Bytes per event of `sync.wire.encode` on W-wire (PERFORMANCE.md's generator,
  `random.Random(42)`) at batches of 10, 100 and 1,000, against zstd level 3 over JSON
  lines of the same payloads (12.0 B/event at 1,000 on the reference machine). Events
  carry what the agent stores: event time, an ingest time (wall clock, microseconds),
  key (device) and topic; a second row strips key, topic and ingest time to show what
  that metadata costs. Targets: <= 4 B/event at 1,000, <= 20 at 10.
- W-backlog: 100,000 W-wire events appended to an agent queue stream marked for
  uplink while no hub runs; then a central mosquitto, `edgestream hub` (subprocess,
  SQLite store, synchronous full) and the `Uplink` (in this process, reading the
  queue) start; timed from the uplink's start until the hub's store holds all
  100,000. batch_max_events 1,000 and 5,000. Bytes on the wire per event is
  `Uplink.stats.bytes_sent / events` (sum of encoded batch sizes).
- Baseline: a Mosquitto bridge (edge broker, persistence on, autosave_interval 1)
  store-and-forwarding the same 100,000 payloads at QoS 1 after the central broker
  returns, drained into a C subscriber (`mosquitto_sub`); timed first to last message.
  Target: uplink drain >= 3x the bridge's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import zstandard
from benchkit import (
    SENSORS,
    Edgestream,
    Mosquitto,
    create_session,
    fmt_int,
    free_port,
    host_port,
    nodelay_env,
    nodelay_sockets,
    print_machine,
    print_table,
    query_int,
    stop_process,
    temp_dir,
    w_wire,
    wait_until,
    write_yaml,
)
from paho.mqtt.enums import CallbackAPIVersion

from agent.queue import DurableQueue, NewEvent, StreamLimits
from sync.mqtt.config import MqttConnectionConfig
from sync.outbox import StoredEvent
from sync.uplink import CONSUMER, Uplink
from sync.uplink_config import UplinkConfig
from sync.wire import Batch, encode

STREAM = "wire"
DEVICE = "gw-bench"
HUB_ID = "bench"
DRAIN_TIMEOUT = 120.0


def as_new_events(events: list[dict[str, Any]], metadata: bool = True) -> list[NewEvent]:
    """What the MQTT source would store: payload, times, key (device) and topic.

    The ingest time is a wall-clock receive time (a small random delay after `ts`,
    microsecond precision, like `time.time()`); without metadata it equals `ts`.
    """
    rnd = random.Random(7)
    now = time.time() - 3600
    out = []
    for e in events:
        payload = orjson.dumps(e)
        if not metadata:
            out.append(NewEvent(e["ts"], e["ts"], None, None, payload))
            continue
        ingest = round(now + (e["ts"] - 1764201600.0) + rnd.uniform(0.001, 0.01), 6)
        topic = f"plant/{e['device']}/{e['sensor']}"
        out.append(NewEvent(e["ts"], ingest, e["device"], topic, payload))
    return out


# ------------------------------------------------------------------ encode only


def wire_bytes(events: list[NewEvent], batch: int) -> float:
    """Bytes per event of `sync.wire.encode` (level 3) at a batch size."""
    stored = [StoredEvent(i, e.event_time, e.ingest_time, e.key, e.topic, e.payload)
              for i, e in enumerate(events, 1)]  # fmt: skip
    total = 0
    for start in range(0, len(stored), batch):
        chunk = stored[start : start + batch]
        total += len(encode(Batch(DEVICE, "0123456789abcdef", STREAM, chunk, (),
                                  chunk[-1].seq), 3))  # fmt: skip
    return total / len(stored)


def zstd_lines_bytes(events: list[NewEvent], batch: int) -> float:
    """The baseline: zstd level 3 over JSON lines of the payloads, per batch."""
    compressor = zstandard.ZstdCompressor(level=3)
    lines = [e.payload for e in events]
    total = 0
    for start in range(0, len(lines), batch):
        total += len(compressor.compress(b"\n".join(lines[start : start + batch]) + b"\n"))
    return total / len(lines)


def encode_table(count: int) -> None:
    events = w_wire(count)
    full, bare = as_new_events(events), as_new_events(events, metadata=False)
    raw = sum(len(e.payload) for e in full) / len(full)
    targets = {10: 20.0, 100: None, 1000: 4.0}
    rows = []
    for batch, target in targets.items():
        base = zstd_lines_bytes(full, batch)
        ours, payload_only = wire_bytes(full, batch), wire_bytes(bare, batch)
        verdict = "-" if target is None else ("meets" if ours <= target else "MISSES")
        rows.append([
            f"{batch:,}", f"{base:.1f}", f"{ours:.1f}", f"{payload_only:.1f}",
            f"{ours / base:.2f}x", "-" if target is None else f"<= {target:.0f}", verdict,
        ])  # fmt: skip
    print_table(
        f"W-wire bytes per event, {count:,} events (compact JSON {raw:.1f} B/event)",
        ["batch", "zstd-3 JSON lines (baseline)", "sync.wire.encode",
         "encode, payload only (no key/topic/ingest time)", "encode / baseline",
         "target B/event", "verdict"],
        rows,
    )  # fmt: skip


# ------------------------------------------------------------------ where the bytes go


def _zstd_per_event(
    events: list[NewEvent], batch: int, body: Callable[[list[NewEvent]], bytes]
) -> float:
    compressor = zstandard.ZstdCompressor(level=3)
    total = 0
    for start in range(0, len(events), batch):
        total += len(compressor.compress(body(events[start : start + batch])))
    return total / len(events)


def _rows(fields: Callable[[int, NewEvent], list[Any]]) -> Callable[[list[NewEvent]], bytes]:
    return lambda chunk: orjson.dumps([fields(i, e) for i, e in enumerate(chunk)])


def _zigzag_varints(values: list[int]) -> bytes:
    out = bytearray()
    for value in values:
        n = (value << 1) ^ (value >> 63)
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
    return bytes(out)


def columnar_prototype(chunk: list[NewEvent]) -> bytes:
    """A schema-aware sketch (not product code): what a columnar W-wire body could weigh.

    Device and sensor as one-byte dictionary ids, ts as millisecond deltas, values as
    per-series deltas in units of their decimals, all zigzag varints; the unit follows
    from the sensor. Event time, key and topic are derived from the payload and the
    ingest time is left out, so this bounds what dropping that metadata could save.
    """
    names = [s[0] for s in SENSORS]
    decimals = {s[0]: s[4] for s in SENSORS}
    rows = [orjson.loads(e.payload) for e in chunk]
    stamps = [round(r["ts"] * 1000) for r in rows]
    last: dict[tuple[str, str], int] = {}
    deltas = []
    for r in rows:
        series, scaled = (r["device"], r["sensor"]), round(r["value"] * 10 ** decimals[r["sensor"]])
        deltas.append(scaled - last.get(series, 0))
        last[series] = scaled
    ts_deltas = [stamps[0]] + [b - a for a, b in itertools.pairwise(stamps)]
    return b"".join([
        bytes(int(r["device"][3:]) for r in rows), bytes(names.index(r["sensor"]) for r in rows),
        _zigzag_varints(ts_deltas), _zigzag_varints(deltas),
    ])  # fmt: skip


def breakdown_table(count: int) -> None:
    """zstd-3 over bodies that drop one kind of per-event metadata after another."""
    events = as_new_events(w_wire(count))
    variants: list[tuple[str, Callable[[list[NewEvent]], bytes]]] = [
        ("rows as sync.wire sends them: seq, event time, ingest time, key, topic, payload",
         _rows(lambda i, e: [i, e.event_time, e.ingest_time, e.key, e.topic,
                             e.payload.decode(), None, 0])),
        ("same rows without the ingest time (microsecond wall clock)",
         _rows(lambda i, e: [i, e.event_time, e.key, e.topic, e.payload.decode(), None, 0])),
        ("seq + payload only", _rows(lambda i, e: [i, e.payload.decode()])),
        ("payload JSON lines (the zstd-3 baseline)",
         lambda chunk: b"\n".join(e.payload for e in chunk) + b"\n"),
        ("columnar prototype (device/sensor ids, ts and value deltas, varints)",
         columnar_prototype),
    ]  # fmt: skip
    rows = [
        [label, *(f"{_zstd_per_event(events, b, body):.1f}" for b in (10, 100, 1000))]
        for label, body in variants
    ]
    print_table(
        f"Where the wire bytes go: zstd-3 B/event over {count:,} W-wire events",
        ["body", "batch 10", "batch 100", "batch 1,000"],
        rows,
    )


# ------------------------------------------------------------------ W-backlog via the hub


@dataclass(frozen=True, slots=True)
class DrainCase:
    """One W-backlog configuration; `nodelay` is the TCP_NODELAY diagnostic."""

    batch: int
    interval: float
    nodelay: bool = False

    @property
    def label(self) -> str:
        text = f"uplink -> edgestream hub, batch {self.batch:,}, commit_interval {self.interval}s"
        if self.nodelay:
            return "DIAGNOSTIC " + text + ", TCP_NODELAY on every MQTT socket"
        return text


DEFAULT_CASES = (
    DrainCase(1000, 0.1), DrainCase(5000, 0.1), DrainCase(1000, 0.25), DrainCase(5000, 0.25),
    DrainCase(1000, 0.01), DrainCase(1000, 0.01, nodelay=True),
    DrainCase(5000, 0.01, nodelay=True), DrainCase(1000, 0.1, nodelay=True),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Drain:
    """One timed drain into the central side."""

    what: str
    events: int
    seconds: float
    batches: int = 0
    wire_bytes_per_event: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def fill_backlog(data_dir: Path, events: list[NewEvent]) -> None:
    """Append the backlog while no hub runs (the uplink consumer exists, nothing drains)."""
    limits = {STREAM: StreamLimits(max_bytes=1 << 30, max_age=7 * 86400.0)}
    queue = await DurableQueue.open(data_dir, limits)
    await queue.register_consumers({STREAM: [CONSUMER]})
    for start in range(0, len(events), 5000):
        await queue.append(STREAM, events[start : start + 5000])
    await queue.close()


def hub_config(tmp: Path, url: str) -> dict[str, Any]:
    return {
        "hub_id": HUB_ID,
        "broker": {"url": url},
        "log_level": "warning",
        "store": {"type": "sqlite", "path": str(tmp / "hub-data" / "central.db")},
    }


async def drain_to_hub(
    data_dir: Path, hub_db: Path, url: str, case: DrainCase, count: int
) -> Drain:
    """Start the uplink on the filled queue; time until the hub's store has everything."""
    limits = {STREAM: StreamLimits(max_bytes=1 << 30, max_age=7 * 86400.0)}
    queue = await DurableQueue.open(data_dir, limits, commit_interval=case.interval)
    config = UplinkConfig(broker=MqttConnectionConfig(url=url), batch_max_events=case.batch,
                          batch_max_delay=0.1)  # fmt: skip
    uplink = Uplink(config, queue, DEVICE, [STREAM])
    sql = "SELECT count(*) FROM events WHERE stream = ?"
    start = time.perf_counter()
    task = asyncio.create_task(uplink.run(), name="bench-uplink")
    try:
        while await asyncio.to_thread(query_int, hub_db, sql, STREAM) < count:
            if time.perf_counter() - start > DRAIN_TIMEOUT:
                raise TimeoutError("hub did not receive the backlog in time")
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - start
        # the last ack may land just after the hub's commit; wait for it, for the byte count
        while uplink.stats.events < count and time.perf_counter() - start < DRAIN_TIMEOUT:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await queue.close()
    stats = uplink.stats
    return Drain(case.label, count, seconds, stats.batches, stats.bytes_sent / max(stats.events, 1))


def uplink_case(tmp: Path, events: list[NewEvent], case: DrainCase) -> Drain:
    """One W-backlog drain: fill the queue, start central broker and hub, then the uplink."""
    data_dir = tmp / "agent-data"
    asyncio.run(fill_backlog(data_dir, events))
    broker_extra = ["set_tcp_nodelay true"] if case.nodelay else []
    hub_env = nodelay_env(tmp / "site") if case.nodelay else None
    with Mosquitto(tmp / "central", extra=broker_extra) as central:
        # the hub's persistent session exists before the hub, so no batch can be missed
        create_session(central.url, f"edgestream-hub-{HUB_ID}", "edgestream/+/up", 1)
        hub_yaml = write_yaml(tmp / "hub.yaml", hub_config(tmp, central.url))
        hub_db = tmp / "hub-data" / "central.db"
        with Edgestream("hub", hub_yaml, env=hub_env) as hub:
            wait_until(hub_db.exists, 20, "the hub's store")
            time.sleep(1.0)  # let it connect: the drain, not its start-up, is timed
            hub.check_alive()
            drain = drain_to_hub(data_dir, hub_db, central.url, case, len(events))
            with nodelay_sockets() if case.nodelay else contextlib.nullcontext():
                return asyncio.run(drain)


# ------------------------------------------------------------------ baseline: mosquitto bridge


def bridge_case(tmp: Path, payloads: list[tuple[str, bytes]]) -> Drain:
    """Edge mosquitto bridging `plant/#` to a central one that is down, then comes back.

    The C subscriber's persistent session is made on the central broker first (which
    then stops, keeping it on disk), so no message can arrive before it subscribes.
    """
    central_dir = tmp / "central"
    central_port = free_port()
    with Mosquitto(central_dir, port=central_port, persistence=central_dir) as central:
        create_session(central.url, "bench-bridge-sub", "plant/#", 1)
    bridge = [
        "autosave_interval 1", "connection central", f"address 127.0.0.1:{central_port}",
        "topic plant/# out 1", "cleansession false", "restart_timeout 1",
        "bridge_protocol_version mqttv311",
    ]  # fmt: skip
    with Mosquitto(tmp / "edge", persistence=tmp / "edge", extra=bridge) as edge:
        publish_qos1(edge.url, payloads)
        with Mosquitto(central_dir, port=central_port, persistence=central_dir) as central:
            first, last = subscribe_and_time(central.url, len(payloads), tmp / "sub.txt")
    # each message travels alone: fixed header 2 + topic length 2 + topic + packet id 2 + payload
    per_event = sum(6 + len(t.encode()) + len(p) for t, p in payloads) / len(payloads)
    return Drain("Mosquitto bridge -> C subscriber (baseline)", len(payloads) - 1, last - first,
                 wire_bytes_per_event=per_event)  # fmt: skip


def publish_qos1(url: str, payloads: list[tuple[str, bytes]], chunk: int = 20_000) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bridge-pub")
    c.max_inflight_messages_set(0)
    c.connect(*host_port(url))
    c.loop_start()
    for start in range(0, len(payloads), chunk):
        infos = [c.publish(t, p, qos=1) for t, p in payloads[start : start + chunk]]
        for info in infos:
            info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def subscribe_and_time(url: str, count: int, out: Path) -> tuple[float, float]:
    """mosquitto_sub prints each message's receive time; first and last are the drain."""
    host, port = host_port(url)
    command = ["mosquitto_sub", "-h", host, "-p", str(port), "-t", "plant/#", "-q", "1", "-c",
               "-i", "bench-bridge-sub", "-C", str(count), "-F", "%U"]  # fmt: skip
    with out.open("wb") as sink:
        sub = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL)
        try:
            sub.wait(DRAIN_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop_process(sub)
            raise
    stamps = out.read_text().split()
    if len(stamps) < count:
        raise RuntimeError(f"bridge delivered {len(stamps)} of {count}")
    return float(stamps[0]), float(stamps[-1])


# ------------------------------------------------------------------ driver


def report_drains(drains: list[Drain], bridge: Drain | None) -> None:
    rows = []
    for d in drains:
        ratio = f"{d.rate / bridge.rate:.2f}x" if bridge else "-"
        verdict = "-" if bridge is None else ("meets" if d.rate >= 3 * bridge.rate else "MISSES")
        rows.append([d.what, fmt_int(d.rate), f"{d.seconds:.2f}", d.batches,
                     f"{d.wire_bytes_per_event:.1f}", ratio, verdict])  # fmt: skip
    if bridge is not None:
        wire = f"{bridge.wire_bytes_per_event:.1f} (uncompressed)"
        rows.append([bridge.what, fmt_int(bridge.rate), f"{bridge.seconds:.2f}", "-", wire,
                     "1.00x", "-"])  # fmt: skip
    print_table(
        f"W-backlog: {drains[0].events:,} W-wire events queued while the hub was away",
        ["drain", "ev/s", "seconds", "batches", "wire B/event", "vs bridge",
         "target >= 3x bridge"],
        rows,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=100_000)
    parser.add_argument("--skip-bridge", action="store_true")
    parser.add_argument("--skip-diagnostics", action="store_true",
                        help="only the product's own settings, no TCP_NODELAY runs")  # fmt: skip
    args = parser.parse_args()
    print_machine()
    encode_table(args.count)
    breakdown_table(args.count)
    raw = w_wire(args.count)
    events = as_new_events(raw)
    cases = [c for c in DEFAULT_CASES if not (args.skip_diagnostics and c.nodelay)]
    drains = []
    for index, case in enumerate(cases):
        with temp_dir(f"backlog{index}") as tmp:
            drains.append(uplink_case(tmp, events, case))
    bridge = None
    if not args.skip_bridge:
        payloads = [(f"plant/{e['device']}/{e['sensor']}", orjson.dumps(e)) for e in raw]
        with temp_dir("bridge") as tmp:
            bridge = bridge_case(tmp, payloads)
    report_drains(drains, bridge)


if __name__ == "__main__":
    main()
