"""Real processes for end-to-end tests: the agent and the hub as `edgestream` subprocesses.

Each process is started with `python -m agent.cli.main`, logs to a file in the test's
tmp dir (printed when a wait times out), and is killed by PID at teardown.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import free_port


class EdgestreamProcess:
    """One `edgestream run` or `edgestream hub` child process."""

    def __init__(
        self, command: str, config: Path, log_path: Path, env: dict[str, str] | None = None
    ):
        self.command, self.config, self.log_path = command, config, log_path
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> EdgestreamProcess:
        env = {**os.environ, **self.env}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli.main", self.command, "-c", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up runs, exactly like a crash."""
        if self.alive:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 20) -> int:
        assert self.process is not None
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def processes() -> Iterator[list[EdgestreamProcess]]:
    """Every process a test starts is appended here and killed at teardown."""
    started: list[EdgestreamProcess] = []
    yield started
    for proc in started:
        proc.kill()


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def agent_config(
    tmp: Path,
    edge_url: str,
    central_url: str,
    *,
    pipelines: list[dict[str, Any]] | None = None,
    extra_streams: dict[str, Any] | None = None,
    topic: str = "plant/#",
    max_size: str = "64KiB",
    uplink_raw: bool = True,
) -> dict[str, Any]:
    """An agent config: MQTT source on the edge broker, uplink to the central broker."""
    streams: dict[str, Any] = {"sensors": {"uplink": uplink_raw}}
    streams.update(extra_streams or {})
    return {
        "device_id": "pi-test",
        "data_dir": str(tmp / "agent-data"),
        "queue": {"commit_interval": "50ms"},
        "streams": streams,
        "sources": [{
            "type": "mqtt", "name": "plant", "stream": "sensors",
            "broker": {"url": edge_url, "backoff_initial": "200ms", "backoff_max": "1s"},
            "topics": [{"topic": topic, "qos": 1}],
            "payload": {"format": "json", "time_field": "ts", "max_size": max_size},
            "key": {"field": "device"},
        }],
        "pipelines": pipelines or [],
        "uplink": {
            "broker": {"url": central_url, "backoff_initial": "200ms", "backoff_max": "2s"},
            "batch_max_events": 2000, "batch_max_delay": "100ms", "ack_timeout": "5s",
        },
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},  # never the shared default 9108
    }  # fmt: skip


def hub_config(tmp: Path, central_url: str) -> dict[str, Any]:
    return {
        "hub_id": "hub-test",
        "broker": {"url": central_url, "backoff_initial": "200ms", "backoff_max": "1s"},
        "store": {"type": "sqlite", "path": str(tmp / "hub-data" / "central.db")},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
    }


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, *procs: EdgestreamProcess
) -> None:
    """Poll until true; on timeout fail with the processes' log tails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    logs = "\n".join(f"--- {p.command} log ---\n{p.log_tail()}" for p in procs)
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs}")


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read a database another process writes (WAL lets us); [] if it does not exist yet."""
    if not db.exists():
        return []
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []


def hub_count(db: Path, stream: str = "sensors") -> int:
    rows = query(db, "SELECT count(*) FROM events WHERE stream = ?", stream)
    return int(rows[0][0]) if rows else 0


def queue_last_seq(db: Path, stream: str = "sensors") -> int:
    rows = query(db, "SELECT next_seq - 1 FROM streams WHERE name = ?", stream)
    return int(rows[0][0]) if rows else 0


def reading(i: int, devices: int = 5) -> dict[str, Any]:
    """The i-th test reading: deterministic device, time and value."""
    return {
        "device": f"d{i % devices}",
        "i": i,
        "ts": 1764201600.0 + i * 0.01,
        "value": (i * 7) % 101 / 4,
    }


class Publisher:
    """A QoS 1 publisher that waits for PUBACKs in bounded chunks (ids wrap at 65,535)."""

    def __init__(self, url: str, client_id: str = "test-publisher") -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.connect(host, int(port))
        self.client.loop_start()

    def publish_many(self, messages: Iterator[tuple[str, bytes]], chunk: int = 1000) -> int:
        sent, infos = 0, []
        for topic, payload in messages:
            infos.append(self.client.publish(topic, payload, qos=1))
            sent += 1
            if len(infos) >= chunk:
                for info in infos:
                    info.wait_for_publish(30)
                infos = []
        for info in infos:
            info.wait_for_publish(30)
        return sent

    def readings(self, start: int, stop: int) -> int:
        return self.publish_many(
            (f"plant/{r['device']}", orjson.dumps(r)) for r in map(reading, range(start, stop))
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
