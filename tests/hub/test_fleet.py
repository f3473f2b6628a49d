"""Proof of delivery: the fleet view of the hub's store, and `edgestream hub status`."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from agent.cli.hub_status import render, seconds
from sync.hub.fleet import device_rows, gap_rows, read_only, stream_rows
from sync.hub.store import SqliteCentralStore
from sync.outbox import Gap, StoredEvent
from sync.wire import Batch


def events(first: int, last: int, at: float = 1000.0) -> list[StoredEvent]:
    return [StoredEvent(s, at + s, at + s, None, "t", b"%d" % s) for s in range(first, last + 1)]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A store with two devices: one with a gap and a retried batch, one refused once."""
    path = tmp_path / "central.db"
    store = SqliteCentralStore(path)
    store.commit_now([Batch("pi-1", "e1", "temps", events(1, 10), [], 10)])
    store.commit_now([Batch("pi-1", "e1", "temps", events(1, 10), [], 10)])  # a retry
    gap = Gap(11, 15, "drop_oldest", 1500.0)
    store.commit_now([Batch("pi-1", "e1", "temps", events(16, 20), [gap], 20)])
    store.commit_now([Batch("pi-1", "e1", "alarms", events(1, 2), [], 2)])
    store.commit_now([Batch("pi-2", "e9", "temps", events(1, 3, at=2000.0), [], 3)])
    store.record_rejection_now("pi-2", "bad signature", 3000.0)
    store.record_rejection_now("intruder", "device not allowed", 3000.0)
    store.close_now()
    return path


def test_devices_sum_their_streams_gaps_duplicates_and_rejections(store_path: Path) -> None:
    with read_only(store_path) as conn:
        rows = {d.device: d for d in device_rows(conn)}
    pi1, pi2 = rows["pi-1"], rows["pi-2"]
    assert (pi1.streams, pi1.events, pi1.duplicates, pi1.gaps, pi1.lost) == (2, 17, 10, 1, 5)
    assert pi1.last_event_time == 1020.0 and pi1.rejected == 0
    assert (pi2.events, pi2.rejected, pi2.last_rejection) == (3, 1, "bad signature")
    assert rows["intruder"].events == 0 and rows["intruder"].rejected == 1


def test_streams_and_gaps_of_one_device(store_path: Path) -> None:
    with read_only(store_path) as conn:
        streams = {s.stream: s for s in stream_rows(conn, "pi-1")}
        gaps = gap_rows(conn, "pi-1")
    assert streams["temps"].upto_seq == 20 and streams["temps"].lost == 5
    assert streams["alarms"].events == 2 and streams["alarms"].gaps == 0
    assert [(g.first_seq, g.last_seq, g.reason) for g in gaps] == [(11, 15, "drop_oldest")]


def test_the_table_reads_like_a_fleet_page(store_path: Path) -> None:
    with read_only(store_path) as conn:
        text = render(device_rows(conn), stream_rows(conn, "pi-1"), gap_rows(conn, "pi-1"), 4000.0)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["DEVICE", "LAST", "SEEN"]
    pi1 = next(line for line in lines if line.startswith("pi-1 "))
    assert pi1.split()[-7:] == ["2", "17", "1", "5", "10", "0", "-"]
    assert "drop_oldest" in text and "11-15" in text
    assert "last refused batch of pi-2: bad signature" in text


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "-"), (0.25, "250ms"), (42, "42s"), (-90, "-2m"), (7200, "2h"), (3 * 86400, "3d")],
)
def test_durations_are_short(value: float | None, shown: str) -> None:
    assert seconds(value) == shown


def test_a_store_from_an_older_hub_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE devices (device TEXT PRIMARY KEY, first_seen REAL NOT NULL,"
            " last_seen REAL NOT NULL, last_epoch TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO devices VALUES ('pi-old', 1, 2, 'e0')")
    store = SqliteCentralStore(path)
    store.record_rejection_now("pi-old", "checksum mismatch", time.time())
    store.close_now()
    with read_only(path) as conn:
        (row,) = device_rows(conn)
    assert (row.device, row.rejected, row.last_epoch) == ("pi-old", 1, "e0")


def write_hub_config(tmp_path: Path, store_path: Path) -> Path:
    config = tmp_path / "hub.yaml"
    config.write_text(
        f'broker: {{url: "mqtt://127.0.0.1:1"}}\nstore: {{type: sqlite, path: "{store_path}"}}\n'
    )
    return config


def test_hub_status_command_prints_the_table_and_json(
    store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli.main import main

    config = write_hub_config(tmp_path, store_path)
    assert main(["hub", "status", "-c", str(config)]) == 0
    assert "pi-1" in capsys.readouterr().out
    assert main(["hub", "status", "-c", str(config), "--device", "pi-1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [s["stream"] for s in shown["streams"]] == ["alarms", "temps"]
    assert shown["gaps"][0]["reason"] == "drop_oldest"
    assert main(["hub", "status", "-c", str(config), "--device", "nope"]) == 1


def test_hub_status_without_a_store_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli.main import main

    config = write_hub_config(tmp_path, tmp_path / "missing.db")
    assert main(["hub", "status", "-c", str(config)]) == 1
    assert "no central store" in capsys.readouterr().err


def test_clock_skew_keeps_the_least_delayed_estimate_of_the_last_hour(tmp_path: Path) -> None:
    store = SqliteCentralStore(tmp_path / "c.db")
    now = time.time()
    for n, sent in enumerate((now - 2.0, now - 0.5, now - 3.0)):  # device 0.5-3 s "behind"
        store.commit_now([Batch("pi-9", "e", "s", events(n + 1, n + 1), [], n + 1, sent)])
    with read_only(tmp_path / "c.db") as conn:
        (row,) = device_rows(conn)
    assert row.clock_skew is not None and -0.6 < row.clock_skew < -0.4
    store.commit_now([Batch("pi-9", "e", "s", events(9, 9), [], 9)])  # v1: no send time
    store.close_now()
    with read_only(tmp_path / "c.db") as conn:
        assert device_rows(conn)[0].clock_skew == row.clock_skew
