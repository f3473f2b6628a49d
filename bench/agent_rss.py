"""Agent memory: RSS of `edgestream run` idle, under MQTT load, and over a 1M-event backlog.

What it measures and why:
- Reference floors in the same run: a bare `python3`, and `python3` with the agent's
  dependencies imported (asyncio, ssl, sqlite3, paho, orjson, zstandard, yaml).
- The agent (`edgestream run` subprocess, default queue settings): one MQTT source
  (QoS 1, our own mosquitto) into a stream marked for uplink, and an uplink pointing
  at a port where no broker listens, so nothing ever drains.
  1. idle: VmRSS (from /proc/<pid>/status) 5 s after start;
  2. load: ~50,000 W-ingest messages published live at QoS 1; peak VmRSS sampled
     every 50 ms while they are stored, and VmRSS 5 s after;
  3. backlog: the agent is stopped, 1,000,000 events are appended to its stream
     (whose uplink consumer never acknowledges), the agent is started again and
     sampled at 5, 10 and 15 s.
Target: <= 40 MiB steady state with the 1,000,000-event backlog, flat.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from benchkit import (
    Edgestream,
    Mosquitto,
    free_port,
    host_port,
    ingest_payload,
    print_machine,
    print_table,
    query_int,
    rss_mib,
    temp_dir,
    wait_until,
    write_yaml,
)
from paho.mqtt.enums import CallbackAPIVersion

from agent.queue import DurableQueue, NewEvent, StreamLimits

STREAM = "sensors"
TARGET_MIB = 40.0
IMPORTS = "import asyncio, ssl, sqlite3, paho.mqtt.client, orjson, zstandard, yaml"


def reference_rss(code: str) -> float:
    """VmRSS of a python3 child running `code`, then sleeping."""
    child = subprocess.Popen([sys.executable, "-c", f"{code}\nimport time; time.sleep(30)"])
    try:
        time.sleep(2.0)
        return rss_mib(child.pid)
    finally:
        child.kill()
        child.wait()


def agent_config(tmp: Path, edge_url: str) -> dict[str, Any]:
    down = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there: the uplink never drains
    return {
        "device_id": "bench-rss",
        "data_dir": str(tmp / "agent-data"),
        "log_level": "warning",
        "streams": {STREAM: {"uplink": True, "max_bytes": "1GiB"}},
        "sources": [{
            "type": "mqtt", "name": "plant", "stream": STREAM,
            "broker": {"url": edge_url, "client_id": "bench-rss-source"},
            "topics": [{"topic": "plant/+/telemetry", "qos": 1}],
            "payload": {"format": "json", "time_field": "ts"},
            "key": {"field": "device"},
        }],
        "uplink": {"broker": {"url": down, "backoff_max": "5s"}},
    }  # fmt: skip


class Sampler:
    """Samples a process's VmRSS every 50 ms in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def publish_load(url: str, count: int, chunk: int = 5000) -> None:
    """Publish live at QoS 1 in bounded chunks (the agent is connected)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-rss-pub")
    c.max_inflight_messages_set(0)
    c.connect(*host_port(url))
    c.loop_start()
    for start in range(0, count, chunk):
        infos = [c.publish(*ingest_payload(i), qos=1) for i in range(start, start + chunk)]
        for info in infos:
            info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


async def fill_backlog(data_dir: Path, count: int, chunk: int = 5000) -> None:
    """Append `count` W-ingest events to the stream, generated chunk by chunk."""
    limits = {STREAM: StreamLimits(max_bytes=1 << 30, max_age=7 * 86400.0)}
    queue = await DurableQueue.open(data_dir, limits)
    now = time.time()
    for start in range(0, count, chunk):
        events = []
        for i in range(start, start + chunk):
            topic, payload = ingest_payload(i)
            events.append(NewEvent(now, now, topic.split("/")[1], topic, payload))
        await queue.append(STREAM, events)
    await queue.close()


def stored(db: Path) -> int:
    return query_int(db, "SELECT next_seq - 1 FROM streams WHERE name = ?", STREAM)


def depth(db: Path) -> int:
    return query_int(db, "SELECT count(*) FROM events")


def measure(tmp: Path, load: int, backlog: int) -> list[list[str]]:
    rows: list[list[str]] = []
    db = tmp / "agent-data" / "queue.db"
    with Mosquitto(tmp / "edge") as edge:
        config = write_yaml(tmp / "agent.yaml", agent_config(tmp, edge.url))
        with Edgestream("run", config) as agent:
            time.sleep(5.0)
            agent.check_alive()
            rows.append(["idle, 5 s after start, empty queue", f"{rss_mib(agent.pid):.1f}"])
            with Sampler(agent.pid) as sampler:
                publish_load(edge.url, load)
                wait_until(lambda: stored(db) >= load, 60, "the load to be stored")
            rows.append([f"peak while storing {load:,} QoS 1 messages", f"{sampler.peak:.1f}"])
            time.sleep(5.0)
            rows.append(["5 s after the load", f"{rss_mib(agent.pid):.1f}"])
        started = time.perf_counter()
        asyncio.run(fill_backlog(tmp / "agent-data", backlog))
        fill_s = time.perf_counter() - started
        held = depth(db)
        with Edgestream("run", config) as agent:
            for seconds in (5, 10, 15):
                time.sleep(5.0)
                agent.check_alive()
                rows.append([f"restarted over a {held:,}-event backlog, at {seconds} s",
                             f"{rss_mib(agent.pid):.1f}"])  # fmt: skip
    print(f"(backlog of {backlog:,} events appended in {fill_s:.1f} s)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, default=50_000)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    args = parser.parse_args()
    print_machine()
    rows = [
        ["reference: bare python3", f"{reference_rss('pass'):.1f}"],
        ["reference: python3 + agent dependencies imported", f"{reference_rss(IMPORTS):.1f}"],
    ]
    with temp_dir("rss") as tmp:
        rows += measure(tmp, args.load, args.backlog)
    last = float(rows[-1][1])
    verdict = "meets" if last <= TARGET_MIB else "MISSES"
    rows.append([f"target: <= {TARGET_MIB:.0f} MiB with the backlog, flat", verdict])
    print_table("Agent RSS (VmRSS, MiB)", ["state", "MiB"], rows)


if __name__ == "__main__":
    main()
