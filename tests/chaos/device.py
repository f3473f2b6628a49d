"""The device's own troubles: a clock that jumps, and a disk that fills up.

DeviceClock: the agent runs under libfaketime (Debian package `faketime`) with
FAKETIME_TIMESTAMP_FILE re-read every second (FAKETIME_CACHE_DURATION=1; re-reading it
at every call, FAKETIME_NO_CACHE, costs about 8 us per time.time() here, 13 times the
cached cost), so writing "+7200" into that file steps the agent's wall clock two hours
forward within a second, as an NTP sync does on a Pi that booted without an RTC. Only
the wall clock moves: FAKETIME_DONT_FAKE_MONOTONIC keeps CLOCK_MONOTONIC true (without
it, Event.wait hangs), and FAKETIME_FORCE_MONOTONIC_FIX keeps lock and condition
timeouts working. Python's time.sleep still fails with EINVAL under libfaketime 0.9.10
(its absolute-time clock_nanosleep); the agent never calls it (it waits on asyncio and
threading timers).

SmallDisk: the agent's data_dir is a size-limited tmpfs (needs root and a kernel that
lets us mount); a "disk full" fault fills it with a ballast file until ENOSPC and
removes the ballast when the fault ends.

corrupt_queue: with the agent killed, one page of its queue database is overwritten
with garbage, as a failing SD card does; the agent's start-up check must set the file
aside (agent/queue/integrity.py) and start a new epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import random
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

FAKETIME_LIB = next(
    iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))),
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
)
"""Debian's libfaketime, under its multiarch folder (x86_64, aarch64, arm)."""


class DeviceClock:
    """The offset file libfaketime reads; `env` makes a process follow it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.set(0)

    @staticmethod
    def available() -> bool:
        return FAKETIME_LIB.exists()

    @property
    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(FAKETIME_LIB),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_FORCE_MONOTONIC_FIX": "1",
        }

    def set(self, offset: int) -> None:
        """Step the device's wall clock to true time + `offset` seconds (atomic rename)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{offset:+d}\n")
        tmp.replace(self.path)
        self.offset = offset


class SmallDisk:
    """A tmpfs of `size_mib` mounted on `path`, and a ballast file that fills it."""

    def __init__(self, path: Path, size_mib: int) -> None:
        self.path = path
        self.size_mib = size_mib
        self.mounted = False
        self.ballast = path / "ballast.fill"

    def mount(self) -> bool:
        """Mount the tmpfs; False (and nothing mounted) when this machine does not allow it."""
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m", "tmpfs", str(self.path)],
            capture_output=True,
            check=False,
        )
        self.mounted = done.returncode == 0
        return self.mounted

    def fill(self) -> int:
        """Write the ballast until the filesystem is full; the bytes written."""
        written = 0
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 4096, 512):
                block = b"\0" * chunk
                while True:
                    try:
                        written += os.write(fd, block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def unmount(self) -> None:
        if self.mounted:
            with contextlib.suppress(OSError):
                self.free()
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)
            self.mounted = False


@dataclasses.dataclass(frozen=True)
class SetAside:
    """What a queue file held when the scenario corrupted it (read before the damage).

    The agent moves a corrupt queue aside at start and begins a new epoch; the events
    of the old epoch that never reached the hub stay in that file, not lost silently.
    """

    epoch: str
    committed: dict[str, int]
    """Per stream, the highest seq the old queue ever committed."""
    stored: dict[str, frozenset[int]]
    """Per stream, the seqs still in the old file (unsent, or kept by retention)."""
    readings: dict[int, bytes]
    """seq -> payload of every `sensors` event still in the old file."""
    page: int


def corrupt_queue(db: Path) -> SetAside:
    """Snapshot the (stopped) agent's queue, then overwrite the root page of its events.

    The WAL is checkpointed first, so the damaged page is the one SQLite will read;
    garbage in a b-tree page header fails `PRAGMA quick_check`, which is what the
    agent's start-up integrity check runs.
    """
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ((epoch,),) = conn.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchall()
        streams = dict(conn.execute("SELECT name, id FROM streams").fetchall())
        committed = dict(conn.execute("SELECT name, next_seq - 1 FROM streams").fetchall())
        stored = {
            name: frozenset(s for (s,) in conn.execute(
                "SELECT seq FROM events WHERE stream_id = ?", (sid,)))
            for name, sid in streams.items()
        }  # fmt: skip
        readings = dict(
            conn.execute(
                "SELECT seq, payload FROM events WHERE stream_id = ?", (streams["sensors"],)
            ).fetchall()
        )
        ((page_size,),) = conn.execute("PRAGMA page_size").fetchall()
        ((root,),) = conn.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'events'"
        ).fetchall()
    with db.open("r+b") as out:
        out.seek((root - 1) * page_size)
        out.write(random.Random(root).randbytes(page_size))
        out.flush()
        os.fsync(out.fileno())
    return SetAside(epoch, committed, stored, readings, root)
