"""The HTTP server against raw sockets: keep-alive, chunked bodies, limits and timeouts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from sync.http_server import HttpServer
from sync.http_types import Request, Response, error_response, json_response

Reply = tuple[int, dict[str, str], bytes]


async def echo(request: Request) -> Response:
    return json_response(
        200,
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "size": len(request.body),
            "agent": request.headers.get("user-agent"),
        },
    )


async def broken(request: Request) -> Response:
    raise ZeroDivisionError("handler bug")


async def hello(request: Request) -> Response:
    return json_response(200, {"hello": "world"})


async def unsendable(request: Request) -> Response:
    return Response(200, b"{}", headers=(("bad header", "x"),))  # h11 refuses the name


ROUTES = {
    ("POST", "/echo"): echo, ("GET", "/echo"): echo, ("GET", "/broken"): broken,
    ("GET", "/unsendable"): unsendable, ("GET", "/hello"): hello,
}  # fmt: skip


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    async with HttpServer(
        ROUTES, host="127.0.0.1", port=0, max_body=1000, name="test", max_connections=2,
        max_per_peer=2, idle_timeout=0.5, read_timeout=0.3,
    ) as running:  # fmt: skip
        yield running


async def connect(server: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


def request(method: str, target: str, body: bytes = b"", *extra: str) -> bytes:
    head = [f"{method} {target} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *extra]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode().split("\r\n")[:-2]
    pairs = [line.split(": ", 1) for line in lines]
    headers = {name.lower(): value for name, value in pairs}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def closed(reader: asyncio.StreamReader, within: float = 5.0) -> bool:
    """True when the server closed the connection within `within` s (EOF after any
    leftover), False when it is still open then."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:  # an OSError since 3.11 (PEP 3151 alias): test it first
        return False
    except (ConnectionResetError, BrokenPipeError):  # a reset is a close too
        pass
    return True


async def test_closed_is_false_for_a_connection_the_server_keeps_open(
    server: HttpServer,
) -> None:
    reader, writer = await connect(server)
    writer.write(request("GET", "/echo"))
    assert (await read_reply(reader))[0] == 200
    assert not await closed(reader, within=0.1)  # idle_timeout is 0.5 s
    writer.close()


async def test_keep_alive_serves_two_requests_on_one_connection(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(request("POST", "/echo?a=1&b=x%20y", b"hello", "User-Agent: probe"))
    status, headers, body = await read_reply(reader)
    assert status == 200 and headers["content-type"] == "application/json"
    assert orjson.loads(body) == {
        "method": "POST", "path": "/echo", "query": {"a": "1", "b": "x y"}, "size": 5,
        "agent": "probe",
    }  # fmt: skip
    writer.write(request("GET", "/echo"))
    assert (await read_reply(reader))[0] == 200
    assert server.stats.connections == 1 and server.stats.requests == 2
    writer.close()


async def test_a_chunked_body_is_read_whole(server: HttpServer) -> None:
    reader, writer = await connect(server)
    chunks = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    head = "POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    writer.write(head.encode() + chunks)
    status, _, body = await read_reply(reader)
    assert status == 200 and orjson.loads(body)["size"] == 12
    writer.close()


async def test_a_declared_oversized_body_gets_413_before_it_is_sent(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n\r\n")
    status, headers, body = await read_reply(reader)  # no byte of the body was sent
    assert status == 413 and headers["connection"] == "close"
    assert orjson.loads(body) == {"error": "body larger than 1000 bytes"}
    assert await closed(reader)
    assert server.stats.rejected == {"too_large": 1}
    writer.close()


async def test_an_oversized_chunked_body_gets_413_and_the_answer_arrives(
    server: HttpServer,
) -> None:
    reader, writer = await connect(server)
    head = b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    writer.write(head + b"%x\r\n" % 4000 + b"x" * 4000 + b"\r\n")
    status, _, _ = await read_reply(reader)
    assert status == 413
    assert await closed(reader)
    writer.close()


async def test_unknown_path_is_404_and_wrong_method_is_405_with_allow(
    server: HttpServer,
) -> None:
    reader, writer = await connect(server)
    writer.write(request("GET", "/nothing"))
    status, _, body = await read_reply(reader)
    assert status == 404 and orjson.loads(body) == {"error": "no such path: /nothing"}
    writer.write(request("DELETE", "/echo", b"abc"))
    status, headers, _ = await read_reply(reader)
    assert status == 405 and headers["allow"] == "GET, HEAD, POST"
    writer.write(request("GET", "/echo"))  # still the same connection
    assert (await read_reply(reader))[0] == 200
    writer.close()


async def test_a_raising_handler_answers_500_logs_once_and_the_server_goes_on(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await connect(server)
    with caplog.at_level(logging.ERROR, logger="sync.http_server"):
        for _ in range(3):
            writer.write(request("GET", "/broken"))
            status, _, body = await read_reply(reader)
            assert status == 500 and "error" in orjson.loads(body)
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None
    writer.write(request("GET", "/echo"))
    assert (await read_reply(reader))[0] == 200
    assert server.stats.rejected == {"handler_error": 3}
    writer.close()


async def test_connections_over_the_limit_get_503(server: HttpServer) -> None:
    held = [await connect(server) for _ in range(2)]
    for reader, writer in held:  # both slots taken and in use
        writer.write(request("GET", "/echo"))
        assert (await read_reply(reader))[0] == 200
    reader, writer = await connect(server)
    writer.write(request("GET", "/echo"))
    status, headers, _ = await read_reply(reader)
    assert status == 503 and headers["retry-after"] == "1"
    assert await closed(reader)
    for _, held_writer in held:
        held_writer.close()
    writer.close()


async def test_a_stalled_half_request_is_dropped_after_the_read_timeout(
    server: HttpServer,
) -> None:
    reader, writer = await connect(server)
    started = time.monotonic()
    writer.write(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc")
    status, _, _ = await read_reply(reader)
    assert status == 408
    assert await closed(reader)
    assert 0.25 < time.monotonic() - started < 2
    assert server.stats.rejected == {"timeout": 1}
    writer.close()


async def test_a_trickle_of_header_bytes_does_not_extend_the_deadline(
    server: HttpServer,
) -> None:
    reader, writer = await connect(server)
    started = time.monotonic()
    for byte in b"GET /echo HTTP/1.1\r\nX-Slow: aaaaaaaaaaaa":
        if reader.at_eof() or writer.is_closing():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.05)  # each read comes well within the timeout
    assert await closed(reader)
    assert time.monotonic() - started < 1.5  # 0.3 s timeout, not 40 bytes x 50 ms


async def test_an_idle_connection_is_closed_without_an_answer(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(request("GET", "/echo"))
    assert (await read_reply(reader))[0] == 200
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert 0.4 < time.monotonic() - started < 2
    assert "timeout" not in server.stats.rejected
    writer.close()


async def test_headers_over_the_limit_get_431(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(request("GET", "/echo", b"", "X-Big: " + "a" * 20000))
    status, _, _ = await read_reply(reader)
    assert status == 431
    writer.close()


async def test_garbage_gets_400(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    status, headers, _ = await read_reply(reader)
    assert status == 400 and headers["connection"] == "close"
    writer.close()


async def test_expect_100_continue_is_answered(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(request("POST", "/echo", b"", "Expect: 100-continue")[:-4] + b"\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100 ")
    writer.close()


async def test_close_ends_open_connections_and_frees_the_port() -> None:
    server = HttpServer(ROUTES, host="127.0.0.1", port=0, max_body=10, name="t")
    await server.start()
    port = server.port
    reader, writer = await connect(server)
    writer.write(b"GET /echo HTTP/1.1\r\n")  # a request in progress
    await asyncio.sleep(0.05)
    await asyncio.wait_for(server.close(), 5)
    assert await closed(reader)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    writer.close()


async def test_a_guard_refuses_before_the_body_is_read() -> None:
    def guard(request: Request) -> Response | None:
        return None if request.headers.get("x-pass") == "yes" else error_response(401, "no")

    async with HttpServer(
        ROUTES, host="127.0.0.1", port=0, max_body=1000, name="t", guard=guard
    ) as server:
        reader, writer = await connect(server)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 900\r\n\r\n")
        status, headers, _ = await read_reply(reader)  # answered with no body byte sent
        assert status == 401 and headers["connection"] == "close"
        assert await closed(reader)
        writer.close()
        reader, writer = await connect(server)
        writer.write(request("POST", "/echo", b"abc", "X-Pass: yes"))
        assert (await read_reply(reader))[0] == 200
        writer.close()


async def test_head_is_answered_like_get_with_its_length_and_no_body(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await connect(server)
    writer.write(request("GET", "/hello"))
    _, _, get_body = await read_reply(reader)
    with caplog.at_level(logging.ERROR, logger="sync.http_server"):
        writer.write(request("HEAD", "/hello"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"content-length: %d\r\n" % len(get_body) in head
        writer.write(request("GET", "/hello"))  # no body came between the two answers
        status, _, body = await read_reply(reader)
    assert (status, body) == (200, get_body)
    writer.write(request("HEAD", "/hello") + b"NOT HTTP AT ALL\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # the HEAD answer
    status, _, body = await read_reply(reader)  # after a HEAD, an error keeps its body
    assert status == 400 and "error" in orjson.loads(body)
    assert caplog.records == []
    writer.close()


async def test_head_on_a_post_only_path_is_405_listing_head_with_get(
    server: HttpServer,
) -> None:
    reader, writer = await connect(server)
    writer.write(request("HEAD", "/broken"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 500 ")  # a GET route: HEAD runs its handler
    writer.write(request("PUT", "/echo"))
    status, headers, _ = await read_reply(reader)
    assert status == 405 and headers["allow"] == "GET, HEAD, POST"
    writer.close()


async def test_a_response_that_cannot_be_sent_is_logged_once(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="sync.http_server"):
        for _ in range(3):
            reader, writer = await connect(server)
            writer.write(request("GET", "/unsendable"))
            assert await closed(reader)
            writer.close()
    assert len(caplog.records) == 1 and "could not send" in caplog.records[0].getMessage()


async def test_a_silent_connection_must_send_its_first_request_within_read_timeout() -> None:
    async with HttpServer(
        ROUTES, host="127.0.0.1", port=0, max_body=10, name="t", idle_timeout=5,
        read_timeout=0.3,
    ) as server:  # fmt: skip
        reader, writer = await connect(server)
        started = time.monotonic()
        assert await closed(reader, within=2)  # not after the 5 s idle_timeout
        assert time.monotonic() - started > 0.25
        assert server.stats.rejected == {"timeout": 1}
        writer.close()


async def test_connections_from_one_peer_are_capped() -> None:
    async with HttpServer(
        ROUTES, host="127.0.0.1", port=0, max_body=10, name="t", max_connections=8,
        max_per_peer=2,
    ) as server:  # fmt: skip
        held = [await connect(server) for _ in range(2)]
        for reader, writer in held:
            writer.write(request("GET", "/echo"))
            assert (await read_reply(reader))[0] == 200
        reader, writer = await connect(server)
        writer.write(request("GET", "/echo"))
        status, headers, _ = await read_reply(reader)
        assert status == 503 and headers["retry-after"] == "1"
        assert server.stats.rejected == {"busy_peer": 1}
        held[0][1].close()
        await closed(held[0][0])
        await asyncio.sleep(0.05)  # the server sees the close and frees the slot
        reader, writer = await connect(server)
        writer.write(request("GET", "/echo"))
        assert (await read_reply(reader))[0] == 200
        for _, held_writer in held:
            held_writer.close()
        writer.close()


def test_the_default_per_peer_cap_is_a_quarter_of_the_connections() -> None:
    server = HttpServer(ROUTES, host="127.0.0.1", port=0, max_body=10, name="t")
    assert (server.max_connections, server.max_per_peer) == (64, 16)


async def test_close_lets_a_request_being_handled_finish() -> None:
    entered = asyncio.Event()

    async def slow(request: Request) -> Response:
        entered.set()
        await asyncio.sleep(0.3)  # a queue commit, say
        return json_response(200, {"done": True})

    routes = {**ROUTES, ("POST", "/slow"): slow}
    server = HttpServer(routes, host="127.0.0.1", port=0, max_body=10, name="t")
    await server.start()
    idle_reader, idle_writer = await connect(server)
    reader, writer = await connect(server)
    writer.write(request("POST", "/slow", b"x"))
    await asyncio.wait_for(entered.wait(), 5)
    closing = asyncio.create_task(server.close())
    status, headers, body = await read_reply(reader)
    assert (status, orjson.loads(body)) == (200, {"done": True})
    assert headers["connection"] == "close"
    assert await closed(reader) and await closed(idle_reader, within=1)
    await asyncio.wait_for(closing, 5)
    writer.close()
    idle_writer.close()


async def test_close_cancels_a_handler_still_running_after_the_grace() -> None:
    cancelled = asyncio.Event()

    async def stuck(request: Request) -> Response:
        try:
            await asyncio.sleep(60)
        finally:
            cancelled.set()
        return json_response(200, {})

    routes = {("GET", "/stuck"): stuck}
    server = HttpServer(routes, host="127.0.0.1", port=0, max_body=10, name="t", close_grace=0.2)
    await server.start()
    reader, writer = await connect(server)
    writer.write(request("GET", "/stuck"))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await asyncio.wait_for(server.close(), 5)
    assert 0.15 < time.monotonic() - started < 2 and cancelled.is_set()
    assert await closed(reader)
    writer.close()
