"""The file source: real files, a real queue, rotation, truncation and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import orjson
import pytest

from agent.config.file_source import FileSourceConfig
from agent.queue import DEADLETTER_STREAM, DurableQueue, StreamLimits, encode_payload
from agent.sources.decode import field_path
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
        "start_at": "beginning", "rotate_wait": 0.1, **settings,
    }  # fmt: skip
    return FileSource(FileSourceConfig(**options), queue)


def append(path: Path, data: str | bytes) -> None:
    with open(path, "ab") as file:
        file.write(data.encode() if isinstance(data, str) else data)


def rotate(path: Path) -> None:
    """What logrotate does by default: rename to `<name>.1` (the app reopens later)."""
    path.rename(path.with_name(path.name + ".1"))


def rename(path: Path, name: str) -> None:
    path.rename(path.with_name(name))


def rewrite_in_place(path: Path, data: bytes) -> None:
    """New content under the same inode, as after a delete that freed the inode for reuse."""
    with open(path, "r+b") as file:
        file.truncate(0)
        file.write(data)


def rotate_numbered(path: Path) -> None:
    """logrotate with `rotate N`: `.1` becomes `.2` (and so on), then the file becomes `.1`."""
    olds = sorted(path.parent.glob(path.name + ".[0-9]*"), key=lambda p: -int(p.suffix[1:]))
    for old in olds:
        old.rename(path.with_name(f"{path.name}.{int(old.suffix[1:]) + 1}"))
    rotate(path)


def compress(path: Path) -> None:
    """What logrotate's `compress` does: a .gz copy with the same modification time."""
    with open(path, "rb") as plain, gzip.open(f"{path}.gz", "wb") as packed:
        shutil.copyfileobj(plain, packed)
    shutil.copystat(path, f"{path}.gz")
    path.unlink()


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


async def committed_path(queue: DurableQueue) -> str | None:
    """The path stored with the source's committed position."""
    raw = (await queue.load_state(OWNER)).get("position")
    return None if raw is None else orjson.loads(raw).get("path")


async def counters(queue: DurableQueue, stream: str = "s") -> dict[str, int]:
    return dict({s.name: s.counters for s in await queue.stats()}[stream])


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


async def test_numbers_past_64_bits_stay_text_and_never_stop_the_source(
    queue: DurableQueue, log_path: Path
) -> None:
    huge = "9" * 400
    append(log_path, f"iccid,ts,max,low\n89440000000000000001234,{huge},18446744073709551615,"
                     f"-9223372036854775809\n1,2,3,-9223372036854775808\n")  # fmt: skip
    follower = source(queue, log_path, format="csv", key_field="iccid", time_field="ts")
    async with running(follower):
        events = await wait_for(queue, 2)
    assert payloads(events)[0] == {
        "iccid": "89440000000000000001234", "ts": huge,
        "max": 18446744073709551615, "low": "-9223372036854775809",
    }  # fmt: skip
    assert payloads(events)[1]["low"] == -(2**63)
    assert [e.key for e in events] == ["89440000000000000001234", "1"]
    assert events[0].event_time == events[0].ingest_time
    assert events[1].event_time == 2.0


async def test_regex_digits_past_64_bits_stay_text(queue: DurableQueue, log_path: Path) -> None:
    append(log_path, "id=123456789012345678901234567890 n=12\n")
    pattern = r"id=(?P<id>\d+) n=(?P<n>\d+)"
    async with running(source(queue, log_path, format="regex", pattern=pattern, key_field="id")):
        events = await wait_for(queue, 1)
    assert payloads(events) == [{"id": "123456789012345678901234567890", "n": 12}]
    assert events[0].key == "123456789012345678901234567890"


async def test_an_unexpected_decoding_failure_is_dead_lettered_and_reading_goes_on(
    queue: DurableQueue, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def encode(fields: Any) -> bytes:
        if fields.get("v") == "unencodable":
            raise TypeError("Integer exceeds 64-bit range")
        return encode_payload(fields)

    def path(value: dict[str, Any], dotted: str) -> Any:
        if value.get("v") == "crash":
            raise RuntimeError("surprise")
        return field_path(value, dotted)

    monkeypatch.setattr("agent.sources.file.encode_payload", encode)
    monkeypatch.setattr("agent.sources.file.field_path", path)
    append(log_path, '{"v": "unencodable"}\n{"v": "crash"}\n{"v": 1}\n')
    async with running(source(queue, log_path, format="json", key_field="v")) as follower:
        events = await wait_for(queue, 1)
        dead = await wait_for(queue, 2, DEADLETTER_STREAM)
    assert payloads(events) == [{"v": 1}]
    headers = [d.headers or {} for d in dead]
    assert [h["reason"] for h in headers] == ["undecodable", "undecodable"]
    assert "Integer exceeds 64-bit range" in headers[0]["detail"]
    assert headers[1]["detail"] == "RuntimeError: surprise"
    assert (await counters(queue))["dead_lettered.undecodable"] == 2
    assert follower.stats.dead_lettered == 2


async def test_time_unit_scales_the_time_field(queue: DurableQueue, log_path: Path) -> None:
    append(log_path, '{"ts": 1700000000123}\n')
    async with running(source(queue, log_path, format="json", time_field="ts", time_unit="ms")):
        events = await wait_for(queue, 1)
    assert events[0].event_time == 1700000000.123


async def test_a_time_more_than_a_day_ahead_falls_back_to_the_read_time(
    queue: DurableQueue, log_path: Path
) -> None:
    ahead, soon = time.time() + 2 * 86400, time.time() + 3600
    append(log_path, f'{{"ts": {ahead}}}\n{{"ts": {soon}}}\n{{"ts": 1e300}}\n')
    async with running(source(queue, log_path, format="json", time_field="ts")):
        events = await wait_for(queue, 3)
    assert events[0].event_time == events[0].ingest_time
    assert events[0].headers == {"time_in_future": repr(ahead)}
    assert (events[1].event_time, events[1].headers) == (soon, None)
    assert events[2].headers == {"time_in_future": "1e+300"}
    assert (await counters(queue))["time_in_future"] == 2


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


async def test_writes_to_the_old_file_until_it_is_quiet_for_rotate_wait_are_kept(
    queue: DurableQueue, log_path: Path
) -> None:
    """The app writes to its old descriptor a while after the rename, mid-line too."""
    async with running(source(queue, log_path, rotate_wait=1.0)) as follower:
        with open(log_path, "ab") as writer:  # noqa: ASYNC230 - the logging app's descriptor
            writer.write(b"a\npar")
            writer.flush()
            await wait_for(queue, 1)
            rotate(log_path)
            append(log_path, "new\n")
            await asyncio.sleep(0.3)  # 30 polls: the old file is still being drained
            writer.write(b"tial\nlate\n")
        events = await wait_for(queue, 4)
    assert lines(events) == ["a", "partial", "late", "new"]
    assert (follower.stats.rotations, follower.stats.gaps) == (1, 0)


async def test_files_rotated_twice_between_two_reads_are_all_read_in_order(
    queue: DurableQueue, log_path: Path
) -> None:
    async with running(source(queue, log_path, rotate_wait=0.2)) as follower:
        append(log_path, "a 1\n")
        await wait_for(queue, 1)
        append(log_path, "a 2\n")
        rotate_numbered(log_path)  # A is app.log.1
        append(log_path, "b 1\nb 2\n")
        rotate_numbered(log_path)  # A is app.log.2, B app.log.1
        append(log_path, "c 1\n")
        events = await wait_for(queue, 5)
    assert lines(events) == ["a 1", "a 2", "b 1", "b 2", "c 1"]
    assert (follower.stats.rotations, follower.stats.gaps) == (2, 0)


async def test_a_compressed_file_between_two_rotations_is_a_counted_gap(
    queue: DurableQueue, log_path: Path
) -> None:
    async with running(source(queue, log_path, rotate_wait=0.2)) as follower:
        append(log_path, "a 1\n")
        await wait_for(queue, 1)
        rotate_numbered(log_path)
        append(log_path, "b lost\n")
        rotate_numbered(log_path)
        compress(log_path.with_name("app.log.1"))
        append(log_path, "c 1\n")
        events = await wait_for(queue, 2)
    assert lines(events) == ["a 1", "c 1"]
    assert follower.stats.gaps == 1
    assert (await counters(queue))["file_gaps"] == 1


async def test_dated_rotations_are_read_oldest_first_and_old_ones_skipped(
    queue: DurableQueue, log_path: Path
) -> None:
    dated = log_path.with_name("app.log-20261126")
    append(dated, "read long ago\n")
    os.utime(dated, (1, 1))
    async with running(source(queue, log_path, rotate_wait=0.2)):
        append(log_path, "a\n")
        await wait_for(queue, 1)
        rename(log_path, "app.log-20261127")
        append(log_path, "b\n")
        rename(log_path, "app.log-20261128")
        append(log_path, "c\n")
        events = await wait_for(queue, 3)
    assert lines(events) == ["a", "b", "c"]


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


async def test_a_restart_reads_every_file_rotated_while_stopped(
    queue: DurableQueue, log_path: Path
) -> None:
    append(log_path, "a 1\n")
    async with running(source(queue, log_path)):
        await wait_for(queue, 1)
    append(log_path, "a 2\n")
    rotate_numbered(log_path)
    append(log_path, "b 1\n")
    rotate_numbered(log_path)
    append(log_path, "c 1\n")
    async with running(source(queue, log_path)) as follower:
        events = await wait_for(queue, 4)
    assert lines(events) == ["a 1", "a 2", "b 1", "c 1"]
    assert (follower.stats.rotations, follower.stats.gaps) == (2, 0)


async def test_a_file_rewritten_under_the_same_inode_is_read_from_its_start(
    queue: DurableQueue, log_path: Path
) -> None:
    """Same (device, inode), other first bytes: a reused inode, not the file last read."""
    append(log_path, "old 1\nold 2\n")
    async with running(source(queue, log_path)):
        await wait_for(queue, 2)
    rewrite_in_place(log_path, b"new 1 is longer\nnew 2\n")
    async with running(source(queue, log_path)) as follower:
        events = await wait_for(queue, 4)
    assert lines(events) == ["old 1", "old 2", "new 1 is longer", "new 2"]
    assert follower.stats.gaps == 1


async def test_a_changed_path_starts_afresh_without_reading_the_old_file(
    queue: DurableQueue, log_path: Path
) -> None:
    other = log_path.with_name("other.log")
    append(log_path, "a\n")
    async with running(source(queue, log_path)):
        await wait_for(queue, 1)
    append(log_path, "unread rest of the old path\n")
    append(other, "backlog\n")
    async with running(source(queue, other, start_at="end")) as follower:
        deadline = time.monotonic() + 5
        while await committed_path(queue) != str(other):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        append(other, "new\n")
        events = await wait_for(queue, 2)
    assert lines(events) == ["a", "new"]
    assert follower.stats.gaps == 0


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


async def test_a_large_backlog_never_stalls_the_loop(
    queue: DurableQueue, log_path: Path, request: pytest.FixtureRequest
) -> None:
    """40,000 JSON lines (3.4 MB) are read and decoded off the loop, in bounded chunks.

    The test process's heap is frozen first: a full garbage collection of everything
    pytest has loaded takes ~40 ms on a busy machine, a pause of the interpreter that
    says nothing about where the source reads.
    """
    gc.freeze()
    request.addfinalizer(gc.unfreeze)
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
    assert (config.rotate_wait, config.time_unit) == (5.0, "s")
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
        ("time_unit: h\n", "time_unit: "),
        ("rotate_wait: -1s\n", "rotate_wait: "),
    ],
)
def test_config_errors_name_the_key(text: str, message: str) -> None:
    assert any(message in line for line in refused(text)), refused(text)


def test_a_relative_path_is_refused() -> None:
    problems = FileSourceConfig(name="a", stream="s", path="app.log").check()
    assert [p.path for p in problems] == ["path"]
    assert load("").check() == []
