"""Local sources: CPU of the default system + thermal set at 1 s, and RSS with all sources on.

What it measures and why:
1. Per read, in process: the CPU time (time.process_time, plus the CPU of child
   processes such as vcgencmd) of one `SystemReader.read()` on this machine's /proc
   and one `ThermalReader.read()` on a Pi-like sysfs tree (this machine has no thermal
   zones), with and without a stand-in vcgencmd (a shell script: what a fork+exec
   costs, not what the real firmware call costs).
2. In the agent: `edgestream run` with the default system and thermal sources at a
   1 s interval, against the same agent with no sources, each for `--seconds`; CPU %
   of one core from /proc/<pid>/stat (children included, 10 ms ticks: use a minute or
   more), and the difference divided by the polls (two per second) and by the events
   stored (a poll stores one event per group, zone or chip).
3. RSS: the agent with every source kind on (mqtt at our own mosquitto, simulated,
   system, thermal, w1, iio, gpio with no chip present, command, file, http), VmRSS
   after `--seconds`, next to the agent with one MQTT source.
Fake sysfs trees are the ones the tests use (tests/sensors), so this script runs
anywhere; on a Pi, point thermal at /sys with --real-sys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchkit import (
    REPO,
    Edgestream,
    Mosquitto,
    free_port,
    print_machine,
    print_table,
    query_int,
    rss_mib,
    temp_dir,
    write_yaml,
)

from agent.config.sysfs_sources import ThermalSourceConfig
from agent.config.system_source import SystemSourceConfig
from agent.sources.system import SystemReader
from agent.sources.thermal import ThermalReader

sys.path.insert(0, str(REPO))
from tests.sensors.test_iio import device as iio_device
from tests.sensors.test_thermal import board, fake_vcgencmd
from tests.sensors.test_w1 import device as w1_device

READS = 2000


def cpu_with_children() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def agent_cpu(pid: int) -> float:
    """User + system CPU of a process and its waited-for children, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


async def per_read(reader: Any, reads: int) -> tuple[float, int]:
    """Microseconds of CPU per read, and the readings one read returns."""
    await reader.read()  # warm: imports, and the first counters rates are deltas of
    started = cpu_with_children()
    for _ in range(reads):
        found = await reader.read()
    return (cpu_with_children() - started) / reads * 1e6, len(found)


def read_costs(tmp: Path, sys_root: str) -> list[list[str]]:
    board(tmp / "sys")
    vcgencmd = fake_vcgencmd(tmp, "echo throttled=0x0")
    cases = [
        ("system (defaults, this machine's /proc)", SystemReader(system_config(1.0)), READS),
        (
            "thermal (Pi-like tree, no vcgencmd)",
            ThermalReader(thermal_config(sys_root, str(tmp / "none"))),
            READS,
        ),
        (
            "thermal (Pi-like tree + stand-in vcgencmd)",
            ThermalReader(thermal_config(sys_root, vcgencmd)),
            READS // 10,
        ),
    ]
    rows = []
    for name, reader, reads in cases:
        micros, readings = asyncio.run(per_read(reader, reads))
        rows.append([name, f"{micros:,.0f}", str(readings), f"{micros / 1e4:.3f}"])
    return rows


def system_config(interval: float) -> SystemSourceConfig:
    return SystemSourceConfig(name="host", stream="metrics", interval=interval)


def thermal_config(root: str, vcgencmd: str) -> ThermalSourceConfig:
    return ThermalSourceConfig(
        name="temps", stream="metrics", interval=1.0, root=root, vcgencmd=vcgencmd
    )


def agent_config(tmp: Path, name: str, sources: list[dict[str, Any]]) -> Path:
    return write_yaml(
        tmp / name / "agent.yaml",
        {
            "device_id": "bench",
            "data_dir": str(tmp / name / "data"),
            "log_level": "warning",
            "streams": {"metrics": {}},
            "sources": sources,
        },
    )


def measure_cpu(config: Path, seconds: float) -> tuple[float, int]:
    """CPU % of one core over `seconds` after a warm-up, and events stored meanwhile."""
    db = config.parent / "data" / "queue.db"
    with Edgestream("run", config) as agent:
        time.sleep(5.0)
        agent.check_alive()
        before_cpu, before_events = agent_cpu(agent.pid), count(db)
        started = time.monotonic()
        time.sleep(seconds)
        agent.check_alive()
        used = agent_cpu(agent.pid) - before_cpu
        elapsed = time.monotonic() - started
        events = count(db) - before_events
    return used / elapsed * 100, events


def count(db: Path) -> int:
    return query_int(db, "SELECT COUNT(*) FROM events")


def cpu_rows(tmp: Path, sys_root: str, seconds: float) -> list[list[str]]:
    vcgencmd = fake_vcgencmd(tmp, "echo throttled=0x0")
    set_1s = [
        {"type": "system", "name": "host", "stream": "metrics", "interval": "1s"},
        {
            "type": "thermal", "name": "temps", "stream": "metrics", "interval": "1s",
            "root": sys_root, "vcgencmd": vcgencmd,
        },
    ]  # fmt: skip
    idle_pct, _ = measure_cpu(agent_config(tmp, "idle", []), seconds)
    busy_pct, events = measure_cpu(agent_config(tmp, "set", set_1s), seconds)
    cost = (busy_pct - idle_pct) / 100 * seconds
    polls = 2 * seconds
    return [
        ["agent, no sources", f"{idle_pct:.2f}", "-", "-", "-"],
        [
            "agent, system + thermal at 1 s", f"{busy_pct:.2f}", str(events),
            f"{cost / polls * 1e6:,.0f}", f"{cost / max(1, events) * 1e6:,.0f}",
        ],
        ["cost of the two sources", f"{busy_pct - idle_pct:.2f}", "", "", ""],
    ]  # fmt: skip


def all_sources(tmp: Path, sys_root: str, broker: str) -> list[dict[str, Any]]:
    w1_device(tmp / "sys", "28-000005e2fdc3", temperature="21437\n")
    iio_device(
        tmp / "sys", "iio:device0", name="bme280\n",
        in_temp_raw="2134\n", in_temp_scale="10\n", in_pressure_input="100.9\n",
    )  # fmt: skip
    log = tmp / "app.log"
    log.write_text("")
    common = {"stream": "metrics", "interval": "1s"}
    return [
        {"type": "mqtt", "name": "mq", "stream": "metrics", "broker": {"url": broker},
         "topics": ["bench/#"]},
        {"type": "simulated", "name": "sim", **common, "devices": 5,
         "signals": [{"name": "temp", "noise": 0.5}]},
        {"type": "system", "name": "host", **common},
        {"type": "thermal", "name": "temps", **common, "root": sys_root},
        {"type": "w1", "name": "w1", **common, "root": str(tmp / "sys")},
        {"type": "iio", "name": "iio", **common, "root": str(tmp / "sys")},
        {"type": "gpio", "name": "io", **common, "root": str(tmp / "dev"),
         "lines": [{"offset": 4, "name": "door"}]},
        {"type": "command", "name": "cmd", **common, "command": "echo 1"},
        {"type": "file", "name": "log", "stream": "metrics", "path": str(log)},
        {"type": "http", "name": "web", "stream": "metrics", "listen": f"127.0.0.1:{free_port()}"},
    ]  # fmt: skip


def rss_rows(tmp: Path, sys_root: str, seconds: float) -> list[list[str]]:
    rows = []
    with Mosquitto(tmp / "mosquitto") as broker:
        mqtt_only = all_sources(tmp, sys_root, broker.url)[:1]
        for name, sources in (
            ("agent, one MQTT source", mqtt_only),
            ("agent, all 10 source kinds", all_sources(tmp / "all", sys_root, broker.url)),
        ):
            config = agent_config(tmp, name.split(",")[1].strip().replace(" ", "-"), sources)
            with Edgestream("run", config) as agent:
                time.sleep(seconds)
                agent.check_alive()
                rows.append([name, f"{rss_mib(agent.pid):.1f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--real-sys", action="store_true", help="read thermal from /sys")
    args = parser.parse_args()
    print_machine()
    with temp_dir("sources") as tmp:
        board(tmp / "sys")
        sys_root = "/sys" if args.real_sys else str(tmp / "sys")
        print_table(
            "CPU per read, in process",
            ["reader", "us CPU per read", "readings per read", "% of a core at 1 s"],
            read_costs(tmp, sys_root),
        )
        print_table(
            f"Agent CPU over {args.seconds:.0f} s (% of one core, children included)",
            ["agent", "CPU %", "events stored", "us per poll", "us per event"],
            cpu_rows(tmp, sys_root, args.seconds),
        )
        print_table(
            f"Agent RSS after {args.seconds / 2:.0f} s (VmRSS, MiB)",
            ["agent", "MiB"],
            rss_rows(tmp, sys_root, args.seconds / 2),
        )


if __name__ == "__main__":
    main()
