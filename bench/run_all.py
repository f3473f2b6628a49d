"""Run every benchmark in bench/, one after the other, and print all their tables.

Each benchmark runs as its own `python bench/<name>.py` process (so one cannot leave
threads, brokers or memory behind for the next) with a time limit; the exit code is
non-zero when any of them failed or timed out. Running them one at a time matters:
they share two cores with the broker, and a neighbour would skew every figure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BENCHMARKS = (
    "queue_append",
    "mqtt_ingest",
    "uplink_drain",
    "agent_rss",
    "window_engine",
    "sources_cost",
    "wire_size",
    "hub_fleet",
    "jetstream_hub",
    "metrics_cost",
)
TIME_LIMIT = 600.0


def run_one(name: str) -> bool:
    """Run one benchmark, streaming its output; True when it succeeded in time."""
    print(f"\n## {name}  (`python bench/{name}.py`)\n", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(BENCH / f"{name}.py")], cwd=BENCH.parent)
    try:
        code = process.wait(TIME_LIMIT)
    except subprocess.TimeoutExpired:
        process.terminate()
        process.wait(30)
        print(f"\n{name}: stopped after {TIME_LIMIT:.0f} s", flush=True)
        return False
    print(f"\n({name}: {time.perf_counter() - started:.0f} s, exit code {code})", flush=True)
    return code == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    failed = [name for name in args.names or BENCHMARKS if not run_one(name)]
    if failed:
        print(f"\nFailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
