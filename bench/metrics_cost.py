"""Operability cost (issue 6): idle CPU and RSS of agent and hub, and the cost of a scrape.

What it measures and why:
- A real Mosquitto on a free port, a real hub (`edgestream hub`, SQLite store) and a
  real agent (`edgestream run`: one MQTT source at QoS 1, streams `sensors` and
  `windows`, a 10 s window pipeline, an uplink of both streams to the hub).
- The hub's store knows a fleet of `--devices` devices before the hub starts: the
  script commits one batch of `--events` W-wire events per device id through the
  store's own API (`SqliteCentralStore.commit_now`) on the hub's database. The hub then
  serves per-device gauges for all of them, which is what makes its scrape grow.
1. Idle: nothing is published. After a warm-up, for `--seconds`: CPU % of one core
   from /proc/<pid>/stat (utime + stime + cutime + cstime delta over wall time; 10 ms
   ticks) and VmRSS at the end, for agent and hub, with metrics on (the default) and
   again with `metrics: {enabled: false}`.
2. Scrapes (metrics on): `--scrapes` GET /metrics in a row on agent and hub, one new
   TCP connection each, as `curl` or a first Prometheus scrape: client-side wall time
   (median, p99), the server's CPU per scrape (its CPU delta over the loop minus its
   idle rate over the same time, divided by the count), and the exposition's size in
   bytes and sample lines.
Targets: none for idle cost in PERFORMANCE.md; RSS is compared with the agent's 40 MiB
steady-state target and the 28 MiB floor of python3 with the agent's dependencies.

Run: python3 bench/metrics_cost.py [--seconds 60 --scrapes 200 --devices 100]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from benchkit import (
    Edgestream,
    Mosquitto,
    free_port,
    print_machine,
    print_table,
    rss_mib,
    temp_dir,
    w_wire,
    wait_until,
    write_yaml,
)

from sync.hub.store import SqliteCentralStore
from sync.outbox import StoredEvent
from sync.wire import Batch

WARM_UP = 5.0
AGENT_TARGET_MIB = 40.0
DEPENDENCY_FLOOR_MIB = 28.0  # PERFORMANCE.md: python3 + the agent's imports, one connection


@dataclass(frozen=True)
class Idle:
    """One process's idle figures over one window."""

    cpu_pct: float
    rss: float


@dataclass(frozen=True)
class Scrapes:
    """What `count` scrapes of one endpoint cost."""

    median_ms: float
    p99_ms: float
    cpu_ms: float
    size: int
    lines: int
    rss_after: float


def proc_cpu(pid: int) -> float:
    """utime + stime + cutime + cstime of a process in seconds, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ configs


def hub_config(tmp: Path, broker: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "hub_id": "bench-hub",
        "log_level": "warning",
        "broker": {"url": broker},
        "store": {"type": "sqlite", "path": str(tmp / "hub" / "central.db")},
        "metrics": metrics,
    }


def agent_config(tmp: Path, broker: str, metrics: dict[str, Any]) -> dict[str, Any]:
    window = {"size": "10s", "key": "device", "aggregates": {"avg": "avg(value)", "n": "count()"}}
    return {
        "device_id": "bench-agent",
        "data_dir": str(tmp / "agent"),
        "log_level": "warning",
        "streams": {"sensors": {"uplink": True}, "windows": {"uplink": True}},
        "sources": [{
            "type": "mqtt", "name": "plant", "stream": "sensors", "broker": {"url": broker},
            "topics": [{"topic": "plant/+/telemetry", "qos": 1}],
            "payload": {"format": "json", "time_field": "ts"}, "key": {"field": "device"},
        }],
        "pipelines": [{"name": "per_device_10s", "input": "sensors", "output": "windows",
                       "steps": [{"filter": "value > 0"}, {"window": window}]}],
        "uplink": {"broker": {"url": broker}},
        "metrics": metrics,
    }  # fmt: skip


def metrics_section(enabled: bool) -> dict[str, Any]:
    return {"listen": f"127.0.0.1:{free_port()}"} if enabled else {"enabled": False}


# ------------------------------------------------------------------ the fleet


def seed_fleet(db: Path, devices: int, events: int) -> None:
    """Commit one batch of W-wire events per device id through the hub's store API."""
    payloads = w_wire(events)
    store = SqliteCentralStore(db)
    try:
        now = time.time()
        batches = []
        for d in range(devices):
            stored = [
                StoredEvent(i + 1, e["ts"], now, e["device"], "plant", orjson.dumps(e))
                for i, e in enumerate(payloads)
            ]
            batches.append(Batch(f"fleet-{d:03d}", "bench", "sensors", stored, [], events, now))
        store.commit_now(batches)
    finally:
        store.close_now()


# ------------------------------------------------------------------ measuring


@contextmanager
def running(tmp: Path, broker: str, metrics: bool) -> Iterator[tuple[Edgestream, Edgestream]]:
    """Hub and agent started on `broker`, metrics on or off; stopped by PID at the end."""
    name = "on" if metrics else "off"
    hub_yaml = write_yaml(
        tmp / f"hub-{name}.yaml", hub_config(tmp, broker, metrics_section(metrics))
    )
    agent_yaml = write_yaml(
        tmp / f"agent-{name}.yaml", agent_config(tmp, broker, metrics_section(metrics))
    )
    with ExitStack() as stack:
        hub = stack.enter_context(Edgestream("hub", hub_yaml))
        agent = stack.enter_context(Edgestream("run", agent_yaml))
        time.sleep(WARM_UP)
        hub.check_alive()
        agent.check_alive()
        yield agent, hub


def idle(procs: list[Edgestream], seconds: float) -> list[Idle]:
    """CPU % of one core of each process over the same `seconds`, and VmRSS at the end."""
    before = [proc_cpu(p.pid) for p in procs]
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    for p in procs:
        p.check_alive()
    return [
        Idle((proc_cpu(p.pid) - b) / elapsed * 100, rss_mib(p.pid))
        for p, b in zip(procs, before, strict=True)
    ]


def metrics_port(config: Path) -> int:
    listen: str = yaml.safe_load(config.read_text())["metrics"]["listen"]
    return int(listen.rpartition(":")[2])


def get_metrics(port: int) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET /metrics on {port}: HTTP {response.status}")
        return body
    finally:
        conn.close()


def scrapes(proc: Edgestream, idle_pct: float, count: int) -> Scrapes:
    """`count` scrapes in a row: client wall time, server CPU net of idle, body size."""
    port = metrics_port(proc.config)
    body = get_metrics(port)  # warm: first-call imports and caches
    times = []
    cpu_before, started = proc_cpu(proc.pid), time.monotonic()
    for _ in range(count):
        t0 = time.perf_counter()
        body = get_metrics(port)
        times.append(time.perf_counter() - t0)
    elapsed = time.monotonic() - started
    cpu = proc_cpu(proc.pid) - cpu_before - idle_pct / 100 * elapsed
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * len(times)) - 1)]
    return Scrapes(
        statistics.median(times) * 1e3, p99 * 1e3, max(0.0, cpu) / count * 1e3, len(body),
        samples, rss_mib(proc.pid),
    )  # fmt: skip


def wait_fleet_known(proc: Edgestream, devices: int) -> None:
    """The hub's scrape lists every seeded device."""
    port = metrics_port(proc.config)

    def listed() -> bool:
        return get_metrics(port).count(b"edgestream_hub_device_events_total{") >= devices

    wait_until(listed, 30, f"{devices} devices in the hub's /metrics")


# ------------------------------------------------------------------ main


def measure(tmp: Path, seconds: float, count: int, devices: int, events: int) -> None:
    seed_fleet(tmp / "hub" / "central.db", devices, events)
    with Mosquitto(tmp / "mosquitto") as broker:
        with running(tmp, broker.url, metrics=True) as (agent, hub):
            wait_fleet_known(hub, devices)
            on = idle([agent, hub], seconds)
            scraped = [scrapes(agent, on[0].cpu_pct, count), scrapes(hub, on[1].cpu_pct, count)]
        with running(tmp, broker.url, metrics=False) as (agent, hub):
            off = idle([agent, hub], seconds)
    print_idle(seconds, on, off)
    print_scrapes(count, devices, scraped, on)


def print_idle(seconds: float, on: list[Idle], off: list[Idle]) -> None:
    rows = []
    for name, with_, without in zip(("agent", "hub"), on, off, strict=True):
        rows.append([name, f"{with_.cpu_pct:.3f}", f"{without.cpu_pct:.3f}",
                     f"{with_.rss:.1f}", f"{without.rss:.1f}",
                     f"{with_.rss - without.rss:+.1f}"])  # fmt: skip
    print_table(
        f"Idle over {seconds:.0f} s (CPU % of one core, children included; VmRSS at the end)",
        ["process", "CPU % metrics on", "CPU % metrics off", "RSS MiB on", "RSS MiB off",
         "RSS of the endpoint"],
        rows,
    )  # fmt: skip
    agent_rss = on[0].rss
    print_table(
        "Agent RSS against PERFORMANCE.md",
        ["reference", "MiB", "agent idle, metrics on / reference"],
        [
            ["target: steady state with a 1M-event backlog", f"{AGENT_TARGET_MIB:.0f}",
             f"{agent_rss / AGENT_TARGET_MIB:.2f}x"],
            ["floor: python3 + the agent's dependencies", f"{DEPENDENCY_FLOOR_MIB:.0f}",
             f"{agent_rss / DEPENDENCY_FLOOR_MIB:.2f}x"],
        ],
    )  # fmt: skip


def print_scrapes(count: int, devices: int, scraped: list[Scrapes], on: list[Idle]) -> None:
    rows = []
    for name, s, i in zip(("agent", f"hub, {devices} devices known"), scraped, on, strict=True):
        at_15s = s.cpu_ms / 15_000 * 100
        rows.append([name, f"{s.median_ms:.1f}", f"{s.p99_ms:.1f}", f"{s.cpu_ms:.1f}",
                     f"{s.size:,}", f"{s.lines:,}", f"{s.rss_after - i.rss:+.1f}", f"{at_15s:.3f}",
                     f"{at_15s / i.cpu_pct:.2f}x" if i.cpu_pct > 0 else "-"])  # fmt: skip
    print_table(
        f"GET /metrics, {count} scrapes in a row (new connection each)",
        ["endpoint", "median ms", "p99 ms", "server CPU ms per scrape", "bytes", "samples",
         "RSS MiB after vs idle", "CPU % at one scrape per 15 s", "vs idle CPU"],
        rows,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle window per case")
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--devices", type=int, default=100, help="devices the hub knows")
    parser.add_argument("--events", type=int, default=100, help="events per seeded device")
    args = parser.parse_args()
    print_machine()
    with temp_dir("metrics") as tmp:
        measure(tmp, args.seconds, args.scrapes, args.devices, args.events)


if __name__ == "__main__":
    main()
