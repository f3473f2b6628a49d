"""The queue's single writer thread and its group commit.

Why one thread: SQLite allows one writer at a time, and a Pi's SD card wears with
every fsync. All writes are jobs on one thread; jobs that arrive within
`commit_interval` of the previous commit (or until `commit_max_events` events) share
one transaction, so the card sees at most 1/commit_interval fsyncs a second however
fast events arrive, while a lone event on a quiet queue commits at once.

Protocol of one group commit (`_commit_group`):
  1. BEGIN IMMEDIATE.
  2. For each job: SAVEPOINT, run it against a `WriteTx`, RELEASE; a job that raises is
     rolled back to its savepoint alone and its in-memory counters restored.
  3. Housekeeping when due: delete what all consumers acknowledged, enforce
     `max_bytes` and `max_age` (drops become gaps and counters in the same transaction).
  4. Save the touched streams' counters, COMMIT.
  5. Only now resolve each job's future (an MQTT ack waits on this) and publish the new
     last sequence numbers to waiting consumers.
  If COMMIT (or BEGIN) fails -- disk full, I/O error -- everything is rolled back, the
  counters are reloaded from the database and every job of the group fails: nothing was
  acknowledged, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.queue import retention
from agent.queue.errors import CommitFailedError, QueueClosedError
from agent.queue.streams import StreamState, reload_counters, save_counters
from agent.queue.transaction import WriteTx

log = logging.getLogger(__name__)

CommitListener = Callable[[dict[str, int], dict[str, int]], None]


@dataclass(slots=True)
class Job:
    """One unit of work for the writer: `fn(tx)` runs in the group transaction."""

    fn: Callable[[WriteTx], Any]
    weight: int
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None
    touched: dict[str, int] = field(default_factory=dict)


_STOP = object()


class GroupCommitWriter:
    """Owns the write connection; runs jobs in group transactions on its own thread."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        streams: dict[str, StreamState],
        loop: asyncio.AbstractEventLoop,
        *,
        commit_interval: float,
        commit_max_events: int,
        housekeeping_interval: float = 1.0,
        on_commit: CommitListener | None = None,
    ) -> None:
        self._conn = conn
        self._streams = streams
        self._loop = loop
        self._interval = commit_interval
        self._max_events = commit_max_events
        self._housekeeping_interval = housekeeping_interval
        self._on_commit = on_commit
        self._jobs: queue.SimpleQueue[Job | object] = queue.SimpleQueue()
        self._last_commit = 0.0
        self._next_housekeeping = 0.0
        self._closed = False
        self.commits = 0
        self._thread = threading.Thread(target=self._run, name="edgestream[queue].writer")

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def submit(self, fn: Callable[[WriteTx], Any], weight: int = 1) -> asyncio.Future[Any]:
        """Queue a job; the returned future resolves after the commit that holds it."""
        if self._closed:
            raise QueueClosedError("queue is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put(Job(fn, weight, future))
        return future

    def request_housekeeping(self) -> None:
        """Make the next group commit run housekeeping (after cursors moved, say)."""
        self._next_housekeeping = 0.0

    def close(self) -> None:
        """Commit what is queued, stop the thread and close the connection (blocking)."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is _STOP:
                break
            assert isinstance(first, Job)
            group, stopping = self._collect(first)
            self._commit_group(group)
        self._shutdown()

    def _collect(self, first: Job) -> tuple[list[Job], bool]:
        """Gather jobs until the commit is due or the group is full."""
        group, weight = [first], first.weight
        deadline = max(self._last_commit + self._interval, time.monotonic())
        while weight < self._max_events:
            remaining = deadline - time.monotonic()
            try:
                job = self._jobs.get(timeout=remaining) if remaining > 0 else self._jobs.get(False)
            except queue.Empty:
                break
            if job is _STOP:
                return group, True
            assert isinstance(job, Job)
            group.append(job)
            weight += job.weight
        return group, False

    def _commit_group(self, group: list[Job]) -> None:
        touched: dict[str, StreamState] = {}
        try:
            self._conn.execute("BEGIN IMMEDIATE")  # Step 1
            for job in group:  # Step 2
                self._run_job(job, touched)
            self._housekeeping_if_due(touched)  # Step 3
            save_counters(self._conn, list(touched.values()))  # Step 4
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._fail_group(group, exc)
            return
        self._last_commit = time.monotonic()
        self.commits += 1
        self._resolve(group, touched)  # Step 5

    def _run_job(self, job: Job, touched: dict[str, StreamState]) -> None:
        """Run one job in a savepoint; its own failure rolls back only its writes.

        A database error (disk full, I/O error) is not the job's fault and may already
        have rolled back the whole transaction, so it fails the whole group instead.
        """
        tx = WriteTx(self._conn, self._streams)
        self._conn.execute("SAVEPOINT job")
        try:
            job.result = job.fn(tx)
        except sqlite3.Error:
            self._undo(tx)
            raise
        except Exception as exc:  # the job's own failure goes to its caller alone
            self._conn.execute("ROLLBACK TO job")
            self._undo(tx)
            job.error = exc
        self._conn.execute("RELEASE job")
        if job.error is None:
            job.touched = tx.touched
            for name in tx.undo:
                touched[name] = self._streams[name]

    def _undo(self, tx: WriteTx) -> None:
        for name, (next_seq, size) in tx.undo.items():
            if name in self._streams:
                state = self._streams[name]
                state.next_seq, state.bytes = next_seq, size
        for name, limits in tx.defined.items():
            if limits is None:
                self._streams.pop(name, None)
            else:
                self._streams[name].limits = limits

    def _housekeeping_if_due(self, touched: dict[str, StreamState]) -> None:
        now = time.monotonic()
        over_limit = [s for s in touched.values() if s.bytes > s.limits.max_bytes]
        if now < self._next_housekeeping and not over_limit:
            return
        self._next_housekeeping = now + self._housekeeping_interval
        tx = WriteTx(self._conn, self._streams)
        for state in self._streams.values():
            retention.delete_consumed(tx, self._conn, state)
            retention.enforce_max_bytes(tx, self._conn, state)
            retention.enforce_max_age(tx, self._conn, state)
        for name in tx.undo:
            touched[name] = self._streams[name]

    def _fail_group(self, group: list[Job], exc: sqlite3.Error) -> None:
        log.error("Queue commit failed, %d jobs rolled back: %s", len(group), exc)
        with contextlib.suppress(sqlite3.Error):  # BEGIN itself may have failed
            self._conn.execute("ROLLBACK")
        reload_counters(self._conn, self._streams)
        error = CommitFailedError(f"queue commit failed: {exc}")
        for job in group:
            job.error = error
        self._resolve(group, {})

    def _resolve(self, group: list[Job], touched: dict[str, StreamState]) -> None:
        last_seqs = {name: s.next_seq - 1 for name, s in touched.items()}
        sizes = {name: s.bytes for name, s in touched.items()}
        self._loop.call_soon_threadsafe(self._deliver, group, last_seqs, sizes)

    def _deliver(self, group: list[Job], last_seqs: dict[str, int], sizes: dict[str, int]) -> None:
        """On the loop: settle the futures, then tell consumers about new data."""
        for job in group:
            if job.future.done():
                continue
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                job.future.set_result(job.result)
        if self._on_commit is not None and last_seqs:
            self._on_commit(last_seqs, sizes)

    def _shutdown(self) -> None:
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("Final checkpoint of the queue failed: %s", exc)
        self._conn.close()
