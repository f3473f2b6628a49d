"""A small TCP proxy between a client and a broker that can break the link on command.

Chaos scenarios put it between the agent's uplink and the central broker, so that a
partition, a black hole or a slow link can be switched on and off while real processes
run. It runs its own asyncio loop in a daemon thread; the test thread changes the mode
with plain method calls (each one thread-safe). Modes:

* ``pass``: bytes flow as they come.
* ``delay``: every chunk waits ``delay_ms`` before it is forwarded (order kept).
* ``throttle``: each direction is limited to ``rate`` bytes per second.
* ``blackhole``: connections stay open (new ones are accepted) but nothing is forwarded,
  so both ends see a silent hang until their keepalive gives up. TCP never loses bytes
  inside a connection, so nothing is discarded: when the mode changes back, whatever
  was held flows on, as after a long retransmission.
* ``partition``: every connection is closed now and new ones are closed on accept.

``drop()`` closes every connection once and keeps accepting (a NAT reset, a flap).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import Any, Literal

from tests.brokers import free_port

Mode = Literal["pass", "delay", "throttle", "blackhole", "partition"]
CHUNK = 4096


class ChaosProxy:
    """Listens on a free loopback port and forwards to ``127.0.0.1:<target_port>``."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port if port is not None else free_port()
        self.mode: Mode = "pass"
        self.delay_ms = 0.0
        self.rate = 0.0
        self.accepted = 0
        self.dropped = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()  # set unless black-holed; owned by the proxy loop

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> ChaosProxy:
        self._thread.start()
        self._call(self._start_server())
        return self

    def close(self) -> None:
        """Close every connection and the listener, then stop the loop thread."""
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def set_pass(self) -> None:
        self._set("pass")

    def set_delay(self, delay_ms: float) -> None:
        self.delay_ms = delay_ms
        self._set("delay")

    def set_throttle(self, bytes_per_second: float) -> None:
        self.rate = bytes_per_second
        self._set("throttle")

    def set_blackhole(self) -> None:
        self._set("blackhole")

    def set_partition(self) -> None:
        self._set("partition")
        self.drop()

    def drop(self) -> None:
        """Close every open connection now; new ones are accepted (unless partitioned)."""
        self._call(self._close_all())

    def _set(self, mode: Mode) -> None:
        self.mode = mode
        self._call(self._apply_flow())

    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(10)

    async def _start_server(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _apply_flow(self) -> None:
        if self.mode == "blackhole":
            self._flowing.clear()
        else:
            self._flowing.set()

    async def _close_all(self) -> None:
        for writer in list(self._writers):
            self.dropped += 1
            _abort(writer)
        self._writers.clear()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._close_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: dial the target, then pump both ways until one side ends."""
        if self.mode == "partition":
            _abort(writer)
            return
        self.accepted += 1
        self._writers.add(writer)
        try:
            await self._flowing.wait()  # a black-holed link does not even reach the broker
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            self._writers.discard(writer)
            _abort(writer)
            return
        self._writers.add(up_writer)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for end in (writer, up_writer):
            self._writers.discard(end)
            _abort(end)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward one direction chunk by chunk, applying the current mode to each chunk."""
        with contextlib.suppress(ConnectionError, OSError):
            await self._forward(reader, writer)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                return
            await self._flowing.wait()
            if self.mode == "delay" and self.delay_ms > 0:
                await asyncio.sleep(self.delay_ms / 1000)
            elif self.mode == "throttle" and self.rate > 0:
                await asyncio.sleep(len(data) / self.rate)
            await self._flowing.wait()  # the link may have gone dark while we waited
            if writer.is_closing():
                return
            writer.write(data)
            await writer.drain()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close at once (RST-like); a half-dead peer must not keep the proxy waiting."""
    with contextlib.suppress(Exception):
        transport = writer.transport
        if hasattr(transport, "abort"):
            transport.abort()
        else:
            writer.close()
