"""`edgestream hub status -c hub.yaml`: the fleet table, from the hub's store.

One row per device (last seen, lag of its newest event, streams, events, gaps and the
events they lost, duplicates dropped, refused batches, clock skew), then with
`--device` one row per stream and every gap with its reason. `--json` for scripts. It
reads the SQLite store read-only, so it works while the hub runs and when it is down;
with the JetStream store it reads the positions bucket (gaps stay in the stream).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from typing import Any

from agent.cli.common import EXIT_CONFIG, print_config_error
from sync.config.errors import ConfigError
from sync.hub.config import SqliteStoreConfig, load_hub_config
from sync.hub.fleet import DeviceRow, GapRow, StreamRow, device_rows, gap_rows, read_only
from sync.hub.fleet import stream_rows as all_stream_rows
from sync.hub.jetstream_config import JetStreamStoreConfig
from sync.hub.store import StoreUnavailableError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `hub status` (the `hub` command adds the subcommand)."""
    parser.add_argument("--device", help="show one device's streams and gaps")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def handle(args: argparse.Namespace) -> int:
    """Print the fleet table (or one device) from the configured store."""
    try:
        config = load_hub_config(args.config)
    except ConfigError as error:
        print_config_error(error)
        return EXIT_CONFIG
    try:
        if isinstance(config.store, SqliteStoreConfig):
            with read_only(config.store.path) as conn:
                devices = device_rows(conn)
                streams = all_stream_rows(conn, args.device)
                gaps = gap_rows(conn, args.device)
        else:
            devices, streams = asyncio.run(_jetstream_fleet(config.store))
            streams = [s for s in streams if args.device in (None, s.device)]
            gaps = []
    except (FileNotFoundError, StoreUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    now = time.time()
    if args.device is not None:
        devices = [d for d in devices if d.device == args.device]
        if not devices:
            print(f"error: the hub has no device {args.device!r}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(as_json(devices, streams, gaps, args.device is not None), indent=2))
    else:
        print(render(devices, streams if args.device else [], gaps if args.device else [], now))
    return 0


async def _jetstream_fleet(
    settings: JetStreamStoreConfig,
) -> tuple[list[DeviceRow], list[StreamRow]]:
    """The fleet from the JetStream store's positions bucket (nats-py only for this)."""
    from sync.hub.jetstream_fleet import read_fleet
    from sync.hub.jetstream_stream import connect

    client = await connect(settings, "edgestream-hub-status")
    try:
        return await read_fleet(client.jetstream(), settings.fleet_bucket)
    finally:
        await client.close()


def as_json(
    devices: list[DeviceRow], streams: list[StreamRow], gaps: list[GapRow], detail: bool
) -> dict[str, Any]:
    """Plain rows; times are epoch seconds."""
    result: dict[str, Any] = {"devices": [dataclasses.asdict(d) for d in devices]}
    if detail:
        result["streams"] = [dataclasses.asdict(s) for s in streams]
        result["gaps"] = [dataclasses.asdict(g) for g in gaps]
    return result


def render(
    devices: list[DeviceRow], streams: list[StreamRow], gaps: list[GapRow], now: float
) -> str:
    """The fleet table, then the streams and gaps when one device is shown."""
    head = (
        f"{'DEVICE':<24} {'LAST SEEN':>10} {'LAG':>9} {'BACKLOG':>8} {'STREAMS':>7} "
        f"{'EVENTS':>10} {'GAPS':>5} {'LOST':>8} {'DUPS':>8} {'REJECTED':>8} {'SKEW':>8}"
    )
    lines = [head] + [_device_line(d, now) for d in devices]
    if not devices:
        lines.append("(no device has sent anything yet)")
    if streams:
        lines += ["", f"{'STREAM':<20} {'EPOCH':<18} {'UPTO SEQ':>10} {'EVENTS':>10} "
                  f"{'DUPS':>8} {'LOST':>8} {'UPDATED':>9}"]  # fmt: skip
        lines += [_stream_line(s, now) for s in streams]
    if gaps:
        lines += ["", f"{'GAP IN STREAM':<20} {'SEQS':<23} {'REASON':<16} {'RECORDED':>9}"]
        lines += [_gap_line(g, now) for g in gaps]
    rejections = [d for d in devices if d.last_rejection]
    for d in rejections:
        lines.append(f"last refused batch of {d.device}: {d.last_rejection}")
    return "\n".join(lines)


def _device_line(d: DeviceRow, now: float) -> str:
    return (
        f"{d.device:<24} {ago(now - d.last_seen):>10} {seconds(d.lag(now)):>9} "
        f"{seconds(d.backlog_age):>8} {d.streams:>7} {d.events:>10} {d.gaps:>5} {d.lost:>8} "
        f"{d.duplicates:>8} "
        f"{d.rejected:>8} {seconds(d.clock_skew):>8}"
    )


def _stream_line(s: StreamRow, now: float) -> str:
    return (
        f"{s.stream:<20} {s.epoch[:18]:<18} {s.upto_seq:>10} {s.events:>10} "
        f"{s.duplicates:>8} {s.lost:>8} {ago(now - s.updated_at):>9}"
    )


def _gap_line(g: GapRow, now: float) -> str:
    seqs = f"{g.first_seq}-{g.last_seq}"
    return f"{g.stream:<20} {seqs:<23} {g.reason:<16} {ago(now - g.recorded_at):>9}"


def ago(elapsed: float) -> str:
    """`12s ago`, `5m ago`, `3h ago`, `2d ago` (a hub clock behind shows `now`)."""
    return f"{seconds(max(0.0, elapsed))} ago" if elapsed >= 1 else "now"


def seconds(value: float | None) -> str:
    """A duration in its largest whole unit, signed; `-` when unknown."""
    if value is None:
        return "-"
    sign, size = ("-" if value < 0 else ""), abs(value)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if size >= length:
            return f"{sign}{size / length:.0f}{unit}"
    return f"{sign}{size:.0f}s" if size >= 1 else f"{sign}{size * 1000:.0f}ms"
