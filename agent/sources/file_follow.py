"""Follow one file path like `tail -F`: the bytes of its complete lines, never twice.

The read position names the file by identity (device, inode), not by path, so a
rename rotation is seen as "the path now names another file"; a fingerprint of the
file's first bytes tells a reused inode from the file last read. The protocol of one
`Follower.step()`:

1. No file open: open the file the position names. When the path names another
   file, look for the old one among its siblings (`app.log.1`) and finish it first;
   when it is nowhere (or its first bytes differ), the unread rest of it is lost: a
   counted, logged gap, and the path's file is read from 0.
2. Read one bounded chunk after the offset and take its complete lines (a partial
   last line stays unread, the offset before it, until its newline arrives).
3. Nothing complete: the reader is at the end of this file. If the path now names
   another file, keep reading this one until it has not grown for `rotate_wait` (its
   writer appends to it until it reopens its log), then take its unterminated rest
   as its last line and switch, at 0, to the oldest unread rotated sibling (after
   more than one rotation since the last read), else to the path's file. Rotated
   files in between that are gone or compressed are counted, logged gaps. If the
   file shrank below the offset (copytruncate), start again from 0.

The caller commits the events of a step together with `Step.position`, so a restart
resumes exactly after the last line stored. The follower does blocking I/O and runs
on a worker thread (see `agent/sources/file.py`); one step is bounded in bytes and
lines. The stored position and its fingerprint are `agent/sources/file_position.py`,
the search for rotated siblings is `agent/sources/file_rotation.py`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, NamedTuple

from agent.sources.file_position import (
    FINGERPRINT_BYTES,
    Identity,
    Position,
    fingerprint,
    same_start,
)
from agent.sources.file_rotation import (
    MAX_SIBLINGS,
    oldest_unread,
    rotated_siblings,
    skipped_between,
)
from agent.sources.polling import ConditionLog

log = logging.getLogger(__name__)

CHUNK_BYTES: Final = 1024 * 1024
CHUNK_LINES: Final = 5000
SAMPLE_BYTES: Final = 1024


class LongLine(NamedTuple):
    """A line longer than `max_line`: its first bytes and how many bytes were seen."""

    sample: bytes
    size: int


Line = bytes | LongLine


@dataclass(slots=True)
class FileStats:
    """Counters of one file source since start; the follower counts what befell the file."""

    lines: int = 0
    stored: int = 0
    dead_lettered: int = 0
    rotations: int = 0
    truncations: int = 0
    gaps: int = 0
    errors: int = 0


@dataclass(slots=True)
class Step:
    """The lines one step took, the csv header they belong to, and the position after."""

    lines: list[Line]
    header: str | None
    position: Position | None
    more: bool
    gaps: int = 0


class Follower:
    """The open file and the (not yet committed) position of one followed path."""

    def __init__(
        self,
        path: str,
        *,
        start_at_end: bool,
        max_line: int,
        csv_header: bool,
        conditions: ConditionLog,
        stats: FileStats,
        rotate_wait: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.max_line = max_line
        self.chunk_bytes = max(CHUNK_BYTES, max_line + 1)
        self.csv_header = csv_header
        self.conditions = conditions
        self.stats = stats
        self.rotate_wait = rotate_wait
        self.position: Position | None = None
        self._clock = clock
        self._start_at_end = start_at_end
        self._fd: int | None = None
        self._unchanged: tuple[int, float] | None = None  # (size, since) of a replaced file
        self._finished: deque[Identity] = deque(maxlen=MAX_SIBLINGS)

    def reset(self, position: Position | None) -> None:
        """Forget the open file and continue from `position` (the committed one)."""
        self.close()
        self.position = position
        self._unchanged = None

    def close(self) -> None:
        """Close the open file, if any."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def step(self) -> Step:
        """One bounded read (see the module docstring); raises OSError on read errors."""
        gaps = 0
        if self._fd is None:
            gaps = self._open()
            self._start_at_end = False
        position = self.position
        if self._fd is None or position is None:
            return self._idle()
        data = os.pread(self._fd, self.chunk_bytes, position.offset)
        result = self._take(data, position)
        result.gaps += gaps
        if result.position != position:
            return result
        result.more = False
        return self._at_end(data, result)

    def _idle(self) -> Step:
        return Step([], None, self.position, more=False)

    # -- 1. opening ------------------------------------------------------------------

    def _open(self) -> int:
        """Open the file the position names, else the path's file; returns gaps found."""
        position = self.position
        identity = self._stat_path()
        if position and identity != position.identity and self._open_rotated(position):
            return 0  # the old file, renamed: finish it first
        if identity is None or not self._open_file(self.path, identity):
            return 0
        assert self._fd is not None
        if position is None:
            self.position = self._fresh_position(self._fd, self._start_at_end)
            return 0
        if identity == position.identity and same_start(self._fd, position):
            return 0  # the same file (else a new one that got the old one's inode)
        self._lost(1, f"the file read up to byte {position.offset} is gone or was replaced")
        self.position = self._fresh_position(self._fd, from_end=False)
        return 1

    def _open_file(self, path: str, identity: Identity) -> bool:
        """Open `path` if it still is the file `identity` names (else: at the next poll)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != identity:
            os.close(fd)
            return False
        self._fd = fd
        self.conditions.cleared()
        return True

    def _stat_path(self) -> Identity | None:
        """The path's file identity, or None when it is missing (a logged condition)."""
        try:
            st = Path(self.path).stat()
        except FileNotFoundError:
            self.stats.errors += 1
            self.conditions.failed(f"file {self.path} is missing")
            return None
        return st.st_dev, st.st_ino

    def _open_rotated(self, position: Position) -> bool:
        """Open the renamed old file among the path's siblings, to finish reading it."""
        with os.scandir(Path(self.path).parent) as entries:
            for entry in entries:
                if entry.inode() != position.ino or entry.path == self.path:
                    continue
                if self._open_file(entry.path, position.identity):
                    assert self._fd is not None
                    if same_start(self._fd, position):
                        log.info(
                            "Source file %s: finishing rotated %s first", self.path, entry.path
                        )
                        return True
                    self.close()
        return False

    def _lost(self, count: int, why: str) -> None:
        """A counted, logged gap: lines that were never read and no longer can be."""
        self.stats.gaps += count
        log.warning("Source file %s: %s; their lines are lost (gap)", self.path, why)

    def _fresh_position(self, fd: int, from_end: bool) -> Position:
        """A file seen for the first time: from its start, or its end at first start."""
        st = os.fstat(fd)
        if not from_end:
            return self._fingerprinted(Position(st.st_dev, st.st_ino, 0, path=self.path))
        offset, skipping = self._end_of_last_line(fd, st.st_size)
        header = self._first_line(fd) if self.csv_header and offset > 0 else None
        fresh = Position(st.st_dev, st.st_ino, offset, header, skipping, self.path)
        return self._fingerprinted(fresh)

    def _fingerprinted(self, position: Position) -> Position:
        """The position with the fingerprint of the file's first (up to 256) bytes."""
        if position.fingerprint_size >= FINGERPRINT_BYTES or self._fd is None:
            return position
        head = os.pread(self._fd, FINGERPRINT_BYTES, 0)
        if len(head) == position.fingerprint_size:
            return position
        return replace(position, fingerprint=fingerprint(head), fingerprint_size=len(head))

    def _end_of_last_line(self, fd: int, size: int) -> tuple[int, bool]:
        """Offset after the last complete line, so a partial one is later read whole."""
        span = min(size, self.max_line + 1)
        tail = os.pread(fd, span, size - span)
        newline = tail.rfind(b"\n")
        if newline >= 0:
            return size - span + newline + 1, False
        return (0, False) if span == size else (size, True)

    def _first_line(self, fd: int) -> str | None:
        head = os.pread(fd, self.max_line + 1, 0)
        newline = head.find(b"\n")
        return head[:newline].decode(errors="replace").rstrip("\r") if newline >= 0 else None

    # -- 2. taking lines -------------------------------------------------------------

    def _take(self, data: bytes, position: Position) -> Step:
        """The complete lines at the start of `data`, at most CHUNK_LINES of them."""
        lines: list[Line] = []
        start, header, skipping = 0, position.header, position.skipping
        while len(lines) < CHUNK_LINES:
            newline = data.find(b"\n", start)
            if newline < 0:
                start, skipping = self._long_tail(data, start, skipping, lines)
                break
            raw, start = data[start:newline], newline + 1
            if skipping:
                skipping = False
            elif len(raw) > self.max_line:
                lines.append(LongLine(raw[:SAMPLE_BYTES], len(raw)))
            elif self.csv_header and header is None:
                header = raw.decode(errors="replace").rstrip("\r") or None
            else:
                lines.append(raw)
        moved = replace(position, offset=position.offset + start, header=header,
                        skipping=skipping)  # fmt: skip
        self.position = self._fingerprinted(moved) if start else moved
        return Step(lines, header, self.position, more=True)

    def _long_tail(
        self, data: bytes, start: int, skipping: bool, lines: list[Line]
    ) -> tuple[int, bool]:
        """Past a newline-less rest that is dropped or already longer than `max_line`."""
        rest = len(data) - start
        if skipping and rest:
            return len(data), True
        if rest > self.max_line:
            lines.append(LongLine(data[start : start + SAMPLE_BYTES], rest))
            return len(data), True
        return start, skipping

    # -- 3. at the end of the file ---------------------------------------------------

    def _at_end(self, data: bytes, idle: Step) -> Step:
        """Nothing complete to read: switch after a rotation, restart after truncation."""
        assert self._fd is not None and self.position is not None
        identity = self._stat_path()
        if identity is None:
            return idle
        if identity == self.position.identity:
            self.conditions.cleared()
            self._unchanged = None
            return self._check_truncation(idle)
        if not self._quiet(self.position.offset + len(data)):
            return idle
        return self._switch(data)

    def _quiet(self, end: int) -> bool:
        """Whether the replaced file, read to `end`, has not grown for rotate_wait.

        Its writer appends to it until it reopens its log (logrotate's postrotate
        signal, a daemon's next log call): leaving at its first end would lose those
        lines and cut a half-written one in two.
        """
        assert self._fd is not None
        size, now = os.fstat(self._fd).st_size, self._clock()
        if self._unchanged is None or self._unchanged[0] != size:
            self._unchanged = (size, now)
            return False
        return size <= end and now - self._unchanged[1] >= self.rotate_wait

    def _switch(self, rest: bytes) -> Step:
        """The old file's unterminated rest becomes its last line; then the next file."""
        assert self._fd is not None and self.position is not None
        old = self.position
        lines: list[Line] = []
        if rest and not old.skipping:
            too_long = len(rest) > self.max_line
            lines.append(LongLine(rest[:SAMPLE_BYTES], len(rest)) if too_long else rest)
        finished_mtime = os.fstat(self._fd).st_mtime_ns
        self.close()
        self._unchanged = None
        self._finished.append(old.identity)
        self.stats.rotations += 1
        self.position = replace(old, offset=old.offset + len(rest), skipping=False)
        gaps = self._open_next(finished_mtime)
        return Step(lines, old.header, self.position, more=True, gaps=gaps)

    def _open_next(self, finished_mtime: int) -> int:
        """Open the oldest unread rotated sibling, else the path's file; returns gaps.

        If neither can be opened now, the finished file stays the position: the next
        step finds it again among the siblings and switches from it once more.
        """
        assert self.position is not None
        finished, current = self.position.identity, self._stat_path()
        siblings = rotated_siblings(self.path)
        chosen = oldest_unread(siblings, finished_mtime, current, self._finished)
        gaps = skipped_between(siblings, finished, finished_mtime, chosen)
        if gaps:
            self._lost(gaps, f"{gaps} rotated file(s) since the last read are gone or compressed")
        path, identity = (self.path, current) if chosen is None else (chosen.path, chosen.identity)
        if identity is None or not self._open_file(path, identity):
            return gaps
        assert self._fd is not None
        log.info("Source file %s was rotated; reading %s from the start", self.path, path)
        self.position = self._fresh_position(self._fd, from_end=False)
        return gaps

    def _check_truncation(self, idle: Step) -> Step:
        assert self._fd is not None and self.position is not None
        size = os.fstat(self._fd).st_size
        if size >= self.position.offset:
            return idle
        self.stats.truncations += 1
        log.warning(
            "Source file %s was truncated (%d bytes, read up to %d); reading it from the start",
            self.path, size, self.position.offset,
        )  # fmt: skip
        self.position = replace(self.position, offset=0, header=None, skipping=False,
                                fingerprint="", fingerprint_size=0)  # fmt: skip
        return Step([], None, self.position, more=True)
