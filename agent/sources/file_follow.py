"""Follow one file path like `tail -F`: the bytes of its complete lines, never twice.

The read position names the file by identity (device, inode), not by path, so a
rename rotation is seen as "the path now names another file". The protocol of one
`Follower.step()`:

1. No file open: open the file the position names. When the path names another
   file, look for the old one among its siblings (`app.log.1`) and finish it first;
   when it is nowhere, the unread rest of it is lost: a counted, logged gap, and the
   path's file is read from 0.
2. Read one bounded chunk after the offset and take its complete lines (a partial
   last line stays unread, the offset before it, until its newline arrives).
3. Nothing complete: the reader is at the end of this file. If the path now names
   another file, read once more (a writer may not have reopened yet), then take the
   unterminated rest of the old file as its last line and switch to the new file
   at 0. If the file shrank below the offset (copytruncate), start again from 0.

The caller commits the events of a step together with `Step.position`, so a restart
resumes exactly after the last line stored. The follower does blocking I/O and runs
on a worker thread (see `agent/sources/file.py`); one step is bounded in bytes and
lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, NamedTuple

import orjson

from agent.sources.polling import ConditionLog

log = logging.getLogger(__name__)

CHUNK_BYTES: Final = 1024 * 1024
CHUNK_LINES: Final = 5000
SAMPLE_BYTES: Final = 1024


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading stands: the file's identity and the offset after the last line taken.

    `header` is the csv header line of that file; `skipping` says the offset is inside
    an over-long line already dead-lettered, whose rest up to its newline is dropped.
    """

    dev: int
    ino: int
    offset: int
    header: str | None = None
    skipping: bool = False

    @property
    def identity(self) -> tuple[int, int]:
        return self.dev, self.ino

    def encode(self) -> bytes:
        """The bytes stored in the queue's state table."""
        return orjson.dumps(
            {"dev": self.dev, "ino": self.ino, "offset": self.offset,
             "header": self.header, "skipping": self.skipping}
        )  # fmt: skip

    @classmethod
    def decode(cls, raw: bytes) -> Position | None:
        """The stored position, or None (logged) when it cannot be read back."""
        try:
            data: Any = orjson.loads(raw)
            return cls(
                int(data["dev"]), int(data["ino"]), int(data["offset"]),
                data.get("header"), bool(data.get("skipping", False)),
            )  # fmt: skip
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("Stored file position %r is unreadable (%s); starting afresh", raw, exc)
            return None


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
    ) -> None:
        self.path = path
        self.max_line = max_line
        self.chunk_bytes = max(CHUNK_BYTES, max_line + 1)
        self.csv_header = csv_header
        self.conditions = conditions
        self.stats = stats
        self.position: Position | None = None
        self._start_at_end = start_at_end
        self._fd: int | None = None
        self._rotated = False

    def reset(self, position: Position | None) -> None:
        """Forget the open file and continue from `position` (the committed one)."""
        self.close()
        self.position = position
        self._rotated = False

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
        if identity is None or not self._open_path(identity):
            return 0
        if position is not None and identity == position.identity:
            return 0
        assert self._fd is not None
        if position is not None:
            self._gap(position)
        self.position = self._fresh_position(self._fd, self._start_at_end and position is None)
        return 0 if position is None else 1

    def _open_path(self, identity: tuple[int, int]) -> bool:
        """Open the path, unless it was replaced since its stat (then: at the next poll)."""
        fd = os.open(self.path, os.O_RDONLY)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != identity:
            os.close(fd)
            return False
        self._fd = fd
        self.conditions.cleared()
        return True

    def _stat_path(self) -> tuple[int, int] | None:
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
        folder = Path(self.path).parent
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.inode() != position.ino or entry.path == self.path:
                    continue
                fd = os.open(entry.path, os.O_RDONLY)
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == position.identity:
                    log.info("Source file %s: finishing rotated %s first", self.path, entry.path)
                    self._fd, self._rotated = fd, True
                    return True
                os.close(fd)
        return False

    def _gap(self, position: Position) -> None:
        self.stats.gaps += 1
        log.warning(
            "Source file %s was replaced while not followed and its old file is gone: "
            "lines after byte %d of it are lost (gap); reading the new file from the start",
            self.path, position.offset,
        )  # fmt: skip

    def _fresh_position(self, fd: int, from_end: bool) -> Position:
        """A file seen for the first time: from its start, or its end at first start."""
        st = os.fstat(fd)
        if not from_end:
            return Position(st.st_dev, st.st_ino, 0)
        offset, skipping = self._end_of_last_line(fd, st.st_size)
        header = self._first_line(fd) if self.csv_header and offset > 0 else None
        return Position(st.st_dev, st.st_ino, offset, header, skipping)

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
        self.position = moved
        return Step(lines, header, moved, more=True)

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
        if identity is not None and identity != self.position.identity:
            if not self._rotated:
                self._rotated = True  # one more read of the old file before switching
                return idle
            return self._switch(data)
        if identity is not None:
            self.conditions.cleared()
            return self._check_truncation(idle)
        return idle

    def _switch(self, rest: bytes) -> Step:
        """The old file's unterminated rest becomes its last line; then the new file."""
        assert self.position is not None
        old = self.position
        lines: list[Line] = []
        if rest and not old.skipping:
            too_long = len(rest) > self.max_line
            lines.append(LongLine(rest[:SAMPLE_BYTES], len(rest)) if too_long else rest)
        self.close()
        self._rotated = False
        self.stats.rotations += 1
        log.info("Source file %s was rotated; reading the new file from the start", self.path)
        self.position = None
        self._fd = os.open(self.path, os.O_RDONLY)
        self.position = self._fresh_position(self._fd, from_end=False)
        return Step(lines, old.header, self.position, more=True)

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
        self.position = replace(self.position, offset=0, header=None, skipping=False)
        return Step([], None, self.position, more=True)
