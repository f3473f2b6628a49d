"""Every polled source at once, for a bounded time: no loop stall, nothing lost, memory flat.

The sources run against a real queue: simulated, system (the real /proc), thermal (a
fake sysfs tree with a fake vcgencmd), and command (a real process). A ticker measures
how late the event loop wakes it: a source that blocked the loop (a slow file read, a
subprocess waited for synchronously) would show as a stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from pathlib import Path

import pytest

from agent.config.command_source import CommandSourceConfig
from agent.config.sensors import SignalConfig, SimulatedSourceConfig
from agent.config.sysfs_sources import ThermalSourceConfig
from agent.config.system_source import SystemSourceConfig
from agent.queue import DurableQueue, StreamLimits
from agent.sources.local import PolledConfig, polling_source
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
    try:
        await run_all(queue, configs)
    finally:
        await queue.close()


async def run_all(queue: DurableQueue, configs: list[PolledConfig]) -> None:
    sources = [polling_source(c, queue) for c in configs]
    stop = asyncio.Event()
    ticker = asyncio.ensure_future(max_loop_lag(stop))
    tasks = [asyncio.ensure_future(s.run()) for s in sources]
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
        with contextlib.suppress(asyncio.CancelledError):
            await task
    stored = sum(s.stats.stored for s in sources)
    assert all(s.stats.errors == 0 for s in sources), [s.stats for s in sources]
    assert queue.last_seq("s") == stored > 500  # every reading is in the queue
    assert lag < 0.05, f"event loop stalled {lag * 1000:.0f} ms"
    assert grown < 2 * 1024 * 1024, f"{grown} bytes more after 2 s"
