"""A corrupt queue's unsent events reach the hub as an explicit gap of the old epoch.

Real agent, hub and Mosquitto: the agent uplinks for a while, the hub stops, the agent
stores more it cannot send, stops, and its queue's events table is damaged the way a
failing card damages it. At the next start the agent sets the file aside (a new epoch)
and tells the hub which numbers of the old epoch it will never get: exactly those after
the last one the hub committed, with reason `set_aside` (found by the chaos scenario:
before, the old epoch just stopped at the hub, like a device that had not sent yet).
"""

from __future__ import annotations

import os
import random
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import MosquittoBroker, free_port
from tests.e2e.harness import (
    EdgestreamProcess,
    hub_config,
    query,
    queue_last_seq,
    wait_until,
    write_yaml,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def agent_config(tmp: Path, url: str) -> dict[str, Any]:
    return {
        "device_id": "pi-aside",
        "data_dir": str(tmp / "agent-data"),
        "queue": {"commit_interval": "20ms"},
        "streams": {"sensors": {"uplink": True}},
        "sources": [{"type": "simulated", "name": "sim", "stream": "sensors",
                     "interval": "10ms", "signals": [{"name": "t"}]}],
        "uplink": {"broker": {"url": url, "backoff_initial": "100ms", "backoff_max": "500ms"},
                   "batch_max_delay": "50ms", "ack_timeout": "3s"},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
    }  # fmt: skip


def damage_events_table(db: Path) -> str:
    """Checkpoint, then overwrite the events table's root page; returns the epoch."""
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ((epoch,),) = conn.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchall()
        ((page_size,),) = conn.execute("PRAGMA page_size").fetchall()
        ((root,),) = conn.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'events'"
        ).fetchall()
    with db.open("r+b") as out:
        out.seek((root - 1) * page_size)
        out.write(random.Random(root).randbytes(page_size))
        os.fsync(out.fileno())
    return str(epoch)


def hub_max_seq(db: Path, epoch: str) -> int:
    rows = query(db, "SELECT max(seq) FROM events WHERE epoch = ?", epoch)
    return int(rows[0][0] or 0) if rows else 0


def test_unsent_events_of_a_set_aside_queue_become_a_gap_at_the_hub(
    tmp_path: Path, mosquitto: MosquittoBroker, processes: list[EdgestreamProcess]
) -> None:
    agent_yaml = write_yaml(tmp_path / "agent.yaml", agent_config(tmp_path, mosquitto.url))
    hub_yaml = write_yaml(tmp_path / "hub.yaml", hub_config(tmp_path, mosquitto.url))
    queue_db, hub_db = tmp_path / "agent-data" / "queue.db", tmp_path / "hub-data" / "central.db"

    def start(kind: str, config: Path) -> EdgestreamProcess:
        process = EdgestreamProcess(kind, config, tmp_path / f"{kind}.log").start()
        processes.append(process)
        return process

    hub, agent = start("hub", hub_yaml), start("run", agent_yaml)
    wait_until(lambda: query(hub_db, "SELECT count(*) FROM events") not in ([], [(0,)]),
               30, "the first events at the hub", hub, agent)  # fmt: skip
    assert hub.terminate() == 0
    delivered = queue_last_seq(queue_db)
    wait_until(lambda: queue_last_seq(queue_db) > delivered + 100, 30, "events the hub misses",
               agent)  # fmt: skip
    assert agent.terminate() == 0
    committed = queue_last_seq(queue_db)
    epoch = damage_events_table(queue_db)

    hub, agent = start("hub", hub_yaml), start("run", agent_yaml)

    def gap() -> list[tuple[Any, ...]]:
        return query(hub_db, "SELECT epoch, first_seq, last_seq FROM gaps"
                             " WHERE reason = 'set_aside'")  # fmt: skip

    wait_until(lambda: bool(gap()), 60, "the set-aside gap at the hub", hub, agent)
    # Batches the agent published while the hub was down waited in the hub's broker
    # session and arrived after its restart: the gap covers exactly what never did.
    at_hub = hub_max_seq(hub_db, epoch)
    stored = query(hub_db, "SELECT count(*) FROM events WHERE epoch = ?", epoch)[0][0]
    assert stored == at_hub < committed
    assert gap() == [(epoch, at_hub + 1, committed)]
    log = agent.log_path.read_text()
    assert "failed its integrity check" in log and "told about as gaps" in log
    assert list(tmp_path.joinpath("agent-data").glob("queue.db.corrupt-*"))
    new_epoch = query(queue_db, "SELECT value FROM meta WHERE name = 'epoch'")[0][0]
    assert new_epoch != epoch
    wait_until(lambda: hub_max_seq(hub_db, new_epoch) > 0, 30, "the new epoch's events", agent)
    # The old epoch's notice does not make it the device's current epoch again.
    assert query(hub_db, "SELECT last_epoch FROM devices") == [(new_epoch,)]
    assert agent.terminate() == 0
    assert hub.terminate() == 0
