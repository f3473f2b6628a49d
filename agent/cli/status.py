"""`edgestream status -c agent.yaml`: what the running agent is doing, or its database.

It asks the daemon's loopback endpoint (`GET /status`, the figures of `/metrics` as
JSON) and prints sources, streams, pipelines and the uplink as tables; `--json` prints
what it got. When the daemon does not answer (stopped, or metrics turned off) it reads
the queue database directly, says so, and prints the streams from there.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from agent.cli import queue as queue_cli
from agent.cli.common import EXIT_CONFIG, agent_config_or_report
from agent.config.model import AgentConfig
from agent.queue import DATABASE_NAME
from agent.queue.reader import stream_stats

TIMEOUT = 10.0
"""Seconds to wait for the daemon's /status (a loaded Pi answers slowly, not never)."""

Samples = dict[str, list[dict[str, Any]]]


def register(commands: Any) -> None:
    """Add the `status` subcommand."""
    parser = commands.add_parser("status", help="what the running agent is doing")
    parser.add_argument("-c", "--config", required=True, help="agent YAML file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Ask the daemon; fall back to the database when it does not answer."""
    config = agent_config_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    live = ask_daemon(config)
    if live is not None:
        print(json.dumps(live, indent=2) if args.json else render_live(live["families"],
              live["not_ready"], time.time()))  # fmt: skip
        return 0
    return from_database(config, args.json)


def ask_daemon(config: AgentConfig) -> dict[str, Any] | None:
    """The daemon's /status, or None when nothing answers on its metrics address."""
    if not config.metrics.enabled:
        return None
    url = f"http://{config.metrics.listen}/status"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            found: dict[str, Any] = json.loads(answer.read())
            return found
    except (OSError, ValueError):
        return None


def from_database(config: AgentConfig, as_json: bool) -> int:
    """The streams as the queue database holds them, for a daemon that is down."""
    path = Path(config.data_dir) / DATABASE_NAME
    if not path.exists():
        print(f"the agent is not running and there is no queue database at {path}",
              file=sys.stderr)  # fmt: skip
        return 1
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        stats = stream_stats(conn)
    finally:
        conn.close()
    if as_json:
        streams = [queue_cli.as_dict(s) for s in stats]
        print(json.dumps({"running": False, "streams": streams}, indent=2))
    else:
        print(f"No answer from the agent within {TIMEOUT:.0f} s (not running, its metrics "
              f"endpoint off, or not answering); read from {path}:\n")  # fmt: skip
        print(queue_cli.render(stats))
    return 0


def by_label(families: Samples, name: str, label: str) -> dict[str, float]:
    """One family's values keyed by one of their labels (summed over the others)."""
    found: dict[str, float] = defaultdict(float)
    for sample in families.get(name, []):
        found[sample["labels"].get(label, "")] += sample["value"]
    return found


def render_live(families: Samples, not_ready: list[str], now: float) -> str:
    """Readiness, then one table each for sources, streams, pipelines and the uplink."""
    lines = ["Ready." if not not_ready else "NOT READY: " + "; ".join(not_ready), ""]
    lines += [*_sources(families), "", *_streams(families), "", *_pipelines(families)]
    return "\n".join([*lines, "", *_uplink(families, now)])


def _sources(families: Samples) -> list[str]:
    stored = by_label(families, "edgestream_source_events_stored_total", "source")
    errors = by_label(families, "edgestream_source_errors_total", "source")
    dead = by_label(families, "edgestream_source_dead_lettered_total", "source")
    lines = [f"{'SOURCE':<24} {'STORED':>10} {'DEAD-LETTERED':>13} {'ERRORS':>8}"]
    for name in sorted(stored):
        lines.append(f"{name:<24} {stored[name]:>10.0f} {dead.get(name, 0):>13.0f} "
                     f"{errors.get(name, 0):>8.0f}")  # fmt: skip
    return lines


def _streams(families: Samples) -> list[str]:
    depth = by_label(families, "edgestream_stream_depth_events", "stream")
    size = by_label(families, "edgestream_stream_bytes", "stream")
    age = by_label(families, "edgestream_stream_oldest_unsent_age_seconds", "stream")
    lines = [f"{'STREAM':<24} {'DEPTH':>10} {'BYTES':>12} {'OLDEST UNSENT':>14}"]
    for name in sorted(depth):
        lines.append(f"{name:<24} {depth[name]:>10.0f} {size.get(name, 0):>12.0f} "
                     f"{age.get(name, 0):>13.1f}s")  # fmt: skip
    return lines


def _pipelines(families: Samples) -> list[str]:
    events_in = by_label(families, "edgestream_pipeline_events_in_total", "pipeline")
    events_out = by_label(families, "edgestream_pipeline_events_out_total", "pipeline")
    lines = [f"{'PIPELINE':<24} {'IN':>10} {'OUT':>10}"]
    for name in sorted(events_in):
        lines.append(f"{name:<24} {events_in[name]:>10.0f} {events_out.get(name, 0):>10.0f}")
    return lines


def _uplink(families: Samples, now: float) -> list[str]:
    connected = by_label(families, "edgestream_uplink_connected", "")
    if not connected:
        return ["Uplink: not configured."]
    last_ack = by_label(families, "edgestream_uplink_last_ack_timestamp_seconds", "")
    batches = by_label(families, "edgestream_uplink_batches_total", "")
    events = by_label(families, "edgestream_uplink_events_total", "")
    retries = by_label(families, "edgestream_uplink_retries_total", "")
    acked = f"{now - last_ack['']:.0f}s ago" if last_ack else "never"
    state = "connected" if connected[""] else "DISCONNECTED"
    return [
        f"Uplink: {state}; last ack {acked}; {batches.get('', 0):.0f} batches, "
        f"{events.get('', 0):.0f} events sent, {retries.get('', 0):.0f} retries."
    ]
