"""Every batch any wire version ever wrote still decodes to what it held.

tests/hub/wire_fixtures/ holds messages written by each version (scripts/
make_wire_fixtures.py adds a new version's files and never rewrites old ones), the
dictionaries (`<id>.zdict`) and device keys (`keys.json`) they need, and
`expected.json`, their decoded contents.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from sync.wire import VERSIONS, Batch, decode, dictionary_id

FOLDER = Path(__file__).parent / "wire_fixtures"
EXPECTED: dict[str, Any] = json.loads((FOLDER / "expected.json").read_text())
MESSAGES = sorted(p.name for p in FOLDER.glob("*.bin"))
KEYS = {d: bytes.fromhex(k) for d, k in json.loads((FOLDER / "keys.json").read_text()).items()}
DICTIONARIES = {dictionary_id(d): d for d in (p.read_bytes() for p in FOLDER.glob("*.zdict"))}


def as_json(batch: Batch) -> dict[str, Any]:
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


@pytest.mark.parametrize("name", MESSAGES)
def test_every_fixture_decodes_to_its_expected_contents(name: str) -> None:
    data = (FOLDER / name).read_bytes()
    batch = decode(data, dictionaries=DICTIONARIES, hmac_key_for=KEYS.get)
    assert as_json(batch) == EXPECTED[name]


def test_every_fixture_has_expected_contents_and_every_version_has_fixtures() -> None:
    assert set(MESSAGES) == set(EXPECTED)
    assert {(FOLDER / name).read_bytes()[0] for name in MESSAGES} == set(VERSIONS)
