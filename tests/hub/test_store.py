"""The hub's central store: dedup in the data's own transaction, gaps kept at their widest."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sync.hub.store import SqliteCentralStore
from sync.outbox import Gap, StoredEvent
from sync.wire import Batch


def events(first: int, last: int) -> list[StoredEvent]:
    return [
        StoredEvent(s, float(s), float(s), None, "t", b"%d" % s) for s in range(first, last + 1)
    ]


def test_a_retried_batch_adds_nothing_and_is_counted(tmp_path: Path) -> None:
    store = SqliteCentralStore(tmp_path / "c.db")
    first = store.commit_now([Batch("d", "e", "s", events(1, 10), [], 10)])
    again = store.commit_now([Batch("d", "e", "s", events(1, 10), [], 10)])
    assert (first[0].committed, again[0].committed, again[0].duplicates) == (10, 0, 10)
    store.close_now()
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (10,)
    assert conn.execute("SELECT upto_seq, events, duplicates FROM positions").fetchone() == (
        10,
        10,
        10,
    )


def test_a_new_epoch_is_not_a_duplicate(tmp_path: Path) -> None:
    store = SqliteCentralStore(tmp_path / "c.db")
    store.commit_now([Batch("d", "e1", "s", events(1, 5), [], 5)])
    (result,) = store.commit_now([Batch("d", "e2", "s", events(1, 5), [], 5)])
    assert result.committed == 5
    store.close_now()


def test_a_resent_gap_that_grew_is_widened(tmp_path: Path) -> None:
    store = SqliteCentralStore(tmp_path / "c.db")
    store.commit_now([Batch("d", "e", "s", [], [Gap(11, 11, "drop_newest", 1.0)], 11)])
    store.commit_now([Batch("d", "e", "s", [], [Gap(11, 15, "drop_newest", 1.0)], 15)])
    store.close_now()
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("SELECT first_seq, last_seq FROM gaps").fetchall() == [(11, 15)]
