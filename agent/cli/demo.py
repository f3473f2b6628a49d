"""`edgestream demo`: the whole system on one machine, with nothing else installed.

It starts an embedded MQTT broker (amqtt, from PyPI) on a free loopback port, a hub
with its SQLite store, the agent with a demo config (simulated sensors publishing over
MQTT into the agent, a filter + 10 s window pipeline, uplink to the hub), and prints
what flowed every few seconds. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from agent.cli.common import install_stop_signals
from agent.config.load import load_agent_config
from agent.daemon import Agent
from agent.logs import setup_logging
from sync.hub.config import SqliteStoreConfig, load_hub_config
from sync.hub.service import Hub
from sync.hub.store import SqliteCentralStore
from sync.mqtt.connection import MqttConnection

log = logging.getLogger(__name__)

AGENT_YAML = """\
device_id: demo-pi
data_dir: {data_dir}/agent
queue:
  commit_interval: 100ms
streams:
  sensors: {{max_bytes: 64MiB, max_age: 1d}}
  sensors_10s: {{max_bytes: 16MiB, max_age: 7d, uplink: true}}
sources:
  - type: mqtt
    name: local
    stream: sensors
    broker: {{url: "mqtt://127.0.0.1:{port}"}}
    topics: [{{topic: "demo/sensors/#", qos: 1}}]
    payload: {{format: json, time_field: ts}}
    key: {{topic_segment: 2}}
pipelines:
  - name: temp_10s
    input: sensors
    output: sensors_10s
    steps:
      - filter: "sensor == 'temp' and value > -40"
      - window:
          size: 10s
          lateness: 1s
          idle: 15s
          aggregates:
            count: count()
            avg: avg(value)
            min: min(value)
            max: max(value)
uplink:
  broker: {{url: "mqtt://127.0.0.1:{port}"}}
  batch_max_delay: 500ms
"""

HUB_YAML = """\
hub_id: demo-hub
broker: {{url: "mqtt://127.0.0.1:{port}"}}
store: {{type: sqlite, path: "{data_dir}/hub/central.db"}}
"""


def register(commands: Any) -> None:
    """Add the `demo` subcommand."""
    parser = commands.add_parser("demo", help="run broker + agent + hub on this machine")
    parser.add_argument("--data-dir", default="./edgestream-demo", help="where both databases go")
    parser.add_argument("--duration", type=float, default=0, help="stop after N seconds (0: never)")
    parser.add_argument("--rate", type=float, default=20.0, help="simulated readings per second")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between reports")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C or `--duration`."""
    setup_logging("warning")
    try:
        from amqtt.broker import Broker  # noqa: F401
    except ImportError:
        print("the demo needs the embedded broker: pip install 'edgestream[demo]'", file=sys.stderr)
        return 1
    asyncio.run(_demo(Path(args.data_dir).resolve(), args.duration, args.rate, args.interval))
    return 0


def free_port() -> int:
    """A free TCP port on loopback (never 1883: a real broker may own it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _demo(data_dir: Path, duration: float, rate: float, interval: float) -> None:
    from amqtt.broker import Broker

    port = free_port()
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    agent_cfg = _write_config(data_dir / "agent.yaml", AGENT_YAML, data_dir, port)
    hub_cfg = _write_config(data_dir / "hub.yaml", HUB_YAML, data_dir, port)
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    print(f"embedded broker on 127.0.0.1:{port}; data in {data_dir}")
    try:
        await _run_all(agent_cfg, hub_cfg, duration, rate, interval)
    finally:
        await broker.shutdown()


def _write_config(path: Path, template: str, data_dir: Path, port: int) -> Path:
    path.write_text(template.format(data_dir=data_dir, port=port), encoding="utf-8")
    return path


async def _run_all(
    agent_path: Path, hub_path: Path, duration: float, rate: float, interval: float
) -> None:
    agent_config = load_agent_config(agent_path)
    hub_config = load_hub_config(hub_path)
    settings = hub_config.store
    if not isinstance(settings, SqliteStoreConfig):  # the demo's own template says sqlite
        raise TypeError("the demo hub runs on the SQLite store")
    store = SqliteCentralStore(settings.path, settings.synchronous)
    hub = Hub(hub_config, store)
    agent = Agent(agent_config)
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        async with asyncio.TaskGroup() as group:
            hub_task = group.create_task(hub.run(), name="edgestream[demo.hub]")
            group.create_task(agent.run(stop), name="edgestream[demo.agent]")
            sim = group.create_task(_simulate(agent_config, rate), name="edgestream[demo.sim]")
            report = group.create_task(
                _report(agent, hub, interval), name="edgestream[demo.report]"
            )
            if duration > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(duration):
                        await stop.wait()
            else:
                await stop.wait()
            stop.set()
            for task in (sim, report, hub_task):
                task.cancel()
    finally:
        store.close_now()
    print("demo stopped cleanly")


async def _simulate(config: Any, rate: float) -> None:
    """Simulated sensors publishing over MQTT: 5 devices x (temp, humidity)."""
    broker = config.sources[0].broker
    conn = MqttConnection(broker, client_id="edgestream-demo-sim", name="demo.sim")
    rnd = random.Random(7)
    async with asyncio.TaskGroup() as group:
        group.create_task(conn.run(), name="edgestream[demo.sim].mqtt")
        await conn.wait_connected()
        i = 0
        while True:
            device, sensor = f"dev-{i % 5}", ("temp", "humidity")[(i // 5) % 2]
            base = 21.0 if sensor == "temp" else 45.0
            value = round(base + 3 * math.sin(i / 200) + rnd.gauss(0, 0.3), 2)
            body = {"device": device, "sensor": sensor, "ts": time.time(), "value": value}
            # Every 500th reading is malformed, to show the dead-letter path.
            payload = b"{not json" if i % 500 == 499 else orjson.dumps(body)
            await conn.publish(f"demo/sensors/{device}/{sensor}", payload, qos=1)
            i += 1
            await asyncio.sleep(1.0 / rate)


async def _report(agent: Agent, hub: Hub, interval: float) -> None:
    columns = ("ingested", "dead", "windows", "synced", "hub", "backlog")
    print(f"{'time':>8} " + " ".join(f"{c:>9}" for c in columns))
    started = time.monotonic()
    while True:
        await asyncio.sleep(interval)
        parts = agent.parts
        ingested = sum(s.stats.stored for s in parts.sources)
        dead = sum(getattr(s.stats, "dead_lettered", 0) for s in parts.sources)
        windows = sum(p.stats.events_out for p in parts.pipelines)
        synced = parts.uplink.stats.events if parts.uplink else 0
        backlog = windows - synced
        row = (ingested, dead, windows, synced, hub.stats.events, backlog)
        print(
            f"{time.monotonic() - started:>7.0f}s " + " ".join(f"{v:>9}" for v in row), flush=True
        )
