#!/usr/bin/env python3
"""Coverage-guided fuzzing of the hub's wire decoder with atheris (by hand, not in CI).

The hypothesis tests in tests/fuzz/ check the same promise on every CI run; this
harness lets libFuzzer's coverage feedback dig deeper for as long as you give it:
`sync.wire.decode` raises WireFormatError and nothing else, whatever the bytes.

Each input is decoded as it is, again with its CRC re-computed (so mutations reach
the decoders behind the checksum), and wrapped as the uncompressed body of a version 2
and a version 1 message (so they reach the columnar and JSON decoders without having
to get through zstd first); with the fixtures' dictionary, and with signatures
required for the fixtures' signed device. Seeds: tests/hub/wire_fixtures, and the
uncompressed bodies of a few batches.

    python3 -m pip install atheris          # not a project dependency (Linux, x86_64)
    python3 scripts/fuzz_wire.py -atheris_runs=200000
    python3 scripts/fuzz_wire.py corpus/ -max_total_time=600   # keep what it finds

A crash prints the exception and writes the input to crash-<sha1>; add it to
tests/fuzz/test_fuzz_wire.py as a regression example.
"""

from __future__ import annotations

import contextlib
import json
import struct
import sys
import zlib
from pathlib import Path

import atheris  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "hub" / "wire_fixtures"
MAX_SIZE = 1 << 20

with atheris.instrument_imports(include=["sync"]):
    from sync.outbox import Gap, StoredEvent
    from sync.wire import Batch, WireFormatError, decode, dictionary_id, encode
    from sync.wire_bytes import text

DICTIONARIES = {dictionary_id(d): d for d in (p.read_bytes() for p in FIXTURES.glob("*.zdict"))}
KEYS = {
    device: bytes.fromhex(key)
    for device, key in json.loads((FIXTURES / "keys.json").read_text()).items()
}


def resign(data: bytes) -> bytes:
    """`data` with its last 4 bytes replaced by the CRC-32 of the bytes before them."""
    return data[:-4] + struct.pack(">I", zlib.crc32(data[:-4]))


def wrapped_v2(body: bytes) -> bytes:
    """`body` as the uncompressed body of a version 2 message, CRC valid."""
    return resign(bytes([2, 0]) + text("pi") + body + b"crc!")


def wrapped_v1(body: bytes) -> bytes:
    """`body` as the uncompressed rows of a version 1 message, CRC valid."""
    header = b'{"device":"pi","epoch":"e","stream":"s","upto_seq":9,"count":2,"gaps":[]}'
    return resign(struct.pack(">BBI", 1, 0, len(header)) + header + body + b"crc!")


def test_one_input(data: bytes) -> None:
    """Decode `data` as it came, re-signed and wrapped; only WireFormatError may come out."""
    candidates = [data, wrapped_v2(data), wrapped_v1(data)]
    if len(data) >= 4:
        candidates.append(resign(data))
    for candidate in candidates:
        with contextlib.suppress(WireFormatError):
            decode(candidate, MAX_SIZE, dictionaries=DICTIONARIES, hmac_key_for=KEYS.get)


def seed_corpus(argv: list[str]) -> list[str]:
    """When the first argument is an empty folder, fill it with the fixtures as seeds."""
    folders = [Path(a) for a in argv[1:] if not a.startswith("-")]
    for folder in folders[:1]:
        folder.mkdir(parents=True, exist_ok=True)
        if not any(folder.iterdir()):
            for fixture in FIXTURES.glob("*.bin"):
                (folder / fixture.name).write_bytes(fixture.read_bytes())
            for i, batch in enumerate(SAMPLES):
                message = encode(batch, 0)
                (folder / f"v2-body-{i}").write_bytes(message[2 + len(text("pi")) : -4])
                v1 = encode(batch, 0, version=1)
                (folder / f"v1-rows-{i}").write_bytes(
                    v1[6 + struct.unpack_from(">I", v1, 2)[0] : -4]
                )
    return argv


SAMPLES = [
    Batch("pi", "e", "s", [
        StoredEvent(1, 1764201600.5, 1764201600.51, "k", "plant/k/t", b'{"v":21.5,"u":"C"}'),
        StoredEvent(3, 1764201601.5, 1764201601.52, "k", "plant/k/t", b'{"v":21.6,"u":"C"}'),
    ], [Gap(2, 2, "max_age", 1.0)], 9),
    Batch("pi", "e", "s", [
        StoredEvent(1, 1.0, 1.0, None, None, b"\x00\xff", {"h": "1"}),
        StoredEvent(2, -0.0, 1e300, None, "t", b'{"device":"d","n":[1,{"a":null}]}', None),
    ], [], 9),
]  # fmt: skip


def main() -> None:
    """Run libFuzzer over `test_one_input` with the command line's options."""
    atheris.Setup(seed_corpus(sys.argv), test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
