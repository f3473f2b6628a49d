"""The HTTP server against raw sockets: keep-alive, chunked bodies, limits and timeouts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from sync.http_server import HttpServer, Request, Response, error_response, json_response

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


ROUTES = {("POST", "/echo"): echo, ("GET", "/echo"): echo, ("GET", "/broken"): broken}


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    async with HttpServer(
        ROUTES, host="127.0.0.1", port=0, max_body=1000, name="test", max_connections=2,
        idle_timeout=0.5, read_timeout=0.3,
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


async def closed(reader: asyncio.StreamReader) -> bool:
    """True when the server closed the connection within 5 s (EOF after any leftover)."""
    try:
        while await asyncio.wait_for(reader.read(65536), 5):
            pass
    except OSError:  # reset, or broken pipe after the client's own late write
        pass
    return True


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
    assert status == 405 and headers["allow"] == "GET, POST"
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
