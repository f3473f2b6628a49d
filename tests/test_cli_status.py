"""`edgestream status`: from the running daemon, and from the database when it is down."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.brokers import free_port
from tests.e2e.harness import EdgestreamProcess, write_yaml


def status(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "status", "-c", str(config), *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_status_reads_the_daemon_then_the_database_when_it_is_down(
    tmp_path: Path, processes: list[EdgestreamProcess]
) -> None:
    port = free_port()
    config = write_yaml(tmp_path / "agent.yaml", {
        "device_id": "pi-st",
        "data_dir": str(tmp_path / "data"),
        "metrics": {"listen": f"127.0.0.1:{port}"},
        "streams": {"readings": {}},
        "sources": [{"type": "simulated", "name": "sim", "stream": "readings",
                     "interval": "50ms", "signals": [{"name": "t"}]}],
    })  # fmt: skip
    agent = EdgestreamProcess("run", config, tmp_path / "run.log").start()
    processes.append(agent)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.5)  # a few polls stored

    live = status(config)
    assert live.returncode == 0, live.stderr
    lines = live.stdout.splitlines()
    assert lines[0] == "Ready."
    sim = next(line for line in lines if line.startswith("sim "))
    assert int(sim.split()[1]) > 0  # events stored
    assert any(line.startswith("readings ") for line in lines)
    assert "Uplink: not configured." in live.stdout
    as_json = json.loads(status(config, "--json").stdout)
    assert "edgestream_source_events_stored_total" in as_json["families"]

    assert agent.terminate() == 0
    down = status(config)
    assert down.returncode == 0
    assert "No answer from the agent" in down.stdout and "readings" in down.stdout
    assert json.loads(status(config, "--json").stdout)["running"] is False
