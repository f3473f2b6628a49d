"""The `http` source: programs on the device POST events, the agent stores them durably.

A request is atomic and its answer is a promise. Every event of one request is
appended in one queue transaction, and 200 `{"accepted": n, "last_seq": s}` is sent
only after that transaction committed: a client that got 200 may forget the events,
a client that got anything else (or lost the connection) must retry, and a retry
never leaves half a batch behind. One bad event refuses the whole request (400 with
the line or index at fault), so a client never has to guess which part was stored.

Bodies: a JSON object (one event), a JSON array of objects, or NDJSON (one object per
line; `application/x-ndjson`, or simply several lines). A full `overflow: block`
stream holds requests back for up to `ROOM_WAIT` seconds, then answers 503 with
Retry-After: the backpressure reaches the client instead of growing the queue.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from agent.config.http_source import HEALTH_PATH, HttpSourceConfig
from agent.queue import DurableQueue, NewEvent, QueueError, encode_payload
from agent.sources.decode import field_path
from sync.http_server import HttpServer, Request, Response, error_response, json_response

log = logging.getLogger(__name__)

MAX_FUTURE: Final = 86400.0
"""An event time further ahead than this is a wrong clock: the arrival time is used."""
ROOM_WAIT: Final = 5.0
"""Seconds a request waits for room in a full `block` stream before 503."""
NDJSON_TYPES: Final = frozenset({"application/x-ndjson", "application/jsonl"})


class BadBody(ValueError):
    """A body that holds something other than JSON objects; `where` locates it."""

    def __init__(self, message: str, **where: int) -> None:
        super().__init__(message)
        self.message = message
        self.where = where


def parse_body(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """The objects in a body: one object, an array of objects, or NDJSON lines.

    A body that is not one JSON document but whose first line is one is read as NDJSON,
    so `curl --data-binary @events.ndjson` works without a content type.
    """
    _check_utf8(body)
    if content_type.partition(";")[0].strip().lower() in NDJSON_TYPES:
        return _ndjson(body)
    if not body.strip():
        raise BadBody("the body is empty", line=1)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if _first_line_is_json(body):
            return _ndjson(body)
        raise BadBody(f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    return _objects(value)


def _check_utf8(body: bytes) -> None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody("invalid UTF-8", line=body.count(b"\n", 0, exc.start) + 1) from None


def _first_line_is_json(body: bytes) -> bool:
    first = next((line for line in body.split(b"\n") if line.strip()), b"")
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    return True


def _objects(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise BadBody(f"expected a JSON object or an array of objects, got {_kind(value)}", line=1)
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise BadBody(f"array item {index} is {_kind(item)}, not an object", index=index)
    return value


def _ndjson(body: bytes) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadBody(f"invalid JSON: {exc.msg}", line=number) from None
        if not isinstance(value, dict):
            raise BadBody(f"expected a JSON object, got {_kind(value)}", line=number)
        objects.append(value)
    if not objects:
        raise BadBody("the body holds no events", line=1)
    return objects


def _kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


@dataclass(slots=True)
class HttpSourceStats:
    """Counters since start; `rejected` counts refused requests by reason."""

    requests: int = 0
    stored: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


class HttpSource:
    """Serves POST `path` (and GET /health) until cancelled, storing what it accepts."""

    def __init__(self, config: HttpSourceConfig, queue: DurableQueue) -> None:
        self.config = config
        self.queue = queue
        self.started = asyncio.Event()
        self._own = HttpSourceStats()
        self._server: HttpServer | None = None
        self._token: bytes | None = None

    @property
    def name(self) -> str:
        """The configured source name."""
        return self.config.name

    @property
    def port(self) -> int:
        """The port listened on (the chosen one for `:0`); only after `started` is set."""
        if self._server is None:
            raise RuntimeError(f"source {self.name} is not listening")
        return self._server.port

    @property
    def stats(self) -> HttpSourceStats:
        """A snapshot, refusals by the server itself (too_large, timeout, busy) included."""
        rejected = dict(self._own.rejected)
        if self._server is not None:
            for reason, count in self._server.stats.rejected.items():
                rejected[reason] = rejected.get(reason, 0) + count
        return HttpSourceStats(self._own.requests, self._own.stored, rejected)

    async def run(self) -> None:
        """Listen and serve until cancelled; the socket is closed on the way out."""
        token = await asyncio.to_thread(self.config.resolved_token)
        self._token = None if token is None else token.encode()
        host, port = self.config.address
        routes = {("POST", self.config.path): self._post, ("GET", HEALTH_PATH): self._health}
        server = HttpServer(
            routes, host=host, port=port, max_body=self.config.max_body,
            name=f"edgestream[src.{self.name}]", guard=self._admit,
        )  # fmt: skip
        async with server:
            self._server = server
            self.started.set()
            log.info("Source %s: listening on %s:%d%s", self.name, host, server.port,
                     self.config.path)  # fmt: skip
            await asyncio.Event().wait()

    async def _health(self, request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    def _admit(self, request: Request) -> Response | None:
        """Count a POST and check its token before the server reads its body."""
        if (request.method, request.path) != ("POST", self.config.path):
            return None
        self._own.requests += 1
        return self._authorize(request)

    async def _post(self, request: Request) -> Response:
        arrival = time.time()
        try:
            objects = parse_body(request.body, request.headers.get("content-type", ""))
        except BadBody as exc:
            body = {"error": exc.message, **exc.where}
            return self._reject("bad_event", json_response(400, body))
        if len(objects) > self.config.max_events:
            message = f"{len(objects)} events, more than max_events {self.config.max_events}"
            return self._reject("too_many_events", error_response(413, message))
        return await self._store([self._event(obj, arrival) for obj in objects])

    def _authorize(self, request: Request) -> Response | None:
        """None when the request carries the token (or none is configured), else a 401."""
        if self._token is None:
            return None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        challenge = [("www-authenticate", 'Bearer realm="edgestream"')]
        if scheme.lower() != "bearer" or not given.strip():
            return self._reject("token_missing", error_response(401, "token missing", challenge))
        if not hmac.compare_digest(given.strip().encode(), self._token):
            return self._reject("token_wrong", error_response(401, "token wrong", challenge))
        return None

    def _event(self, obj: dict[str, Any], arrival: float) -> NewEvent:
        """The queue event of one object: tags added as fields, as polled sources do."""
        cfg = self.config
        event_time, headers = arrival, None
        found = None if cfg.time_field is None else field_path(obj, cfg.time_field)
        if isinstance(found, int | float) and not isinstance(found, bool):
            if found - arrival > MAX_FUTURE:
                headers = orjson.dumps({"time_in_future": repr(float(found))}).decode()
            else:
                event_time = float(found)
        key = None if cfg.key_field is None else field_path(obj, cfg.key_field)
        payload = encode_payload({**obj, **cfg.tags})
        return NewEvent(
            event_time, arrival, None if key is None else str(key), cfg.path, payload, headers
        )

    async def _store(self, events: list[NewEvent]) -> Response:
        """Append all events in one transaction; answer 200 only after its commit."""
        stream = self.config.stream
        if not events:
            return json_response(200, {"accepted": 0, "last_seq": self.queue.last_seq(stream)})
        try:
            async with asyncio.timeout(ROOM_WAIT):
                await self.queue.wait_for_room(stream)
        except TimeoutError:
            message = f"stream {stream} is full, retry later"
            return self._reject("queue_full", error_response(503, message, [("retry-after", "5")]))
        try:
            seqs = await self.queue.transact(
                lambda tx: tx.append(stream, events), weight=len(events)
            )
        except QueueError as exc:
            log.warning("Source %s: could not store %d event(s): %s", self.name, len(events), exc)
            return self._reject("queue_error", error_response(503, f"not stored: {exc}"))
        self._own.stored += len(events)
        return json_response(200, {"accepted": len(events), "last_seq": seqs[-1]})

    def _reject(self, reason: str, response: Response) -> Response:
        self._own.rejected[reason] = self._own.rejected.get(reason, 0) + 1
        return response
