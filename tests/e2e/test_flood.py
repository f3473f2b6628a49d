"""A flood of MQTT messages faster than the agent can commit (issue 7, promises 1 and 5).

How the agent is made slower than the flood: its queue commits at most every 250 ms
and its source holds at most `MAX_PENDING` messages waiting for a commit, so it can
store at most about MAX_PENDING / 0.25 s = 1,000 messages a second. A slow SD card
looks the same to the agent (a commit that takes long while messages pile up), and
it needs no change to the writer, no cgroup (read-only here) and no FUSE mount. Four
QoS 1 publishers offer several times that rate; each test checks that premise (the
broker really held a backlog the agent had not taken).

The broker gets room for everything (tests/brokers.py: no queue or in-flight limit),
so a message it acknowledged to a publisher can only be lost by the agent. The stream
is small (`MAX_BYTES`), so its overflow policy applies:
- block: the agent stops acknowledging while the stream is full; once a consumer (the
  uplink to a hub) drains it, every published number reaches the hub exactly once;
- drop_oldest / drop_newest: the stream never holds more than `MAX_BYTES`, every
  published message took exactly one sequence number, and each sequence number is
  either stored or inside a gap recorded with its reason, counted the same in the
  database and in the metrics.
In every case the agent's RSS, sampled from /proc during the whole intake, stays
under `RSS_LIMIT_MIB` and does not grow after warm-up.

The 10-million-event backlog itself is a benchmark (bench/backlog_10m.py); here a
1,000,000-event backlog checks that `status` costs no more with it than without.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.queue import schema
from agent.queue.records import SQL_EVENT_SIZE, StreamLimits, event_size
from agent.queue.streams import load_streams, save_counters
from tests.brokers import BrokerFactory, MosquittoBroker, free_port
from tests.e2e.harness import (
    EdgestreamProcess,
    hub_config,
    hub_count,
    query,
    queue_last_seq,
    wait_until,
    write_yaml,
)

pytestmark = pytest.mark.slow

PUBLISHERS = 4
PER_PUBLISHER = 2_500
TOTAL = PUBLISHERS * PER_PUBLISHER
MAX_BYTES = 64 * 1024
MAX_PENDING = 250
COMMIT_INTERVAL = "250ms"
LARGEST_EVENT = 200  # bytes a flood event counts against max_bytes, at most (checked)
RSS_LIMIT_MIB = 80.0
RSS_GROWTH_MIB = 8.0
WARM_UP = 3.0  # seconds of samples that set the RSS baseline
STREAM = "sensors"
SOURCE_CLIENT_ID = "edgestream-pi-flood-flood"  # the agent's default: edgestream-<device>-<source>


# ----------------------------------------------------------------------------- the flood


@dataclass
class Flood:
    """Several numbered QoS 1 publishers in threads, each waiting for its PUBACKs in chunks.

    `acked` counts messages the broker acknowledged: the ones the agent must not lose.
    """

    url: str
    publishers: int = PUBLISHERS
    per_publisher: int = PER_PUBLISHER
    acked: int = 0
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Flood:
        for p in range(self.publishers):
            thread = threading.Thread(target=self._publish, args=(p,), name=f"flood-{p}")
            thread.start()
            self._threads.append(thread)
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "publishers did not finish"
        assert not self.errors, self.errors

    @property
    def expected(self) -> set[tuple[int, int]]:
        return {(p, n) for p in range(self.publishers) for n in range(self.per_publisher)}

    def _publish(self, p: int, chunk: int = 500) -> None:
        host, port = self.url.removeprefix("mqtt://").split(":")
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-pub-{p}")
        client.max_inflight_messages_set(chunk)
        client.connect(host, int(port))
        client.loop_start()
        try:
            for start in range(0, self.per_publisher, chunk):
                stop = min(start + chunk, self.per_publisher)
                infos = [client.publish(f"flood/p{p}", payload(p, n), qos=1)
                         for n in range(start, stop)]  # fmt: skip
                for info in infos:
                    info.wait_for_publish(60)
                with self._lock:
                    self.acked += sum(info.is_published() for info in infos)
        except (RuntimeError, ValueError, OSError) as exc:
            self.errors.append(f"publisher {p}: {exc}")
        finally:
            client.disconnect()
            client.loop_stop()


def payload(p: int, n: int) -> bytes:
    """Message n of publisher p: ~90 bytes of JSON that name their origin."""
    return orjson.dumps({"p": p, "n": n, "ts": 1764201600.0 + n * 0.001,
                         "value": (n * 7) % 101 / 4, "pad": "x" * 24})  # fmt: skip


# ----------------------------------------------------------------------------- sampling


@dataclass
class Sampler:
    """Every 100 ms: the agent's VmRSS, the stream's size (both ways) and the broker's lead.

    The lead is what the broker acknowledged to publishers minus what the agent stored:
    messages held in the broker because the agent was behind.
    """

    pid: int
    db: Path
    flood: Flood
    rss: list[tuple[float, float]] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    max_lead: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="flood-sampler")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(0.1):
            rss = rss_mib(self.pid)
            if rss is not None:
                self.rss.append((time.monotonic() - started, rss))
            self.sizes.append(stream_sizes(self.db))
            self.max_lead = max(self.max_lead, self.flood.acked - queue_last_seq(self.db))

    def check_memory(self) -> None:
        """Bounded (under the limit) and flat (no growth past the warm-up's peak)."""
        assert len(self.rss) >= 20, f"too few RSS samples: {self.rss}"
        peak = max(mib for _, mib in self.rss)
        warm = max(mib for at, mib in self.rss if at <= WARM_UP)
        late = max((mib for at, mib in self.rss if at > WARM_UP), default=warm)
        assert peak < RSS_LIMIT_MIB, f"agent RSS peaked at {peak:.1f} MiB"
        assert late - warm <= RSS_GROWTH_MIB, f"RSS grew {warm:.1f} -> {late:.1f} MiB"

    def check_backlog(self) -> None:
        """The premise: the broker held messages the agent had not taken yet."""
        assert self.max_lead >= 4 * MAX_PENDING, (
            f"the broker was at most {self.max_lead} messages ahead of the agent: "
            "the flood was not faster than the agent"
        )


def rss_mib(pid: int) -> float | None:
    """VmRSS of a process in MiB, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return None if found is None else int(found.group(1)) / 1024


def stream_sizes(db: Path) -> tuple[int, int]:
    """(the agent's byte count, the bytes its stored rows really take) of the stream."""
    rows = query(
        db,
        f"SELECT s.bytes, (SELECT coalesce(sum({SQL_EVENT_SIZE}), 0) FROM events e"
        " WHERE e.stream_id = s.id) FROM streams s WHERE s.name = ?",
        STREAM,
    )
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


# ----------------------------------------------------------------------------- agent


def flood_agent_config(tmp: Path, edge_url: str, overflow: str, hub_url: str | None) -> Path:
    config: dict[str, Any] = {
        "device_id": "pi-flood",
        "data_dir": str(tmp / "agent-data"),
        "queue": {"commit_interval": COMMIT_INTERVAL, "max_pending": MAX_PENDING},
        "streams": {STREAM: {"max_bytes": MAX_BYTES, "overflow": overflow,
                             "uplink": hub_url is not None}},
        "sources": [{
            "type": "mqtt", "name": "flood", "stream": STREAM,
            "broker": {"url": edge_url, "backoff_initial": "200ms", "backoff_max": "1s"},
            "topics": [{"topic": "flood/#", "qos": 1}],
        }],
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
    }  # fmt: skip
    if hub_url is not None:
        config["uplink"] = {
            "broker": {"url": hub_url, "backoff_initial": "200ms", "backoff_max": "1s"},
            "batch_max_events": 1000, "batch_max_delay": "100ms", "ack_timeout": "5s",
        }  # fmt: skip
    return write_yaml(tmp / "run.yaml", config)


def start(
    processes: list[EdgestreamProcess], tmp: Path, command: str, config: Path
) -> EdgestreamProcess:
    proc = EdgestreamProcess(command, config, tmp / f"{command}.log").start()
    processes.append(proc)
    return proc


def metrics_text(config: Path) -> str:
    """The agent's /metrics, or "" while it does not answer."""
    listen = re.search(r"listen: (\S+)", config.read_text())
    assert listen is not None
    try:
        with urllib.request.urlopen(f"http://{listen.group(1)}/metrics", timeout=5) as answer:
            text: str = answer.read().decode()
            return text
    except OSError:
        return ""


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample whose labels include `labels`."""
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if not head.startswith(name + "{") and head != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def wait_connected(config: Path, agent: EdgestreamProcess) -> None:
    """Until the source reports itself connected: the flood then meets a running agent."""

    def connected() -> bool:
        return metric(metrics_text(config), "edgestream_source_connected", source="flood") == 1

    wait_until(connected, 30, "the MQTT source to connect", agent)


def persistent_session(url: str, client_id: str, topic: str) -> None:
    """Subscribe once as `client_id` with a persistent session, then leave.

    The broker queues matching QoS 1 messages for that client from now on, so no
    message can arrive before the agent (or the hub) has subscribed.
    """
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(host, int(port))
    client.loop_start()
    try:
        client.subscribe(topic, 1)
        assert subscribed.wait(10), f"no SUBACK for {client_id}"
    finally:
        client.disconnect()
        client.loop_stop()


def stored_numbers(db: Path) -> list[tuple[int, tuple[int, int]]]:
    """(seq, (publisher, n)) of every event the agent's stream holds."""
    rows = query(db, "SELECT e.seq, e.payload FROM events e JOIN streams s ON s.id ="
                 " e.stream_id WHERE s.name = ? ORDER BY e.seq", STREAM)  # fmt: skip
    return [(seq, origin(body)) for seq, body in rows]


def origin(body: bytes) -> tuple[int, int]:
    event = orjson.loads(body)
    return int(event["p"]), int(event["n"])


# ----------------------------------------------------------------------------- tests


def test_block_withholds_acks_until_drained_and_every_number_arrives_once(
    tmp_path: Path, mosquitto: MosquittoBroker, mosquitto_factory: BrokerFactory,
    processes: list[EdgestreamProcess],
) -> None:  # fmt: skip
    """overflow block: full stream, no acks, the broker keeps the rest; drained, all arrive."""
    central = mosquitto_factory()
    persistent_session(central.url, "edgestream-hub-hub-test", "edgestream/+/up")
    persistent_session(mosquitto.url, SOURCE_CLIENT_ID, "flood/#")
    write_yaml(tmp_path / "hub.yaml", hub_config(tmp_path, central.url))
    hub = start(processes, tmp_path, "hub", tmp_path / "hub.yaml")
    config = flood_agent_config(tmp_path, mosquitto.url, "block", central.url)
    agent = start(processes, tmp_path, "run", config)
    db, hub_db = tmp_path / "agent-data" / "queue.db", tmp_path / "hub-data" / "central.db"
    wait_connected(config, agent)
    wait_until(hub_db.exists, 30, "the hub's store", hub)
    central.stop()  # the only consumer is away: the stream fills and stays full

    assert agent.process is not None
    flood = Flood(mosquitto.url).start()
    with Sampler(agent.process.pid, db, flood) as sampler:
        flood.join(120)
        assert flood.acked == TOTAL, "the broker refused part of the flood"
        full = MAX_BYTES - LARGEST_EVENT
        wait_until(lambda: stream_sizes(db)[1] >= full, 30, "the stream to fill", agent)
        held = queue_last_seq(db)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # blocked: nothing more is taken in
            assert queue_last_seq(db) == held, "the agent stored past a full block stream"
            time.sleep(0.2)
        assert held < TOTAL // 4, f"{held} of {TOTAL} stored in a {MAX_BYTES}-byte stream"

        central.start()
        wait_until(lambda: hub_count(hub_db) >= TOTAL, 120, f"{TOTAL} events at the hub",
                   agent, hub)  # fmt: skip
    assert agent.alive, agent.log_tail()
    sampler.check_backlog()
    sampler.check_memory()
    # one commit group may land on a stream just under its budget: at most MAX_PENDING events
    over = [s for s in sampler.sizes if s[1] > MAX_BYTES + MAX_PENDING * LARGEST_EVENT]
    assert not over, f"the block stream grew past its budget: {over[:3]}"

    at_hub = [origin(body) for (body,) in query(hub_db, "SELECT payload FROM events"
                                               " WHERE stream = ?", STREAM)]  # fmt: skip
    assert len(at_hub) == TOTAL, f"{len(at_hub)} events at the hub for {TOTAL} published"
    assert set(at_hub) == flood.expected, "a published number is missing or foreign"
    assert query(hub_db, "SELECT count(*) FROM gaps") == [(0,)]
    assert not query(db, "SELECT name, value FROM counters WHERE name LIKE 'dropped.%'")


POLICIES = [("drop_oldest", "max_bytes"), ("drop_newest", "drop_newest")]


@pytest.mark.parametrize(("overflow", "reason"), POLICIES)
def test_drop_policy_keeps_the_budget_and_accounts_for_every_number(
    tmp_path: Path, mosquitto: MosquittoBroker, processes: list[EdgestreamProcess],
    overflow: str, reason: str,
) -> None:  # fmt: skip
    """overflow drop_*: within max_bytes, and every message stored or in a recorded gap."""
    persistent_session(mosquitto.url, SOURCE_CLIENT_ID, "flood/#")
    config = flood_agent_config(tmp_path, mosquitto.url, overflow, None)
    agent = start(processes, tmp_path, "run", config)
    db = tmp_path / "agent-data" / "queue.db"
    wait_connected(config, agent)

    assert agent.process is not None
    flood = Flood(mosquitto.url).start()
    with Sampler(agent.process.pid, db, flood) as sampler:
        flood.join(120)
        assert flood.acked == TOTAL, "the broker refused part of the flood"
        wait_until(lambda: queue_last_seq(db) >= TOTAL, 120, f"{TOTAL} messages taken", agent)
    wait_until(lambda: "edgestream_stream_dropped" in metrics_text(config), 30, "metrics", agent)
    text = metrics_text(config)
    sampler.check_backlog()
    sampler.check_memory()
    over = [s for s in sampler.sizes if max(s) > MAX_BYTES]
    assert not over, f"the stream exceeded max_bytes {MAX_BYTES}: {over[:3]}"
    assert agent.terminate() == 0, agent.log_tail()

    assert queue_last_seq(db) == TOTAL, "a message took no sequence number, or two"
    check_accounting(db, flood, reason)
    dropped = query(db, "SELECT value FROM counters WHERE stream = ? AND name = ?",
                    STREAM, f"dropped.{reason}")  # fmt: skip
    gapped = gap_seqs(db, reason)
    assert dropped == [(len(gapped),)], f"counter {dropped} for {len(gapped)} gapped events"
    reported = metric(text, "edgestream_stream_dropped_events_total", stream=STREAM, reason=reason)
    assert reported == len(gapped), f"metric {reported} for {len(gapped)} gapped events"


def check_accounting(db: Path, flood: Flood, reason: str) -> None:
    """Every sequence number stored or gapped, never both; stored numbers are distinct."""
    stored = stored_numbers(db)
    seqs = {seq for seq, _ in stored}
    gapped = gap_seqs(db, reason)
    assert not seqs & gapped, "an event is both stored and reported missing"
    missing = set(range(1, TOTAL + 1)) - seqs - gapped
    assert not missing, f"{len(missing)} sequence numbers silently missing: {sorted(missing)[:5]}"
    numbers = [number for _, number in stored]
    assert len(set(numbers)) == len(numbers), "a published message was stored twice"
    assert set(numbers) <= flood.expected
    assert stream_sizes(db)[0] == stream_sizes(db)[1] <= MAX_BYTES
    assert max(len(payload(p, n)) for p, n in numbers) + 40 + len("flood/p0") <= LARGEST_EVENT
    assert 0 < len(stored) < TOTAL, "no drop happened: the budget did not bind"


def gap_seqs(db: Path, reason: str) -> set[int]:
    """Sequence numbers inside the stream's recorded gaps (all of the expected reason)."""
    rows = query(db, "SELECT g.first_seq, g.last_seq, g.reason FROM gaps g JOIN streams s"
                 " ON s.id = g.stream_id WHERE s.name = ?", STREAM)  # fmt: skip
    assert {r for _, _, r in rows} <= {reason}, f"unexpected gap reasons: {rows}"
    seqs: set[int] = set()
    for first, last, _ in rows:
        seqs.update(range(first, last + 1))
    return seqs


# ----------------------------------------------------------------------------- backlog

BACKLOG = 1_000_000


def test_status_cost_does_not_grow_with_the_backlog(
    tmp_path: Path, processes: list[EdgestreamProcess]
) -> None:
    """`GET /status` over a 1,000,000-event backlog costs about what it costs over none."""
    empty = status_seconds(tmp_path, processes, "empty", 0)
    full = status_seconds(tmp_path, processes, "full", BACKLOG)
    assert full < 3 * empty + 0.02, f"/status {full:.3f} s over the backlog, {empty:.3f} s without"


def status_seconds(tmp: Path, processes: list[EdgestreamProcess], name: str, events: int) -> float:
    """Median time of five `GET /status` to an agent started over `events` queued events."""
    build_backlog(tmp / name, events)
    config = write_yaml(tmp / f"{name}.yaml", {
        "device_id": "pi-backlog", "data_dir": str(tmp / name),
        "streams": {STREAM: {"max_bytes": "1GiB"}},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
    })  # fmt: skip
    agent = start(processes, tmp, "run", config)
    wait_until(lambda: bool(metrics_text(config)), 60, "the agent's endpoints", agent)
    seconds = statistics.median(timed_get(config, "/status") for _ in range(5))
    assert agent.terminate() == 0, agent.log_tail()
    return seconds


def timed_get(config: Path, endpoint: str) -> float:
    listen = re.search(r"listen: (\S+)", config.read_text())
    assert listen is not None
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://{listen.group(1)}{endpoint}", timeout=60) as answer:
        answer.read()
    return time.perf_counter() - started


def build_backlog(data_dir: Path, count: int) -> None:
    """A queue database holding `count` events, written straight into the queue's schema.

    The same rows and counters `DurableQueue.append` writes (bench/backlog_10m.py does
    the same at 10 million), in a few seconds instead of a minute.
    """
    data_dir.mkdir(parents=True)
    conn = schema.connect(str(data_dir / "queue.db"), "normal")
    schema.ensure_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    state = load_streams(conn, {STREAM: StreamLimits(2**30, 7 * 86400.0)})[STREAM]
    now, topic = time.time(), "flood/p0"
    rows = ((state.id, n + 1, now, now, None, topic, payload(0, n), None) for n in range(count))
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    state.next_seq = count + 1
    state.bytes = sum(event_size(payload(0, n), None, topic, None) for n in range(count))
    save_counters(conn, [state])
    conn.execute("COMMIT")
    conn.close()
