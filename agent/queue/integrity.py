"""A queue database that fails its integrity check is moved aside, never deleted.

An SD card that lost power mid-write, or a failing card, can leave pages SQLite cannot
read. Opening such a file would fail at every start, or worse, at the first read of a
bad page in the middle of the night. So every start runs `PRAGMA quick_check` first
(it reads every page once: about a second per 100 MB on a Pi's card); a database that
fails it (or is not a database at all) is renamed with its WAL and shared-memory files
to `queue.db.corrupt-<UTC time>`, logged at ERROR level with what to do, and counted,
and the agent starts on an empty queue. The old file stays for `sqlite3 .recover` or a
support case: its events are not silently gone, and the hub's gap accounting will show
the sequence numbers of a new epoch.

A database that is merely busy (locked by another process) or written by an
incompatible release is not corrupt: those still refuse to start, as before.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from sync.set_aside import SetAsideRange

log = logging.getLogger(__name__)

SIDE_FILES = ("", "-wal", "-shm")


def corruption(path: Path) -> str | None:
    """Why the database at `path` is corrupt, or None when it is sound (or absent)."""
    if not path.exists():
        return None
    try:
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            rows = [row[0] for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.OperationalError:
        return None  # busy, locked, unreadable: not evidence of corruption
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if rows == ["ok"] else "; ".join(str(r) for r in rows[:5])


def set_aside_if_corrupt(path: Path) -> Path | None:
    """Rename a corrupt database and its side files; the new name, or None if sound."""
    reason = corruption(path)
    if reason is None:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in SIDE_FILES:
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(target.with_name(target.name + suffix))
    log.error(
        "The queue database %s failed its integrity check (%s). It was moved aside to %s "
        "and the agent starts on an empty queue; the events it held are NOT deleted: try "
        "`sqlite3 %s .recover`. A new epoch begins, so the hub counts no duplicates.",
        path, reason, target, target,
    )  # fmt: skip
    return target


def unsent_ranges(path: Path, consumer: str) -> list[SetAsideRange]:
    """Per stream of a set-aside file, what `consumer` (the uplink) had not yet sent.

    Best effort: a corrupt file may still answer these small queries (the damage is
    often in the large events table); when it does not, the ranges stay unknown, which
    is logged, and the file itself is still kept.
    """
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return _unsent(conn, consumer, time.time())
    except sqlite3.DatabaseError as exc:
        log.error("Could not read the streams of the set-aside %s (%s): the hub will not be "
                  "told which events it kept", path, exc)  # fmt: skip
        return []


def _unsent(conn: sqlite3.Connection, consumer: str, now: float) -> list[SetAsideRange]:
    epoch = conn.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchone()
    if epoch is None:
        return []
    rows = conn.execute(
        "SELECT s.name, s.next_seq, c.position FROM streams s"
        " JOIN cursors c ON c.stream_id = s.id AND c.consumer = ? AND c.active = 1",
        (consumer,),
    ).fetchall()
    return [
        SetAsideRange(str(epoch[0]), name, position + 1, next_seq - 1, now)
        for name, next_seq, position in rows
        if next_seq - 1 > position
    ]
