"""The `system` source: CPU, load, memory, disks, network and uptime from procfs.

Everything is read from files under `root` (``/proc/stat``, ``/proc/meminfo``,
``/proc/net/dev``...), so tests run against a fake tree. Counters (CPU jiffies, disk and
network totals, the agent's CPU ticks) become per-second rates from the difference
between two reads; the first read of a counter therefore yields no rate. A counter that
goes down has either wrapped (32-bit counters on some kernels: both values below 2**32
and the wrapped difference plausible) or been reset (an interface re-created, a driver
reloaded): a reset yields no rate for that read and is counted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config.system_source import SystemSourceConfig
from agent.sources.polling import Reading

WRAP_32 = 2**32


class CounterRates:
    """Per-second rates of increasing counters, by name, from successive reads."""

    def __init__(self) -> None:
        self.previous: dict[str, tuple[float, int]] = {}
        self.resets = 0

    def rate(self, name: str, value: int, now: float) -> float | None:
        """The rate since the last read of ``name``; None on the first read or a reset."""
        before = self.previous.get(name)
        self.previous[name] = (now, value)
        if before is None or now <= before[0]:
            return None
        delta = value - before[1]
        if delta < 0:
            wrapped = delta + WRAP_32
            if before[1] < WRAP_32 and value < WRAP_32 and wrapped < WRAP_32 // 2:
                delta = wrapped
            else:
                self.resets += 1
                return None
        return delta / (now - before[0])


class SystemReader:
    """The `read` of a system source; see the module docstring."""

    def __init__(
        self, config: SystemSourceConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.proc = Path(config.root) / "proc"
        self.clock = clock
        self.rates = CounterRates()
        self.cpu_before: dict[str, tuple[int, int]] = {}
        self.ticks_per_second = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    async def read(self) -> list[Reading]:
        """One reading per group (and per core, mount, disk, interface)."""
        now = self.clock()
        readers = {
            "cpu": self._cpu, "load": self._load, "memory": self._memory, "disk": self._disk,
            "diskio": self._diskio, "network": self._network, "uptime": self._uptime,
            "processes": self._processes, "agent": self._agent,
        }  # fmt: skip
        readings: list[Reading] = []
        for group in self.config.groups:
            readings += readers[group](now)
        return readings

    def _text(self, *parts: str) -> str:
        return self.proc.joinpath(*parts).read_text()

    def _cpu(self, now: float) -> list[Reading]:
        readings = []
        for line in self._text("stat").splitlines():
            name, *fields = line.split()
            if not name.startswith("cpu"):
                continue
            usage = self._cpu_usage(name, [int(f) for f in fields[:8]])
            if usage is not None:
                key = "cpu" if name == "cpu" else f"cpu/{name[3:]}"
                readings.append(Reading(key, {"cpu": name, **usage}))
        return readings

    def _cpu_usage(self, name: str, jiffies: list[int]) -> dict[str, float] | None:
        total, idle = sum(jiffies), jiffies[3] + jiffies[4]
        before = self.cpu_before.get(name)
        self.cpu_before[name] = (total, idle)
        if before is None or total <= before[0]:
            return None
        span = total - before[0]
        busy = 100.0 * (1 - (idle - before[1]) / span)
        return {"usage_pct": round(busy, 2)}

    def _load(self, now: float) -> list[Reading]:
        one, five, fifteen = (float(v) for v in self._text("loadavg").split()[:3])
        return [Reading("load", {"load1": one, "load5": five, "load15": fifteen})]

    def _processes(self, now: float) -> list[Reading]:
        running, total = self._text("loadavg").split()[3].split("/")
        return [Reading("processes", {"running": int(running), "total": int(total)})]

    def _memory(self, now: float) -> list[Reading]:
        info = {}
        for line in self._text("meminfo").splitlines():
            name, _, rest = line.partition(":")
            info[name] = int(rest.split()[0]) * 1024
        total, available = info["MemTotal"], info.get("MemAvailable", info.get("MemFree", 0))
        swap_total, swap_free = info.get("SwapTotal", 0), info.get("SwapFree", 0)
        fields: dict[str, Any] = {
            "total_bytes": total,
            "available_bytes": available,
            "used_pct": round(100.0 * (1 - available / total), 2) if total else None,
            "swap_total_bytes": swap_total,
            "swap_used_bytes": swap_total - swap_free,
        }
        return [Reading("memory", fields)]

    def _disk(self, now: float) -> list[Reading]:
        readings = []
        for mount in self.config.mounts:
            stats = os.statvfs(Path(self.config.root) / mount.lstrip("/"))
            total, free = stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize
            used = 100.0 * (1 - free / total) if total else None
            fields = {"mount": mount, "total_bytes": total, "free_bytes": free,
                      "used_pct": None if used is None else round(used, 2)}  # fmt: skip
            readings.append(Reading(f"disk/{mount}", fields))
        return readings

    def _diskio(self, now: float) -> list[Reading]:
        readings = []
        for line in self._text("diskstats").splitlines():
            parts = line.split()
            name = parts[2]
            if name.startswith(("loop", "ram")):
                continue
            reads, read_sectors, writes, write_sectors = (int(parts[i]) for i in (3, 5, 7, 9))
            fields = self._rates(f"diskio/{name}", now, {
                "reads_per_s": reads, "writes_per_s": writes,
                "read_bytes_per_s": read_sectors * 512, "write_bytes_per_s": write_sectors * 512,
            })  # fmt: skip
            if fields:
                readings.append(Reading(f"diskio/{name}", {"disk": name, **fields}))
        return readings

    def _network(self, now: float) -> list[Reading]:
        wanted = set(self.config.interfaces)
        readings = []
        for line in self._text("net", "dev").splitlines()[2:]:
            name, _, rest = line.partition(":")
            name = name.strip()
            if (wanted and name not in wanted) or (not wanted and name == "lo"):
                continue
            v = [int(x) for x in rest.split()]
            fields = self._rates(f"net/{name}", now, {
                "rx_bytes_per_s": v[0], "rx_packets_per_s": v[1], "rx_errors_per_s": v[2],
                "rx_drops_per_s": v[3], "tx_bytes_per_s": v[8], "tx_packets_per_s": v[9],
                "tx_errors_per_s": v[10], "tx_drops_per_s": v[11],
            })  # fmt: skip
            if fields:
                readings.append(Reading(f"net/{name}", {"interface": name, **fields}))
        return readings

    def _rates(self, prefix: str, now: float, counters: dict[str, int]) -> dict[str, float]:
        """Rates of a group of counters; empty unless every one of them has a rate."""
        rates = {name: self.rates.rate(f"{prefix}/{name}", v, now) for name, v in counters.items()}
        if any(r is None for r in rates.values()):
            return {}
        return {name: round(r, 3) for name, r in rates.items() if r is not None}

    def _uptime(self, now: float) -> list[Reading]:
        return [Reading("uptime", {"uptime_s": float(self._text("uptime").split()[0])})]

    def _agent(self, now: float) -> list[Reading]:
        rss = 0
        for line in self._text("self", "status").splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
        stat = self._text("self", "stat")
        fields_after_name = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields_after_name[11]) + int(fields_after_name[12])  # utime + stime
        fields: dict[str, Any] = {"rss_bytes": rss}
        rate = self.rates.rate("agent/cpu_ticks", ticks, now)
        if rate is not None:
            fields["cpu_pct"] = round(100.0 * rate / self.ticks_per_second, 2)
        return [Reading("agent", fields)]
