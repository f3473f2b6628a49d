"""The chaos proxy in front of a real Mosquitto: each mode does what the scenarios rely on."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.brokers import MosquittoBroker
from tests.chaos.proxy import ChaosProxy

# A minimal MQTT 3.1.1 CONNECT (clean session, keepalive 60 s, client id "p") and PINGREQ.
CONNECT = bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 1]) + b"p"
CONNACK = bytes([0x20, 2, 0, 0])
PINGREQ, PINGRESP = bytes([0xC0, 0]), bytes([0xD0, 0])


@pytest.fixture
def proxy(mosquitto: MosquittoBroker) -> Iterator[ChaosProxy]:
    chaos = ChaosProxy(mosquitto.port).start()
    yield chaos
    chaos.close()


def connect(proxy: ChaosProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.sendall(CONNECT)
    assert recv_exactly(sock, 4) == CONNACK
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("closed by the proxy")
        data += chunk
    return data


def closed(sock: socket.socket) -> bool:
    """True when the peer closed or reset the connection (an abort may arrive as either)."""
    try:
        return sock.recv(4) == b""
    except ConnectionResetError:
        return True


def ping_seconds(sock: socket.socket) -> float:
    began = time.monotonic()
    sock.sendall(PINGREQ)
    assert recv_exactly(sock, 2) == PINGRESP
    return time.monotonic() - began


def test_pass_delay_and_throttle_forward_every_byte(proxy: ChaosProxy) -> None:
    sock = connect(proxy)
    assert ping_seconds(sock) < 0.5
    proxy.set_delay(300)
    assert ping_seconds(sock) >= 0.55  # one delayed chunk each way
    proxy.set_throttle(4)  # 2 bytes each way at 4 B/s: half a second a direction
    assert ping_seconds(sock) >= 0.9
    proxy.set_pass()
    assert ping_seconds(sock) < 0.5
    sock.close()


def test_blackhole_holds_bytes_silently_and_releases_them(proxy: ChaosProxy) -> None:
    sock = connect(proxy)
    proxy.set_blackhole()
    sock.sendall(PINGREQ)
    sock.settimeout(1.0)
    with pytest.raises(TimeoutError):
        sock.recv(2)  # a hang, not a close
    late = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)  # still accepted
    late.sendall(CONNECT)
    late.settimeout(1.0)
    with pytest.raises(TimeoutError):
        late.recv(4)
    proxy.set_pass()
    sock.settimeout(5)
    late.settimeout(5)
    assert recv_exactly(sock, 2) == PINGRESP
    assert recv_exactly(late, 4) == CONNACK
    sock.close()
    late.close()


def test_partition_closes_and_refuses_drop_closes_once(proxy: ChaosProxy) -> None:
    sock = connect(proxy)
    proxy.set_partition()
    assert closed(sock)
    refused = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    assert closed(refused)  # accepted by the kernel, closed at once by the proxy
    proxy.set_pass()
    again = connect(proxy)
    proxy.drop()
    assert closed(again)
    connect(proxy).close()  # accepting again right after a drop
    assert proxy.dropped >= 2
