"""The request and response types of `sync.http_server`, and the handler signature.

Handlers (the `http` source, the metrics and fleet pages) only build `Response`s from
`Request`s; they need these few types, not the server's sockets and limits. Keeping
them apart lets a handler module import them without the server, and keeps the one
shape of every error body, `{"error": "..."}`, in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class Request:
    """A request with its whole body read; header names are lowercase."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    peer: str


@dataclass(frozen=True, slots=True)
class Response:
    """What a handler answers; content length, date and connection are added for it."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Awaitable[Response]]
Guard = Callable[[Request], Response | None]
"""Sees each request before its body is read (`body` is empty): a Response refuses it.

This is where a token is checked, so an unauthenticated client cannot make the server
buffer a body (up to `max_body` on each of `max_connections` connections).
"""


def json_response(status: int, value: object, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """A JSON response; `value` is serialised with orjson."""
    return Response(status, orjson.dumps(value), headers=tuple(headers))


def error_response(
    status: int, message: str, headers: Iterable[tuple[str, str]] = (), **extra: object
) -> Response:
    """`{"error": message, **extra}`, the one shape of every error body."""
    return json_response(status, {"error": message, **extra}, headers)
