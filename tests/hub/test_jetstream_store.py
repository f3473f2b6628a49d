"""The JetStream central store against a real nats-server: the consumer contract, dedupe,
gaps, outages and the start-up check."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import unquote

import nats
import orjson
import pytest
from nats.js.api import StreamConfig

from agent.cli.main import main
from sync.config.spec import load_config
from sync.hub.config import HubConfig
from sync.hub.jetstream_config import JetStreamStoreConfig
from sync.hub.jetstream_store import JetStreamCentralStore
from sync.hub.jetstream_stream import JetStreamConfigError
from sync.hub.store import BatchRefusedError, StoreUnavailableError
from sync.outbox import Gap, StoredEvent
from sync.wire import Batch
from tests.hub.jetstream_read import read_stream
from tests.nats import NatsServer


def events(first: int, last: int, key: str | None = "k1") -> list[StoredEvent]:
    return [
        StoredEvent(s, 1000.0 + s, 2000.0 + s, key, "plant/a b", b"%d" % s, None)
        for s in range(first, last + 1)
    ]


def settings(server: NatsServer, **overrides: object) -> JetStreamStoreConfig:
    options: dict[str, object] = {"servers": (server.url,), "publish_timeout": 2.0}
    return JetStreamStoreConfig(**{**options, **overrides})  # type: ignore[arg-type]


async def test_commit_writes_each_event_with_the_documented_subject_and_headers_in_order(
    nats_server: NatsServer,
) -> None:
    store = await JetStreamCentralStore.open(settings(nats_server))
    special = StoredEvent(3, 1.5, 2.5, "room 1.%", None, b"\x00\xff", {"unit": "C"})
    batch = Batch("pi.1", "ep1", "sensors", [*events(1, 2, None), special], [], 3)
    (result,) = await store.commit([batch])
    await store.close()
    assert (result.committed, result.duplicates) == (3, 0)
    stored = await read_stream(nats_server.url, "EDGESTREAM")
    base = "edgestream.pi_1.sensors"
    assert [m.subject for m in stored] == [f"{base}._", f"{base}._", f"{base}.room_1__"]
    first, last = stored[0].headers, stored[2].headers
    assert first["Nats-Msg-Id"] == "pi.1/ep1/sensors/1"
    assert (first["Edgestream-Device"], first["Edgestream-Epoch"]) == ("pi.1", "ep1")
    assert (first["Edgestream-Stream"], first["Edgestream-Seq"]) == ("sensors", "1")
    assert float(first["Edgestream-Event-Time"]) == 1001.0
    assert float(first["Edgestream-Ingest-Time"]) == 2001.0
    assert unquote(first["Edgestream-Topic"]) == "plant/a b"
    assert "Edgestream-Key" not in first and "Edgestream-Headers" not in first
    assert unquote(last["Edgestream-Key"]) == "room 1.%"
    assert orjson.loads(last["Edgestream-Headers"]) == {"unit": "C"}
    assert [m.data for m in stored] == [b"1", b"2", b"\x00\xff"]


async def test_a_retried_batch_is_all_duplicates_and_adds_nothing(
    nats_server: NatsServer,
) -> None:
    store = await JetStreamCentralStore.open(settings(nats_server))
    batch = Batch("d", "e", "s", events(1, 100), [], 100)
    (first,) = await store.commit([batch])
    (again,) = await store.commit([batch])
    (wider,) = await store.commit([Batch("d", "e", "s", events(1, 120), [], 120)])
    await store.close()
    assert (first.committed, again.committed, again.duplicates) == (100, 0, 100)
    assert (wider.committed, wider.duplicates) == (20, 100)
    stored = await read_stream(nats_server.url, "EDGESTREAM")
    assert [int(m.headers["Edgestream-Seq"]) for m in stored] == list(range(1, 121))


async def test_a_new_epoch_is_never_mistaken_for_duplicates(nats_server: NatsServer) -> None:
    store = await JetStreamCentralStore.open(settings(nats_server))
    await store.commit([Batch("d", "old", "s", events(1, 10), [], 10)])
    (result,) = await store.commit([Batch("d", "new", "s", events(1, 10), [], 10)])
    await store.close()
    assert (result.committed, result.duplicates) == (10, 0)


async def test_gaps_are_explicit_records_before_the_batch_events(nats_server: NatsServer) -> None:
    store = await JetStreamCentralStore.open(settings(nats_server))
    gap = Gap(1, 4, "max_bytes", 1234.5)
    await store.commit([Batch("d", "e", "s", events(5, 6), [gap], 6)])
    longer = Gap(1, 9, "max_bytes", 1234.5)  # the device merged new drops into its gap
    await store.commit([Batch("d", "e", "s", events(10, 10), [gap, longer], 10)])
    await store.close()
    stored = await read_stream(nats_server.url, "EDGESTREAM")
    gaps = [m for m in stored if m.subject == "edgestream.d.s._gap"]
    ranges = [(g.headers["Edgestream-First-Seq"], g.headers["Edgestream-Last-Seq"]) for g in gaps]
    assert ranges == [("1", "4"), ("1", "9")]
    assert gaps[0].headers["Nats-Msg-Id"] == "d/e/s/gap/1-4"
    assert gaps[0].headers["Edgestream-Gap-Reason"] == "max_bytes"
    assert float(gaps[0].headers["Edgestream-Recorded-At"]) == 1234.5
    assert stored[0].subject == "edgestream.d.s._gap"


async def test_server_down_fails_within_publish_timeout_then_the_retry_commits_exactly_once(
    nats_server: NatsServer,
) -> None:
    store = await JetStreamCentralStore.open(settings(nats_server, publish_timeout=1.0))
    await store.commit([Batch("d", "e", "s", events(1, 10), [], 10)])
    nats_server.stop()
    batch = Batch("d", "e", "s", events(1, 2000), [], 2000)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        await store.commit([batch])
    assert time.monotonic() - started < 1.0 + 1.0
    nats_server.start()
    result = None
    for _ in range(100):  # what the hub's retry loop does
        try:
            (result,) = await store.commit([batch])
            break
        except StoreUnavailableError:
            await asyncio.sleep(0.1)
    await store.close()
    assert result is not None
    assert result.committed + result.duplicates == 2000
    stored = await read_stream(nats_server.url, "EDGESTREAM")
    assert [int(m.headers["Edgestream-Seq"]) for m in stored] == list(range(1, 2001))


async def test_a_server_killed_mid_commit_leaves_each_event_once_and_in_order(
    nats_server: NatsServer,
) -> None:
    store = await JetStreamCentralStore.open(settings(nats_server, publish_timeout=1.0))
    batch = Batch("d", "e", "s", events(1, 20_000), [], 20_000)
    commit = asyncio.create_task(store.commit([batch]))
    await asyncio.sleep(0.05)
    nats_server.kill()
    with pytest.raises(StoreUnavailableError):
        await commit
    nats_server.start()
    for _ in range(100):
        try:
            await store.commit([batch])
            break
        except StoreUnavailableError:
            await asyncio.sleep(0.1)
    await store.close()
    stored = await read_stream(nats_server.url, "EDGESTREAM")
    assert [int(m.headers["Edgestream-Seq"]) for m in stored] == list(range(1, 20_001))


async def test_start_refuses_an_existing_stream_whose_duplicate_window_is_shorter(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().add_stream(
        StreamConfig(name="EDGESTREAM", subjects=["edgestream.>"], duplicate_window=60.0)
    )
    await nc.close()
    with pytest.raises(JetStreamConfigError) as refused:
        await JetStreamCentralStore.open(settings(nats_server, max_age=86400.0))
    message = str(refused.value)
    assert "duplicate_window is 1m, needs at least 2h" in message
    assert "max_age is unlimited, config says 1d" in message


async def test_create_false_refuses_a_missing_stream(nats_server: NatsServer) -> None:
    with pytest.raises(JetStreamConfigError, match=r"does not exist and store\.create is false"):
        await JetStreamCentralStore.open(settings(nats_server, create=False))


async def test_an_event_over_max_payload_is_refused_before_anything_is_published(
    nats_server: NatsServer,
) -> None:
    store = await JetStreamCentralStore.open(settings(nats_server))
    huge = StoredEvent(2, 1.0, 1.0, None, None, b"x" * (2 * 1024 * 1024), None)
    with pytest.raises(BatchRefusedError, match="max_payload"):
        await store.commit([Batch("d", "e", "s", [*events(1, 1), huge], [], 2)])
    await store.close()
    nc = await nats.connect(nats_server.url)
    info = await nc.jetstream().stream_info("EDGESTREAM")
    await nc.close()
    assert info.state.messages == 0


async def test_batch_granularity_resent_with_other_boundaries_adds_nothing(
    nats_server: NatsServer,
) -> None:
    store = await JetStreamCentralStore.open(settings(nats_server, granularity="batch"))
    (first,) = await store.commit([Batch("d", "e", "s", events(1, 10), [], 10)])
    (wider,) = await store.commit([Batch("d", "e", "s", events(1, 15), [], 15)])
    (same,) = await store.commit([Batch("d", "e", "s", events(11, 15), [], 15)])
    await store.close()
    assert (first.committed, wider.committed, wider.duplicates, same.committed) == (10, 5, 10, 0)
    stored = await read_stream(nats_server.url, "EDGESTREAM")
    lines = [orjson.loads(line) for m in stored for line in m.data.splitlines()]
    assert [row["seq"] for row in lines] == list(range(1, 16))
    assert stored[1].headers["Nats-Msg-Id"] == "d/e/s/batch/11-15"
    assert {m.subject for m in stored} == {"edgestream.d.s._batch"}


async def test_fleet_positions_are_kept_per_device_stream_in_the_kv_bucket(
    nats_server: NatsServer,
) -> None:
    store = await JetStreamCentralStore.open(settings(nats_server))
    await store.commit([Batch("pi-1", "e", "s", events(1, 10), [], 12)])
    await store.commit([Batch("pi-1", "e", "s", events(1, 10), [], 12)])
    await store.record_rejection("pi-1", "bad signature")
    await store.close()
    nc = await nats.connect(nats_server.url)
    kv = await nc.jetstream().key_value("EDGESTREAM_FLEET")
    position = orjson.loads((await kv.get("pi-1.s")).value or b"{}")
    device = orjson.loads((await kv.get("pi-1")).value or b"{}")
    await nc.close()
    assert (position["upto_seq"], position["events"], position["duplicates"]) == (12, 10, 10)
    assert position["epoch"] == "e" and position["newest_event_time"] == 1010.0
    assert (device["rejected"], device["last_rejection"]) == (1, "bad signature")


async def test_hub_status_reads_the_fleet_from_the_kv_bucket(
    nats_server: NatsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = await JetStreamCentralStore.open(settings(nats_server))
    await store.commit([Batch("pi-1", "e", "s", events(1, 10), [], 10)])
    await store.commit([Batch("pi-1", "e", "t", events(1, 4), [], 4)])
    await store.record_rejection("pi-2", "bad signature")
    await store.close()
    config = tmp_path / "hub.yaml"
    config.write_text(
        'broker: {url: "mqtt://127.0.0.1:1"}\n'
        f"store: {{type: jetstream, servers: ['{nats_server.url}']}}\n"
    )
    code = await asyncio.to_thread(main, ["hub", "status", "-c", str(config), "--json"])
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    rows = {d["device"]: d for d in shown["devices"]}
    assert (rows["pi-1"]["streams"], rows["pi-1"]["events"]) == (2, 14)
    assert (rows["pi-2"]["rejected"], rows["pi-2"]["last_rejection"]) == (1, "bad signature")


def test_the_hub_config_selects_jetstream_by_type() -> None:
    text = """
broker: {url: "mqtt://127.0.0.1:1883"}
store:
  type: jetstream
  servers: [nats://10.0.0.5:4222, tls://nats.example.com:4443]
  granularity: batch
  duplicate_window: 6h
  max_bytes: 50GiB
  password: ${NATS_PASSWORD}
  user: hub
"""
    hub = load_config(HubConfig, text, "hub.yaml", {"NATS_PASSWORD": "s3cret"})
    assert isinstance(hub.store, JetStreamStoreConfig)
    assert (hub.store.granularity, hub.store.duplicate_window) == ("batch", 6 * 3600.0)
    assert (hub.store.password, hub.store.max_bytes, hub.store.uses_tls) == (
        "s3cret", 50 * 1024**3, True,
    )  # fmt: skip


def test_a_bad_server_url_is_refused_with_its_place() -> None:
    text = 'broker: {url: "mqtt://h"}\nstore: {type: jetstream, servers: ["http://x"]}\n'
    with pytest.raises(Exception, match=r"hub.yaml:2: store.servers\[0\]: expected nats://"):
        load_config(HubConfig, text, "hub.yaml", {})
