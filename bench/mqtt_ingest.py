"""W-ingest: MQTT into the durable queue vs a bare paho subscriber, QoS 1 and QoS 0.

What it measures and why:
- The feed: N (default 100,000) W-ingest messages, ~100-byte JSON, 100 devices
  (`plant/pi-NNN/telemetry`). They are pre-queued at our own mosquitto for persistent
  sessions while every consumer is offline (unlimited queue, QoS 0 queued too); the
  timed part is the drain after the consumer connects. The publisher is therefore not
  in the measurement, for the baseline and the agent alike, and one publish feeds
  every session of a round.
- Baseline: a bare paho-mqtt 2.x subscriber (network loop in its thread,
  `loop_start`) counting messages; QoS 1 messages are acknowledged by paho as soon as
  `on_message` returns.
- The agent: `edgestream run` as a subprocess (the real CLI, daemon and config) with
  one MQTT source on that broker: persistent session, QoS 1 (or 0), commit_interval
  100 ms, acknowledgement only after the commit. Progress is read from its queue
  database (`streams.next_seq`) every 10 ms.
- Rate for both = messages after the first observation / time from first to last
  (connect and start-up excluded). CPU per message = user+sys seconds of the consumer
  process during the drain (the baseline's includes only its paho thread and counter).

Targets: >= 80 % of the bare subscriber at QoS 0 and at QoS 1.
`--py-spy DIR` samples the agent during its drains (GIL holders only) and prints its
hot spots; it slows the agent, so take figures from a run without it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from benchkit import (
    Edgestream,
    Mosquitto,
    cpu_seconds,
    create_session,
    fmt_int,
    fmt_ratio,
    host_port,
    ingest_payload,
    print_machine,
    print_table,
    query_int,
    temp_dir,
    write_yaml,
)
from paho.mqtt.enums import CallbackAPIVersion

TOPIC_FILTER = "plant/+/telemetry"
STREAM = "ingest"
TARGET = 0.80
DRAIN_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Drain:
    """One consumer draining its pre-queued session."""

    consumer: str
    qos: int
    counted: int  # messages after the first observation
    seconds: float  # first observation -> last message
    cpu_us_per_msg: float

    @property
    def rate(self) -> float:
        return self.counted / self.seconds if self.seconds > 0 else 0.0


# ------------------------------------------------------------------ the feed


def client(client_id: str, clean: bool = False) -> mqtt.Client:
    """A paho 2.x client for MQTT 3.1.1 (persistent session unless `clean`)."""
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)


def feed(count: int) -> Iterator[tuple[str, bytes]]:
    return (ingest_payload(i) for i in range(count))


def publish_all(url: str, count: int, chunk: int = 20_000) -> float:
    """Publish QoS 1 in bounded chunks (ids wrap at 65,535); returns msg/s.

    No in-flight limit inside a chunk: paho scans its unacked messages on every PUBACK
    when a limit is set, which made this publisher 3x slower (5,400 vs 18,000 msg/s).
    """
    c = client("bench-publisher", clean=True)
    c.max_inflight_messages_set(0)
    c.max_queued_messages_set(0)
    c.connect(*host_port(url))
    c.loop_start()
    start = time.perf_counter()
    infos: list[mqtt.MQTTMessageInfo] = []
    for topic, payload in feed(count):
        infos.append(c.publish(topic, payload, qos=1))
        if len(infos) >= chunk:
            _wait_published(infos)
            infos = []
    _wait_published(infos)
    rate = count / (time.perf_counter() - start)
    c.disconnect()
    c.loop_stop()
    return rate


def _wait_published(infos: list[mqtt.MQTTMessageInfo]) -> None:
    for info in infos:
        info.wait_for_publish(30)


# ------------------------------------------------------------------ baseline


def drain_baseline(url: str, client_id: str, qos: int, count: int) -> Drain:
    """A bare paho subscriber resuming its session and counting until `count`."""
    c = client(client_id)
    seen = [0]
    marks: dict[str, float] = {}
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: Any, _m: mqtt.MQTTMessage) -> None:
        seen[0] += 1
        if seen[0] == 1:
            marks["first"], marks["cpu0"] = time.perf_counter(), time.process_time()
        if seen[0] >= count:
            marks["last"], marks["cpu1"] = time.perf_counter(), time.process_time()
            done.set()

    c.on_message = on_message
    c.connect(*host_port(url))
    c.loop_start()
    finished = done.wait(DRAIN_TIMEOUT)
    c.disconnect()
    c.loop_stop()
    if not finished:
        raise TimeoutError(f"baseline got {seen[0]} of {count} messages")
    cpu = (marks["cpu1"] - marks["cpu0"]) / (count - 1) * 1e6
    return Drain("bare paho subscriber", qos, count - 1, marks["last"] - marks["first"], cpu)


# ------------------------------------------------------------------ the agent


def agent_config(tmp: Path, url: str, client_id: str, qos: int) -> dict[str, Any]:
    return {
        "device_id": "bench",
        "data_dir": str(tmp / "agent-data"),
        "log_level": "warning",
        "queue": {"commit_interval": "100ms", "synchronous": "full"},
        "streams": {STREAM: {"max_bytes": "1GiB"}},
        "sources": [{
            "type": "mqtt", "name": "plant", "stream": STREAM,
            "broker": {"url": url, "client_id": client_id},
            "clean_session": False,
            "topics": [{"topic": TOPIC_FILTER, "qos": qos}],
            "payload": {"format": "json", "time_field": "ts"},
            "key": {"field": "device"},
        }],
    }  # fmt: skip


def drain_agent(
    tmp: Path, url: str, client_id: str, qos: int, count: int, profile: Path | None = None
) -> Drain:
    """`edgestream run` resuming the session; progress polled from its queue database."""
    config = write_yaml(tmp / f"agent-q{qos}.yaml", agent_config(tmp, url, client_id, qos))
    db = tmp / "agent-data" / "queue.db"
    sql = "SELECT next_seq - 1 FROM streams WHERE name = ?"
    with Edgestream("run", config) as agent, py_spy(agent.pid, profile, f"agent-q{qos}"):
        first = last = 0.0
        first_count = stored = 0
        cpu0 = 0.0
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while stored < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"agent stored {stored} of {count}")
            agent.check_alive()
            time.sleep(0.01)
            stored = query_int(db, sql, STREAM)
            if stored and not first:
                first, first_count, cpu0 = time.perf_counter(), stored, cpu_seconds(agent.pid)
        last = time.perf_counter()
        cpu = cpu_seconds(agent.pid) - cpu0
    counted = count - first_count
    return Drain("edgestream run (ack after commit)", qos, counted, last - first,
                 cpu / max(counted, 1) * 1e6)  # fmt: skip


# ------------------------------------------------------------------ optional profile


@contextlib.contextmanager
def py_spy(pid: int, directory: Path | None, name: str) -> Iterator[None]:
    """Sample the agent with py-spy (GIL holders only) while the block runs, if asked."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{name}.txt"
    command = ["py-spy", "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-r", "200",
               "--threads", "--gil"]  # fmt: skip
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        spy.wait(30)
    print_hot_spots(out, name)


# (component, what a stack must contain) -- the first match names a GIL-holding sample
COMPONENTS = (
    ("start-up imports", "importlib"),
    ("writer thread: mqtt_inflight rows (mark_inflight)", "mark_inflight"),
    ("writer thread: event rows (WriteTx.append)", "transaction.py"),
    ("writer thread: other (commit, counters)", "edgestream[queue].writer"),
    ("edgestream: MqttMessage copy + inbox (on_message)", "_on_paho_message"),
    ("edgestream: MessageDecoder.decode (parse, time, key)", "agent/sources/decode.py"),
    ("edgestream: store loop (digests, marks, PUBACKs)", "_store_loop"),
    ("paho: read, parse, dispatch one packet (loop_read)", "loop_read"),
    ("asyncio: event loop", "asyncio"),
)


def component(stack: str) -> str:
    return next((name for name, needle in COMPONENTS if needle in stack), "other")


def print_hot_spots(path: Path, name: str, top: int = 12) -> None:
    """Where the GIL-holding samples were: by component, then by function (self)."""
    if not path.exists():
        print(f"(no py-spy output for {name}: is py-spy installed?)")
        return
    parts: collections.Counter[str] = collections.Counter()
    functions: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        parts[component(stack)] += int(samples)
        leaf = stack.split(";")[-1]
        functions[leaf.split(":")[0] + ")" if ":" in leaf else leaf] += int(samples)
    total = sum(parts.values()) or 1
    rows = [[part, f"{n / total * 100:.1f} %"] for part, n in parts.most_common()]
    print_table(f"py-spy --gil, {name}: GIL time by component ({total:,} samples at 200 Hz)",
                ["component", "share"], rows)  # fmt: skip
    rows = [[fn, f"{n / total * 100:.1f} %"] for fn, n in functions.most_common(top)]
    print_table(f"py-spy --gil, {name}: top functions (self)", ["function", "share"], rows)


# ------------------------------------------------------------------ driver


def one_round(
    tmp: Path,
    count: int,
    qos_levels: list[int],
    max_inflight: int = 0,
    profile: Path | None = None,
) -> tuple[float, list[Drain]]:
    """One publish feeds a baseline and an agent session per QoS level."""
    results: list[Drain] = []
    with Mosquitto(tmp / "broker", max_inflight=max_inflight) as broker:
        for qos in qos_levels:
            create_session(broker.url, f"bench-base-q{qos}", TOPIC_FILTER, qos)
            create_session(broker.url, f"bench-agent-q{qos}", TOPIC_FILTER, qos)
        publish_rate = publish_all(broker.url, count)
        for qos in qos_levels:
            results.append(drain_baseline(broker.url, f"bench-base-q{qos}", qos, count))
            results.append(drain_agent(tmp / f"q{qos}", broker.url, f"bench-agent-q{qos}",
                                       qos, count, profile))  # fmt: skip
    return publish_rate, results


def is_agent(drain: Drain) -> bool:
    return not drain.consumer.startswith("bare")


def ratios(drains: list[Drain]) -> dict[int, float]:
    """Agent rate / baseline rate per QoS level, within one round."""
    base = {d.qos: d.rate for d in drains if not is_agent(d)}
    return {d.qos: d.rate / base[d.qos] for d in drains if is_agent(d)}


def report_rounds(rounds: list[tuple[float, list[Drain]]], count: int) -> None:
    rows = []
    for index, (publish_rate, drains) in enumerate(rounds, 1):
        ratio = ratios(drains)
        for d in drains:
            shown = fmt_ratio(ratio[d.qos]) if is_agent(d) else "100 %"
            rows.append([index, f"QoS {d.qos}", d.consumer, fmt_int(d.rate), shown,
                         f"{d.cpu_us_per_msg:.1f}"])  # fmt: skip
        rows.append([index, "-", "(publisher pre-queueing the feed, not timed)",
                     fmt_int(publish_rate), "", ""])  # fmt: skip
    print_table(
        f"W-ingest: drain of {count:,} pre-queued messages (~99 B JSON, 100 devices), per round",
        ["round", "qos", "consumer", "msg/s", "vs bare paho same QoS", "CPU us/msg"],
        rows,
    )


def report_summary(rounds: list[tuple[float, list[Drain]]]) -> None:
    rows = []
    qos_levels = sorted({d.qos for _, drains in rounds for d in drains}, reverse=True)
    for qos in qos_levels:
        base = [d for _, ds in rounds for d in ds if d.qos == qos and not is_agent(d)]
        agent = [d for _, ds in rounds for d in ds if d.qos == qos and is_agent(d)]
        ratio = statistics.median(ratios(ds)[qos] for _, ds in rounds)
        rows.append([
            f"QoS {qos}", fmt_int(statistics.median(d.rate for d in base)),
            fmt_int(statistics.median(d.rate for d in agent)), fmt_ratio(ratio),
            "meets" if ratio >= TARGET else "MISSES",
            f"{statistics.median(d.cpu_us_per_msg for d in base):.1f} / "
            f"{statistics.median(d.cpu_us_per_msg for d in agent):.1f}",
        ])  # fmt: skip
    print_table(
        f"W-ingest summary: medians over {len(rounds)} rounds",
        ["qos", "bare paho msg/s", "edgestream msg/s", "ratio (median of rounds)",
         "target >= 80 %", "CPU us/msg paho / edgestream"],
        rows,
    )  # fmt: skip


def report_inflight(count: int, result: tuple[float, list[Drain]]) -> None:
    _, drains = result
    rows = [[d.consumer, fmt_int(d.rate), fmt_ratio(ratios(drains)[1]) if is_agent(d) else
             "100 %"] for d in drains]  # fmt: skip
    print_table(
        f"Sensitivity: QoS 1 drain of {count:,} messages from a broker with mosquitto's"
        " default max_inflight_messages 20",
        ["consumer", "msg/s", "vs bare paho"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--qos", type=int, nargs="+", default=[1, 0])
    parser.add_argument(
        "--inflight-count",
        type=int,
        default=5_000,
        help="messages for the max_inflight_messages 20 case (0 skips it)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile the agent's drains with py-spy into DIR (skews them)",
    )
    args = parser.parse_args()
    print_machine()
    results = []
    for index in range(args.rounds):
        with temp_dir(f"ingest{index}") as tmp:
            results.append(one_round(tmp, args.count, args.qos, profile=args.py_spy))
    report_rounds(results, args.count)
    report_summary(results)
    if args.inflight_count:
        with temp_dir("inflight20") as tmp:
            small = one_round(tmp, args.inflight_count, [1], max_inflight=20)
        report_inflight(args.inflight_count, small)


if __name__ == "__main__":
    main()
