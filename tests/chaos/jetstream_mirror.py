"""Copy a hub's JetStream stream into a SQLite file with the hub store's own schema.

With `--store jetstream` the central store is a NATS stream, not the hub's SQLite
file. Rather than a second checker, the stream is read back (in stream order, through
an ordered consumer) into a file shaped like `sync/hub/store.py`'s: `events` (payload,
seq, and `received_at` = the JetStream stream sequence, so "committed in seq order" is
checked against the order JetStream stored them), `gaps` from the `_gap` records and
`positions` (highest seq or gap end per device stream). A seq stored twice, which the
SQLite schema could not hold, is counted in `mirror_duplicates`, which the checker
reads.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path

from sync.hub.jetstream_messages import H_DEVICE, H_EPOCH, H_FIRST_SEQ, H_LAST_SEQ, H_SEQ, H_STREAM
from sync.hub.store import _DDL as HUB_DDL
from tests.hub.jetstream_read import Stored, read_stream

DUPLICATES_DDL = """CREATE TABLE mirror_duplicates (
    device TEXT NOT NULL, epoch TEXT NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL,
    copies INTEGER NOT NULL)"""


def mirror(url: str, stream: str, db: Path) -> int:
    """Rewrite `db` from the stream; the number of messages read (-1 if unreachable)."""
    try:
        stored = asyncio.run(asyncio.wait_for(read_stream(url, stream), 120))
    except Exception:
        return -1
    tmp = db.with_name(db.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with closing(sqlite3.connect(tmp, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        for statement in (*HUB_DDL, DUPLICATES_DDL):
            conn.execute(statement)
        _fill(conn, stored)
        conn.execute("COMMIT")
    tmp.replace(db)
    return len(stored)


def _fill(conn: sqlite3.Connection, stored: list[Stored]) -> None:
    copies: Counter[tuple[str, str, str, int]] = Counter()
    tops: dict[tuple[str, str, str], int] = {}
    for message in stored:
        h = message.headers
        ident = (h[H_DEVICE], h[H_EPOCH], h[H_STREAM])
        if message.subject.endswith("._gap"):
            first, last = int(h[H_FIRST_SEQ]), int(h[H_LAST_SEQ])
            conn.execute(
                "INSERT OR REPLACE INTO gaps VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*ident, first, last, h.get("Edgestream-Gap-Reason", "?"), 0.0, message.seq),
            )
            tops[ident] = max(tops.get(ident, 0), last)
            continue
        seq = int(h[H_SEQ])
        copies[(*ident, seq)] += 1
        tops[ident] = max(tops.get(ident, 0), seq)
        conn.execute(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
            (*ident, seq, float(h.get("Edgestream-Event-Time", "0")),
             float(h.get("Edgestream-Ingest-Time", "0")), h.get("Edgestream-Key"),
             h.get("Edgestream-Topic"), message.data, float(message.seq)),
        )  # fmt: skip
    for key, n in copies.items():
        if n > 1:
            conn.execute("INSERT INTO mirror_duplicates VALUES (?, ?, ?, ?, ?)", (*key, n))
    for ident, top in tops.items():
        conn.execute(
            "INSERT INTO positions (device, epoch, stream, upto_seq, events, duplicates, "
            "updated_at) VALUES (?, ?, ?, ?, 0, 0, 0)", (*ident, top),
        )  # fmt: skip
