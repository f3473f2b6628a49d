"""Run a chaos scenario outside pytest and print its results as a Markdown table.

    python -m tests.chaos.run --seed 7 --duration 600 [--rate 100] [--keep DIR]

Exit status 0 when every promise held, 1 otherwise (the problems are printed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.faults import DEVICE_KINDS, KINDS, STORE_KINDS
from tests.chaos.scenario import ScenarioConfig, markdown, run_scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of faults")
    parser.add_argument("--rate", type=float, default=100.0, help="MQTT readings per second")
    parser.add_argument("--kinds", help="fault kinds, comma-separated (default: all)")
    parser.add_argument("--store", choices=("sqlite", "jetstream"), default="sqlite")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (logs, DBs)")
    args = parser.parse_args(argv)
    kinds = KINDS + DEVICE_KINDS + (STORE_KINDS if args.store == "jetstream" else ())
    if args.kinds:
        kinds = tuple(k for k in args.kinds.split(",") if k)
    config = ScenarioConfig(args.seed, args.duration, args.rate, kinds, store=args.store)
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {line}", flush=True)

    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run_scenario(args.keep, config, log)
    else:
        with tempfile.TemporaryDirectory(prefix="edgestream-chaos-") as tmp:
            result = run_scenario(Path(tmp), config, log)
    print()
    print(markdown([result]))
    for problem in result.check.problems:
        print(f"PROBLEM: {problem}")
    if not result.drained:
        print("PROBLEM: the hub did not catch up with the agent within the drain timeout")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
