"""Disk full and a corrupt database: clear errors, nothing half-written, nothing deleted."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.queue import CommitFailedError, DurableQueue, NewEvent, QueueError, StreamLimits, WriteTx

LIMITS = {"s": StreamLimits(max_bytes=1 << 30, max_age=86400.0)}


def events(n: int, size: int = 2000) -> list[NewEvent]:
    now = time.time()
    return [NewEvent(now, now, None, "t", b"x" * size) for _ in range(n)]


def limit_pages(pages: int):  # type: ignore[no-untyped-def]
    """A job that caps the database size, as a full disk would (SQLITE_FULL)."""

    def job(tx: WriteTx) -> None:
        tx._conn.execute(f"PRAGMA max_page_count = {pages}")

    return job


async def test_disk_full_fails_the_commit_whole_and_recovers(tmp_path: Path) -> None:
    queue = await DurableQueue.open(tmp_path, LIMITS, commit_interval=0.01, synchronous="normal")
    assert await queue.append("s", events(5)) == [1, 2, 3, 4, 5]
    await queue.transact(limit_pages(1))  # below the current size: no page can be added
    with pytest.raises(CommitFailedError, match="queue commit failed: database or disk is full"):
        await queue.append("s", events(200))
    await queue.transact(limit_pages(1_000_000))  # space came back
    assert await queue.append("s", events(2)) == [6, 7]  # no hole, no half-written batch
    batch = await queue.read_batch("s", "c", 1000, 1 << 30)
    assert [e.seq for e in batch.events] == [1, 2, 3, 4, 5, 6, 7]
    assert not batch.gaps
    await queue.close()


async def test_a_corrupt_database_is_refused_clearly_and_kept(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    db.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(QueueError, match=r"cannot open the queue database .*move the file aside"):
        await DurableQueue.open(tmp_path, LIMITS)
    assert db.read_bytes().startswith(b"this is not")


def test_agent_refuses_to_start_on_a_corrupt_database(tmp_path: Path) -> None:
    (tmp_path / "queue.db").write_bytes(b"garbage" * 1000)
    config = tmp_path / "agent.yaml"
    config.write_text(f"device_id: pi\ndata_dir: {tmp_path}\nstreams: {{s: {{}}}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "run", "-c", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Cannot start: cannot open the queue database" in result.stderr
    assert "Traceback" not in result.stderr
