"""A small asyncio HTTP/1.1 server for the endpoints the agent and the hub expose.

The `http` source, and later the metrics and health endpoints, sit on a device where a
buggy or hostile client must not take the process down or hold it hostage. So this
module owns the sockets, the limits and the timeouts, and nothing else: h11 parses
HTTP (the parser under httpx and uvicorn; pure Python, about 0.5 MiB RSS), handlers
turn a fully read `Request` into a `Response`.

What a client cannot do here: send a body over `max_body` (413 as soon as it is
known, before the rest is read), headers over `max_header_size` (431), open more than
`max_connections` connections, or more than `max_per_peer` from one address (503),
take longer than `read_timeout` to send one request, the first one counted from the
accept (408, the slowloris defence: a connection that sends nothing holds its slot
that long, not `idle_timeout`), keep an idle connection past `idle_timeout`, crash the
server with a handler bug (500), or flood the log: every per-request error is logged
once per distinct error, repeats are only counted. Every error body is JSON:
`{"error": "..."}`. HEAD is answered by the GET handler of the path, with the GET
answer's headers (its content-length included) and no body.

Closing is graceful for work already started: `close()` stops listening, ends idle and
still-reading connections at once, and lets requests being handled finish and send
their answer, for up to `close_grace` seconds. A handler may be committing what the
client sent; cutting it off would make the client retry what was stored, a duplicate.

This module is the server: listening, the connection slots, routing and closing. One
connection's read/parse/write loop, with its timeouts and body limits, is
`sync/http_connection.py`; the types handlers use are `sync/http_types.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final

import h11
import orjson

from sync.http_connection import Connection, linger
from sync.http_types import Guard, Handler, Request, Response, error_response

log = logging.getLogger(__name__)

_MAX_LOGGED_FAILURES: Final = 100
"""Distinct errors remembered as logged; past that each new one is still logged once."""


@dataclass(slots=True)
class ServerStats:
    """Counters since start; `rejected` counts refusals by reason (busy, too_large, ...)."""

    connections: int = 0
    requests: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        """Count one refusal."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


class HttpServer:
    """Serves `routes`, keyed by (method, path), on one listening socket.

    Use as `async with HttpServer(...) as server:` or call `start()` and `close()`.
    """

    def __init__(
        self,
        routes: Mapping[tuple[str, str], Handler],
        *,
        host: str,
        port: int,
        max_body: int,
        name: str,
        max_connections: int = 64,
        max_per_peer: int | None = None,
        idle_timeout: float = 30.0,
        read_timeout: float = 10.0,
        max_header_size: int = 16384,
        close_grace: float = 5.0,
        guard: Guard | None = None,
    ) -> None:
        """`max_per_peer` defaults to a quarter of `max_connections` (at least 1)."""
        self.routes = dict(routes)
        self.host, self.requested_port, self.name = host, port, name
        self.max_body, self.max_connections = max_body, max_connections
        self.max_per_peer = max(1, max_connections // 4) if max_per_peer is None else max_per_peer
        self.idle_timeout, self.read_timeout = idle_timeout, read_timeout
        self.max_header_size = max_header_size
        self.close_grace = close_grace
        self.guard = guard
        self.stats = ServerStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._handling: set[asyncio.Task[object]] = set()
        self._per_peer: dict[str, int] = {}
        self._active = 0
        self.closing = False
        self._logged_failures: set[str] = set()

    async def start(self) -> None:
        """Bind and listen; raises OSError when the address is taken or not local."""
        self._server = await asyncio.start_server(self._accept, self.host, self.requested_port)

    @property
    def port(self) -> int:
        """The port listened on: the one the OS chose when 0 was asked for."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError(f"server {self.name} is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop listening, let requests being handled answer (for up to `close_grace` s),
        and end every other connection: their requests were not yet read, so a client
        that retries them duplicates nothing."""
        server, self._server = self._server, None
        if server is None:
            return
        self.closing = True
        server.close()
        for task in self._tasks - self._handling:
            task.cancel()
        if self._handling:
            await asyncio.wait(set(self._handling), timeout=self.close_grace)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    def handling(self, task: asyncio.Task[object], busy: bool) -> None:
        """Mark a connection as between a whole request and its sent answer, the part
        close() waits for."""
        if busy:
            self._handling.add(task)
        else:
            self._handling.discard(task)

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.set_name(f"{self.name}.connection")
        self._tasks.add(task)
        try:
            await self._serve_or_refuse(task, reader, writer)
        except (OSError, TimeoutError):
            pass  # the client went away or stopped reading: nothing left to answer
        except h11.LocalProtocolError as exc:  # a response h11 refuses to send
            self._log_once(f"send {exc}", "Server %s: could not send a response: %s",
                           self.name, exc)  # fmt: skip
        except asyncio.CancelledError:
            if not self.closing:
                raise
            # Ended by close(): finish quietly, as asyncio 3.11 logs a cancelled
            # connection task as an error.
        finally:
            self._tasks.discard(task)
            self._handling.discard(task)
            writer.close()

    async def _serve_or_refuse(
        self, task: asyncio.Task[object], reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:  # fmt: skip
        """Serve the connection in a free slot, or answer 503 without parsing anything."""
        host = _peer_host(writer)
        if self._active >= self.max_connections:
            self.stats.reject("busy")
            return await _refuse_busy(reader, writer)
        if self._per_peer.get(host, 0) >= self.max_per_peer:
            self.stats.reject("busy_peer")
            return await _refuse_busy(reader, writer)
        self._active += 1
        self._per_peer[host] = self._per_peer.get(host, 0) + 1
        self.stats.connections += 1
        try:
            await Connection(self, task, reader, writer).serve()
        finally:
            self._active -= 1
            self._per_peer[host] -= 1
            if not self._per_peer[host]:
                del self._per_peer[host]

    async def dispatch(self, request: Request) -> Response:
        """Run the route's handler; a handler that raises answers 500 and never escapes."""
        self.stats.requests += 1
        handler = self._route(request.method, request.path)
        if handler is None:
            return self._unrouted(request)
        try:
            return await handler(request)
        except Exception as exc:  # a handler bug must not end the connection or the server
            self.stats.reject("handler_error")
            self._log_failure(request, exc)
            return error_response(500, "internal error, see the server log")

    def admit(self, request: Request) -> Response | None:
        """The guard's verdict on a request head; a guard that raises refuses with 500."""
        if self.guard is None:
            return None
        try:
            return self.guard(request)
        except Exception as exc:  # same promise as for handlers
            self.stats.reject("handler_error")
            self._log_failure(request, exc)
            return error_response(500, "internal error, see the server log")

    def _route(self, method: str, path: str) -> Handler | None:
        """The handler of (method, path); HEAD falls back to GET, whose body is not sent."""
        handler = self.routes.get((method, path))
        if handler is None and method == "HEAD":
            handler = self.routes.get(("GET", path))
        return handler

    def _unrouted(self, request: Request) -> Response:
        allowed = {method for method, path in self.routes if path == request.path}
        if "GET" in allowed:
            allowed.add("HEAD")
        if not allowed:
            self.stats.reject("not_found")
            return error_response(404, f"no such path: {request.path}")
        self.stats.reject("method_not_allowed")
        message = f"{request.method} is not allowed on {request.path}"
        return error_response(405, message, [("allow", ", ".join(sorted(allowed)))])

    def _log_failure(self, request: Request, exc: Exception) -> None:
        """Log a handler's failure with its traceback, once per distinct failure."""
        signature = f"{request.method} {request.path} {type(exc).__name__}: {exc}"
        self._log_once(
            signature, "Server %s: handler of %s %s failed (repeats are not logged)",
            self.name, request.method, request.path, exc_info=exc,
        )  # fmt: skip

    def _log_once(
        self, signature: str, message: str, *args: object, exc_info: Exception | None = None
    ) -> None:
        """Log an error the first time its `signature` is seen: any client can trigger a
        per-request error at will, and must not be able to flood the log with it."""
        if signature in self._logged_failures:
            return
        if len(self._logged_failures) < _MAX_LOGGED_FAILURES:
            self._logged_failures.add(signature)
        log.error(message, *args, exc_info=exc_info)


def _peer_host(writer: asyncio.StreamWriter) -> str:
    """The client's address without its port: what `max_per_peer` counts by."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


def _busy_response() -> bytes:
    body = orjson.dumps({"error": "too many connections, retry later"})
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


_BUSY: Final = _busy_response()


async def _refuse_busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer 503 without parsing anything: a connection over the limit gets no slot."""
    writer.write(_BUSY)
    await linger(reader, writer)
