"""Config reload in process: the plan, the queue's reconfiguration, the running agent.

The real-process SIGHUP and `edgestream reload` tests are in tests/e2e/test_reload.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import parse_agent_config
from agent.config.model import AgentConfig
from agent.daemon import Agent
from agent.pidfile import pid_path, remove_pid, running_pid, write_pid
from agent.queue import DurableQueue, NewEvent, StreamLimits
from agent.reload import ReloadRefusedError, differing_paths, plan_reload
from tests.brokers import free_port


def base_config(tmp: Path) -> dict[str, Any]:
    """Two simulated sources, a count window and a filter pipeline, no network."""
    signal = [{"name": "temp", "base": 20, "amplitude": 1, "period": "1s"}]
    return {
        "device_id": "pi-reload",
        "data_dir": str(tmp / "data"),
        "queue": {"commit_interval": "20ms"},
        "streams": {"raw": {}, "totals": {}, "warm": {}},
        "sources": [
            {"type": "simulated", "name": "a", "stream": "raw", "interval": "10ms",
             "signals": signal},
            {"type": "simulated", "name": "b", "stream": "raw", "interval": "10ms",
             "signals": signal},
        ],
        "pipelines": [
            {"name": "totals", "input": "raw", "output": "totals",
             "steps": [{"window": {"type": "count", "events": 1_000_000,
                                   "aggregates": {"n": "count()"}}}]},
            {"name": "warm", "input": "raw", "output": "warm", "steps": [{"filter": "temp > 0"}]},
        ],
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
    }  # fmt: skip


def event(payload: bytes) -> NewEvent:
    now = time.time()
    return NewEvent(now, now, None, None, payload)


def parse(data: dict[str, Any]) -> AgentConfig:
    return parse_agent_config(yaml.safe_dump(data))


# ---------------------------------------------------------------------- the plan


def test_plan_names_added_removed_and_changed_components(tmp_path: Path) -> None:
    old = base_config(tmp_path)
    new = copy.deepcopy(old)
    new["sources"][1]["interval"] = "20ms"  # b changed
    new["sources"].append({**old["sources"][0], "name": "c"})  # c added
    new["pipelines"] = [old["pipelines"][0]]  # warm removed, totals unchanged
    new["streams"]["extra"] = {"max_bytes": "1MiB"}
    new["log_level"] = "debug"
    plan = plan_reload(parse(old), parse(new))
    assert plan.sources.added == ("c",)
    assert plan.sources.changed == ("b",)
    assert plan.sources.removed == ()
    assert plan.pipelines.removed == ("warm",)
    assert plan.pipelines.to_start == ()
    assert plan.streams == ("extra",)
    assert plan.live == ("log_level",)
    assert not plan.uplink
    assert plan.describe() == (
        "source c added, source b changed, pipeline warm removed, stream extra defined, "
        "log_level applied"
    )


def test_identical_config_changes_nothing(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    plan = plan_reload(parse(config), parse(copy.deepcopy(config)))
    assert plan.describe() == "no changes"


@pytest.mark.parametrize(
    ("key", "value", "path"),
    [
        ("device_id", "pi-other", "device_id"),
        ("data_dir", "/elsewhere", "data_dir"),
        ("queue", {"commit_interval": "30ms"}, "queue.commit_interval"),
        ("metrics", {"listen": "127.0.0.1:1"}, "metrics.listen"),
    ],
)
def test_restart_only_keys_are_refused_with_their_path(
    tmp_path: Path, key: str, value: Any, path: str
) -> None:
    old = base_config(tmp_path)
    new = {**copy.deepcopy(old), key: value}
    with pytest.raises(ReloadRefusedError, match=rf"^{path} changed, which needs a restart"):
        plan_reload(parse(old), parse(new))


def test_differing_paths_descend_into_nested_settings(tmp_path: Path) -> None:
    old = parse(base_config(tmp_path))
    new = parse({**base_config(tmp_path), "queue": {"read_batch": 7, "commit_interval": "1s"}})
    assert sorted(differing_paths(old.queue, new.queue, "queue")) == [
        "queue.commit_interval",
        "queue.read_batch",
    ]


def test_uplink_restarts_when_it_reads_a_key_file(tmp_path: Path) -> None:
    key = tmp_path / "device.key"
    key.write_text("00" * 32)
    config = base_config(tmp_path)
    config["streams"]["raw"]["uplink"] = True
    config["uplink"] = {"broker": {"url": "mqtt://127.0.0.1:1"}}
    assert not plan_reload(parse(config), parse(config)).uplink
    signed = copy.deepcopy(config)
    signed["uplink"]["hmac_key_file"] = str(key)
    assert plan_reload(parse(config), parse(signed)).uplink
    assert plan_reload(parse(signed), parse(signed)).uplink  # re-reads a rotated key


# --------------------------------------------------------------------- the queue


async def test_queue_reconfigure_defines_streams_and_keeps_removed_ones(tmp_path: Path) -> None:
    queue = await DurableQueue.open(tmp_path, {"a": StreamLimits(1 << 20, 3600.0)})
    try:
        await queue.register_consumers({"a": ["pipeline:p"]})
        await queue.append("a", [event(b'{"v":1}')])
        await queue.reconfigure({"b": StreamLimits(2 << 20, 60.0, "block")}, {"b": ["pipeline:q"]})
        assert set(queue.streams) >= {"a", "b"}
        seqs = await queue.append("b", [event(b'{"v":2}')])
        assert seqs == [1]
        assert queue.last_seq("a") == 1  # its event stays: nothing is deleted by a reload
    finally:
        await queue.close()
    conn = sqlite3.connect(tmp_path / "queue.db")
    active = dict(
        conn.execute(
            "SELECT c.consumer, c.active FROM cursors c JOIN streams s ON s.id = c.stream_id"
        ).fetchall()
    )
    events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    assert active == {"pipeline:p": 0, "pipeline:q": 1}
    assert events == 2


async def test_queue_reconfigure_changes_limits_in_place(tmp_path: Path) -> None:
    queue = await DurableQueue.open(tmp_path, {"a": StreamLimits(1 << 20, 3600.0)})
    try:
        await queue.reconfigure({"a": StreamLimits(200, 3600.0, "drop_newest")}, {})
        first = await queue.append("a", [event(b"x" * 80)])
        second = await queue.append("a", [event(b"x" * 80)])
        assert (first, second) == ([1], [2])
    finally:
        await queue.close()
    conn = sqlite3.connect(tmp_path / "queue.db")
    gaps = conn.execute("SELECT first_seq, last_seq, reason FROM gaps").fetchall()
    conn.close()
    assert gaps == [(2, 2, "drop_newest")]  # the new 200-byte budget applied at once


# -------------------------------------------------------------- the running agent


@contextlib.asynccontextmanager
async def running(config: dict[str, Any]) -> AsyncIterator[Agent]:
    agent = Agent(parse(config))
    await agent.open()
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await until(lambda: agent._group is not None, "the agent to start")
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def task_names(agent: Agent) -> set[str]:
    return {f"{kind}.{name}" for kind, name in agent._tasks if not agent._tasks[kind, name].done()}


async def test_reload_restarts_only_what_changed_and_keeps_window_state(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    async with running(config) as agent:
        totals = agent.parts.pipelines[0]
        source_a, source_b = agent.parts.sources
        await until(lambda: totals.stats.events_in >= 50, "the window to fill")
        new = copy.deepcopy(config)
        new["sources"][1]["interval"] = "15ms"  # b changes
        new["streams"]["hot"] = {}
        new["pipelines"].append(
            {"name": "hot", "input": "raw", "output": "hot", "steps": [{"filter": "temp > 19"}]}
        )
        assert await agent.reload_from(lambda: parse(new))
        assert agent.parts.pipelines[0] is totals  # not restarted: its window is in memory
        assert agent.parts.sources[0] is source_a
        assert agent.parts.sources[1] is not source_b
        assert task_names(agent) == {"source.a", "source.b", "pipeline.totals",
                                     "pipeline.warm", "pipeline.hot"}  # fmt: skip
        hot = agent.parts.pipelines[2]
        await until(lambda: hot.stats.events_out > 0, "the added pipeline to produce")
        assert agent.reloads.applied == 1
        assert agent.reloads.last_ok
        before = totals.stats.events_in
        await until(lambda: totals.stats.events_in > before + 20, "the kept pipeline to go on")
        assert totals.chain.operators[0].snapshot() is not None


async def test_refused_reload_changes_nothing(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    async with running(config) as agent:
        parts = (list(agent.parts.sources), list(agent.parts.pipelines))
        tasks = dict(agent._tasks)

        def broken() -> AgentConfig:
            return parse({**config, "pipelines": [{"name": "x", "input": "nowhere"}]})

        assert not await agent.reload_from(broken)
        moved = {**config, "device_id": "pi-moved"}
        assert not await agent.reload_from(lambda: parse(moved))
        missing_key = copy.deepcopy(config)
        missing_key["streams"]["raw"]["uplink"] = True
        missing_key["uplink"] = {
            "broker": {"url": "mqtt://127.0.0.1:1"},
            "hmac_key_file": str(tmp_path / "absent.key"),
        }
        assert not await agent.reload_from(lambda: parse(missing_key))
        assert (list(agent.parts.sources), list(agent.parts.pipelines)) == parts
        assert agent._tasks == tasks
        assert all(not task.done() for task in tasks.values())
        assert agent.reloads.refused == 3
        assert not agent.reloads.last_ok
        assert agent.config.device_id == "pi-reload"


async def test_removed_pipeline_stops_and_stops_holding_events(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    async with running(config) as agent:
        await until(lambda: agent.parts.pipelines[1].stats.events_in > 0, "warm to run")
        new = copy.deepcopy(config)
        new["pipelines"] = new["pipelines"][:1]
        new["sources"] = new["sources"][:1]
        assert await agent.reload_from(lambda: parse(new))
        assert task_names(agent) == {"source.a", "pipeline.totals"}
        assert [p.name for p in agent.parts.pipelines] == ["totals"]
    conn = sqlite3.connect(tmp_path / "data" / "queue.db")
    active = dict(conn.execute("SELECT consumer, active FROM cursors").fetchall())
    conn.close()
    assert active == {"pipeline:totals": 1, "pipeline:warm": 0}


def test_pid_file_names_only_a_live_edgestream_process(tmp_path: Path) -> None:
    assert running_pid(tmp_path) is None
    write_pid(tmp_path)
    assert pid_path(tmp_path).read_text().strip().isdigit()
    # This process is pytest, not an agent: a stale file naming it is not trusted.
    found = running_pid(tmp_path)
    assert found is None or "edgestream" in Path(f"/proc/{found}/cmdline").read_text()
    remove_pid(tmp_path)
    assert not pid_path(tmp_path).exists()
    pid_path(tmp_path).write_text("999999999\n")
    assert running_pid(tmp_path) is None
