"""The hub's fleet page over real HTTP: its JSON, its static files, its headers, and the
store figures behind it (backlog age, events per minute, refusal classes)."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import sqlite3
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.cli.hub import hub_metrics_server
from sync.hub import fleet_views
from sync.hub.config import HubConfig
from sync.hub.fleet import read_only
from sync.hub.fleet_page import fleet_page_routes
from sync.hub.jetstream_config import JetStreamStoreConfig
from sync.hub.jetstream_store import JetStreamCentralStore
from sync.hub.metrics import hub_registry, rejected_families
from sync.hub.rejections import CLASSES, rejection_class
from sync.hub.service import Hub, _Received
from sync.hub.store import BatchRefusedError, CentralStore, CommitResult, SqliteCentralStore
from sync.metrics_config import HubMetricsConfig
from sync.metrics_server import MetricsServer
from sync.mqtt.config import MqttConnectionConfig
from sync.mqtt.message import MqttMessage
from sync.outbox import Gap, StoredEvent
from sync.wire import Batch, encode
from tests.brokers import free_port
from tests.nats import NatsServer

HOSTILE = "<img src=x onerror=alert(1)>"
ODD = "odd&id=1 ?%"
PER_MINUTE = {10: 4, 5: 9, 0: 14}
"""pi-1's events committed this many minutes before NOW."""

Reply = tuple[int, dict[str, str], bytes]


def events(first: int, count: int, ingest: float) -> list[StoredEvent]:
    return [
        StoredEvent(s, ingest + s, ingest + s - first, None, "t", b"%d" % s)
        for s in range(first, first + count)
    ]


def fill_store(path: Path, now: float) -> None:
    """pi-1: batches 10, 5 and 0 minutes before `now` (4, 9, 14 events, the last after a
    gap of 6 and sent 40 s after its first event was queued), then that batch again;
    pi-2: one refused batch; HOSTILE and ODD: one small batch each."""
    clock = [now]
    store = SqliteCentralStore(path, clock=lambda: clock[0])
    seq = 1
    for minutes_ago, count in PER_MINUTE.items():
        clock[0] = now - 60 * minutes_ago
        gaps = [Gap(seq, seq + 5, "drop_oldest", clock[0])] if minutes_ago == 0 else []
        seq += 6 if gaps else 0
        first_ingest = clock[0] - 42
        batch = Batch("pi-1", "e1", "temps", events(seq, count, first_ingest), gaps,
                      seq + count - 1, sent_at=clock[0] - 2)  # fmt: skip
        store.commit_now([batch])
        seq += count
    store.commit_now([batch])  # a retry: all duplicates, no new events per minute
    store.record_rejection_now("pi-2", "bad signature: HMAC does not match the key", now)
    for device in (HOSTILE, ODD):
        store.commit_now([Batch(device, "e", "s", events(1, 3, now - 1), [], 3, sent_at=now)])
    store.close_now()


def fetch(port: int, method: str, path: str) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


def quiet_hub(store: CentralStore, **settings: Any) -> Hub:
    """A hub that is never started: its broker port has no listener."""
    broker = MqttConnectionConfig(url=f"mqtt://127.0.0.1:{free_port()}")
    metrics = HubMetricsConfig(listen="127.0.0.1:0")
    return Hub(HubConfig(broker=broker, metrics=metrics, **settings), store)


@dataclass
class Page:
    port: int
    now: float
    hub: Hub

    async def get(self, path: str, method: str = "GET") -> Reply:
        return await asyncio.to_thread(fetch, self.port, method, path)

    async def json(self, path: str) -> Any:
        status, _, body = await self.get(path)
        assert status == 200, body
        return json.loads(body)


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    """The page's routes on a real server, over a filled store, its clock fixed at NOW."""
    now = time.time() // 60 * 60 + 30  # mid-minute: the minutes counted are exact
    fill_store(tmp_path / "central.db", now)
    store = SqliteCentralStore(tmp_path / "central.db")
    hub = quiet_hub(store)
    routes = fleet_page_routes(hub, clock=lambda: now)
    server = MetricsServer(hub.config.metrics, hub_registry(hub), _ready, "test", routes)
    assert await server.start()
    try:
        yield Page(server.port, now, hub)
    finally:
        await server.close()
        await store.close()


async def _ready() -> list[str]:
    return []


async def test_the_fleet_api_has_every_column_of_every_device(page: Page) -> None:
    view = await page.json("/api/fleet")
    assert view["store"] == "sqlite" and view["note"] is None and view["total"] == 4
    assert view["columns"] == list(fleet_views.SQLITE_COLUMNS)
    rows = {d["device"]: d for d in view["devices"]}
    assert sorted(rows) == sorted(["pi-1", "pi-2", HOSTILE, ODD])
    pi1 = rows["pi-1"]
    assert (pi1["events"], pi1["duplicates"], pi1["gaps"], pi1["lost"]) == (27, 14, 1, 6)
    assert pi1["backlog_age"] == pytest.approx(40.0)
    assert pi1["clock_skew"] == pytest.approx(-2.0)
    assert pi1["last_seen"] == page.now and pi1["lag"] == pytest.approx(42 - 33)  # newest: seq 33
    assert (rows["pi-2"]["rejected"], rows["pi-2"]["events"]) == (1, 0)
    assert rows["pi-2"]["last_rejection"].startswith("bad signature")
    assert view["hub"]["rejected"] == 0 and view["hub"]["hub_id"] == "hub"


async def test_the_device_api_counts_events_per_minute_over_the_last_hour(page: Page) -> None:
    view = await page.json("/api/device?id=pi-1")
    minutes = view["minutes"]
    assert len(minutes["counts"]) == fleet_views.MINUTES
    assert minutes["first"] == (page.now // 60 - fleet_views.MINUTES + 1) * 60
    shown = {59 - i: n for i, n in enumerate(minutes["counts"]) if n}
    assert shown == PER_MINUTE  # minutes ago -> events; the retry counted nothing
    assert [s["stream"] for s in view["streams"]] == ["temps"]
    assert view["streams"][0]["backlog_age"] == pytest.approx(40.0)
    assert [(g["first_seq"], g["last_seq"]) for g in view["gaps"]] == [(14, 19)]


async def test_device_ids_are_found_whatever_their_characters(page: Page) -> None:
    for device in (HOSTILE, ODD):
        view = await page.json("/api/device?id=" + urllib.parse.quote(device, safe=""))
        assert view["device"]["device"] == device and view["device"]["events"] == 3


async def test_an_unknown_or_missing_device_is_refused(page: Page) -> None:
    status, headers, body = await page.get("/api/device?id=nobody")
    assert status == 404 and json.loads(body) == {"error": "the hub has no such device"}
    assert "default-src 'self'" in headers["content-security-policy"]
    assert (await page.get("/api/device"))[0] == 400
    assert (await page.get("/api/device?id="))[0] == 400


@pytest.mark.parametrize("path", ["/", "/device", "/api/fleet", "/static/fleet.js"])
async def test_the_page_is_read_only(page: Page, path: str) -> None:
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = await page.get(path, method)
        assert status == 405 and headers["allow"] == "GET, HEAD"
    status, headers, body = await page.get(path, "HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


STATIC = {
    "/": "text/html", "/device": "text/html", "/static/fleet.css": "text/css",
    "/static/common.js": "text/javascript", "/static/fleet.js": "text/javascript",
    "/static/device.js": "text/javascript",
}  # fmt: skip


async def test_every_file_has_its_type_and_a_strict_policy(page: Page) -> None:
    for path, kind in STATIC.items():
        status, headers, body = await page.get(path)
        assert status == 200 and body
        assert headers["content-type"].split(";")[0] == kind
        policy = headers["content-security-policy"]
        assert policy.startswith("default-src 'self';") and "unsafe" not in policy
        assert headers["x-content-type-options"] == "nosniff"
    status, headers, _ = await page.get("/api/fleet")
    assert headers["content-type"] == "application/json" and headers["cache-control"] == "no-store"


async def test_the_scripts_never_parse_text_as_markup(page: Page) -> None:
    """Device ids reach the DOM as text only; no inline script or style to allow."""
    for path in STATIC:
        body = (await page.get(path))[2].decode()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in body, f"{path} uses {sink}"
        assert not re.search(r"<script>|<style|\sstyle=|\son[a-z]+=", body), path
    view = await page.json("/api/fleet")
    assert HOSTILE in [d["device"] for d in view["devices"]]


async def test_the_table_is_capped_and_says_how_many_there_are(
    page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_views, "PAGE_LIMIT", 2)
    view = await page.json("/api/fleet")
    assert view["total"] == 4 and len(view["devices"]) == 2


async def test_the_hub_serves_the_page_beside_its_metrics(tmp_path: Path) -> None:
    """The wiring of `edgestream hub`: the same server answers /, /api/fleet and /metrics."""
    fill_store(tmp_path / "central.db", time.time())
    store = SqliteCentralStore(tmp_path / "central.db")
    hub = quiet_hub(store)
    hub.stats.rejected_by["signature"] = 2
    server = hub_metrics_server(hub)
    assert await server.start()
    try:
        status, headers, body = await asyncio.to_thread(fetch, server.port, "GET", "/")
        assert status == 200 and b"/static/fleet.js" in body
        assert "default-src 'self'" in headers["content-security-policy"]
        fleet = json.loads((await asyncio.to_thread(fetch, server.port, "GET", "/api/fleet"))[2])
        metrics = (await asyncio.to_thread(fetch, server.port, "GET", "/metrics"))[2].decode()
    finally:
        await server.close()
        await store.close()
    assert fleet["total"] == 4 and fleet["hub"]["rejected_by"] == {"signature": 2}
    assert 'edgestream_hub_rejected_batches_total{reason="signature"} 2' in metrics
    assert 'edgestream_hub_rejected_batches_total{reason="format"} 0' in metrics


async def test_an_unreadable_store_answers_503_until_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteCentralStore(tmp_path / "central.db")
    hub = quiet_hub(store)
    routes = fleet_page_routes(hub)
    server = MetricsServer(hub.config.metrics, hub_registry(hub), _ready, "t", routes)
    assert await server.start()
    moved = tmp_path / "elsewhere.db"
    try:
        (tmp_path / "central.db").rename(moved)
        gone = [await asyncio.to_thread(fetch, server.port, "GET", "/api/fleet") for _ in "ab"]
        moved.rename(tmp_path / "central.db")
        back = await asyncio.to_thread(fetch, server.port, "GET", "/api/fleet")
    finally:
        await server.close()
        await store.close()
    assert [status for status, _, _ in gone] == [503, 503] and back[0] == 200
    assert b"no central store" in gone[0][2]
    assert len([r for r in caplog.records if "Fleet page: cannot read" in r.message]) == 1


class _NoFleetStore:
    async def commit(self, batches: Any) -> list[Any]:
        raise NotImplementedError

    async def record_rejection(self, device: str, reason: str) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_a_store_without_a_fleet_view_says_so() -> None:
    hub = quiet_hub(_NoFleetStore())
    server = MetricsServer(hub.config.metrics, hub_registry(hub), _ready, "t",
                           fleet_page_routes(hub))  # fmt: skip
    assert await server.start()
    try:
        status, _, body = await asyncio.to_thread(fetch, server.port, "GET", "/api/fleet")
        page = await asyncio.to_thread(fetch, server.port, "GET", "/")
    finally:
        await server.close()
    assert status == 501 and b"keeps no fleet view" in body and page[0] == 200


async def test_with_jetstream_the_page_shows_what_the_fleet_bucket_keeps(
    nats_server: NatsServer,
) -> None:
    settings = JetStreamStoreConfig(servers=(nats_server.url,), publish_timeout=2.0)
    store = await JetStreamCentralStore.open(settings)
    now = time.time()
    await store.commit([Batch("pi-js", "e", "s", events(1, 5, now - 9), [], 5, sent_at=now)])
    await store.record_rejection("pi-js", "bad signature: HMAC does not match")
    hub = quiet_hub(store)
    server = MetricsServer(hub.config.metrics, hub_registry(hub), _ready, "t",
                           fleet_page_routes(hub))  # fmt: skip
    assert await server.start()
    try:
        fleet = json.loads((await asyncio.to_thread(fetch, server.port, "GET", "/api/fleet"))[2])
        detail = await asyncio.to_thread(fetch, server.port, "GET", "/api/device?id=pi-js")
        missing = await asyncio.to_thread(fetch, server.port, "GET", "/api/device?id=nope")
    finally:
        await server.close()
        await store.close()
    assert fleet["store"] == "jetstream" and "fleet bucket" in fleet["note"]
    assert "gaps" not in fleet["columns"] and "backlog_age" not in fleet["columns"]
    (row,) = fleet["devices"]
    assert (row["device"], row["events"], row["rejected"]) == ("pi-js", 5, 1)
    view = json.loads(detail[2])
    assert view["minutes"] is None and [s["events"] for s in view["streams"]] == [5]
    assert missing[0] == 404


# ----------------------------------------------------------------- the store's figures


def test_backlog_age_is_kept_per_stream_and_survives_a_batch_without_send_time(
    tmp_path: Path,
) -> None:
    store = SqliteCentralStore(tmp_path / "c.db")
    store.commit_now([Batch("d", "e", "s", events(1, 2, 1000.0), [], 2, sent_at=1100.0)])
    store.commit_now([Batch("d", "e", "s", events(3, 2, 2000.0), [], 4)])  # wire v1
    store.close_now()
    with read_only(tmp_path / "c.db") as conn:
        (backlog,) = conn.execute("SELECT backlog_age FROM positions").fetchone()
    assert backlog == 100.0


def test_events_per_minute_older_than_a_day_are_pruned(tmp_path: Path) -> None:
    clock = [1_000_000 * 60.0]
    store = SqliteCentralStore(tmp_path / "c.db", clock=lambda: clock[0])
    store.commit_now([Batch("d", "e", "s", events(1, 2, 0.0), [], 2)])
    clock[0] += 23 * 3600
    store.commit_now([Batch("d", "e", "s", events(3, 1, 0.0), [], 3)])
    clock[0] += 2 * 3600
    store.commit_now([Batch("d", "e", "s", events(4, 5, 0.0), [], 8)])
    store.close_now()
    with read_only(tmp_path / "c.db") as conn:
        rows = conn.execute("SELECT minute - 1000000, events FROM event_minutes").fetchall()
    assert rows == [(23 * 60, 1), (25 * 60, 5)]


def test_a_store_from_an_older_hub_gains_backlog_and_minutes(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE positions (device TEXT NOT NULL, epoch TEXT NOT NULL,"
            " stream TEXT NOT NULL, upto_seq INTEGER NOT NULL, events INTEGER NOT NULL,"
            " duplicates INTEGER NOT NULL, updated_at REAL NOT NULL,"
            " PRIMARY KEY (device, epoch, stream))"
        )
        conn.execute("INSERT INTO positions VALUES ('pi-old', 'e', 's', 5, 5, 0, 1.0)")
    store = SqliteCentralStore(path)
    store.commit_now([Batch("pi-old", "e", "s", events(6, 1, 10.0), [], 6, sent_at=15.0)])
    store.close_now()
    with read_only(path) as conn:
        assert conn.execute("SELECT events, backlog_age FROM positions").fetchone() == (6, 5.0)
        assert conn.execute("SELECT sum(events) FROM event_minutes").fetchone() == (1,)


# ------------------------------------------------------------------ refusal classes


def _verify(hub: Hub, device: str, payload: bytes) -> str:
    message = MqttMessage(f"edgestream/{device}/up", payload, 1, False, 1, False, (), 0.0)
    verdict = hub._verify(_Received(device, message))
    assert isinstance(verdict, str), "the batch was accepted"
    return verdict


def _batch(device: str, size: int = 10) -> Batch:
    return Batch(device, "e", "s", [StoredEvent(1, 1.0, 1.0, None, "t", b"x" * size)], [], 1)


class _RefusingStore(SqliteCentralStore):
    """Content SQLite cannot hold is rare in decoded batches; this store refuses all."""

    async def commit(self, batches: Sequence[Batch]) -> list[CommitResult]:
        raise BatchRefusedError("SQLite store refused the batch: value out of range")


async def test_each_refusal_the_hub_produces_falls_in_its_class(tmp_path: Path) -> None:
    """Reasons made by the real decoder and hub, so a reworded one cannot drift away."""
    keys = tmp_path / "keys"
    keys.write_text(f"pi-a {'a1' * 32}\n")
    store = SqliteCentralStore(tmp_path / "c.db")
    signed = quiet_hub(store, device_keys_file=str(keys), max_batch_bytes=1024)
    plain = quiet_hub(store, allowed_devices=("pi-a",), max_batch_bytes=1024)
    made: dict[str, Callable[[], str]] = {
        "format": lambda: _verify(plain, "pi-a", b"garbage that is no batch at all"),
        "too_large": lambda: _verify(plain, "pi-a", encode(_batch("pi-a", 5000))),
        "signature": lambda: _verify(signed, "pi-a", encode(_batch("pi-a"))),
        "identity": lambda: _verify(plain, "pi-a", encode(_batch("pi-b"))),
        "dictionary": lambda: _verify(
            plain, "pi-a", encode(_batch("pi-a"), dictionary=b"abcdefgh" * 64)
        ),
    }
    for expected, make in made.items():
        reason = make()
        assert rejection_class(reason) == expected, reason
    for device, hub in (("pi-b", plain), ("pi-z", signed)):  # not allowed, no key
        assert rejection_class(_verify(hub, device, encode(_batch(device)))) == "identity"
    await store.close()
    refusing = quiet_hub(_RefusingStore(tmp_path / "r.db"))
    item = _Received("pi-a", MqttMessage("edgestream/pi-a/up", b"", 1, False, 1, False, (), 0.0))
    done, refused = await refusing._commit([(item, _batch("pi-a"))])
    await refusing.store.close()
    assert not done and rejection_class(refused[0][1]) == "store", refused
    assert rejection_class("undecodable batch: KeyError('x')") == "internal"


def test_the_refusal_counter_shows_every_class_from_the_start() -> None:
    family = rejected_families({"signature": 3})
    assert [(dict(labels)["reason"], value) for labels, value in family.samples] == [
        (reason, 3.0 if reason == "signature" else 0.0) for reason in CLASSES
    ]
