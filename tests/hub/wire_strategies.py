"""Hypothesis strategies for wire batches: every kind of event the agent may store."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st

from sync.outbox import Gap, StoredEvent
from sync.wire import Batch

KEYS = st.sampled_from(["pi-001", "pi-002", "", "a/b", None]) | st.text(max_size=6) | st.none()
FIELDS = st.sampled_from(["device", "ts", "value", "unit", ""]) | st.text(max_size=4)
SCALARS = (
    st.none() | st.booleans() | st.text(max_size=6)
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([21.37, 21.4, 600, 0.0, -0.0, 1e-7, 1e22, 2.5, -3])
)  # fmt: skip
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(FIELDS, inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
# Finite only: a batch with a non-finite time is refused (tests/hub/test_wire.py).
TIMES = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [1764201600.123, 1764201600.5, -0.0, 0.0]
)


@st.composite
def payloads(draw: st.DrawFn, key: str | None) -> bytes:
    """Compact JSON objects (mostly), but also other JSON, other spacing and binary."""
    kind = draw(st.integers(min_value=0, max_value=5))
    if kind <= 2:
        fields = draw(st.dictionaries(FIELDS, JSON | st.just(key), max_size=5))
        return orjson.dumps(fields)
    if kind == 3:
        return draw(st.binary(max_size=20))
    if kind == 4:
        return b'{"big": %d}' % draw(st.integers(min_value=2**64))
    return orjson.dumps(draw(JSON)) + draw(st.sampled_from([b"", b" ", b"\n"]))


@st.composite
def events(draw: st.DrawFn, seq: int) -> StoredEvent:
    """One stored event; topics often contain the key as a segment."""
    key = draw(KEYS)
    segment = st.sampled_from(["plant", "x", ""]) | st.just(key or "k")
    topic = draw(st.none() | st.lists(segment, min_size=1, max_size=4).map("/".join))
    headers: Any = draw(st.none() | st.dictionaries(st.text(max_size=3), st.text(max_size=3)))
    event_time = draw(TIMES)
    ingest = draw(TIMES | st.floats(0, 0.02).map(lambda d: event_time + d))
    return StoredEvent(seq, event_time, ingest, key, topic, draw(payloads(key)), headers)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    """A batch with gaps in its sequence numbers, gap records and a few repeated series."""
    seqs = sorted(draw(st.sets(st.integers(min_value=0, max_value=2**63 - 2), max_size=12)))
    stored = [draw(events(seq)) for seq in seqs]
    gaps = draw(
        st.lists(
            st.builds(Gap, st.integers(0, 1000), st.integers(1000, 2000),
                      st.sampled_from(["max_bytes", "max_age", "ü"]), TIMES),
            max_size=2,
        )
    )  # fmt: skip
    upto = max([*seqs, *(g.last_seq for g in gaps), 0]) + draw(st.integers(0, 1))
    device = draw(st.sampled_from(["pi-1", "gw-é"]))
    return Batch(device, draw(st.text(max_size=16)), draw(st.text(max_size=8)), stored, gaps, upto)
