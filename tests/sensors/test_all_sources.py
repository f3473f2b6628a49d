"""Every local source at once, for a bounded time: no loop stall, nothing lost, memory flat.

The sources run against a real queue: simulated, system (the real /proc), thermal (a
fake sysfs tree with a fake vcgencmd), command (a real process), gpio (a simulated
chip: no GPIO hardware here), file (a real file appended to meanwhile) and http (a
client posting meanwhile). A ticker measures how late the event loop wakes it: a
source that blocked the loop (a slow file read, a subprocess waited for
synchronously) would show as a stall.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.config.command_source import CommandSourceConfig
from agent.config.file_source import FileSourceConfig
from agent.config.gpio_source import GpioLineConfig, GpioSourceConfig
from agent.config.http_source import HttpSourceConfig
from agent.config.sensors import SignalConfig, SimulatedSourceConfig
from agent.config.sysfs_sources import ThermalSourceConfig
from agent.config.system_source import SystemSourceConfig
from agent.queue import DurableQueue, StreamLimits
from agent.sources.file import FileSource
from agent.sources.gpio import GpioReader
from agent.sources.http import HttpSource
from agent.sources.local import PolledConfig, polling_source
from agent.sources.polling import PollingSource
from tests.sensors.test_gpio import FakeChip
from tests.sensors.test_thermal import board, fake_vcgencmd

RUN_SECONDS = 3.0


async def max_loop_lag(stop: asyncio.Event, every: float = 0.005) -> float:
    """The largest delay between when the ticker asked to wake and when it woke."""
    worst = 0.0
    while not stop.is_set():
        asked = time.monotonic()
        await asyncio.sleep(every)
        worst = max(worst, time.monotonic() - asked - every)
    return worst


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux procfs")
async def test_all_sources_together_do_not_stall_the_loop(tmp_path: Path) -> None:
    board(tmp_path / "sys")
    configs: list[PolledConfig] = [
        SimulatedSourceConfig(
            name="sim", stream="s", interval=0.01, devices=20,
            signals=(SignalConfig(name="t", noise=1.0),),
        ),
        SystemSourceConfig(name="host", stream="s", interval=0.05),
        ThermalSourceConfig(
            name="temps", stream="s", interval=0.05, root=str(tmp_path / "sys"),
            vcgencmd=fake_vcgencmd(tmp_path, "echo throttled=0x50005"),
        ),
        CommandSourceConfig(name="cmd", stream="s", command="echo 1", interval=0.1),
    ]  # fmt: skip
    queue = await DurableQueue.open(tmp_path / "q", {"s": StreamLimits(1 << 30, 1e9)})
    log = tmp_path / "app.log"
    log.write_text("")
    file = FileSource(
        FileSourceConfig(name="log", stream="s", path=str(log), format="json", poll_interval=0.02),
        queue,
    )
    http = HttpSource(HttpSourceConfig(name="web", stream="s", listen="127.0.0.1:0"), queue)
    sources = [polling_source(c, queue) for c in configs]
    sources += [gpio_source(queue), file, http]
    try:
        await run_all(queue, sources, [append_lines(log), post_events(http)])
    finally:
        await queue.close()


def gpio_source(queue: DurableQueue) -> PollingSource:
    """A gpio source on a simulated chip whose line toggles at every read."""
    config = GpioSourceConfig(
        name="io", stream="s", interval=0.02, lines=(GpioLineConfig(offset=4, name="door"),)
    )
    chip = FakeChip(config)

    def toggling(_: GpioSourceConfig) -> FakeChip:
        return chip

    reader = GpioReader(config, toggling)
    original = chip.get_values

    def get_values() -> list[int]:
        chip.set_level(4, 1 - chip.levels[4])
        return original()

    chip.get_values = get_values  # type: ignore[method-assign]
    return PollingSource(config.name, config.stream, config.interval, {}, queue, reader.read)


async def append_lines(path: Path) -> None:
    """An application writing 50 JSON lines every 20 ms."""
    n = 0
    while True:
        with path.open("ab") as out:
            out.write(b"".join(orjson.dumps({"n": n + i}) + b"\n" for i in range(50)))
        n += 50
        await asyncio.sleep(0.02)


async def post_events(http: HttpSource) -> None:
    """A local program posting 20-event NDJSON requests over one keep-alive connection."""
    await asyncio.wait_for(http.started.wait(), 30)
    reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
    body = b"".join(orjson.dumps({"i": i}) + b"\n" for i in range(20))
    head = (
        "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        while True:
            writer.write(head + body)
            status = await reader.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            await asyncio.sleep(0.01)
    finally:
        writer.close()


async def run_all(
    queue: DurableQueue,
    sources: list[PollingSource | FileSource | HttpSource],
    drivers: list[Coroutine[Any, Any, None]] = (),  # type: ignore[assignment]
) -> None:
    stop = asyncio.Event()
    ticker = asyncio.ensure_future(max_loop_lag(stop))
    # Drivers first, so they are cancelled before the sources they talk to.
    tasks = [asyncio.ensure_future(d) for d in drivers]
    tasks += [asyncio.ensure_future(s.run()) for s in sources]
    await asyncio.sleep(RUN_SECONDS / 3)  # warm up (imports, first reads, SQLite pages)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    await asyncio.sleep(RUN_SECONDS * 2 / 3)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    stop.set()
    lag = await ticker
    for task in tasks:
        task.cancel()
    # Bounded: a source that ignored its cancellation would otherwise hang the suite.
    done, pending = await asyncio.wait(tasks, timeout=30)
    assert not pending, f"still running 30 s after cancel: {[t.get_coro() for t in pending]}"
    failed = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]
    assert not failed, failed
    stored = sum(s.stats.stored for s in sources)
    assert all(getattr(s.stats, "errors", 0) == 0 for s in sources), [s.stats for s in sources]
    assert all(s.stats.stored > 0 for s in sources), [(s.name, s.stats) for s in sources]
    # Every counted reading is in the queue; a source cancelled while its commit was in
    # flight may have stored one more group that its counters never saw.
    assert queue.last_seq("s") >= stored > 500
    assert lag < 0.05, f"event loop stalled {lag * 1000:.0f} ms"
    assert grown < 2 * 1024 * 1024, f"{grown} bytes more after 2 s"
