"""What a power cut can leave of a SQLite database in WAL mode, built from snapshots.

Why not `cp` while the writer runs: a copy taken that way reads the database file and
the WAL at different instants, and can read half of one write(); no power cut does
that. A power cut leaves every byte whose fsync returned, plus ANY subset of the later
writes (the page cache and the drive flush in their own order, sector by sector).

How we get such states, honestly:

1. The landed state. The writer is frozen with SIGSTOP (every thread, checked in
   /proc), its acknowledgement log is read, then the database and WAL are copied and
   the writer resumes. A frozen process has no write() in progress, so the copy is the
   page cache: exactly the disk after a power cut that came when every write so far
   had reached the platter. Every acknowledgement in the log predates the copy.

2. The durable floor. SQLite's ordering rules tell which part of the WAL the disk is
   guaranteed to hold (https://sqlite.org/wal.html, https://sqlite.org/atomiccommit.html):
   - A checkpoint first fsyncs the WAL, then records `nBackfillAttempted` in the
     wal-index (the -shm file), then copies frames 1..nBackfillAttempted into the
     database file, fsyncs it, and only then sets `nBackfill`. The WAL is restarted
     (new salts, frames overwritten from the start) only after a complete,
     synced checkpoint. So frames up to nBackfillAttempted are always durable, and
     the database file never holds a page from a frame beyond it.
   - synchronous=FULL fsyncs the WAL at every commit, before COMMIT returns: every
     acknowledged transaction is durable too. NORMAL syncs only at checkpoints: an
     acknowledged transaction after the last checkpoint may be lost (never torn).
   The floor D is the first commit frame at or past nBackfillAttempted that holds
   every acknowledged transaction (FULL) or nBackfillAttempted itself (NORMAL). Any
   frame after D may be absent at a power cut, and none of them can have reached the
   database file, so dropping or damaging them is a state a power cut can leave.

3. The variants of each snapshot, all at or above that floor:
   landed     -- the copy as is.
   durable    -- the WAL cut at D: every write after the floor lost.
   torn       -- the WAL cut at a random point after D: a frame boundary or mid-frame.
   scrambled  -- after D, each 512-byte sector independently kept, zeroed or filled
                 with garbage: later writes landed while earlier ones did not.
   checkpoint -- only when the snapshot froze a checkpoint half-way (nBackfill <
                 nBackfillAttempted): every database page that checkpoint copies
                 (frames nBackfill+1..nBackfillAttempted) filled with garbage, with the
                 WAL cut at D. Powersafe overwrite (https://sqlite.org/psow.html) lets a
                 page being written hold old, new or random bytes; pages the checkpoint
                 had not reached yet are garbled too, which is harsher than a real cut.
   SQLite's salted, cumulative frame checksums must make recovery stop at the last
   intact commit, so every variant opens as a prefix of the committed transactions.

A WAL restarted in the wal-index whose new header is not yet in the file (salts
differ) is all one older generation, fully checkpointed and synced: its floor is its
last commit frame.

The -shm file is never copied: after a power cut the first connection rebuilds it
from the WAL, and it is read here only to learn nBackfill and nBackfillAttempted.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

WAL_HEADER = 32
FRAME_HEADER = 24
SECTOR = 512
VARIANTS = ("landed", "durable", "torn", "scrambled", "checkpoint")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The database and WAL bytes of a frozen writer, and what it had acknowledged."""

    number: int
    db: bytes
    wal: bytes
    shm: bytes
    acked: list[str]


@dataclass(frozen=True, slots=True)
class WalLayout:
    """What the WAL copy and the wal-index say about durability."""

    page_size: int
    commit_frames: list[int]
    """Frame numbers (1-based) of the commit frames of the current WAL generation."""
    backfill: int
    backfill_attempted: int

    @property
    def frame_size(self) -> int:
        """Bytes of one frame: its header and one page."""
        return FRAME_HEADER + self.page_size

    def offset(self, frames: int) -> int:
        """File offset of the end of frame `frames`."""
        return WAL_HEADER + frames * self.frame_size


def _states(pid: int) -> set[str]:
    """The scheduler state letter of every thread of `pid` (Z once it has exited)."""
    states = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            stat = (task / "stat").read_text()
            states.add(stat[stat.rindex(")") + 2])
    except FileNotFoundError:  # a thread (or the process) ended while we looked
        return {"Z"}
    return states


def freeze_and_copy(pid: int, db: Path, ack_log: Path, number: int) -> Snapshot | None:
    """SIGSTOP the writer, read its acks, copy db and WAL (and read -shm), SIGCONT.

    None when the writer exited meanwhile (its run was over: nothing to snapshot).
    """
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 10.0
        while not (states := _states(pid)) <= {"T", "t"}:
            if states & {"Z", "X"}:
                return None
            if time.monotonic() > deadline:
                raise TimeoutError(f"writer {pid} did not stop")
            time.sleep(0.0005)
        acked = ack_log.read_text(encoding="utf-8").splitlines()
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        return Snapshot(
            number,
            db.read_bytes() if db.exists() else b"",
            wal.read_bytes() if wal.exists() else b"",
            shm.read_bytes() if shm.exists() else b"",
            acked,
        )
    finally:
        os.kill(pid, signal.SIGCONT)


def layout(snap: Snapshot) -> WalLayout | None:
    """Parse the WAL header, its frames and the wal-index; None for an empty WAL."""
    if len(snap.wal) < WAL_HEADER:
        return None
    magic, _, page_size, _, salt1, salt2 = struct.unpack(">6I", snap.wal[:24])
    if magic not in (0x377F0682, 0x377F0683):
        return None
    frame_size = FRAME_HEADER + page_size
    commits: list[int] = []
    frame, offset = 1, WAL_HEADER
    while offset + frame_size <= len(snap.wal):
        _, size_after, s1, s2 = struct.unpack(">4I", snap.wal[offset : offset + 16])
        if (s1, s2) != (salt1, salt2):
            break  # the rest is an older generation of the WAL
        if size_after:
            commits.append(frame)
        frame, offset = frame + 1, offset + frame_size
    # The wal-index keeps the salts as the WAL header's raw (big-endian) bytes, and
    # its counters in native order (little-endian here).
    if len(snap.shm) < 136 or struct.unpack(">2I", snap.shm[32:40]) != (salt1, salt2):
        # The wal-index already has the salts of a restarted WAL whose header is not yet
        # written: every frame in the file is an older, complete, synced generation.
        last = commits[-1] if commits else 0
        return WalLayout(page_size, commits, last, last)
    (backfill,) = struct.unpack("<I", snap.shm[96:100])
    (attempted,) = struct.unpack("<I", snap.shm[128:132])
    return WalLayout(page_size, commits, backfill, attempted)


def checkpoint_running(shm: Path) -> bool:
    """Whether the wal-index shows a checkpoint between its WAL sync and its db sync."""
    try:
        with open(shm, "rb") as file:
            head = file.read(136)
    except FileNotFoundError:
        return False
    if len(head) < 136:
        return False
    (backfill,) = struct.unpack("<I", head[96:100])
    (attempted,) = struct.unpack("<I", head[128:132])
    return bool(backfill < attempted)


Progress = Callable[[Path], int]
"""How far a database copy got (last sequence number, commit group...), read with a
plain sqlite3 connection from a scratch copy."""


def durable_frames(
    snap: Snapshot, wal: WalLayout, sync: str, target: int, progress: Progress, scratch: Path
) -> int:
    """The floor D in frames (see the module docstring)."""
    floor = wal.backfill_attempted
    if sync != "full":
        return floor
    candidates = [floor] + [c for c in wal.commit_frames if c > floor]
    low, high = 0, len(candidates) - 1
    if _progress_at(snap, wal, candidates[high], progress, scratch) < target:
        return candidates[high]  # the acknowledged data is missing: the landed check fails
    while low < high:
        middle = (low + high) // 2
        if _progress_at(snap, wal, candidates[middle], progress, scratch) >= target:
            high = middle
        else:
            low = middle + 1
    return candidates[low]


def _progress_at(
    snap: Snapshot, wal: WalLayout, frames: int, progress: Progress, scratch: Path
) -> int:
    db = write_copy(scratch / "probe", snap.db, snap.wal[: wal.offset(frames)])
    try:
        return progress(db)
    finally:
        shutil.rmtree(db.parent)


def write_copy(directory: Path, db: bytes, wal: bytes, name: str = "queue.db") -> Path:
    """Materialise one power-cut state as files; returns the database path."""
    directory.mkdir(parents=True)
    path = directory / name
    path.write_bytes(db)
    if wal:
        Path(f"{path}-wal").write_bytes(wal)
    return path


def variants(
    snap: Snapshot, wal: WalLayout | None, floor: int, rnd: random.Random
) -> Iterator[tuple[str, bytes, bytes]]:
    """(name, db bytes, wal bytes) of every variant this snapshot allows."""
    yield "landed", snap.db, snap.wal
    if wal is None:
        return
    cut = wal.offset(floor)
    yield "durable", snap.db, snap.wal[:cut]
    if len(snap.wal) > cut:
        yield "torn", snap.db, snap.wal[: _torn_offset(wal, cut, len(snap.wal), rnd)]
        yield "scrambled", snap.db, _scramble(snap.wal, cut, rnd)
    if wal.backfill < wal.backfill_attempted:
        yield "checkpoint", _garble_checkpoint(snap, wal, rnd), snap.wal[:cut]


def _torn_offset(wal: WalLayout, cut: int, end: int, rnd: random.Random) -> int:
    """A frame boundary or a point inside a frame, after the floor."""
    frames = (end - cut) // wal.frame_size
    if frames and rnd.random() < 0.5:
        return cut + rnd.randint(1, frames) * wal.frame_size
    return rnd.randint(cut + 1, end)


def _scramble(data: bytes, start: int, rnd: random.Random) -> bytes:
    out = bytearray(data)
    for sector in range(start, len(out), SECTOR):
        roll = rnd.random()
        end = min(sector + SECTOR, len(out))
        if roll < 0.25:
            out[sector:end] = bytes(end - sector)
        elif roll < 0.5:
            out[sector:end] = rnd.randbytes(end - sector)
    return bytes(out)


def _garble_checkpoint(snap: Snapshot, wal: WalLayout, rnd: random.Random) -> bytes:
    """The database with every page the frozen checkpoint may have been writing torn."""
    out = bytearray(snap.db)
    for frame in range(wal.backfill + 1, wal.backfill_attempted + 1):
        offset = wal.offset(frame - 1)
        (page,) = struct.unpack(">I", snap.wal[offset : offset + 4])
        start = (page - 1) * wal.page_size
        if start < len(out):
            out[start : start + wal.page_size] = rnd.randbytes(wal.page_size)
    return bytes(out)
