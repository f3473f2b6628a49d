"""`edgestream wire train`: a zstd dictionary for small uplink batches, from real events.

Small batches (a few events each, as a device that uplinks every second sends) compress
badly on their own: zstd has nothing to learn from. A dictionary trained on a sample of
the device's own stream (same keys, topics, field names) brings W-wire batches of 10
from 38 to about 17 bytes per event. Train on the queue of a device (running or not),
copy the file to every device of the same kind (`uplink.dictionary_file`) and to the
hub (`dictionaries`); batches name their dictionary by id, so an old one can stay listed
on the hub while devices move to a new one.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

from agent.cli.common import EXIT_CONFIG, agent_config_or_report
from agent.queue import DATABASE_NAME
from agent.queue.reader import read_after
from sync.wire import Batch, dictionary_id, train_dictionary

MIN_SAMPLES = 20


def register(commands: Any) -> None:
    """Add the `wire` subcommand."""
    parser = commands.add_parser("wire", help="train a zstd dictionary for small uplink batches")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train a dictionary on a stream's events")
    train.add_argument("-c", "--config", required=True, help="agent YAML file (its data_dir)")
    train.add_argument("--stream", required=True, help="stream to learn from")
    train.add_argument("--out", required=True, help="dictionary file to write")
    train.add_argument("--batch", type=int, default=10, help="events per sample batch")
    train.add_argument("--samples", type=int, default=2000, help="sample batches to read")
    train.add_argument("--size", type=int, default=16384, help="dictionary size in bytes")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Read sample batches from the queue, train, write the file, print its id."""
    config = agent_config_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    path = Path(config.data_dir) / DATABASE_NAME
    if not path.exists():
        print(f"error: no queue database at {path}", file=sys.stderr)
        return 1
    samples = sample_batches(path, config.device_id, args.stream, args.batch, args.samples)
    if len(samples) < MIN_SAMPLES:
        print(f"error: stream {args.stream!r} holds {len(samples)} batches of {args.batch} "
              f"events; at least {MIN_SAMPLES} are needed to train", file=sys.stderr)  # fmt: skip
        return 1
    dictionary = train_dictionary(samples, args.size)
    Path(args.out).write_bytes(dictionary)
    print(f"wrote {args.out}: {len(dictionary)} bytes, id {dictionary_id(dictionary).hex()}, "
          f"from {len(samples)} batches of {args.batch} events")  # fmt: skip
    return 0


def sample_batches(path: Path, device: str, stream: str, size: int, limit: int) -> list[Batch]:
    """Up to `limit` consecutive batches of `size` events of the stream, oldest first."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        batches: list[Batch] = []
        position = 0
        while len(batches) < limit:
            read = read_after(conn, stream, position, size, 1 << 24)
            if not read.events:
                break
            batches.append(Batch(device, "sample", stream, read.events, [], read.upto_seq))
            position = read.upto_seq
        return batches
    finally:
        conn.close()
