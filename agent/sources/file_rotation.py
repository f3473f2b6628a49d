"""The rotated siblings of a followed file: its renamed or compressed predecessors.

After a rotation the lines not yet read live in files beside the path (`app.log.1`,
`app.log.2.gz`, `app.log-20240101`). The follower must finish them oldest first and
count the ones it can no longer read (gone, or compressed) as gaps. This module finds
and orders them; the search is bounded (`MAX_SIBLINGS`) so a folder full of old logs
costs one listing, not a read of each file.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from agent.sources.file_position import Identity

MAX_SIBLINGS: Final = 20
COMPRESSED: Final = (".gz", ".zst", ".bz2", ".xz", ".lz4", ".zip")
NUMBERED: Final = re.compile(r"\.([0-9]{1,9})")


@dataclass(frozen=True, slots=True)
class Sibling:
    """A regular file beside the followed path whose name starts with the path's name."""

    path: str
    identity: Identity
    mtime_ns: int
    number: int | None  # N of a numbered rotation, `app.log.N`
    compressed: bool


def rotated_siblings(path: str) -> list[Sibling]:
    """The MAX_SIBLINGS most recently modified rotated files of `path` (bounded work)."""
    folder, base = os.path.split(path)
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name != base and entry.name.startswith(base):
                sibling = _sibling(entry, entry.name[len(base) :])
                if sibling is not None:
                    found.append(sibling)
    found.sort(key=lambda s: s.mtime_ns, reverse=True)
    return found[:MAX_SIBLINGS]


def _sibling(entry: os.DirEntry[str], suffix: str) -> Sibling | None:
    try:
        st = entry.stat()
    except OSError:
        return None  # gone since the listing
    if not stat.S_ISREG(st.st_mode):
        return None
    numbered = NUMBERED.fullmatch(suffix)
    number = None if numbered is None else int(numbered[1])
    compressed = suffix.endswith(COMPRESSED)
    return Sibling(entry.path, (st.st_dev, st.st_ino), st.st_mtime_ns, number, compressed)


def _age(sibling: Sibling) -> tuple[int, int, str]:
    """Oldest first: by modification time, then `.2` before `.1`, then by name (dates)."""
    return sibling.mtime_ns, -(sibling.number or 0), sibling.path


def skipped_between(
    siblings: list[Sibling], finished: Identity, finished_mtime: int, chosen: Sibling | None
) -> int:
    """How many rotated files lie between the finished file and the next one, unreadable.

    With numbered rotation (`app.log.3` finished, `app.log.1` next) they are the numbers
    in between, whatever became of them; otherwise the compressed siblings modified in
    between (compression keeps the time, so the finished file's own copy is not one).
    """
    done = next((s for s in siblings if s.identity == finished), None)
    upper = 0 if chosen is None else chosen.number
    if done is not None and done.number is not None and upper is not None:
        return max(0, done.number - upper - 1)
    limit = math.inf if chosen is None else chosen.mtime_ns
    return sum(1 for s in siblings if s.compressed and finished_mtime < s.mtime_ns <= limit)


def oldest_unread(
    siblings: list[Sibling],
    finished_mtime: int,
    current: Identity | None,
    finished: Collection[Identity],
) -> Sibling | None:
    """The oldest plain sibling modified since the finished file that is not yet read.

    `current` is the file the path names now (read last), `finished` the files done.
    """
    unread = [
        s for s in siblings
        if not s.compressed and s.mtime_ns >= finished_mtime
        and s.identity != current and s.identity not in finished
    ]  # fmt: skip
    return min(unread, key=_age, default=None)
