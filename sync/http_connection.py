"""One client connection of `sync.http_server`: read a request, answer it, repeat.

A client on the device's network may be buggy or hostile, so each connection is held
to limits that do not depend on its good will: a body over `max_body` is refused (413)
as soon as it is known, before the rest is read; headers over `max_header_size` get
431; one request must arrive within `read_timeout`, the first one counted from the
accept (408, the slowloris defence: a connection that sends nothing holds its slot that
long, not `idle_timeout`); an idle keep-alive connection ends after `idle_timeout`. A
refused connection is half-closed and drained briefly (`linger`) so that the client
reads its answer instead of a reset. h11 parses HTTP; the server (`HttpServer`) owns
the slots, the routes and the closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

import h11

from sync.http_types import Request, Response, error_response

if TYPE_CHECKING:
    from sync.http_server import HttpServer

_CHUNK: Final = 65536
_LINGER: Final = 1.0
"""Seconds spent discarding unread input before closing a refused connection."""


class _Refused(Exception):
    """A request refused by the server itself; the connection closes after the answer."""

    def __init__(self, reason: str, response: Response, *, counted: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.response = response
        self.counted = counted  # the guard counts its own refusals


class Connection:
    """One client connection: read a request, answer it, repeat while keep-alive holds."""

    def __init__(
        self,
        server: HttpServer,
        task: asyncio.Task[object],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server, self.task = server, task
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=server.max_header_size)
        self.peer = _peer_name(writer)
        self.deadline: float | None = None
        self.head_only = False

    async def serve(self) -> None:
        """Requests in order until the client closes, idles out, is refused or the
        server closes."""
        first = True
        while True:
            try:
                request = await self._receive(first)
            except _Refused as refused:
                if not refused.counted:
                    self.server.stats.reject(refused.reason)
                await self._send(refused.response, close=True)
                await linger(self.reader, self.writer)
                return
            if request is None:
                return
            await self._answer(request)
            if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                return
            self.h11.start_next_cycle()
            first = False

    async def _answer(self, request: Request) -> None:
        """Dispatch and send, marked busy so that close() waits for it."""
        self.server.handling(self.task, True)
        try:
            response = await self.server.dispatch(request)
            await self._send(response, close=self.server.closing)
        finally:
            self.server.handling(self.task, False)

    async def _receive(self, first: bool) -> Request | None:
        """The next whole request; None when the client closed or stayed idle.

        The first request's `read_timeout` runs from the accept: a connection that sends
        nothing must not hold a slot for the longer `idle_timeout`.
        """
        self.head_only = False  # a refusal before the head is parsed sends its body
        pending, _ = self.h11.trailing_data
        timed = first or bool(pending)
        self.deadline = self._now() + self.server.read_timeout if timed else None
        head = await self._next_event()
        if isinstance(head, h11.ConnectionClosed):
            return None
        assert isinstance(head, h11.Request)
        self.head_only = head.method == b"HEAD"
        self._check_head_size(head)
        self._apply_guard(head)  # before the length: a stranger learns no limits
        self._check_declared_length(head)
        if self.h11.they_are_waiting_for_100_continue:
            await self._write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = await self._read_body()
        return _request(head, body, self.peer)

    def _check_head_size(self, head: h11.Request) -> None:
        """431 for big headers: h11 bounds only an incomplete head, this one that arrived
        whole in a single read."""
        size = len(head.target) + sum(len(name) + len(value) + 4 for name, value in head.headers)
        if size > self.server.max_header_size:
            raise _Refused("bad_request", error_response(431, "request headers too large"))

    def _check_declared_length(self, head: h11.Request) -> None:
        """413 on the declared length alone, so an oversized body is never read."""
        for name, value in head.headers:
            if name == b"content-length" and int(value) > self.server.max_body:
                raise _Refused("too_large", self._too_large())

    def _apply_guard(self, head: h11.Request) -> None:
        refusal = self.server.admit(_request(head, b"", self.peer))
        if refusal is not None:
            raise _Refused("guard", refusal, counted=True)

    def _too_large(self) -> Response:
        return error_response(413, f"body larger than {self.server.max_body} bytes")

    async def _read_body(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event()
            if isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.server.max_body:  # chunked bodies declare no length
                    raise _Refused("too_large", self._too_large())
                parts.append(bytes(event.data))

    async def _next_event(self) -> h11.Event:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                raise _Refused("bad_request", error_response(status, str(exc))) from None
            if isinstance(event, h11.Event):
                return event
            assert event is h11.NEED_DATA  # PAUSED only comes after a whole request
            self.h11.receive_data(await self._read())

    async def _read(self) -> bytes:
        """Some bytes; b"" (end of input) when an idle connection times out.

        The first byte of a request starts its `read_timeout`, which covers the whole
        request: a client trickling a byte at a time cannot hold a slot for longer.
        """
        timeout = self.server.idle_timeout
        if self.deadline is not None:
            timeout = max(0.0, self.deadline - self._now())
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can lose a cancel
                data = await self.reader.read(_CHUNK)
        except TimeoutError:
            if self.deadline is None:
                return b""
            raise _Refused("timeout", error_response(408, "request not received in time")) from None
        if self.deadline is None:
            self.deadline = self._now() + self.server.read_timeout
        return data

    async def _send(self, response: Response, *, close: bool = False) -> None:
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # the answer is already (partly) sent
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            ("date", formatdate(usegmt=True)),
            *response.headers,
        ]
        if close:
            headers.append(("connection", "close"))
        reason = _reason(response.status)
        head = h11.Response(status_code=response.status, headers=headers, reason=reason)
        body = b"" if self.head_only else response.body  # h11 fixes a HEAD body at 0 bytes
        await self._write(
            self.h11.send(head), self.h11.send(h11.Data(data=body)) if body else None,
            self.h11.send(h11.EndOfMessage()),
        )  # fmt: skip

    async def _write(self, *chunks: bytes | None) -> None:
        """Write and wait until sent; a client that stops reading times out like one that
        stops writing."""
        self.writer.write(b"".join(chunk for chunk in chunks if chunk))
        async with asyncio.timeout(self.server.read_timeout):
            await self.writer.drain()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


def _request(head: h11.Request, body: bytes, peer: str) -> Request:
    target = head.target.decode("ascii", errors="replace")
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    for name, value in head.headers:
        key, text = name.decode("ascii"), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return Request(
        method=head.method.decode("ascii"),
        path=path,
        query=dict(urllib.parse.parse_qsl(query)),
        headers=headers,
        body=body,
        peer=peer,
    )


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then discard what the client still sends, for at most `_LINGER` s.

    Closing a socket with unread input makes the kernel send a reset, which can
    destroy the answer before the client reads it: the 413 a client never sees.
    """
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(_LINGER):
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            while await reader.read(_CHUNK):
                pass
