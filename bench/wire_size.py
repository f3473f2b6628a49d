"""W-wire: bytes per event and encode/decode cost of each wire version, per batch size.

What it measures and why:
- The W-wire stream exactly as PERFORMANCE.md defines it (`random.Random(42)`), stored
  the way the agent stores a gateway's MQTT feed: seq consecutive from 1, event time =
  the payload's `ts`, key = the device, topic `plant/<device>/<sensor>`, payload = the
  compact JSON, and ingest time = the gateway's receive time: `ts` + a network delay
  uniform in 1-10 ms, rounded to the microsecond (`StoredEvent` times have microsecond
  precision; `random.Random(7)`). That delay is ~13 random bits per event (>= 1.6 B
  after any lossless coding), so a second table stores ingest time other ways: raw
  `time.time()` doubles, milliseconds, and = event time (what sources that stamp both
  at once write), to show what the jitter costs and what everything else costs.
- Per batch size (1,000 / 100 / 10 / 1), whole encoded messages / events, for: zstd
  level 3 over the payloads as JSON lines (the baseline: 12.0 B/event at 1,000 and
  25.2 at 10 in PERFORMANCE.md), wire v1, wire v2, and v2 with a 16 KiB dictionary
  trained on other batches (the first 50,000 events; measured on the next ones).
- Encode and decode microseconds per event of v1 and v2 (one thread, events already
  in memory). Targets: <= 4 B/event at 1,000, <= 20 at 10; <= 6 us/event each way.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence

import orjson
import zstandard
from benchkit import print_machine, print_table, w_wire

from sync.outbox import StoredEvent
from sync.wire import DICTIONARY_SIZE, Batch, decode, dictionary_id, encode, train_dictionary

TRAIN = 50_000
BATCHES = (1000, 100, 10, 1)


INGEST_MODELS: dict[str, Callable[[float, float], float]] = {
    "ts + 1-10 ms, to the us (the default)": lambda ts, delay: round(ts + delay, 6),
    "ts + 1-10 ms, full double (raw time.time())": lambda ts, delay: ts + delay,
    "ts + 1-10 ms, to the ms": lambda ts, delay: round(ts + delay, 3),
    "= event time": lambda ts, delay: ts,
}
DEFAULT_INGEST = next(iter(INGEST_MODELS))


def as_stored(
    events: list[dict[str, object]], ingest: str = DEFAULT_INGEST, metadata: bool = True
) -> list[StoredEvent]:
    """What the agent's queue holds for a gateway's MQTT feed (see the module docstring).

    Without `metadata` the events have no key and no topic (the payload names the device).
    """
    rnd = random.Random(7)
    arrival = INGEST_MODELS[ingest]
    out = []
    for seq, event in enumerate(events, 1):
        ts = float(event["ts"])  # type: ignore[arg-type]
        ingest_time = arrival(ts, rnd.uniform(0.001, 0.01))
        topic = f"plant/{event['device']}/{event['sensor']}"
        device = str(event["device"]) if metadata else None
        where = topic if metadata else None
        out.append(StoredEvent(seq, ts, ingest_time, device, where, orjson.dumps(event)))
    return out


def batches(events: Sequence[StoredEvent], size: int) -> list[Batch]:
    """Consecutive batches of one stream of one gateway."""
    return [
        Batch("gw-0001", "9f2c51d0a4e3b7c1", "sensors", chunk, [], chunk[-1].seq)
        for chunk in (events[i : i + size] for i in range(0, len(events), size))
    ]


def json_lines_bytes(groups: list[Batch]) -> int:
    """The baseline: zstd level 3 over each batch's payloads as JSON lines."""
    compressor = zstandard.ZstdCompressor(level=3)
    return sum(len(compressor.compress(b"\n".join(e.payload for e in g.events))) for g in groups)


def timed(groups: list[Batch], codec: Callable[[Batch], bytes]) -> tuple[int, float]:
    """Total bytes and seconds of encoding every batch."""
    start = time.perf_counter()
    sizes = [len(codec(g)) for g in groups]
    return sum(sizes), time.perf_counter() - start


def decode_seconds(messages: list[bytes], **options: object) -> float:
    """Seconds to decode every message."""
    start = time.perf_counter()
    for message in messages:
        decode(message, **options)  # type: ignore[arg-type]
    return time.perf_counter() - start


def trained(stored: list[StoredEvent], size: int) -> bytes:
    """A 16 KiB dictionary trained on batches of the first TRAIN events (never measured)."""
    return train_dictionary(batches(stored[:TRAIN], size)[:2000], DICTIONARY_SIZE)


def measure(stored: list[StoredEvent], size: int, count: int) -> list[str]:
    """One table row: B/event per format, then encode/decode us/event for v1 and v2."""
    groups = batches(stored[TRAIN : TRAIN + count], size)
    n = sum(len(g.events) for g in groups)
    dictionary = trained(stored, size)
    known = {dictionary_id(dictionary): dictionary}
    v1_bytes, v1_enc = timed(groups, lambda g: encode(g, version=1))
    v2_bytes, v2_enc = timed(groups, encode)
    dict_bytes, _ = timed(groups, lambda g: encode(g, dictionary=dictionary))
    v1_dec = decode_seconds([encode(g, version=1) for g in groups])
    v2_dec = decode_seconds([encode(g) for g in groups])
    messages = [encode(g, dictionary=dictionary) for g in groups]
    assert [decode(m, dictionaries=known) for m in messages] == groups
    us = 1e6 / n
    return [
        f"{size:,}", f"{json_lines_bytes(groups) / n:.1f}", f"{v1_bytes / n:.1f}",
        f"{v2_bytes / n:.2f}", f"{dict_bytes / n:.2f}",
        f"{v1_enc * us:.1f} / {v1_dec * us:.1f}", f"{v2_enc * us:.1f} / {v2_dec * us:.1f}",
    ]  # fmt: skip


def sizes(stored: list[StoredEvent], size: int, count: int) -> str:
    """B/event of v2, and of v2 with a dictionary when the batch is small."""
    groups = batches(stored[TRAIN : TRAIN + count], size)
    n = sum(len(g.events) for g in groups)
    plain = sum(len(encode(g)) for g in groups) / n
    if size >= 100:
        return f"{plain:.2f}"
    dictionary = trained(stored, size)
    return f"{plain:.2f} / {sum(len(encode(g, dictionary=dictionary)) for g in groups) / n:.2f}"


HEADERS = [
    "batch", "zstd-3 JSON lines (baseline)", "v1", "v2", "v2 + 16 KiB dictionary",
    "v1 encode / decode us/event", "v2 encode / decode us/event",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="measured per batch size")
    args = parser.parse_args()
    print_machine()
    raw = w_wire(TRAIN + args.events)
    stored = as_stored(raw)
    payload = sum(len(e.payload) for e in stored) / len(stored)
    print_table(
        f"W-wire bytes per event, ingest time {DEFAULT_INGEST} (compact JSON {payload:.1f} "
        "B/event); targets <= 4 at 1,000 and <= 20 at 10 B/event",
        HEADERS, [measure(stored, size, min(args.events, size * 2000)) for size in BATCHES],
    )  # fmt: skip
    rows = []
    variants = [(model, True) for model in INGEST_MODELS] + [("= event time", False)]
    for model, metadata in variants:
        stored = as_stored(raw, model, metadata)
        label = model if metadata else f"{model}; no key, no topic (payload only)"
        rows.append([label, *(sizes(stored, size, min(args.events, size * 2000))
                              for size in (1000, 10))])  # fmt: skip
    print_table(
        "W-wire v2 B/event by how ingest time is stored (what the arrival jitter costs)",
        ["ingest time", "batch 1,000", "batch 10 (plain / 16 KiB dictionary)"],
        rows,
    )


if __name__ == "__main__":
    main()
