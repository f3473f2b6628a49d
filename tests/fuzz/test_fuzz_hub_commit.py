"""Fuzzing the hub's commit path: a batch is stored completely or not at all, never half.

Mutated batches whose CRC holds go through what the hub does with them (decode with
its limits, then SqliteCentralStore.commit in a real SQLite file): each is refused with
nothing of it stored, or stored whole (every event present with its fields, its gaps
recorded, its position advanced by exactly what it added). A refused group leaves
nothing either, so the hub's retry batch by batch starts from a clean store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.hub.config import HubConfig
from sync.hub.service import Hub
from sync.hub.store import BatchRefusedError, CommitResult, SqliteCentralStore
from sync.mqtt.config import MqttConnectionConfig
from sync.mqtt.connection import MqttConnection
from sync.outbox import Gap, StoredEvent
from sync.wire import Ack, Batch, WireFormatError, decode, encode
from tests.brokers import MosquittoBroker
from tests.fuzz.budget import fuzz
from tests.fuzz.mutations import damaged
from tests.fuzz.wire_inputs import ENCODINGS, MAX_SIZE, Encoding, v1_frame
from tests.hub.wire_strategies import batches

Snapshot = dict[str, list[tuple[Any, ...]]]
_TABLES = ("events", "gaps", "positions", "devices", "event_minutes")


@contextmanager
def fresh_store() -> Iterator[tuple[SqliteCentralStore, Path]]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "central.db"
        store = SqliteCentralStore(path, synchronous="normal", clock=lambda: 1764201600.0)
        try:
            yield store, path
        finally:
            store.close_now()


def snapshot(path: Path) -> Snapshot:
    with sqlite3.connect(path) as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}"), key=repr) for t in _TABLES}


def commit(store: SqliteCentralStore, group: list[Batch]) -> list[CommitResult] | str:
    """The store's verdict on a group, as the hub gets it: results, or the refusal."""
    try:
        return asyncio.run(store.commit(group))
    except BatchRefusedError as exc:
        return str(exc)


def assert_stored_whole(
    before: Snapshot, after: Snapshot, batch: Batch, result: CommitResult
) -> None:
    """Every event of `batch` is in the store, the new ones exactly; counts add up."""
    old = {row[:4]: row for row in before["events"]}
    rows = {row[:4]: row for row in after["events"]}
    new = 0
    for e in batch.events:
        row = rows[(batch.device, batch.epoch, batch.stream, e.seq)]
        if row[:4] not in old:
            new += 1
            headers = orjson.dumps(e.headers).decode() if e.headers else None
            assert row[4:10] == (e.event_time, e.ingest_time, e.key, e.topic, e.payload, headers)
    assert (result.committed, result.duplicates) == (new, len(batch.events) - new)
    assert set(old) <= set(rows)
    for gap in batch.gaps:
        key = (batch.device, batch.epoch, batch.stream, gap.first_seq)
        assert any(r[:4] == key and r[4] >= gap.last_seq for r in after["gaps"])
    where = (batch.device, batch.epoch, batch.stream)
    (position,) = [r for r in after["positions"] if r[:3] == where]
    prior = [r for r in before["positions"] if r[:3] == where]
    upto, events, duplicates = prior[0][3:6] if prior else (batch.upto_seq, 0, 0)
    assert position[3] == max(upto, batch.upto_seq)
    assert position[4:6] == (events + result.committed, duplicates + result.duplicates)


def seed_of(batch: Batch) -> Batch:
    """The first half of `batch`, committed first: the fuzzed batch then repeats some."""
    half = list(batch.events[: len(batch.events) // 2])
    upto = max([e.seq for e in half], default=0)
    return dataclasses.replace(batch, events=half, gaps=[], upto_seq=upto)


NASTY_GAPS = st.builds(
    Gap, st.integers(0, 5), st.integers(5, 9), st.sampled_from(["", "\x00", "max_age"]),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308]),
)  # fmt: skip


NASTY_EVENTS = st.builds(
    lambda t, i, key, topic, payload, headers: (t, i, key, topic, payload, headers),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 1764201600.123]),
    st.sampled_from([1e308, 0.0, 1764201600.5]),
    st.sampled_from([None, "", "\x00", "é" * 200, "a/b"]),
    st.sampled_from([None, "", "\x00/#", "t" * 5000]),
    st.sampled_from([b"", b"\x00" * 9, b"{}", b'{"a":' + b"[" * 100 + b"]" * 100 + b"}",
                     b'{"v":18446744073709551615}', b"\xff" * 70_000]),
    st.sampled_from([None, {}, {"": ""}, {"a": {"b": [1, None, "x"]}}]),
)  # fmt: skip


@st.composite
def with_nasty_content(draw: st.DrawFn, batch: Batch) -> Batch:
    """`batch` with odd events after its own (the last maybe at 2**63 - 1), odd gaps
    and an odd send time: all of it valid on the wire, some of it hard to store."""
    first = max([e.seq for e in batch.events], default=0) + 1
    extra: list[tuple[Any, ...]] = draw(st.lists(NASTY_EVENTS, max_size=3))
    if first >= 2**62:
        extra = []
    seqs = list(range(first, first + len(extra)))
    last_at_the_limit: bool = draw(st.booleans())
    if seqs and last_at_the_limit:
        seqs[-1] = 2**63 - 1
    added = [StoredEvent(s, *fields) for s, fields in zip(seqs, extra, strict=True)]
    events = [*batch.events, *added]
    gaps = [*batch.gaps, *draw(st.lists(NASTY_GAPS, max_size=1))]
    upto = max([batch.upto_seq, *seqs, *(g.last_seq for g in gaps)])
    sent_at = draw(st.sampled_from([None, math.inf, -math.inf, 1e308, -1.0]))
    return dataclasses.replace(batch, events=events, gaps=gaps, upto_seq=upto, sent_at=sent_at)


@st.composite
def committable(draw: st.DrawFn) -> tuple[Batch, bytes]:
    """A batch and a message of it: odd but valid content, or byte-mutated (re-CRC'd)."""
    batch = draw(batches())
    how = draw(ENCODINGS.filter(lambda e: not e.signed and not e.dictionary))
    if draw(st.booleans()):
        batch = draw(with_nasty_content(batch))
        return batch, how.encode(batch)
    # uncompressed messages survive most mutations
    return batch, draw(damaged(Encoding(how.version, 0, False, False).encode(batch)))


@fuzz(120)
@given(committable(), st.booleans())
def test_a_batch_is_stored_whole_or_not_at_all(case: tuple[Batch, bytes], grouped: bool) -> None:
    batch, message = case
    with fresh_store() as (store, path):
        assert isinstance(commit(store, [seed_of(batch)]), list)
        before = snapshot(path)
        try:
            decoded = decode(message, MAX_SIZE)
        except WireFormatError:
            assert snapshot(path) == before
            return
        other = Batch("other", "e", "s", [StoredEvent(1, 1.0, 1.0, None, "t", b"1")], [], 1)
        group = [other, decoded] if grouped else [decoded]
        verdict = commit(store, group)
        after = snapshot(path)
        if isinstance(verdict, str):
            assert after == before, f"refused ({verdict}) yet something was stored"
            return
        assert_stored_whole(before, after, decoded, verdict[-1])


def test_a_gap_the_store_cannot_hold_refuses_its_events_too() -> None:
    """A NaN recorded_at (NOT NULL in SQLite) fails after the events were inserted."""
    events = [StoredEvent(s, 1.0, 1.0, None, "t", b"%d" % s) for s in (1, 2, 3)]
    batch = Batch("d", "e", "s", events, [Gap(5, 6, "max_age", math.nan)], 6)
    with fresh_store() as (store, path):
        before = snapshot(path)
        verdict = commit(store, [decode(encode(batch), MAX_SIZE)])
        assert isinstance(verdict, str)
        assert snapshot(path) == before


# ------------------------------------------------------------------ found by fuzzing


def _v1_with_deep_headers(depth: int) -> bytes:
    header = b'{"device":"dev","epoch":"e","stream":"s","upto_seq":1,"count":1,"gaps":[]}'
    body = b'[[1,1.0,1.0,null,null,"p",{"h":' + b"[" * depth + b"]" * depth + b"},0]]"
    return v1_frame(header, body)


POISON = (
    "BUG: a version 1 batch whose event headers nest 254+ deep decodes, then "
    "SqliteCentralStore.commit raises TypeError('Recursion limit reached') from "
    "orjson.dumps(e.headers), which is neither BatchRefusedError nor "
    "StoreUnavailableError: Hub._commit lets it out and the commit loop (and the hub) stop."
)


def test_headers_the_store_cannot_encode_are_refused_by_the_decoder() -> None:
    """Found by fuzzing: such headers decoded, then stopped the hub in the store's commit."""
    with pytest.raises(WireFormatError, match="headers cannot be stored"):
        decode(_v1_with_deep_headers(300), MAX_SIZE)


async def test_a_poison_batch_does_not_stop_the_hub(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """Through the real hub and broker: the poison batch, then a good one, must be answered."""
    broker = MqttConnectionConfig(url=mosquitto.url, backoff_initial=0.2, backoff_max=1.0)
    store = SqliteCentralStore(tmp_path / "central.db")
    hub = Hub(HubConfig(broker=broker), store)
    acks: list[Ack] = []
    device = MqttConnection(
        broker, client_id="dev", subscriptions=[("edgestream/dev/ack", 1)],
        on_message=lambda m: acks.append(Ack.from_bytes(m.payload)), name="dev",
    )  # fmt: skip
    good = encode(Batch("dev", "e", "s2", [StoredEvent(1, 1.0, 1.0, None, "t", b"1")], [], 1))
    hub_task = asyncio.create_task(hub.run())
    dev_task = asyncio.create_task(device.run())
    try:
        assert await hub.connection.wait_connected(10)
        assert await device.wait_connected(10)
        for payload in (_v1_with_deep_headers(300), good):
            await device.publish("edgestream/dev/up", payload, qos=1)
        deadline = asyncio.get_running_loop().time() + 20
        while len(acks) < 2 and not hub_task.done():
            assert asyncio.get_running_loop().time() < deadline, acks
            await asyncio.sleep(0.05)
        assert not hub_task.done(), f"the hub stopped: {hub_task.exception()!r}"
        assert sorted(a.status for a in acks) == ["ok", "rejected"]
    finally:
        for task in (hub_task, dev_task):
            task.cancel()
        await asyncio.gather(hub_task, dev_task, return_exceptions=True)
        store.close_now()


def test_a_deeply_nested_version_1_key_is_a_wire_format_error() -> None:
    header = b'{"device":"d","epoch":"e","stream":"s","upto_seq":1,"count":1,"gaps":[]}'
    body = b"[[1,1.0,1.0," + b"[" * 1000 + b"]" * 1000 + b',null,"p",null,0]]'
    with pytest.raises(WireFormatError):
        decode(v1_frame(header, body), MAX_SIZE)
