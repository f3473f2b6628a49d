"""A corrupt queue database is moved aside at start, with its WAL, and never deleted."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from agent.queue import DATABASE_NAME, DurableQueue, NewEvent, QueueError, StreamLimits
from agent.queue.integrity import corruption

LIMITS = {"s": StreamLimits(1 << 30, 1e9)}


async def filled(data_dir: Path, count: int = 2000) -> None:
    queue = await DurableQueue.open(data_dir, LIMITS)
    now = time.time()
    await queue.append("s", [NewEvent(now, now, "k", "t", b'{"v": %d}' % i) for i in range(count)])
    await queue.close()


def scribble(path: Path, offset: int, size: int = 4096) -> None:
    """Overwrite bytes in the middle of the file, as a failing card would."""
    with path.open("r+b") as db:
        db.seek(offset)
        db.write(os.urandom(size))


def test_a_sound_database_passes(tmp_path: Path) -> None:
    asyncio.run(filled(tmp_path))
    assert corruption(tmp_path / DATABASE_NAME) is None
    assert corruption(tmp_path / "absent.db") is None


def test_a_damaged_database_is_moved_aside_and_the_agent_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    asyncio.run(filled(tmp_path))
    path = tmp_path / DATABASE_NAME
    scribble(path, path.stat().st_size // 2)
    damaged = path.read_bytes()
    assert corruption(path) is not None

    async def reopen() -> tuple[Path | None, int]:
        queue = await DurableQueue.open(tmp_path, LIMITS)
        now = time.time()
        await queue.append("s", [NewEvent(now, now, None, None, b"{}")])
        result = (queue.set_aside, queue.last_seq("s"))
        await queue.close()
        return result

    with caplog.at_level(logging.ERROR):
        set_aside, last = asyncio.run(reopen())
    assert set_aside is not None and set_aside.read_bytes() == damaged  # kept, byte for byte
    assert last == 1  # a new, working queue
    assert "failed its integrity check" in caplog.text and str(set_aside) in caplog.text


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_NAME
    garbage = os.urandom(8192)
    path.write_bytes(garbage)

    async def reopen() -> Path | None:
        queue = await DurableQueue.open(tmp_path, LIMITS)
        await queue.close()
        return queue.set_aside

    set_aside = asyncio.run(reopen())
    assert set_aside is not None and set_aside.read_bytes() == garbage
    assert path.exists() and corruption(path) is None  # the new, empty queue


def test_a_database_of_an_incompatible_release_is_not_moved(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_NAME
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '999'), ('epoch', 'e1')")
    with pytest.raises(QueueError, match="nothing was deleted"):
        asyncio.run(DurableQueue.open(tmp_path, LIMITS))
    assert path.exists() and not list(tmp_path.glob("*corrupt*"))
