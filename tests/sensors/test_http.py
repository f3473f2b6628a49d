"""The http source against a real queue: every body form, atomic requests, tokens, limits."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import socket
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.config.http_source import HttpSourceConfig
from agent.queue import DurableQueue, StreamLimits
from agent.sources import http as http_source
from agent.sources.http import HttpSource, TooManyEvents, parse_body
from sync.config.errors import ConfigError
from sync.config.spec import build
from sync.outbox import StoredEvent

Answer = tuple[int, dict[str, Any], dict[str, str]]


def config(**settings: object) -> HttpSourceConfig:
    options: dict[str, object] = {"name": "web", "stream": "s", "listen": "127.0.0.1:0"}
    return build(HttpSourceConfig, {**options, **settings})


async def open_queue(tmp_path: Path, limits: StreamLimits | None = None) -> DurableQueue:
    limits = limits or StreamLimits(1 << 20, 1e9)
    return await DurableQueue.open(tmp_path, {"s": limits}, synchronous="normal")


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[DurableQueue]:
    opened = await open_queue(tmp_path)
    yield opened
    await opened.close()


@contextlib.asynccontextmanager
async def serving(cfg: HttpSourceConfig, queue: DurableQueue) -> AsyncIterator[HttpSource]:
    source = HttpSource(cfg, queue)
    task = asyncio.create_task(source.run())
    started = asyncio.create_task(source.started.wait())
    await asyncio.wait({task, started}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        task.result()  # raises why the source did not start
    try:
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _exchange(port: int, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        client.request(method, path, body=body, headers=headers)
        reply = client.getresponse()
        return reply.status, orjson.loads(reply.read()), dict(reply.getheaders())
    finally:
        client.close()


async def post(
    source: HttpSource, body: bytes | object, path: str = "/events", **headers: str
) -> Answer:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return await asyncio.to_thread(_exchange, source.port, "POST", path, raw, named)


async def stored(queue: DurableQueue) -> list[StoredEvent]:
    return list((await queue.read_after("s", 0, 1000, 1 << 22)).events)


def payloads(events: list[StoredEvent]) -> list[Any]:
    return [orjson.loads(event.payload) for event in events]


async def test_one_object_is_stored_with_tags_topic_and_a_recent_ingest_time(
    queue: DurableQueue,
) -> None:
    async with serving(config(tags={"site": "lab"}), queue) as source:
        status, body, _ = await post(source, {"temp": 21.5, "site": "mine"})
    assert (status, body) == (200, {"accepted": 1, "dropped": 0, "last_seq": 1})
    [event] = await stored(queue)
    assert orjson.loads(event.payload) == {"temp": 21.5, "site": "lab"}  # tags win, as polled
    assert event.topic == "/events" and event.key is None
    assert abs(event.ingest_time - time.time()) < 5 and event.event_time == event.ingest_time


async def test_an_array_is_stored_in_one_transaction(queue: DurableQueue) -> None:
    async with serving(config(), queue) as source:
        status, body, _ = await post(source, [{"n": 1}, {"n": 2}, {"n": 3}])
        assert (status, body) == (200, {"accepted": 3, "dropped": 0, "last_seq": 3})
        assert source.stats.stored == 3 and source.stats.requests == 1
    assert payloads(await stored(queue)) == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_ndjson_by_content_type_and_by_several_lines(queue: DurableQueue) -> None:
    async with serving(config(), queue) as source:
        typed = await post(source, b'{"n": 1}\n\n{"n": 2}\n', content_type="application/x-ndjson")
        plain = await post(source, b'{"n": 3}\r\n{"n": 4}')
    assert typed[:2] == (200, {"accepted": 2, "dropped": 0, "last_seq": 2})
    assert plain[:2] == (200, {"accepted": 2, "dropped": 0, "last_seq": 4})
    assert payloads(await stored(queue)) == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        (b'{"n": 1}\n{"n": 2}\n{"n": \n{"n": 4}', {"line": 3}, "invalid JSON"),
        (b'{"n": 1}\n[1, 2]\n', {"line": 2}, "expected a JSON object, got an array"),
        (b'{"n": 1}\n{"s": "\xff"}\n', {"line": 2}, "invalid UTF-8"),
        (b'[{"n": 1}, 7]', {"index": 1}, "array item 1 is a number"),
        (b'"text"', {"line": 1}, "expected a JSON object or an array"),
        (b'{\n  "n": 1,\n  "m": oops\n}', {"line": 3}, "invalid JSON"),
        (b"  \n", {"line": 1}, "the body is empty"),
    ],
)
async def test_a_bad_event_refuses_the_whole_request_and_stores_nothing(
    queue: DurableQueue, body: bytes, where: dict[str, int], message: str
) -> None:
    async with serving(config(), queue) as source:
        status, answer, _ = await post(source, body)
        assert source.stats.rejected == {"bad_event": 1}
    assert status == 400 and answer["error"].startswith(message)
    assert {key: answer[key] for key in where} == where
    assert await stored(queue) == [] and queue.last_seq("s") == 0


async def test_an_empty_array_is_accepted_as_nothing(queue: DurableQueue) -> None:
    async with serving(config(), queue) as source:
        answer = await post(source, [])
        assert answer[:2] == (200, {"accepted": 0, "dropped": 0, "last_seq": 0})


async def test_token_ok_missing_and_wrong(queue: DurableQueue) -> None:
    async with serving(config(token="s3cret-token"), queue) as source:
        ok = await post(source, {"n": 1}, authorization="Bearer s3cret-token")
        missing = await post(source, {"n": 2})
        wrong = await post(source, {"n": 3}, authorization="Bearer s3cret-tokem")
        basic = await post(source, {"n": 4}, authorization="Basic czNjcmV0LXRva2Vu")
        assert source.stats.rejected == {"token_missing": 2, "token_wrong": 1}
    assert ok[0] == 200
    assert [answer[0] for answer in (missing, wrong, basic)] == [401, 401, 401]
    assert missing[2]["www-authenticate"].startswith("Bearer")
    assert "s3cret" not in orjson.dumps([missing[1], wrong[1]]).decode()
    assert payloads(await stored(queue)) == [{"n": 1}]


async def test_a_missing_token_is_refused_before_the_body_is_sent(queue: DurableQueue) -> None:
    async with serving(config(token="t0ken"), queue) as source:
        reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
        writer.write(b"POST /events HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 401 ")
        writer.close()
        assert source.stats.rejected == {"token_missing": 1} and source.stats.requests == 1


async def test_token_file_is_read_at_start(queue: DurableQueue, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    async with serving(config(token_file=str(secret)), queue) as source:
        assert (await post(source, {"n": 1}, authorization="Bearer from-a-file"))[0] == 200
        assert (await post(source, {"n": 1}, authorization="Bearer from-a-fil"))[0] == 401


async def test_too_big_bodies_and_too_many_events_get_413(queue: DurableQueue) -> None:
    async with serving(config(max_body=200, max_events=3), queue) as source:
        big = await post(source, [{"text": "x" * 300}])
        many = await post(source, [{"n": n} for n in range(4)])
        assert source.stats.rejected == {"too_large": 1, "too_many_events": 1}
    assert big[0] == 413 and "200 bytes" in big[1]["error"]
    assert many[0] == 413 and "max_events 3" in many[1]["error"]
    assert await stored(queue) == []


async def test_a_200_means_the_events_survive_a_reopen(tmp_path: Path) -> None:
    queue = await open_queue(tmp_path)
    async with serving(config(), queue) as source:
        status, body, _ = await post(source, [{"n": 1}, {"n": 2}])
    assert status == 200
    await queue.close()
    reopened = await open_queue(tmp_path)
    assert payloads(await stored(reopened)) == [{"n": 1}, {"n": 2}]
    assert reopened.last_seq("s") == body["last_seq"]
    await reopened.close()


async def test_key_and_time_come_from_dotted_fields(queue: DurableQueue) -> None:
    far_future = time.time() + 3 * 86400
    events = [
        {"dev": {"id": "pump-1"}, "ts": 1_700_000_000.5},
        {"dev": {"id": 7}, "ts": far_future},
        {"dev": {}, "ts": "yesterday"},
    ]
    async with serving(config(key_field="dev.id", time_field="ts"), queue) as source:
        assert (await post(source, events))[0] == 200
    first, future, untimed = await stored(queue)
    assert (first.key, first.event_time) == ("pump-1", 1_700_000_000.5)
    assert future.key == "7" and future.event_time == future.ingest_time
    assert future.headers == {"time_in_future": repr(far_future)}
    assert untimed.key is None and untimed.event_time == untimed.ingest_time


async def test_a_full_block_stream_answers_503_with_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_source, "ROOM_WAIT", 0.2)
    queue = await open_queue(tmp_path, StreamLimits(100, 1e9, "block"))
    async with serving(config(), queue) as source:
        assert (await post(source, {"text": "x" * 200}))[0] == 200  # fills the stream
        status, answer, headers = await post(source, {"n": 2})
        assert source.stats.rejected == {"queue_full": 1}
    assert status == 503 and headers["retry-after"] == "5" and "full" in answer["error"]
    assert queue.last_seq("s") == 1
    await queue.close()


async def test_health_and_wrong_method(queue: DurableQueue) -> None:
    async with serving(config(), queue) as source:
        health = await asyncio.to_thread(_exchange, source.port, "GET", "/health", b"", {})
        listing = await asyncio.to_thread(_exchange, source.port, "GET", "/events", b"", {})
        other = await post(source, {"n": 1}, path="/other")
    assert health[:2] == (200, {"status": "ok"})
    assert listing[0] == 405 and listing[2]["allow"] == "POST"
    assert other[0] == 404


async def test_cancel_closes_the_socket(queue: DurableQueue) -> None:
    async with serving(config(), queue) as source:
        port = source.port
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_source, "RETRY_INITIAL", 0.02)
    monkeypatch.setattr(http_source, "RETRY_MAX", 0.05)


async def test_an_unreadable_token_file_is_logged_once_and_retried(
    queue: DurableQueue, tmp_path: Path, fast_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "token"
    source = HttpSource(config(token_file=str(secret)), queue)
    with caplog.at_level(logging.INFO, logger="agent.sources.polling"):
        task = asyncio.create_task(source.run())
        await asyncio.sleep(0.3)  # several attempts
        assert not task.done() and not source.started.is_set()
        secret.write_text("  late-token \n")
        await asyncio.wait_for(source.started.wait(), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    failures = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failures) == 1 and "cannot start" in failures[0].getMessage()
    assert "No such file" in failures[0].getMessage()
    assert any("recovered" in r.getMessage() for r in caplog.records)


async def test_a_port_in_use_is_retried_until_it_is_free(
    queue: DurableQueue, fast_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    source = HttpSource(config(listen=f"127.0.0.1:{port}"), queue)
    with caplog.at_level(logging.WARNING, logger="agent.sources.polling"):
        task = asyncio.create_task(source.run())
        await asyncio.sleep(0.3)
        assert not task.done() and not source.started.is_set()
        taken.close()
        await asyncio.wait_for(source.started.wait(), 5)
        assert (await post(source, {"n": 1}))[0] == 200
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    failures = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failures) == 1 and "in use" in failures[0].getMessage()


async def test_a_large_body_is_parsed_off_the_event_loop(
    queue: DurableQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []

    def recording(*args: Any) -> list[dict[str, Any]]:
        threads.append(threading.get_ident())
        return parse_body(*args)

    monkeypatch.setattr(http_source, "parse_body", recording)
    small = b'{"n": 1}\n'
    large = small * (http_source.PARSE_INLINE_MAX // len(small) + 1)
    async with serving(config(max_events=100_000), queue) as source:
        assert (await post(source, small))[0] == 200
        assert (await post(source, large))[0] == 200
    assert threads[0] == threading.get_ident() != threads[1]


def test_ndjson_parsing_stops_at_the_first_event_over_max_events() -> None:
    body = b"{}\n" * ((1 << 20) // 3)  # 1 MiB of empty objects
    tracemalloc.start()
    try:
        with pytest.raises(TooManyEvents):
            parse_body(body, "application/x-ndjson", 10)
        with pytest.raises(TooManyEvents):
            parse_body(body, "", 10)  # NDJSON found by its first line
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # parsing every line takes over 40 MiB
    assert len(parse_body(b"{}\n\n{}\n", "application/x-ndjson", 2)) == 2


async def test_an_ndjson_body_over_max_events_gets_413(queue: DurableQueue) -> None:
    async with serving(config(max_events=3), queue) as source:
        status, answer, _ = await post(source, b"{}\n" * 4, content_type="application/x-ndjson")
        assert source.stats.rejected == {"too_many_events": 1}
    assert status == 413 and "max_events 3" in answer["error"]
    assert await stored(queue) == []


async def test_events_a_drop_newest_stream_dropped_are_reported(tmp_path: Path) -> None:
    queue = await open_queue(tmp_path, StreamLimits(300, 1e9, "drop_newest"))
    async with serving(config(), queue) as source:  # each event counts 54 bytes
        first = await post(source, [{"n": n} for n in range(8)])
        second = await post(source, {"n": 8})
        assert (source.stats.stored, source.stats.dropped) == (5, 4)
    assert first[:2] == (200, {"accepted": 5, "dropped": 3, "last_seq": 8})
    assert second[:2] == (200, {"accepted": 0, "dropped": 1, "last_seq": 9})
    assert payloads(await stored(queue)) == [{"n": n} for n in range(5)]
    await queue.close()


async def test_close_answers_a_request_being_stored(
    queue: DurableQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = asyncio.Event()
    transact = queue.transact

    async def slow_transact(fn: Any, weight: int = 1) -> Any:
        entered.set()
        await asyncio.sleep(0.3)  # the writer's commit, slow on an SD card
        return await transact(fn, weight)

    monkeypatch.setattr(queue, "transact", slow_transact)
    source = HttpSource(config(), queue)
    task = asyncio.create_task(source.run())
    await asyncio.wait_for(source.started.wait(), 5)
    answer = asyncio.create_task(post(source, {"n": 1}))
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()  # the agent shutting down
    status, body, headers = await asyncio.wait_for(answer, 5)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert (status, body["accepted"]) == (200, 1) and headers["connection"] == "close"
    assert payloads(await stored(queue)) == [{"n": 1}]


def problems(**settings: object) -> str:
    with pytest.raises(ConfigError) as caught:
        config(**settings)
    return str(caught.value)


def test_defaults_are_loopback_without_a_token() -> None:
    cfg = build(HttpSourceConfig, {"name": "web", "stream": "s"})
    assert (cfg.address, cfg.path, cfg.max_body, cfg.max_events) == (
        ("127.0.0.1", 8787), "/events", 1 << 20, 10000,
    )  # fmt: skip
    assert cfg.token is None and cfg.allow_remote is False
    assert config(listen="[::1]:9000").address == ("::1", 9000)
    assert config(listen="localhost:9000").check() == []


def test_a_network_address_needs_allow_remote_and_a_token() -> None:
    assert "listen: 0.0.0.0 is not a loopback address" in problems(listen="0.0.0.0:8787")
    assert "allow_remote" in problems(listen="192.168.1.5:8787", token="t")
    assert "token: is required when listening on ::" in problems(
        listen="[::]:8787", allow_remote=True
    )
    remote = config(listen="0.0.0.0:8787", allow_remote=True, token_file="/run/t")
    assert remote.check() == []


@pytest.mark.parametrize("token", [" lead", "trail\t", "in side", "caf\u00e9", "bell\x07"])
def test_a_token_no_header_can_carry_is_refused_without_quoting_it(token: str) -> None:
    message = problems(token=token)
    assert "token: must be printable ASCII without whitespace" in message
    assert token.strip() not in message


@pytest.mark.parametrize("content", ["caf\u00e9", "two words", "\n \n"])
def test_a_bad_token_file_fails_at_start_without_quoting_it(tmp_path: Path, content: str) -> None:
    secret = tmp_path / "token"
    secret.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="token_file") as caught:
        config(token_file=str(secret)).resolved_token()
    assert content.strip() == "" or content.strip() not in str(caught.value)


def test_a_token_file_is_stripped_of_surrounding_whitespace(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(" \tfrom-a-file \r\n")
    assert config(token_file=str(secret)).resolved_token() == "from-a-file"


def test_max_body_and_max_events_are_bounded() -> None:
    assert "max_body: must be at most" in problems(max_body="65MiB")
    assert "max_events: must be at most" in problems(max_events=1_000_001)
    assert config(max_body="64MiB", max_events=1_000_000).max_events == 1_000_000


def test_token_and_token_file_together_are_refused() -> None:
    assert "token_file: cannot be used together with token" in problems(
        token="a", token_file="/run/t"
    )
    assert "token: must not be empty" in problems(token="")


@pytest.mark.parametrize("listen", ["8787", "127.0.0.1", "127.0.0.1:99999", "::1:80", ":80"])
def test_a_malformed_listen_is_refused(listen: str) -> None:
    assert "listen: " in problems(listen=listen)


def test_the_health_path_is_reserved() -> None:
    assert "path: /health is reserved" in problems(path="/health")
