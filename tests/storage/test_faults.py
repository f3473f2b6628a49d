"""Disk full and a corrupt database: clear errors, nothing half-written, nothing deleted."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.queue import CommitFailedError, DurableQueue, NewEvent, StreamLimits, WriteTx

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


def test_the_agent_sets_a_corrupt_database_aside_and_starts(tmp_path: Path) -> None:
    garbage = b"garbage" * 1000
    (tmp_path / "queue.db").write_bytes(garbage)
    config = tmp_path / "agent.yaml"
    config.write_text(f"device_id: pi\ndata_dir: {tmp_path}\nstreams: {{s: {{}}}}\n")
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli.main", "run", "-c", str(config)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob("queue.db.corrupt-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert agent.poll() is None, "the agent should run on a fresh queue"
    finally:
        agent.terminate()
        _, stderr = agent.communicate(timeout=30)
    (aside,) = [
        p for p in tmp_path.glob("queue.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))
    ]
    assert aside.read_bytes() == garbage  # kept as it was
    assert "failed its integrity check" in stderr and "Traceback" not in stderr
    assert agent.returncode == 0
