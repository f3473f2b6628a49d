"""SIGHUP and `edgestream reload` on a real agent process fed by a real Mosquitto.

A count window of 100 events sums the values 1..100 over a reload: an invalid config
first (refused, logged with its key path, the old config keeps running), then a
valid one that adds a pipeline (it starts; the window keeps its 60 events and emits
the exact sum 5050 when the 100th arrives).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.brokers import MosquittoBroker, free_port
from tests.e2e.harness import (
    EdgestreamProcess,
    Publisher,
    query,
    queue_last_seq,
    wait_until,
    write_yaml,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

WINDOW = 100


def config(tmp: Path, url: str, metrics_port: int) -> dict[str, Any]:
    return {
        "device_id": "pi-reload",
        "data_dir": str(tmp / "agent-data"),
        "queue": {"commit_interval": "20ms"},
        "streams": {"raw": {}, "totals": {}},
        "sources": [{
            "type": "mqtt", "name": "plant", "stream": "raw",
            "broker": {"url": url, "client_id": "reload-agent", "backoff_initial": "200ms",
                       "backoff_max": "1s"},
            "topics": [{"topic": "reload/#", "qos": 1}],
        }],
        "pipelines": [{
            "name": "totals", "input": "raw", "output": "totals",
            "steps": [{"filter": "value > 0"},  # the probes (value 0) stay out
                      {"window": {"type": "count", "events": WINDOW,
                                  "aggregates": {"n": "count()", "total": "sum(value)"}}}],
        }],
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
    }  # fmt: skip


def with_doubled(base: dict[str, Any]) -> dict[str, Any]:
    """The same config plus a stream and a pipeline that doubles each value."""
    new = orjson.loads(orjson.dumps(base))
    new["streams"]["doubled"] = {}
    new["pipelines"].append({
        "name": "doubled", "input": "raw", "output": "doubled",
        "steps": [{"filter": "value > 0"}, {"map": {"set": {"value": "value * 2"}}}],
    })  # fmt: skip
    return new


def publish(url: str, first: int, last: int) -> None:
    publisher = Publisher(url, client_id=f"reload-pub-{first}")
    try:
        publisher.publish_many(
            (f"reload/{i}", orjson.dumps({"value": i})) for i in range(first, last + 1)
        )
    finally:
        publisher.close()


def subscribed(url: str, db: Path, agent: EdgestreamProcess) -> int:
    """Publish probes (value 0) until one is stored: the agent's subscription is live.

    Then a distinct probe as a fence: delivery is in order, so once it is the newest
    stored event, every earlier probe that will ever arrive has. Returns how many
    probes the stream holds.
    """
    publisher = Publisher(url, client_id="reload-probe")
    probe = [("reload/probe", b'{"value": 0}')]
    try:

        def probe_stored() -> bool:
            publisher.publish_many(iter(probe))
            return queue_last_seq(db, "raw") > 0

        wait_until(probe_stored, 30, "the agent's subscription", agent)
        publisher.publish_many(iter([("reload/probe", b'{"value": 0, "fence": true}')]))

        def fence_stored() -> bool:
            last = payloads(db, "raw")[-1:]
            return bool(last) and last[0].get("fence") is True

        wait_until(fence_stored, 20, "the fence probe", agent)
        return queue_last_seq(db, "raw")
    finally:
        publisher.close()


def reload_cli(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "reload", "-c", str(config_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def payloads(db: Path, stream: str) -> list[dict[str, Any]]:
    rows = query(
        db,
        "SELECT e.payload FROM events e JOIN streams s ON s.id = e.stream_id"
        " WHERE s.name = ? ORDER BY e.seq",
        stream,
    )
    return [orjson.loads(row[0]) for row in rows]


def consumed(db: Path, consumer: str) -> int:
    rows = query(db, "SELECT position FROM cursors WHERE consumer = ?", consumer)
    return int(rows[0][0]) if rows else 0


def test_sighup_keeps_window_state_and_refuses_a_bad_config(
    tmp_path: Path, mosquitto: MosquittoBroker, processes: list[EdgestreamProcess]
) -> None:
    base = config(tmp_path, mosquitto.url, free_port())
    path = write_yaml(tmp_path / "agent.yaml", base)
    agent = EdgestreamProcess("run", path, tmp_path / "agent.log").start()
    processes.append(agent)
    db = tmp_path / "agent-data" / "queue.db"
    pid_file = tmp_path / "agent-data" / "agent.pid"
    wait_until(pid_file.exists, 20, "the agent to start", agent)
    probes = subscribed(mosquitto.url, db, agent)

    publish(mosquitto.url, 1, 60)
    wait_until(
        lambda: consumed(db, "pipeline:totals") == probes + 60,
        20,
        "60 events in the window",
        agent,
    )

    # An invalid config by SIGHUP: refused with the key path, the agent keeps running.
    broken = with_doubled(base)
    broken["pipelines"][1]["steps"] = [{"map": {"set": {"value": "value *"}}}]
    write_yaml(path, broken)
    assert agent.process is not None
    os.kill(agent.process.pid, signal.SIGHUP)
    wait_until(lambda: "Reload refused" in agent.log_tail(200), 20, "the refusal", agent)
    assert "pipelines[1].steps[0].map.set.value" in agent.log_tail(200)
    assert agent.alive

    # The same invalid config through `edgestream reload`: refused before any signal.
    refused = reload_cli(path)
    assert refused.returncode == 2, refused.stderr
    assert "pipelines[1].steps[0].map.set.value" in refused.stderr
    assert "not asked to reload" in refused.stderr

    # A valid config that adds a pipeline, applied through `edgestream reload`.
    write_yaml(path, with_doubled(base))
    applied = reload_cli(path)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "applied the new config" in applied.stdout
    log = agent.log_tail(200)
    assert "Config reloaded: pipeline doubled added, stream doubled defined" in log

    publish(mosquitto.url, 61, WINDOW)
    wait_until(lambda: queue_last_seq(db, "totals") == 1, 20, "the window result", agent)
    [result] = payloads(db, "totals")
    assert (result["n"], result["total"]) == (WINDOW, WINDOW * (WINDOW + 1) // 2)
    wait_until(
        lambda: consumed(db, "pipeline:doubled") == probes + WINDOW, 20, "doubled to catch up"
    )
    doubled = [event["value"] for event in payloads(db, "doubled")]
    assert doubled[-40:] == [2 * i for i in range(61, WINDOW + 1)]

    assert agent.terminate() == 0
    assert not pid_file.exists()


def test_reload_without_a_running_agent_says_so(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "agent.yaml", config(tmp_path, "mqtt://127.0.0.1:1", 1))
    result = reload_cli(path)
    assert result.returncode == 3
    assert "no running agent" in result.stderr
