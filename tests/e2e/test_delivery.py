"""End to end with real processes: nothing lost, nothing twice, order kept (promises 1-4)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.brokers import MosquittoBroker
from tests.e2e.harness import (
    EdgestreamProcess,
    Publisher,
    agent_config,
    hub_config,
    hub_count,
    query,
    queue_last_seq,
    reading,
    wait_until,
    write_yaml,
)

pytestmark = pytest.mark.slow

WINDOW_PIPELINE = {
    "name": "per_device_1s",
    "input": "sensors",
    "output": "windows",
    "steps": [
        {"filter": "value > 2"},
        {"window": {"size": "1s", "key": "device", "idle": "1h",
                    "aggregates": {"count": "count()", "avg": "avg(value)",
                                   "min": "min(value)", "max": "max(value)"}}},
    ],
}  # fmt: skip


def start(
    processes: list[EdgestreamProcess], tmp: Path, command: str, config: dict[str, Any], **env: str
) -> EdgestreamProcess:
    path = write_yaml(tmp / f"{command}.yaml", config)
    proc = EdgestreamProcess(command, path, tmp / f"{command}.log", env).start()
    processes.append(proc)
    return proc


def hub_readings(db: Path, stream: str = "sensors") -> list[tuple[int, int]]:
    """(seq, reading i) of every event of a stream at the hub, in seq order."""
    rows = query(db, "SELECT seq, payload FROM events WHERE stream = ? ORDER BY seq", stream)
    return [(seq, orjson.loads(payload)["i"]) for seq, payload in rows]


def expected_windows(n: int) -> dict[tuple[str, float], dict[str, Any]]:
    """The windows a run over readings 0..n-1 must close, computed without the engine."""
    groups: dict[tuple[str, float], list[float]] = {}
    last_ts = max(reading(i)["ts"] for i in range(n))
    for r in map(reading, range(n)):
        if r["value"] > 2:
            start = r["ts"] - r["ts"] % 1.0
            groups.setdefault((r["device"], start), []).append(r["value"])
    return {
        k: {"count": len(v), "avg": sum(v) / len(v), "min": min(v), "max": max(v)}
        for k, v in groups.items()
        if k[1] + 1.0 <= last_ts  # windows past the last watermark stay open
    }


def test_backlog_while_central_link_down_arrives_exactly_once_in_order(
    tmp_path: Path, mosquitto: MosquittoBroker, mosquitto_factory: Any,
    processes: list[EdgestreamProcess],
) -> None:  # fmt: skip
    """20,000 QoS 1 events ingested while the hub's broker is down all arrive once, in order."""
    central = mosquitto_factory()
    hub = start(processes, tmp_path, "hub", hub_config(tmp_path, central.url))
    agent = start(processes, tmp_path, "run", agent_config(tmp_path, mosquitto.url, central.url))
    queue_db, hub_db = tmp_path / "agent-data" / "queue.db", tmp_path / "hub-data" / "central.db"
    wait_until(lambda: queue_last_seq(queue_db) == 0 and queue_db.exists(), 15, "agent up", agent)
    time.sleep(1.0)  # the source subscribes
    central.stop()

    publisher = Publisher(mosquitto.url)
    assert publisher.readings(0, 20_000) == 20_000
    publisher.close()
    wait_until(lambda: queue_last_seq(queue_db) == 20_000, 60, "20,000 events queued", agent)
    assert hub_count(hub_db) == 0

    central.start()
    wait_until(lambda: hub_count(hub_db) == 20_000, 120, "20,000 events at the hub", agent, hub)
    rows = hub_readings(hub_db)
    assert [seq for seq, _ in rows] == list(range(1, 20_001))
    assert [i for _, i in rows] == list(range(20_000))  # publish order = seq order
    assert query(hub_db, "SELECT count(*) FROM gaps") == [(0,)]


def test_agent_sigkill_mid_ingest_and_mid_uplink_loses_and_duplicates_nothing(
    tmp_path: Path, mosquitto: MosquittoBroker, mosquitto_factory: Any,
    processes: list[EdgestreamProcess],
) -> None:  # fmt: skip
    """kill -9 of the agent while it ingests and uplinks; restarted, the hub holds each once."""
    total = 30_000
    central = mosquitto_factory()
    hub = start(processes, tmp_path, "hub", hub_config(tmp_path, central.url))
    config = agent_config(
        tmp_path, mosquitto.url, central.url, pipelines=[WINDOW_PIPELINE],
        extra_streams={"windows": {"uplink": True}},
    )  # fmt: skip
    agent = start(processes, tmp_path, "run", config)
    queue_db, hub_db = tmp_path / "agent-data" / "queue.db", tmp_path / "hub-data" / "central.db"
    wait_until(queue_db.exists, 15, "agent up", agent)
    time.sleep(1.0)

    publisher = Publisher(mosquitto.url)
    feeder = threading.Thread(target=publisher.readings, args=(0, total))
    feeder.start()
    kills = 0
    for _ in range(3):  # kill while events still flow in and batches still flow out
        time.sleep(1.5)
        assert agent.alive, agent.log_tail()
        agent.kill()
        kills += 1
        agent = start(processes, tmp_path, "run", config)
    feeder.join(120)
    publisher.close()

    wait_until(lambda: hub_count(hub_db) == total, 180, f"{total} events at the hub", agent, hub)
    time.sleep(1.0)
    rows = hub_readings(hub_db)
    assert sorted(i for _, i in rows) == list(range(total)), "lost or duplicated readings"
    assert [seq for seq, _ in rows] == list(range(1, total + 1))
    assert kills == 3

    expected = expected_windows(total)
    wait_until(lambda: hub_count(hub_db, "windows") >= len(expected), 60, "windows", agent, hub)
    got: dict[tuple[str, float], dict[str, Any]] = {}
    for (payload,) in query(hub_db, "SELECT payload FROM events WHERE stream = 'windows'"):
        w = orjson.loads(payload)
        window = (w["key"], w["window_start"])
        assert window not in got, f"window {window} emitted twice"
        got[window] = {k: w[k] for k in ("count", "avg", "min", "max")}
    assert got.keys() == expected.keys()
    for window, values in expected.items():
        assert got[window]["count"] == values["count"], window
        assert got[window]["avg"] == pytest.approx(values["avg"]), window
        assert (got[window]["min"], got[window]["max"]) == (values["min"], values["max"])


def test_hub_sigkill_between_commit_and_ack_creates_no_duplicate(
    tmp_path: Path, mosquitto: MosquittoBroker, mosquitto_factory: Any,
    processes: list[EdgestreamProcess],
) -> None:  # fmt: skip
    """The hub dies right after committing a batch, before acking it: no duplicate later."""
    central = mosquitto_factory()
    hub_cfg = hub_config(tmp_path, central.url)
    hub = start(
        processes, tmp_path, "hub", hub_cfg, EDGESTREAM_FAILPOINTS="hub.after_commit=kill@2"
    )
    agent = start(processes, tmp_path, "run", agent_config(tmp_path, mosquitto.url, central.url))
    queue_db, hub_db = tmp_path / "agent-data" / "queue.db", tmp_path / "hub-data" / "central.db"
    wait_until(queue_db.exists, 15, "agent up", agent)
    time.sleep(1.0)
    publisher = Publisher(mosquitto.url)
    publisher.readings(0, 5_000)
    publisher.close()

    wait_until(lambda: not hub.alive, 60, "the hub to kill itself after a commit", hub, agent)
    committed_before_restart = hub_count(hub_db)
    assert committed_before_restart > 0
    hub = start(processes, tmp_path, "hub", hub_cfg)
    wait_until(lambda: hub_count(hub_db) == 5_000, 90, "5,000 events at the hub", agent, hub)
    time.sleep(1.0)
    rows = hub_readings(hub_db)
    assert sorted(i for _, i in rows) == list(range(5_000))
    ((duplicates,),) = query(hub_db, "SELECT sum(duplicates) FROM positions")
    assert duplicates > 0, "the unacknowledged batch should have been sent again and dropped"


def test_bad_payloads_are_dead_lettered_counted_and_the_daemon_keeps_running(
    tmp_path: Path, mosquitto: MosquittoBroker, processes: list[EdgestreamProcess]
) -> None:
    """Malformed JSON, non-UTF-8, oversized and non-object payloads go to _deadletter."""
    config = agent_config(tmp_path, mosquitto.url, mosquitto.url, max_size="1KiB")
    agent = start(processes, tmp_path, "run", config)
    queue_db = tmp_path / "agent-data" / "queue.db"
    wait_until(queue_db.exists, 15, "agent up", agent)
    time.sleep(1.0)
    bad = [b"{not json", b"\xff\xfe\x00garbage", b'{"v": "' + b"x" * 5000 + b'"}', b'"a string"']
    publisher = Publisher(mosquitto.url)
    publisher.publish_many(iter([("plant/d0", orjson.dumps(reading(0)))]))
    publisher.publish_many((f"plant/bad{n}", payload) for n, payload in enumerate(bad))
    publisher.publish_many(iter([("plant/d1", orjson.dumps(reading(1)))]))
    publisher.close()

    wait_until(lambda: queue_last_seq(queue_db, "_deadletter") == 4, 20, "4 dead letters", agent)
    wait_until(lambda: queue_last_seq(queue_db) == 2, 20, "the 2 good events", agent)
    assert agent.alive
    reasons = sorted(
        orjson.loads(h)["reason"]
        for (h,) in query(queue_db, "SELECT headers FROM events e JOIN streams s ON s.id ="
                          " e.stream_id WHERE s.name = '_deadletter'")
    )  # fmt: skip
    assert reasons == ["invalid_json", "invalid_utf8", "oversized", "unsupported_json"]
    counters = dict(query(queue_db, "SELECT name, value FROM counters WHERE stream = 'sensors'"))
    assert counters == {
        "dead_lettered.invalid_json": 1, "dead_lettered.invalid_utf8": 1,
        "dead_lettered.oversized": 1, "dead_lettered.unsupported_json": 1,
    }  # fmt: skip
    assert agent.terminate() == 0
