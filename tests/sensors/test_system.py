"""The system source against a fake procfs tree (kernel formats) and the real /proc."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.config.system_source import SystemSourceConfig
from agent.sources.polling import Reading
from agent.sources.system import WRAP_32, CounterRates, SystemReader

STAT = """\
cpu  {u} 0 {s} {i} 0 0 0 0 0 0
cpu0 {u} 0 {s} {i} 0 0 0 0 0 0
intr 12345 0 0
ctxt 67890
"""
MEMINFO = """\
MemTotal:        3884096 kB
MemFree:          512000 kB
MemAvailable:    1942048 kB
Buffers:           40000 kB
Cached:          1000000 kB
SwapTotal:        102396 kB
SwapFree:          51198 kB
"""
NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0
  eth0: {rx} 100 0 0 0 0 0 0 {tx} 50 1 0 0 0 0 0
"""  # noqa: E501
DISKSTATS = """\
   7       0 loop0 10 0 80 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 179       0 mmcblk0 {r} 0 {rs} 100 {w} 0 {ws} 200 0 300 300 0 0 0 0 0 0
"""
SELF_STAT = "1234 (python3 (edge)) S 1 1234 1234 0 -1 4194560 100 0 0 0 {ut} {st} 0 0 20 0 3 0"


def write_tree(root: Path, step: int) -> None:
    proc = root / "proc"
    (proc / "net").mkdir(parents=True, exist_ok=True)
    (proc / "self").mkdir(exist_ok=True)
    (proc / "stat").write_text(STAT.format(u=100 + 30 * step, s=50 + 10 * step, i=800 + 60 * step))
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "loadavg").write_text("0.52 0.30 0.12 2/187 4321\n")
    (proc / "uptime").write_text("86400.25 170000.10\n")
    rx = WRAP_32 - 500 if step == 0 else 1500  # a 32-bit counter wrapping between reads
    (proc / "net" / "dev").write_text(NET_DEV.format(rx=rx, tx=10_000 + 4_000 * step))
    (proc / "diskstats").write_text(
        DISKSTATS.format(
            r=1000 + 20 * step, rs=8000 + 160 * step, w=500 + 10 * step, ws=4000 + 80 * step
        )
    )
    (proc / "self" / "status").write_text("Name:\tpython3\nVmRSS:\t   34567 kB\n")
    (proc / "self" / "stat").write_text(SELF_STAT.format(ut=100 + 5 * step, st=20 + 5 * step))


async def read_twice(tmp_path: Path) -> list[Reading]:
    now = [1000.0]
    config = SystemSourceConfig(name="sys", stream="s", root=str(tmp_path))
    reader = SystemReader(config, clock=lambda: now[0])
    write_tree(tmp_path, 0)
    first = await reader.read()
    assert {r.key for r in first} == {"load", "processes", "memory", "disk//", "uptime", "agent"}
    now[0] += 2.0
    write_tree(tmp_path, 1)
    return await reader.read()


async def test_values_and_rates_from_the_fake_tree(tmp_path: Path) -> None:
    by_key = {r.key: r.fields for r in await read_twice(tmp_path)}
    assert by_key["cpu"] == {"cpu": "cpu", "usage_pct": 40.0}  # 40 busy of 100 jiffies
    assert by_key["cpu/0"]["usage_pct"] == 40.0
    assert by_key["load"] == {"load1": 0.52, "load5": 0.30, "load15": 0.12}
    assert by_key["processes"] == {"running": 2, "total": 187}
    memory = by_key["memory"]
    assert memory["total_bytes"] == 3884096 * 1024 and memory["used_pct"] == 50.0
    assert memory["swap_used_bytes"] == 51198 * 1024
    assert by_key["uptime"] == {"uptime_s": 86400.25}
    net = by_key["net/eth0"]
    assert net["rx_bytes_per_s"] == 1000.0  # wrapped: (2**32 - 500 -> 1500) over 2 s
    assert net["tx_bytes_per_s"] == 2000.0
    assert "net/lo" not in by_key
    disk = by_key["diskio/mmcblk0"]
    assert disk["reads_per_s"] == 10.0 and disk["read_bytes_per_s"] == 160 * 512 / 2
    assert "diskio/loop0" not in by_key
    assert by_key["agent"]["rss_bytes"] == 34567 * 1024
    assert by_key["agent"]["cpu_pct"] > 0
    assert by_key["disk//"]["total_bytes"] > 0


def test_a_counter_that_goes_down_implausibly_is_a_reset() -> None:
    rates = CounterRates()
    assert rates.rate("x", 5_000_000_000, 0.0) is None
    assert rates.rate("x", 10, 1.0) is None  # a 64-bit counter went back: reset
    assert rates.resets == 1
    assert rates.rate("x", 110, 2.0) == 100.0
    assert rates.rate("y", 1_000_000_000, 0.0) is None
    assert rates.rate("y", 100, 1.0) is None  # a 3.3e9 wrap would be implausible: a reset
    assert rates.resets == 2


async def test_missing_files_make_the_read_fail_with_the_path(tmp_path: Path) -> None:
    reader = SystemReader(SystemSourceConfig(name="sys", stream="s", root=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match=r"loadavg|stat"):
        await reader.read()


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux procfs")
async def test_the_real_proc_of_this_machine_reads() -> None:
    reader = SystemReader(SystemSourceConfig(name="sys", stream="s", interfaces=("lo",)))
    await reader.read()
    await asyncio.sleep(0.2)  # let the CPU jiffies move
    keys = {r.key for r in await reader.read()}
    assert {"cpu", "load", "memory", "disk//", "uptime", "processes", "agent", "net/lo"} <= keys
