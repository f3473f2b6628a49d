"""The `file` source: new lines of a followed file become events, stored exactly once.

Each batch of events is committed in one queue transaction with the read position
that produced it (`file.<name>` / `position` in the state table), so a crash or a
restart neither re-reads nor skips a line. Lines that cannot be decoded go to the
dead-letter stream with their reason, counted, and reading goes on: no line, however
odd, may stop the source, since a restart would meet the same line again.

The file work (stat, a read of up to 1 MiB, splitting and decoding up to 5,000
lines) runs on a worker thread: a cold read from an SD card, or decoding a full
chunk of JSON on a Pi, takes tens of milliseconds, more than the loop may stall.
A cancelled source still waits for that one bounded step, so the descriptor is
never closed under a running read.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import orjson

from agent.config.file_source import FileSourceConfig
from agent.queue import (
    DEADLETTER_STREAM,
    DurableQueue,
    NewEvent,
    QueueClosedError,
    QueueError,
    WriteTx,
    encode_payload,
)
from agent.sources.decode import (
    DEADLETTER_SAMPLE,
    DEFAULT_MAX_FUTURE,
    TIME_DIVISOR,
    DeadLetter,
    field_path,
    trusted_time,
)
from agent.sources.file_follow import FileStats, Follower, Line, LongLine
from agent.sources.file_position import Position
from agent.sources.payloads import number_or_text
from agent.sources.polling import ConditionLog

T = TypeVar("T")
log = logging.getLogger(__name__)


__all__ = ["FileSource", "FileStats"]


@dataclass(frozen=True, slots=True)
class Batch:
    """One step's events and dead letters, to be committed with the position after them."""

    events: list[NewEvent]
    dead: list[DeadLetter]
    position: Position | None
    more: bool
    gaps: int


class Refused(Exception):
    """A line that does not decode: `reason` names the dead-letter counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class FileSource:
    """Follows `config.path` and appends its lines to `config.stream` until cancelled."""

    def __init__(self, config: FileSourceConfig, queue: DurableQueue) -> None:
        self.config = config
        self.queue = queue
        self.stats = FileStats()
        self.conditions = ConditionLog(config.name)
        self.owner = f"file.{config.name}"
        self.decoder = LineDecoder(config)
        self._follower = Follower(
            config.path,
            start_at_end=config.start_at == "end",
            max_line=config.max_line,
            csv_header=config.format == "csv",
            conditions=self.conditions,
            stats=self.stats,
            rotate_wait=config.rotate_wait,
        )
        self._committed: Position | None = None

    @property
    def name(self) -> str:
        """The configured source name (logs, metrics, dead-letter headers)."""
        return self.config.name

    async def run(self) -> None:
        """Read, commit, and wait a poll interval whenever the file has nothing new."""
        self._committed = await self._load_position()
        self._follower.reset(self._committed)
        try:
            while True:
                await self.queue.wait_for_room(self.config.stream)
                batch = await _off_loop(self._read_batch)
                if batch is not None and self._worth_committing(batch):
                    await self._commit(batch)
                if batch is None or not batch.more:
                    await asyncio.sleep(self.config.poll_interval)
        finally:
            self._follower.close()

    async def _load_position(self) -> Position | None:
        """The stored position, unless it was taken for another path (then: start afresh)."""
        state = await self.queue.load_state(self.owner)
        raw = state.get("position")
        position = None if raw is None else Position.decode(raw)
        if position is None:
            return None
        if position.path is None:  # stored before positions named their path
            return replace(position, path=self.config.path)
        if position.path != self.config.path:
            log.info(
                "Source %s: path changed from %s to %s; starting afresh (start_at: %s)",
                self.name, position.path, self.config.path, self.config.start_at,
            )  # fmt: skip
            return None
        return position

    def _read_batch(self) -> Batch | None:
        """One follower step, decoded (on the worker thread); None after an I/O error."""
        try:
            step = self._follower.step()
        except OSError as exc:
            self.stats.errors += 1
            self.conditions.failed(f"cannot read {self.config.path}: {exc}")
            self._follower.reset(self._committed)
            return None
        now = time.time()
        events: list[NewEvent] = []
        dead: list[DeadLetter] = []
        for line in step.lines:
            if isinstance(line, bytes) and not line.strip():
                continue
            self.stats.lines += 1
            result = self.decoder.decode(line, step.header, now)
            if isinstance(result, DeadLetter):
                dead.append(result)
            else:
                events.append(result)
        return Batch(events, dead, step.position, step.more, step.gaps)

    def _worth_committing(self, batch: Batch) -> bool:
        return bool(batch.events or batch.dead or batch.gaps) or (
            batch.position is not None and batch.position != self._committed
        )

    async def _commit(self, batch: Batch) -> None:
        """Store the batch and its position together; on failure, re-read from the last."""
        try:
            await self.queue.transact(self._writer(batch), weight=max(1, len(batch.events)))
        except QueueClosedError:
            raise  # shutting down: nothing more can be stored
        except QueueError as exc:
            self.stats.errors += 1
            self.conditions.failed(f"could not store {len(batch.events)} line(s): {exc}")
            self._follower.reset(self._committed)
            return
        self._committed = batch.position
        self.stats.stored += len(batch.events)
        self.stats.dead_lettered += len(batch.dead)

    def _writer(self, batch: Batch) -> Callable[[WriteTx], None]:
        stream, owner = self.config.stream, self.owner
        future = sum(1 for e in batch.events if e.headers and "time_in_future" in e.headers)

        def job(tx: WriteTx) -> None:
            if batch.events:
                tx.append(stream, batch.events)
            if future:
                tx.incr(stream, "time_in_future", future)
            if batch.dead:
                tx.append(DEADLETTER_STREAM, [d.event for d in batch.dead])
                for d in batch.dead:
                    tx.incr(stream, f"dead_lettered.{d.reason}")
            if batch.gaps:
                tx.incr(stream, "file_gaps", batch.gaps)
            if batch.position is not None:
                tx.put_state(owner, "position", batch.position.encode())

        return job


async def _off_loop(fn: Callable[[], T]) -> T:
    """`fn()` on a worker thread; a cancel waits for it, so it never runs unowned."""
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the caller is gone, the cancel wins
        raise


class LineDecoder:
    """Turns one line of the file into an event, or a dead letter saying why not."""

    def __init__(self, config: FileSourceConfig) -> None:
        self.config = config
        self.pattern = re.compile(config.pattern) if config.pattern is not None else None
        self._columns: tuple[str | None, list[str]] = (None, [])

    def decode(self, line: Line, header: str | None, now: float) -> NewEvent | DeadLetter:
        """The event of a line; `header` is the csv header of the file it came from.

        Any failure not foreseen is a dead letter too (`undecodable`): raised, it would
        lose the batch and stop the source, and every restart would meet the same line.
        """
        try:
            return self._decode(line, header, now)
        except Exception as exc:  # the backstop described above
            raw = line.sample if isinstance(line, LongLine) else line
            detail = f"{type(exc).__name__}: {exc}"
            return self._dead(raw, len(raw), "undecodable", detail, now)

    def _decode(self, line: Line, header: str | None, now: float) -> NewEvent | DeadLetter:
        if isinstance(line, LongLine):
            detail = f"line longer than max_line ({self.config.max_line} bytes): {line.size}"
            return self._dead(line.sample, line.size, "oversized", detail, now)
        raw = line.removesuffix(b"\r")
        try:
            fields = self._fields(raw.decode(), header)
        except UnicodeDecodeError as exc:
            detail = f"line is not valid UTF-8: {exc.reason} at byte {exc.start}"
            return self._dead(raw, len(raw), "invalid_utf8", detail, now)
        except Refused as exc:
            return self._dead(raw, len(raw), exc.reason, exc.detail, now)
        try:
            return self._event(fields, now)
        except Refused as exc:
            return self._dead(raw, len(raw), exc.reason, exc.detail, now)

    def _fields(self, text: str, header: str | None) -> dict[str, Any]:
        form = self.config.format
        if form == "json":
            return _json_fields(text)
        if form == "csv":
            return _csv_fields(text, self._header_columns(header))
        if form == "regex":
            assert self.pattern is not None  # the config check requires it
            return _regex_fields(text, self.pattern)
        return {"line": text}

    def _header_columns(self, header: str | None) -> list[str]:
        """The columns of the csv header, parsed once per header."""
        if header is None:
            raise Refused("csv_no_header", "the file has no header line yet")
        if self._columns[0] != header:
            self._columns = (header, next(csv.reader([header]), []))
        return self._columns[1]

    def _event(self, fields: dict[str, Any], now: float) -> NewEvent:
        cfg = self.config
        key = None if cfg.key_field is None else field_path(fields, cfg.key_field)
        when, future = trusted_time(self._event_time(fields, now), now, DEFAULT_MAX_FUTURE)
        headers = None if future is None else orjson.dumps({"time_in_future": future}).decode()
        try:
            payload = encode_payload({**fields, **cfg.tags})
        except TypeError as exc:
            raise Refused("undecodable", f"fields cannot be stored as JSON: {exc}") from None
        key_text = None if key is None else str(key)
        return NewEvent(when, now, key_text, cfg.path, payload, headers)

    def _event_time(self, fields: dict[str, Any], now: float) -> float:
        """The time field scaled to seconds; the read time when it is none, or no real time."""
        cfg = self.config
        found = None if cfg.time_field is None else field_path(fields, cfg.time_field)
        if isinstance(found, bool) or not isinstance(found, int | float):
            return now
        try:
            seconds = float(found) / TIME_DIVISOR[cfg.time_unit]  # exact, unlike * 1e-3
        except OverflowError:
            return now
        return seconds if math.isfinite(seconds) else now

    def _dead(self, raw: bytes, size: int, reason: str, detail: str, now: float) -> DeadLetter:
        """Like MQTT's dead letters: the reason in headers, a sample of the line as payload."""
        headers = orjson.dumps(
            {"reason": reason, "detail": detail, "source": self.config.name, "size": size}
        ).decode()
        sample = raw[:DEADLETTER_SAMPLE]
        return DeadLetter(reason, NewEvent(now, now, self.config.name, self.config.path,
                                           sample, headers))  # fmt: skip


def _json_fields(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Refused("invalid_json", f"line is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Refused("not_an_object", f"expected a JSON object, got {type(value).__name__}")
    return value


def _csv_fields(text: str, columns: list[str]) -> dict[str, Any]:
    try:
        row = next(csv.reader([text]), [])
    except csv.Error as exc:
        raise Refused("invalid_csv", f"line is not a CSV row: {exc}") from None
    if len(row) != len(columns):
        detail = f"{len(row)} value(s) for {len(columns)} column(s)"
        raise Refused("csv_columns", detail)
    return {column: number_or_text(value) for column, value in zip(columns, row, strict=True)}


def _regex_fields(text: str, pattern: re.Pattern[str]) -> dict[str, Any]:
    match = pattern.search(text)
    if match is None:
        raise Refused("no_match", "line does not match the pattern")
    found = match.groupdict()
    return {name: number_or_text(value) for name, value in found.items() if value is not None}
