"""The command line: config errors stop everything (exit 2), `queue` reads a live database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.queue import DurableQueue, NewEvent, StreamLimits
from sync.hub.store import SqliteCentralStore, StoreLockedError

BAD_AGENT = """\
device_id: pi-1
data_dir: {data_dir}
streams:
  sensors: {{}}
pipelines:
  - name: p
    input: sensors
    output: sensors
    steps:
      - window: {{size: ten, aggregates: {{n: count()}}}}
"""


def edgestream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_with_a_bad_config_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = tmp_path / "agent.yaml"
    config.write_text(BAD_AGENT.format(data_dir=data_dir))
    result = edgestream("run", "-c", str(config))
    assert result.returncode == 2
    assert (
        f"{config}:10: pipelines[0].steps[0].window.size: expected a duration such as 10s,"
        ' got "ten"' in result.stderr
    )
    assert "nothing was started" in result.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("device_id: [unclosed\n", "YAML syntax error"),
        ("device_id: pi\nstreams: {s: {}}\nbogus: 1\n", ":3: bogus: unknown key"),
        ("device_id: pi\nstreams: {s: {max_age: 5}}\n", "expected a duration such as 10s, got 5"),
        ("streams: {s: {}}\n", "device_id: required key is missing"),
    ],
)
def test_validate_reports_the_place_and_exits_2(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(text)
    result = edgestream("validate", str(config))
    assert result.returncode == 2, result.stdout
    assert expected in result.stderr


def test_validate_reports_all_errors_at_once(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("device_id: pi\nstreams:\n  s: {max_age: ten, max_bytes: lots}\nx: 1\n")
    result = edgestream("validate", str(config))
    assert result.returncode == 2
    assert "3 configuration errors" in result.stderr


def test_validate_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = edgestream("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2


def test_queue_lists_streams_while_the_queue_is_open(tmp_path: Path) -> None:
    async def scenario() -> str:
        limits = {"sensors": StreamLimits(1 << 20, 3600.0)}
        queue = await DurableQueue.open(tmp_path, limits, commit_interval=0.01)
        await queue.register_consumers({"sensors": ["uplink"]})
        now = time.time()
        await queue.append("sensors", [NewEvent(now, now, "k", "t", b"{}")] * 3)
        await queue.ack("sensors", "uplink", 1)
        out = await asyncio.to_thread(edgestream, "queue", "--data-dir", str(tmp_path))
        await queue.close()
        assert out.returncode == 0, out.stderr
        return out.stdout

    output = asyncio.run(scenario())
    assert "sensors" in output
    assert "cursor uplink: 1 (2 behind)" in output


def test_a_second_hub_cannot_open_the_same_store(tmp_path: Path) -> None:
    first = SqliteCentralStore(tmp_path / "central.db")
    with pytest.raises(StoreLockedError, match="owned by another hub process"):
        SqliteCentralStore(tmp_path / "central.db")
    first.close_now()
    SqliteCentralStore(tmp_path / "central.db").close_now()
