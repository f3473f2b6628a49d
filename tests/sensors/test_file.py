"""The file source: real files, a real queue, rotation, truncation and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import orjson
import pytest

from agent.config.file_source import FileSourceConfig
from agent.queue import DEADLETTER_STREAM, DurableQueue, StreamLimits
from agent.sources.file import FileSource
from sync.config import ConfigError, load_config
from sync.outbox import StoredEvent

OWNER = "file.app"


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[DurableQueue]:
    opened = await DurableQueue.open(
        tmp_path / "queue", {"s": StreamLimits(1 << 26, 1e9)},
        synchronous="normal", commit_interval=0.005,
    )  # fmt: skip
    yield opened
    await opened.close()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    return folder / "app.log"


def source(queue: DurableQueue, path: Path, **settings: Any) -> FileSource:
    options: dict[str, Any] = {
        "name": "app", "stream": "s", "path": str(path), "poll_interval": 0.01,
        "start_at": "beginning", **settings,
    }  # fmt: skip
    return FileSource(FileSourceConfig(**options), queue)


def append(path: Path, data: str | bytes) -> None:
    with open(path, "ab") as file:
        file.write(data.encode() if isinstance(data, str) else data)


def rotate(path: Path) -> None:
    """What logrotate does by default: rename to `<name>.1` (the app reopens later)."""
    path.rename(path.with_name(path.name + ".1"))


def replace_with(path: Path, text: str) -> None:
    """Swap in a new file; it exists before the old one goes, so its inode differs."""
    replacement = path.with_name(path.name + ".tmp")
    append(replacement, text)
    path.unlink()
    replacement.rename(path)


@contextlib.asynccontextmanager
async def running(follower: FileSource) -> AsyncIterator[FileSource]:
    task = asyncio.create_task(follower.run())
    try:
        yield follower
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stored(queue: DurableQueue, stream: str = "s") -> list[StoredEvent]:
    return list((await queue.read_after(stream, 0, 100_000, 1 << 30)).events)


async def wait_for(queue: DurableQueue, count: int, stream: str = "s") -> list[StoredEvent]:
    """The stream's events once there are `count`, after a few more polls (no extras)."""
    deadline = time.monotonic() + 5
    while len(events := await stored(queue, stream)) < count:
        assert time.monotonic() < deadline, f"{len(events)} of {count} events after 5 s"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    return await stored(queue, stream)


async def started(queue: DurableQueue) -> None:
    """Wait until the source committed its first position."""
    deadline = time.monotonic() + 5
    while "position" not in await queue.load_state(OWNER):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


def payloads(events: list[StoredEvent]) -> list[Any]:
    return [orjson.loads(e.payload) for e in events]


def lines(events: list[StoredEvent]) -> list[str]:
    return [orjson.loads(e.payload)["line"] for e in events]


# -- formats ----------------------------------------------------------------------


async def test_lines_are_events_with_tags_topic_and_recent_times(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, "first\r\nsecond\n\n")
    async with running(source(queue, log_path, tags={"site": "lab"})) as follower:
        events = await wait_for(queue, 2)
    assert payloads(events) == [{"line": "first", "site": "lab"}, {"line": "second", "site": "lab"}]
    assert {e.topic for e in events} == {str(log_path)}
    assert all(abs(e.ingest_time - time.time()) < 5 for e in events)
    assert all(e.event_time == e.ingest_time and e.key is None for e in events)
    assert (follower.name, follower.stats.lines, follower.stats.stored) == ("app", 2, 2)


async def test_json_lines_give_fields_key_and_event_time(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, '{"id": "d1", "m": {"ts": 1000.5}, "v": 1}\n{"id": 7, "v": 2}\n')
    follower = source(queue, log_path, format="json", key_field="id", time_field="m.ts")
    async with running(follower):
        events = await wait_for(queue, 2)
    assert payloads(events) == [{"id": "d1", "m": {"ts": 1000.5}, "v": 1}, {"id": 7, "v": 2}]
    assert [e.key for e in events] == ["d1", "7"]
    assert events[0].event_time == 1000.5
    assert events[1].event_time == events[1].ingest_time


async def test_csv_uses_the_first_line_as_header_and_converts_numbers(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, 'sensor,temp,count\nt1,21.5,3\n"t,2",-1,x\n')
    async with running(source(queue, log_path, format="csv")):
        events = await wait_for(queue, 2)
    assert payloads(events) == [
        {"sensor": "t1", "temp": 21.5, "count": 3},
        {"sensor": "t,2", "temp": -1, "count": "x"},
    ]


async def test_regex_named_groups_become_fields(queue: DurableQueue, log_path: Path) -> None:
    pattern = r"(?P<level>[A-Z]+) took (?P<ms>\d+)ms(?: on (?P<host>\w+))?"
    append(log_path, "12:00 INFO took 15ms\n12:01 WARN took 2.5ms on pi4\n")
    async with running(source(queue, log_path, format="regex", pattern=pattern)):
        events = await wait_for(queue, 1)
        dead = await wait_for(queue, 1, DEADLETTER_STREAM)
    assert payloads(events) == [{"level": "INFO", "ms": 15}]
    assert (dead[0].headers or {})["reason"] == "no_match"


# -- where reading starts, partial lines, appends ----------------------------------


async def test_start_at_end_skips_the_backlog_and_keeps_a_partial_line_whole(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, "old 1\nold 2\npart")
    async with running(source(queue, log_path, start_at="end")):
        await started(queue)
        append(log_path, "ial\nnew\n")
        events = await wait_for(queue, 2)
    assert lines(events) == ["partial", "new"]


async def test_start_at_beginning_reads_the_backlog_then_appends(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, "".join(f"line {n}\n" for n in range(3)))
    async with running(source(queue, log_path)):
        await wait_for(queue, 3)
        append(log_path, "line 3\n")
        events = await wait_for(queue, 4)
    assert lines(events) == [f"line {n}" for n in range(4)]


async def test_a_partial_line_waits_for_its_newline(queue: DurableQueue, log_path: Path) -> None:
    append(log_path, "abc")
    async with running(source(queue, log_path)):
        await asyncio.sleep(0.1)
        assert await stored(queue) == []
        append(log_path, "def\n")
        events = await wait_for(queue, 1)
    assert lines(events) == ["abcdef"]


# -- rotation and truncation -------------------------------------------------------


async def test_rename_rotation_loses_and_duplicates_nothing(
    queue: DurableQueue, log_path: Path
) -> None:
    async with running(source(queue, log_path)) as follower:
        with open(log_path, "ab") as writer:  # noqa: ASYNC230 - the logging app's descriptor
            writer.write(b"".join(b"old %d\n" % n for n in range(50)))
            writer.flush()
            await wait_for(queue, 1)
            writer.write(b"".join(b"old %d\n" % n for n in range(50, 60)))
            writer.flush()
            rotate(log_path)
            writer.write(b"late 0\nlate 1\n")  # written before the app reopens its log
        append(log_path, "new 0\nnew 1\n")
        events = await wait_for(queue, 64)
    expected = [f"old {n}" for n in range(60)] + ["late 0", "late 1", "new 0", "new 1"]
    assert lines(events) == expected
    assert follower.stats.rotations == 1


async def test_an_unterminated_last_line_of_a_rotated_file_is_kept(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, "a\n")
    async with running(source(queue, log_path)):
        await wait_for(queue, 1)
        append(log_path, "cut short")
        rotate(log_path)
        append(log_path, "b\n")
        events = await wait_for(queue, 3)
    assert lines(events) == ["a", "cut short", "b"]


async def test_csv_started_at_the_end_still_knows_its_header(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, "a,b\n1,2\n")
    async with running(source(queue, log_path, format="csv", start_at="end")):
        await started(queue)
        append(log_path, "3,4\n")
        events = await wait_for(queue, 1)
    assert payloads(events) == [{"a": 3, "b": 4}]


async def test_copytruncate_restarts_from_the_beginning_once(
    queue: DurableQueue, log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    append(log_path, "before 1\nbefore 2\n")
    async with running(source(queue, log_path)) as follower:
        await wait_for(queue, 2)
        with caplog.at_level(logging.WARNING):
            with open(log_path, "r+b") as file:  # noqa: ASYNC230 - what copytruncate does
                file.truncate(0)
            append(log_path, "after\n")
            events = await wait_for(queue, 3)
    assert lines(events) == ["before 1", "before 2", "after"]
    assert follower.stats.truncations == 1
    warnings = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1
    assert re.fullmatch(
        rf"Source file {re.escape(str(log_path))} was truncated \(\d bytes, read up to 18\); "
        "reading it from the start",
        warnings[0],
    )


# -- restarts ------------------------------------------------------------------------


async def test_a_restart_neither_rereads_nor_skips(queue: DurableQueue, log_path: Path) -> None:
    append(log_path, "a\nb\n")
    async with running(source(queue, log_path)):
        await wait_for(queue, 2)
        append(log_path, "c\npart")
        await wait_for(queue, 3)
    append(log_path, "ial\nd\n")
    async with running(source(queue, log_path, start_at="end")):
        events = await wait_for(queue, 5)
    assert lines(events) == ["a", "b", "c", "partial", "d"]


async def test_a_restart_finishes_a_file_rotated_while_stopped(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, "a\n")
    async with running(source(queue, log_path)):
        await wait_for(queue, 1)
    append(log_path, "b\nc\n")
    rotate(log_path)
    append(log_path, "d\n")
    async with running(source(queue, log_path)) as follower:
        events = await wait_for(queue, 4)
    assert lines(events) == ["a", "b", "c", "d"]
    assert (follower.stats.rotations, follower.stats.gaps) == (1, 0)


async def test_a_replaced_file_whose_old_one_is_gone_is_a_counted_gap(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, "a\n")
    async with running(source(queue, log_path)):
        await wait_for(queue, 1)
    append(log_path, "lost\n")
    replace_with(log_path, "c\n")
    async with running(source(queue, log_path)) as follower:
        events = await wait_for(queue, 2)
    assert lines(events) == ["a", "c"]
    assert follower.stats.gaps == 1
    counters = {s.name: s.counters for s in await queue.stats()}["s"]
    assert counters["file_gaps"] == 1


# -- failures ------------------------------------------------------------------------


async def test_a_missing_file_is_logged_once_then_read_from_its_start(
    queue: DurableQueue, log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="agent.sources.polling"):
        async with running(source(queue, log_path, start_at="end")) as follower:
            await asyncio.sleep(0.1)
            append(log_path, "x\n")
            events = await wait_for(queue, 1)
    assert lines(events) == ["x"]
    assert follower.stats.errors >= 3
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f"Source app: file {log_path} is missing",
        f"Source app recovered after {follower.stats.errors - 1} more failure(s) of: "
        f"file {log_path} is missing",
    ]


async def test_bad_lines_are_dead_lettered_and_reading_goes_on(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, b'{"v": 1}\nnot json\n[1, 2]\n\xff\xfe\n{"v": 2}\n')
    async with running(source(queue, log_path, format="json")) as follower:
        events = await wait_for(queue, 2)
        dead = await wait_for(queue, 3, DEADLETTER_STREAM)
    assert payloads(events) == [{"v": 1}, {"v": 2}]
    assert [(d.headers or {})["reason"] for d in dead] == [
        "invalid_json", "not_an_object", "invalid_utf8",
    ]  # fmt: skip
    assert [d.payload for d in dead] == [b"not json", b"[1, 2]", b"\xff\xfe"]
    assert {(d.headers or {})["source"] for d in dead} == {"app"}
    counters = {s.name: s.counters for s in await queue.stats()}["s"]
    assert counters["dead_lettered.invalid_json"] == 1
    assert counters["dead_lettered.invalid_utf8"] == 1
    assert follower.stats.dead_lettered == 3


async def test_csv_rows_with_the_wrong_column_count_are_dead_lettered(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, "a,b\n1,2\n1,2,3\n4,5\n")
    async with running(source(queue, log_path, format="csv")):
        events = await wait_for(queue, 2)
        dead = await wait_for(queue, 1, DEADLETTER_STREAM)
    assert payloads(events) == [{"a": 1, "b": 2}, {"a": 4, "b": 5}]
    assert (dead[0].headers or {})["detail"] == "3 value(s) for 2 column(s)"


async def test_lines_over_max_line_are_dead_lettered_with_a_sample(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, "short\n" + "x" * 5000 + "\nafter\n" + "y" * 40)
    async with running(source(queue, log_path, max_line=16)) as follower:
        await wait_for(queue, 2)
        dead = await wait_for(queue, 2, DEADLETTER_STREAM)
        append(log_path, "yyyy\nnext\n")  # the rest of the long line is dropped
        events = await wait_for(queue, 3)
    assert lines(events) == ["short", "after", "next"]
    assert [(d.headers or {})["reason"] for d in dead] == ["oversized", "oversized"]
    assert [len(d.payload) for d in dead] == [1024, 40]
    assert follower.stats.dead_lettered == 2


async def test_a_large_backlog_never_stalls_the_loop(queue: DurableQueue, log_path: Path) -> None:
    """40,000 JSON lines (3.4 MB) are read and decoded off the loop, in bounded chunks."""
    append(log_path, "".join(f'{{"n": {n}, "text": "{"z" * 60}"}}\n' for n in range(40_000)))
    delays: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            delays.append(time.monotonic() - before - 0.005)

    tick = asyncio.create_task(ticker())
    async with running(source(queue, log_path, format="json")):
        assert await queue.wait_for_data("s", 39_999, timeout=10)
        tick.cancel()
    assert max(delays) < 0.05, max(delays)
    events = await stored(queue)
    assert [p["n"] for p in payloads(events)] == list(range(40_000))


async def test_a_full_block_stream_holds_the_reader_back(tmp_path: Path, log_path: Path) -> None:
    """Backpressure: with `overflow: block` nothing more is read until consumers free room."""
    limits = {"s": StreamLimits(2000, 1e9, "block")}
    blocked = await DurableQueue.open(
        tmp_path / "blocked", limits, synchronous="normal", commit_interval=0.005
    )
    await blocked.register_consumers({"s": ["c"]})
    append(log_path, "".join(f"line {n}\n" for n in range(6000)))
    async with running(source(blocked, log_path)):
        assert await blocked.wait_for_data("s", 0, timeout=5)
        await asyncio.sleep(0.1)
        assert blocked.last_seq("s") == 5000  # one batch, then it waits for room
        await blocked.ack("s", "c", 5000)
        assert await blocked.wait_for_data("s", 5999, timeout=5)
    events = await stored(blocked)
    assert lines(events) == [f"line {n}" for n in range(5000, 6000)]
    await blocked.close()


# -- config ----------------------------------------------------------------------------


def load(text: str) -> FileSourceConfig:
    base = "name: app\nstream: s\npath: /var/log/app.log\n"
    return load_config(FileSourceConfig, base + dedent(text), "file.yaml", {})


def refused(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return str(caught.value).splitlines()


def test_config_defaults() -> None:
    config = load("")
    assert (config.format, config.start_at, config.poll_interval) == ("lines", "end", 0.25)
    assert (config.max_line, config.pattern, config.key_field) == (65536, None, None)
    assert load("max_line: 1KiB\npoll_interval: 50ms\n").max_line == 1024


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("format: regex\n", "pattern: is required with format: regex"),
        ("format: regex\npattern: '\\d+'\n", "pattern: needs at least one named group"),
        ("format: regex\npattern: '(?P<a>'\n", "pattern: is not a valid regular expression"),
        ("pattern: '(?P<a>.)'\n", "pattern: is only used with format: regex"),
        ("format: xml\n", "format: "),
    ],
)
def test_config_errors_name_the_key(text: str, message: str) -> None:
    assert any(message in line for line in refused(text)), refused(text)


def test_a_relative_path_is_refused() -> None:
    problems = FileSourceConfig(name="a", stream="s", path="app.log").check()
    assert [p.path for p in problems] == ["path"]
    assert load("").check() == []
