"""Soak: run a long chaos scenario and sample the agent's and hub's RSS and CPU every 10 s.

    python bench/soak.py --seconds 3600 --csv soak.csv -- \
        python -m tests.chaos.run --seed 11 --duration 3600

The command (by default the chaos runner for `--seconds`) starts, kills and restarts
real `edgestream run` and `edgestream hub` processes; this script finds them by their
command line at every sample, so a restarted process is followed under its new PID.
CPU is the share of one core used since the previous sample (user + system, from
/proc/<pid>/stat); a process that restarted in between counts from its start. At the
end it prints the Markdown tables docs/reliability.md keeps: a summary per role and
the curve (one row per minute).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROLES = {"agent": ("agent.cli.main", " run "), "hub": ("agent.cli.main", " hub ")}


@dataclass(frozen=True, slots=True)
class Sample:
    """One role's figures at one instant (None when no such process ran)."""

    at: float
    role: str
    pid: int | None
    rss_mib: float | None
    cpu_percent: float | None


def find_pids(role: str) -> list[int]:
    """PIDs of the live processes of a role, by their command line."""
    module, verb = ROLES[role]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if module in command and verb in command:
            found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Sampler:
    """Keeps the previous CPU reading per PID to turn totals into a rate."""

    def __init__(self) -> None:
        self.previous: dict[int, tuple[float, float]] = {}

    def sample(self, role: str, now: float) -> Sample:
        pids = find_pids(role)
        if not pids:
            return Sample(now, role, None, None, None)
        pid = max(pids)  # the newest, should two overlap during a restart
        total, rss = cpu_seconds(pid), rss_mib(pid)
        if total is None:
            return Sample(now, role, None, None, None)
        before = self.previous.get(pid)
        self.previous[pid] = (now, total)
        if before is None:
            return Sample(now, role, pid, rss, None)
        rate = 100 * (total - before[1]) / max(now - before[0], 1e-6)
        return Sample(now, role, pid, rss, rate)


def run(command: list[str], seconds: float, interval: float, out: Path) -> list[Sample]:
    """Start `command`, sample every `interval` s until it ends (or `seconds` + 10 min)."""
    child = subprocess.Popen(command)
    sampler, samples = Sampler(), []
    started = time.monotonic()
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t", "role", "pid", "rss_mib", "cpu_percent"])
        while child.poll() is None and time.monotonic() - started < seconds + 600:
            time.sleep(interval)
            now = time.monotonic() - started
            for role in ROLES:
                sample = sampler.sample(role, now)
                samples.append(sample)
                writer.writerow([f"{now:.0f}", role, sample.pid, sample.rss_mib,
                                 sample.cpu_percent])  # fmt: skip
            handle.flush()
    if child.poll() is None:
        child.terminate()
    child.wait()
    return samples


def summary(samples: list[Sample]) -> str:
    """Per role: RSS first / median / max / last, CPU median and p95, restarts seen."""
    lines = [
        "| role | samples | RSS first | RSS median | RSS max | RSS last | CPU median | CPU p95 "
        "| PIDs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for role in ROLES:
        mine = [s for s in samples if s.role == role and s.rss_mib is not None]
        if not mine:
            continue
        rss = [s.rss_mib for s in mine if s.rss_mib is not None]
        cpu = sorted(s.cpu_percent for s in mine if s.cpu_percent is not None)
        p95 = cpu[int(0.95 * (len(cpu) - 1))] if cpu else 0.0
        pids = len({s.pid for s in mine})
        lines.append(
            f"| {role} | {len(mine)} | {rss[0]:.1f} MiB | {statistics.median(rss):.1f} MiB | "
            f"{max(rss):.1f} MiB | {rss[-1]:.1f} MiB | "
            f"{statistics.median(cpu) if cpu else 0:.1f} % | {p95:.1f} % | {pids} |"
        )
    return "\n".join(lines)


def curve(samples: list[Sample]) -> str:
    """One row per minute: each role's RSS (last sample of the minute) and mean CPU."""
    lines = ["| minute | agent RSS | agent CPU | hub RSS | hub CPU |", "|---|---|---|---|---|"]
    minutes = sorted({int(s.at // 60) for s in samples})
    for minute in minutes:
        cells = []
        for role in ROLES:
            mine = [s for s in samples if s.role == role and int(s.at // 60) == minute]
            rss = [s.rss_mib for s in mine if s.rss_mib is not None]
            cpu = [s.cpu_percent for s in mine if s.cpu_percent is not None]
            cells.append(f"{rss[-1]:.1f} MiB" if rss else "down")
            cells.append(f"{statistics.mean(cpu):.1f} %" if cpu else "-")
        lines.append(f"| {minute} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    """Parse the arguments, run the soak, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--csv", type=Path, default=Path("soak.csv"))
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = [c for c in args.command if c != "--"] or [
        sys.executable, "-m", "tests.chaos.run", "--duration", f"{args.seconds:.0f}",
    ]  # fmt: skip
    samples = run(command, args.seconds, args.interval, args.csv)
    print(f"\n### Soak: {' '.join(command)}\n")
    print(summary(samples))
    print()
    print(curve(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
