"""Shared helpers for the benchmarks in bench/: machine facts, tables, brokers, processes.

Every benchmark prints the machine it ran on and markdown tables, so its output can be
pasted into docs/benchmarks.md unchanged. Brokers and child processes are started on
free loopback ports in temporary directories and always stopped by PID, even when a
benchmark fails, so nothing outlives a run.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM (e.g. from `timeout`) into SystemExit so every `finally` and
    context manager stops the brokers and children this benchmark started."""
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _exit_on_sigterm)

MOSQUITTO = os.environ.get("EDGESTREAM_MOSQUITTO", "/usr/sbin/mosquitto")
REPO = Path(__file__).resolve().parent.parent
Row = Sequence[object]


# ------------------------------------------------------------------ machine and tables


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform's guess elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def mosquitto_version() -> str:
    """The version line of the mosquitto binary the benchmarks start."""
    try:
        out = subprocess.run(
            [MOSQUITTO, "-h"], check=False, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    first = (out.stdout or out.stderr).splitlines()[:1]
    return first[0].removeprefix("mosquitto version ") if first else "unknown"


def machine_rows() -> list[tuple[str, str]]:
    """What the figures depend on: CPU, cores, versions and the load when the run began."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ("cpu", cpu_model()),
        ("cores", f"{os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})"),
        ("python", platform.python_version()),
        ("sqlite", sqlite3.sqlite_version),
        ("paho-mqtt / zstandard / orjson", " / ".join(
            _package_version(p) for p in ("paho-mqtt", "zstandard", "orjson"))),
        ("mosquitto", mosquitto_version()),
        ("load average at start (1/5/15 min)", load),
    ]  # fmt: skip


def print_machine() -> None:
    """Print the machine table that heads every benchmark's output."""
    print_table("Machine", ["what", "value"], machine_rows())


def fmt_int(value: float) -> str:
    """A rate or count with thousands separators."""
    return f"{value:,.0f}"


def fmt_ratio(value: float) -> str:
    """A ratio as a percentage."""
    return f"{value * 100:.0f} %"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Row]) -> None:
    """Print a markdown table with a heading line."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    sys.stdout.flush()


# ------------------------------------------------------------------ ports, files, waits


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (never 1883 or 4222)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in (1883, 4222):
            return port


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory removed at the end (on the same disk as /tmp)."""
    with tempfile.TemporaryDirectory(prefix=f"edgestream-bench-{prefix}-") as name:
        yield Path(name)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until true; raise TimeoutError naming what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def query_int(db: Path, sql: str, *params: object) -> int:
    """One integer from a database another process writes (0 while it does not exist)."""
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute(sql, params).fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row and row[0] is not None else 0


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    """Write a config file for `edgestream run` / `edgestream hub`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rss_mib(pid: int) -> float:
    """VmRSS of a process in MiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# ------------------------------------------------------------------ mosquitto


class Mosquitto:
    """One mosquitto on a free loopback port with an explicit config; stopped by PID.

    Defaults suit throughput runs: no persistence, no limit on queued or in-flight
    messages (mosquitto's default of 1,000 queued messages drops silently), and
    QoS 0 messages queued for offline persistent sessions so that a QoS 0 feed can be
    pre-queued too.
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        max_inflight: int = 0,
        persistence: Path | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.max_inflight = max_inflight  # 0 = unlimited; mosquitto's own default is 20
        self.persistence = persistence  # a directory: sessions and queues survive a restart
        self.extra = tuple(extra)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def config_text(self) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            *self._persistence_lines(),
            "max_queued_messages 0",
            "max_queued_bytes 0",
            f"max_inflight_messages {self.max_inflight}",
            "queue_qos0_messages true",
            # What docs/sync-protocol.md recommends for a central broker: without it the
            # broker's small PUBACK/ack packets wait on Nagle + delayed ACK (~40 ms each).
            "set_tcp_nodelay true",
            f"log_dest file {self.directory / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        return "\n".join([*lines, *self.extra, ""])

    def _persistence_lines(self) -> list[str]:
        if self.persistence is None:
            return ["persistence false"]
        return ["persistence true", f"persistence_location {self.persistence}/"]

    def start(self) -> Mosquitto:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "mosquitto.conf"
        config.write_text(self.config_text())
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_until(self._listening, 10, f"mosquitto on port {self.port}")
        return self

    def _listening(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"mosquitto exited: see {self.directory / 'mosquitto.log'}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self._process)
        self._process = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    """SIGTERM a child by PID, SIGKILL if it does not exit in time."""
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)


# ------------------------------------------------------------------ edgestream processes


class Edgestream:
    """`python -m agent.cli.main run|hub -c FILE` as a child process, logging to a file."""

    def __init__(self, command: str, config: Path, env: dict[str, str] | None = None) -> None:
        self.command = command
        self.config = config
        self.env = env
        self.log_path = config.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Edgestream:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent.cli.main", self.command, "-c", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
                env=None if self.env is None else {**os.environ, **self.env},
            )  # fmt: skip
        return self

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"edgestream {self.command} exited:\n" + "\n".join(tail))

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> Edgestream:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()


# ------------------------------------------------------------------ workloads


SENSORS: list[tuple[str, str, float, float, int]] = [
    ("temp", "C", 21.0, 0.4, 2), ("humidity", "%", 45.0, 1.5, 1),
    ("pressure", "hPa", 1013.0, 0.8, 1), ("co2", "ppm", 600.0, 25.0, 0),
    ("vibration", "mm/s", 2.5, 0.9, 3), ("voltage", "V", 230.0, 1.2, 2),
    ("current", "A", 4.2, 0.3, 3), ("rpm", "rpm", 1450.0, 12.0, 0),
]  # fmt: skip


# ------------------------------------------------------------------ W-wire


def w_wire(count: int) -> list[dict[str, Any]]:
    """The W-wire stream exactly as PERFORMANCE.md defines it."""
    rnd = random.Random(42)
    ts = 1764201600.0
    walk: dict[tuple[int, str], float] = {}
    events = []
    for _ in range(count):
        dev = rnd.randrange(50)
        name, unit, base, noise, decimals = SENSORS[rnd.randrange(8)]
        key = (dev, name)
        if key in walk:
            walk[key] += rnd.gauss(0, noise)
        else:
            walk[key] = base + rnd.gauss(0, noise * 5)
        value: float | int = round(walk[key], decimals)
        if decimals == 0:
            value = int(value)
        ts = round(ts + rnd.uniform(0.0005, 0.02), 3)
        events.append({"device": f"pi-{dev:03d}", "sensor": name, "ts": ts, "value": value,
                       "unit": unit})  # fmt: skip
    return events


def ingest_payload(i: int, devices: int = 100) -> tuple[str, bytes]:
    """The i-th W-ingest message: (topic, ~100-byte JSON payload), `devices` devices.

    Deterministic, so every run and every consumer sees the same feed.
    """
    device = f"pi-{i % devices:03d}"
    value = 20.0 + ((i * 7919) % 1000) / 100
    payload = (
        b'{"device":"%s","sensor":"temperature","ts":%.3f,"value":%.2f,"unit":"C","seq":%d}'
        % (device.encode(), 1764201600.0 + i * 0.001, value, i)
    )
    return f"plant/{device}/telemetry", payload


def host_port(url: str) -> tuple[str, int]:
    """Host and port of an mqtt://host:port url."""
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


def create_session(url: str, client_id: str, topic: str, qos: int) -> None:
    """Connect once with a persistent session, subscribe and leave.

    From then on the broker queues matching messages for `client_id` (mosquitto needs
    `max_queued_messages` high enough, and `queue_qos0_messages` for QoS 0).
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=False)  # fmt: skip
    subscribed = threading.Event()
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(*host_port(url))
    client.loop_start()
    try:
        client.subscribe(topic, qos)
        if not subscribed.wait(10):
            raise TimeoutError(f"no SUBACK for {client_id}")
    finally:
        client.disconnect()
        client.loop_stop()


# ------------------------------------------------------------------ TCP_NODELAY diagnostic

_SITECUSTOMIZE = """\
import socket

_create_connection = socket.create_connection


def _nodelay_connection(*args, **kwargs):
    sock = _create_connection(*args, **kwargs)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


socket.create_connection = _nodelay_connection
"""


def nodelay_env(directory: Path) -> dict[str, str]:
    """Environment for a child whose client sockets get TCP_NODELAY (a diagnostic only).

    paho opens its socket with `socket.create_connection`; a `sitecustomize` module
    on PYTHONPATH wraps it. Product code is not touched.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    return {"PYTHONPATH": os.pathsep.join([str(directory), os.environ.get("PYTHONPATH", "")])}


@contextlib.contextmanager
def nodelay_sockets() -> Iterator[None]:
    """In this process: every `socket.create_connection` socket gets TCP_NODELAY."""
    original = socket.create_connection

    def connect(*args: Any, **kwargs: Any) -> socket.socket:
        sock = original(*args, **kwargs)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    socket.create_connection = connect
    try:
        yield
    finally:
        socket.create_connection = original
