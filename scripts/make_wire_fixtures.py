#!/usr/bin/env python3
"""Add wire-format fixtures for every version `sync.wire` writes; never overwrite one.

tests/hub/test_wire_fixtures.py decodes every `*.bin` in tests/hub/wire_fixtures/ and
compares it with `expected.json`, so a batch written by an old version keeps decoding
after the format moves on. Run this after adding a wire version: it writes that
version's files and leaves every existing file (and expected entry) as it was.

    python3 scripts/make_wire_fixtures.py
"""

from __future__ import annotations

import base64
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sync.outbox import Gap, StoredEvent
from sync.wire import VERSIONS, Batch, dictionary_id, encode, train_dictionary

FOLDER = Path(__file__).resolve().parent.parent / "tests" / "hub" / "wire_fixtures"
HMAC_DEVICE, HMAC_KEY = "pi-signed", bytes(range(32))


def sensors(n: int, first: int, device: str = "gw-0001", seed: int = 1) -> Batch:
    """A gateway's stream: a few devices and sensors, random-walk values, µs ingest times."""
    rnd = random.Random(seed)
    events, value, ts = [], 21.0, 1764201600.0
    for i in range(n):
        node, sensor = f"pi-{rnd.randrange(5):03d}", rnd.choice(["temp", "rpm"])
        ts = round(ts + rnd.uniform(0.0005, 0.02), 3)
        value = round(value + rnd.gauss(0, 0.4), 2)
        reading: float | int = value if sensor == "temp" else int(value * 70)
        payload = orjson.dumps({"device": node, "sensor": sensor, "ts": ts, "value": reading})
        ingest = round(ts + rnd.uniform(0.001, 0.01), 6)
        events.append(StoredEvent(first + i, ts, ingest, node, f"plant/{node}/{sensor}", payload))
    return Batch(device, "9f2c51d0a4e3b7c1", "sensors", events, [], first + n - 1)


def mixed() -> Batch:
    """Binary and odd payloads, headers, None key and topic, sequence gaps and gap records."""
    events = [
        StoredEvent(7, 1764201600.25, 1764201600.2512345, None, None, bytes(range(256))),
        StoredEvent(9, 1764201601.0, 1764201601.5, "k", "a/k/b", b'{"a": 1}', {"h": "x"}),
        StoredEvent(12, -0.0, 1e300, "k", "k", b'{"n":12345678901234567890,"x":[1,{"y":null}]}'),
        StoredEvent(13, 5e-324, 2.0, "", "", b"", {}),
    ]
    gaps = [Gap(1, 6, "max_bytes", 1764201599.5), Gap(14, 20, "drop_newest", 1764201602.0)]
    return Batch("gw-0002", "00ff", "mixed", events, gaps, 20)


def log_lines() -> Batch:
    """Strings that never repeat (the text column of version 2)."""
    events = [
        StoredEvent(i, 1764201600.0 + i, 1764201600.5 + i, None, "logs",
                    orjson.dumps({"level": "info", "msg": f"request {i} took {i * 7} ms",
                                  "tags": [i, {"ok": i % 2 == 0}]}))
        for i in range(1, 41)
    ]  # fmt: skip
    return Batch("gw-0003", "abcd", "logs", events, [], 40)


Made = tuple[Batch, bytes, dict[str, Any]]  # the batch, its message, extra files


def fixtures(version: int) -> dict[str, Callable[[], Made]]:
    """Name -> a function making one fixture of one version."""
    made: dict[str, Callable[[], Made]] = {
        f"v{version}-sensors.bin": lambda: _plain(sensors(50, 101), version),
        f"v{version}-mixed.bin": lambda: _plain(mixed(), version),
        f"v{version}-uncompressed.bin": lambda: _plain(mixed(), version, level=0),
    }
    if version >= 2:
        made[f"v{version}-dictionary.bin"] = lambda: _with_dictionary(version)
        made[f"v{version}-hmac.bin"] = lambda: _signed(version)
        made[f"v{version}-texts.bin"] = lambda: _plain(log_lines(), version)
    return made


def _plain(batch: Batch, version: int, level: int = 3) -> Made:
    return batch, encode(batch, level, version=version), {}


def _signed(version: int) -> Made:
    batch = sensors(5, 1, HMAC_DEVICE)
    data = encode(batch, version=version, hmac_key=HMAC_KEY)
    return batch, data, {"keys.json": {HMAC_DEVICE: HMAC_KEY.hex()}}


def _with_dictionary(version: int) -> Made:
    samples = [sensors(10, 1 + 10 * i, seed=100 + i) for i in range(200)]
    dictionary = train_dictionary(samples, 4096)
    batch = sensors(10, 5001, seed=7)
    data = encode(batch, version=version, dictionary=dictionary)
    return batch, data, {f"{dictionary_id(dictionary).hex()}.zdict": dictionary}


def expected(batch: Batch) -> dict[str, Any]:
    """A batch as JSON (floats exact through orjson, payloads base64)."""
    return {
        "device": batch.device, "epoch": batch.epoch, "stream": batch.stream,
        "upto_seq": batch.upto_seq,
        "gaps": [[g.first_seq, g.last_seq, g.reason, g.recorded_at] for g in batch.gaps],
        "events": [
            [e.seq, e.event_time, e.ingest_time, e.key, e.topic,
             base64.b64encode(e.payload).decode(), e.headers]
            for e in batch.events
        ],
    }  # fmt: skip


def write_new(path: Path, content: bytes) -> bool:
    """Write a file that does not exist yet; leave an existing one alone."""
    if path.exists():
        return False
    path.write_bytes(content)
    return True


def main() -> None:
    from sync.wire import decode

    FOLDER.mkdir(parents=True, exist_ok=True)
    expected_path = FOLDER / "expected.json"
    table = json.loads(expected_path.read_text()) if expected_path.exists() else {}
    for version in VERSIONS:
        for name, make in fixtures(version).items():
            if (FOLDER / name).exists():
                continue
            batch, data, extra = make()
            for extra_name, content in extra.items():
                _write_extra(FOLDER / extra_name, content)
            dictionaries = {dictionary_id(d): d for d in _dictionaries()}
            if decode(data, dictionaries=dictionaries) != batch:
                raise SystemExit(f"{name}: the batch does not survive a round trip")
            write_new(FOLDER / name, data)
            table[name] = expected(batch)
            print(f"wrote {name}")
    expected_path.write_bytes(orjson.dumps(table, option=orjson.OPT_INDENT_2) + b"\n")


def _write_extra(path: Path, content: Any) -> None:
    if path.suffix == ".json":
        known = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**content, **known}, indent=2) + "\n")
    else:
        write_new(path, content)


def _dictionaries() -> list[bytes]:
    return [p.read_bytes() for p in sorted(FOLDER.glob("*.zdict"))]


if __name__ == "__main__":
    main()
