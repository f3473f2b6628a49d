"""`edgestream queue`: list the streams of a queue database, live or not.

It reads the SQLite file directly (WAL allows it while the daemon writes), so it works
whether the daemon runs or not.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from agent.cli.common import EXIT_CONFIG, print_config_error
from agent.config.load import load_agent_config
from agent.queue import DATABASE_NAME
from agent.queue.reader import stream_stats
from agent.queue.records import StreamStats
from sync.config.errors import ConfigError


def register(commands: Any) -> None:
    """Add the `queue` subcommand."""
    parser = commands.add_parser("queue", help="list streams: depth, age, cursors, drops")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("-c", "--config", help="agent YAML file (its data_dir is read)")
    where.add_argument("--data-dir", help="data directory holding queue.db")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Print one block per stream."""
    data_dir = args.data_dir
    if args.config:
        try:
            data_dir = load_agent_config(args.config).data_dir
        except ConfigError as error:
            print_config_error(error)
            return EXIT_CONFIG
    path = Path(data_dir) / DATABASE_NAME
    if not path.exists():
        print(f"no queue database at {path}", file=sys.stderr)
        return 1
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        stats = stream_stats(conn)
    finally:
        conn.close()
    print(json.dumps([as_dict(s) for s in stats], indent=2) if args.json else render(stats))
    return 0


def as_dict(stats: StreamStats) -> dict[str, Any]:
    return {
        "stream": stats.name, "depth": stats.depth, "bytes": stats.bytes,
        "last_seq": stats.last_seq, "oldest_unsent_age_s": _age(stats.oldest_unsent_time),
        "cursors": {c.consumer: c.position for c in stats.cursors if c.active},
        "counters": stats.counters,
    }  # fmt: skip


def _age(ts: float | None) -> float | None:
    return None if ts is None else round(max(0.0, time.time() - ts), 1)


def render(all_stats: list[StreamStats]) -> str:
    """A readable table: one row per stream, then its cursors and counters."""
    head = f"{'STREAM':<20} {'DEPTH':>9} {'BYTES':>11} {'LAST SEQ':>10} {'OLDEST UNSENT':>14}"
    lines = [head]
    for s in all_stats:
        age = _age(s.oldest_unsent_time)
        shown = "-" if age is None else f"{age:.1f}s"
        lines.append(f"{s.name:<20} {s.depth:>9} {s.bytes:>11} {s.last_seq:>10} {shown:>14}")
        for c in s.cursors:
            state = "" if c.active else " (inactive)"
            lines.append(
                f"    cursor {c.consumer}: {c.position} ({s.last_seq - c.position} behind){state}"
            )
        for name, value in sorted(s.counters.items()):
            lines.append(f"    {name}: {value}")
    return "\n".join(lines)
