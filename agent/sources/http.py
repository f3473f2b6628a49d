"""The `http` source: programs on the device POST events, the agent stores them durably.

A request is atomic and its answer is a promise. Every event of one request is
appended in one queue transaction, and 200 `{"accepted": a, "dropped": d, "last_seq":
s}` is sent only after that transaction committed: a client that got 200 may forget
the events, a client that got anything else (or lost the connection) must retry, and
a retry never leaves half a batch behind. One bad event refuses the whole request (400
with the line or index at fault), so a client never has to guess which part was
stored.

`accepted` counts the events stored, `dropped` those a full `overflow: drop_newest`
stream discarded by its own policy: they still took a sequence number, recorded as a
gap, so the hub learns of them too. That is still a 200, as the drop is the configured
outcome and a retry would only be dropped again; a client that cares reads `dropped`.

Bodies: a JSON object (one event), a JSON array of objects, or NDJSON (one object per
line; `application/x-ndjson`, or simply several lines). A body over `PARSE_INLINE_MAX`
is parsed in a worker thread, so a 1 MiB request does not stall the event loop (and
every other source) for tens of milliseconds on a Pi; NDJSON parsing stops at the
first event over `max_events`, so a body of tiny lines is refused (413) cheaply.

A full `overflow: block` stream holds requests back for up to `ROOM_WAIT` seconds,
then answers 503 with Retry-After: the backpressure reaches the client instead of
growing the queue. A source that cannot start (token file unreadable, port in use)
logs why once and retries with backoff: it never stops the agent's other sources.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from agent.config.http_source import HEALTH_PATH, HttpSourceConfig
from agent.queue import DurableQueue, NewEvent, QueueError, WriteTx, encode_payload
from agent.sources.decode import DEFAULT_MAX_FUTURE, field_path, trusted_time
from agent.sources.polling import ConditionLog
from sync.backoff import Backoff
from sync.http_server import HttpServer
from sync.http_types import Request, Response, error_response, json_response

log = logging.getLogger(__name__)

ROOM_WAIT: Final = 5.0
"""Seconds a request waits for room in a full `block` stream before 503."""
NDJSON_TYPES: Final = frozenset({"application/x-ndjson", "application/jsonl"})
PARSE_INLINE_MAX: Final = 64 * 1024
"""Bodies up to this size are parsed on the event loop (well under a millisecond);
larger ones in a thread."""
RETRY_INITIAL: Final = 1.0
RETRY_MAX: Final = 10.0
"""Backoff bounds, in seconds, between attempts to start a source that failed to."""


class BadBody(ValueError):
    """A body that holds something other than JSON objects; `where` locates it."""

    def __init__(self, message: str, **where: int) -> None:
        super().__init__(message)
        self.message = message
        self.where = where


class TooManyEvents(ValueError):
    """A body with more events than `max_events`; parsing stopped at the first extra."""


def parse_body(body: bytes, content_type: str, max_events: int) -> list[dict[str, Any]]:
    """The objects in a body: one object, an array of objects, or NDJSON lines.

    A body whose first line is a JSON value with more lines after it is read as NDJSON,
    so `curl --data-binary @events.ndjson` works without a content type. More than
    `max_events` objects raise TooManyEvents.
    """
    _check_utf8(body)
    is_ndjson = content_type.partition(";")[0].strip().lower() in NDJSON_TYPES
    if is_ndjson or _looks_like_ndjson(body):
        return _ndjson(body, max_events)
    if not body.strip():
        raise BadBody("the body is empty", line=1)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadBody(f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    objects = _objects(value)
    if len(objects) > max_events:
        raise TooManyEvents(max_events)
    return objects


def _check_utf8(body: bytes) -> None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody("invalid UTF-8", line=body.count(b"\n", 0, exc.start) + 1) from None


def _lines(body: bytes) -> Iterator[bytes]:
    """The lines of a body one at a time: splitting 1 MiB of short lines into a list at
    once costs tens of MiB."""
    return iter(io.BytesIO(body))


def _looks_like_ndjson(body: bytes) -> bool:
    """True when the first non-blank line is a whole JSON value and more lines follow.

    No single JSON document looks like that (a complete value may only be followed by
    whitespace), and asking this first spares orjson a failed parse of the whole body,
    which for 1 MiB of short lines allocates 12 MiB.
    """
    lines = (line for line in _lines(body) if line.strip())
    first = next(lines, None)
    if first is None or next(lines, None) is None:
        return False
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


def _ndjson(body: bytes, max_events: int) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for number, raw in enumerate(_lines(body), start=1):
        if not raw.strip():
            continue
        if len(objects) == max_events:
            raise TooManyEvents(max_events)
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
    dropped: int = 0
    """Events a full `drop_newest` stream discarded (answered 200 with `dropped`)."""
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
        self.conditions = ConditionLog(config.name)

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
        own = self._own
        return HttpSourceStats(own.requests, own.stored, own.dropped, rejected)

    async def run(self) -> None:
        """Listen and serve until cancelled; the socket is closed on the way out, after
        the requests being stored have been answered (see HttpServer.close)."""
        server = await self._start_until_listening()
        try:
            self._server = server
            self.started.set()
            host, _ = self.config.address
            log.info("Source %s: listening on %s:%d%s", self.name, host, server.port,
                     self.config.path)  # fmt: skip
            await asyncio.Event().wait()
        finally:
            await server.close()

    async def _start_until_listening(self) -> HttpServer:
        """Start, retrying with backoff: an unreadable token file or a port in use is
        logged once (and when it clears) and must not take the other sources down."""
        backoff = Backoff(RETRY_INITIAL, RETRY_MAX)
        while True:
            try:
                server = await self._start()
            except (OSError, ValueError) as exc:  # ValueError: a bad token file
                self.conditions.failed(f"cannot start: {exc}")
                await asyncio.sleep(backoff.next_delay())
                continue
            self.conditions.cleared()
            return server

    async def _start(self) -> HttpServer:
        """Read the token and bind; raises OSError or ValueError saying why not."""
        token = await asyncio.to_thread(self.config.resolved_token)
        self._token = None if token is None else token.encode()
        host, port = self.config.address
        routes = {("POST", self.config.path): self._post, ("GET", HEALTH_PATH): self._health}
        server = HttpServer(
            routes, host=host, port=port, max_body=self.config.max_body,
            name=f"edgestream[src.{self.name}]", guard=self._admit,
        )  # fmt: skip
        await server.start()
        return server

    async def _health(self, request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    def _admit(self, request: Request) -> Response | None:
        """Count a POST and check its token before the server reads its body."""
        if (request.method, request.path) != ("POST", self.config.path):
            return None
        self._own.requests += 1
        return self._authorize(request)

    async def _post(self, request: Request) -> Response:
        try:
            events = await self._decode(request)
        except BadBody as exc:
            body = {"error": exc.message, **exc.where}
            return self._reject("bad_event", json_response(400, body))
        except TooManyEvents:
            message = f"more than max_events {self.config.max_events} events in one request"
            return self._reject("too_many_events", error_response(413, message))
        return await self._store(events)

    async def _decode(self, request: Request) -> list[NewEvent]:
        """The request's events; a large body is parsed off the event loop."""
        arrival = time.time()
        content_type = request.headers.get("content-type", "")

        def decode() -> list[NewEvent]:
            objects = parse_body(request.body, content_type, self.config.max_events)
            return [self._storable(obj, index, arrival) for index, obj in enumerate(objects)]

        if len(request.body) > PARSE_INLINE_MAX:
            return await asyncio.to_thread(decode)
        return decode()

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

    def _storable(self, obj: dict[str, Any], index: int, arrival: float) -> NewEvent:
        """`_event`, refusing with a 400 an object JSON cannot write back (nested too deep)."""
        try:
            return self._event(obj, arrival)
        except (TypeError, RecursionError) as exc:  # orjson stops at 254 levels
            raise BadBody(f"the event cannot be stored: {exc}", index=index) from None

    def _event(self, obj: dict[str, Any], arrival: float) -> NewEvent:
        """The queue event of one object: tags added as fields, as polled sources do."""
        cfg = self.config
        event_time, headers = arrival, None
        found = None if cfg.time_field is None else field_path(obj, cfg.time_field)
        if isinstance(found, int | float) and not isinstance(found, bool):
            event_time, future = trusted_time(float(found), arrival, DEFAULT_MAX_FUTURE)
            if future is not None:
                headers = orjson.dumps({"time_in_future": future}).decode()
        key = None if cfg.key_field is None else field_path(obj, cfg.key_field)
        payload = encode_payload({**obj, **cfg.tags})
        return NewEvent(
            event_time, arrival, None if key is None else str(key), cfg.path, payload, headers
        )

    async def _store(self, events: list[NewEvent]) -> Response:
        """Append all events in one transaction; answer 200 only after its commit."""
        stream = self.config.stream
        if not events:
            last_seq = self.queue.last_seq(stream)
            return json_response(200, {"accepted": 0, "dropped": 0, "last_seq": last_seq})
        try:
            async with asyncio.timeout(ROOM_WAIT):
                await self.queue.wait_for_room(stream)
        except TimeoutError:
            message = f"stream {stream} is full, retry later"
            return self._reject("queue_full", error_response(503, message, [("retry-after", "5")]))
        try:
            last_seq, dropped = await self.queue.transact(
                lambda tx: append_counting_drops(tx, stream, events), weight=len(events)
            )
        except QueueError as exc:
            log.warning("Source %s: could not store %d event(s): %s", self.name, len(events), exc)
            return self._reject("queue_error", error_response(503, f"not stored: {exc}"))
        accepted = len(events) - dropped
        self._own.stored += accepted
        self._own.dropped += dropped
        body = {"accepted": accepted, "dropped": dropped, "last_seq": last_seq}
        return json_response(200, body)

    def _reject(self, reason: str, response: Response) -> Response:
        self._own.rejected[reason] = self._own.rejected.get(reason, 0) + 1
        return response


def append_counting_drops(tx: WriteTx, stream: str, events: Sequence[NewEvent]) -> tuple[int, int]:
    """Append `events`; (last sequence number, how many a full `drop_newest` stream dropped).

    The queue decides what it drops and reports only sequence numbers, dropped or not.
    When every event fits, nothing can be dropped and one append does; otherwise each
    event is appended alone and a drop shows as a stream whose size did not grow (every
    event counts at least its row overhead), so the count is the queue's own verdict.
    """
    state = tx.stream(stream)
    total = sum(event.size for event in events)
    if state.limits.overflow != "drop_newest" or state.bytes + total <= state.limits.max_bytes:
        return tx.append(stream, events)[-1], 0
    dropped = 0
    for event in events:
        before = state.bytes
        last_seq = tx.append(stream, [event])[-1]
        dropped += int(state.bytes == before)
    return last_seq, dropped
