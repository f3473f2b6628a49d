"""systemd's notify protocol, with a real datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync import systemd
from tests.e2e.harness import EdgestreamProcess, write_yaml


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """What systemd listens on: a unix datagram socket named by $NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def received(sock: socket.socket, until: str, timeout: float = 15) -> list[str]:
    """Datagrams (as text) up to and including the first that holds `until`."""
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages.append(sock.recv(4096).decode())
        if until in messages[-1]:
            return messages
    raise AssertionError(f"no {until!r} in {messages}")


def test_notify_sends_one_datagram_of_fields(notify_socket: socket.socket) -> None:
    assert systemd.notify("READY=1", "STATUS=up")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=up"


def test_an_abstract_socket_name_is_understood(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"edgestream-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"


def test_without_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd.notify("READY=1")


def test_the_watchdog_interval_is_half_the_period_and_only_for_our_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("WATCHDOG_USEC", "soon")
    assert systemd.watchdog_interval() is None


@pytest.mark.parametrize("command", ["run", "hub"])
def test_daemons_say_ready_feed_the_watchdog_and_say_stopping(
    command: str, tmp_path: Path, notify_socket: socket.socket,
    processes: list[EdgestreamProcess],
) -> None:  # fmt: skip
    if command == "run":
        config = {
            "device_id": "pi-sd",
            "data_dir": str(tmp_path / "data"),
            "streams": {"s": {}},
            "sources": [{"type": "simulated", "name": "sim", "stream": "s", "interval": "1s",
                         "signals": [{"name": "t"}]}],
        }  # fmt: skip
    else:
        config = {
            "broker": {"url": "mqtt://127.0.0.1:9"},  # nothing listens: readiness must not wait
            "store": {"type": "sqlite", "path": str(tmp_path / "central.db")},
        }
    path = write_yaml(tmp_path / f"{command}.yaml", config)
    env = {"NOTIFY_SOCKET": os.environ["NOTIFY_SOCKET"], "WATCHDOG_USEC": "400000"}
    daemon = EdgestreamProcess(command, path, tmp_path / f"{command}.log", env).start()
    processes.append(daemon)
    ready = received(notify_socket, "READY=1")
    assert any(m.startswith("READY=1\nSTATUS=") for m in ready), ready
    pings = received(notify_socket, "WATCHDOG=1") + received(notify_socket, "WATCHDOG=1")
    assert sum("WATCHDOG=1" in m for m in pings) >= 2
    assert daemon.terminate() == 0, daemon.log_tail()
    assert "STOPPING=1" in "".join(received(notify_socket, "STOPPING=1"))
