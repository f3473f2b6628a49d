"""Metrics and health: real agents and hubs, scraped over HTTP, parsed by Prometheus's parser.

The parser is prometheus_client's (a test dependency only): if it reads our exposition
as we meant it, so will a Prometheus server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agent.cli.hub import hub_metrics_server
from agent.config import parse_agent_config
from agent.daemon import Agent
from sync.config.errors import ConfigError
from sync.config.spec import load_config
from sync.hub.config import HubConfig
from sync.hub.service import Hub
from sync.hub.store import SqliteCentralStore
from sync.metrics import CONTENT_TYPE, Family, format_value, render
from tests.brokers import MosquittoBroker, free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# ---------------------------------------------------------------------- exposition


def test_label_values_and_help_escaped_as_the_format_specifies() -> None:
    family = Family("edgestream_test_total", "counter", 'Help with \\ and\nnewline "kept".')
    family.add(3, path='C:\\dir "quoted"\nnext')
    text = render([family])
    assert text == (
        '# HELP edgestream_test_total Help with \\\\ and\\nnewline "kept".\n'
        "# TYPE edgestream_test_total counter\n"
        'edgestream_test_total{path="C:\\\\dir \\"quoted\\"\\nnext"} 3\n'
    )
    [parsed] = text_string_to_metric_families(text)
    assert parsed.documentation == 'Help with \\ and\nnewline "kept".'
    assert parsed.samples[0].labels == {"path": 'C:\\dir "quoted"\nnext'}


def test_special_values_spelled_the_go_way() -> None:
    assert [format_value(v) for v in (math.inf, -math.inf, math.nan, 2.0, 0.25)] == [
        "+Inf", "-Inf", "NaN", "2", "0.25",
    ]  # fmt: skip
    family = Family("edgestream_test", "gauge", "Values.")
    for i, value in enumerate((math.inf, -math.inf, math.nan)):
        family.add(value, i=str(i))
    [parsed] = text_string_to_metric_families(render([family]))
    values = [s.value for s in parsed.samples]
    assert values[:2] == [math.inf, -math.inf] and math.isnan(values[2])


def test_counter_names_must_end_in_total() -> None:
    with pytest.raises(ValueError, match="_total"):
        Family("edgestream_events", "counter", "Wrong.")


def test_non_loopback_listen_refused_without_allow_remote() -> None:
    with pytest.raises(ConfigError, match="allow_remote"):
        text = "broker: {url: mqtt://x:1883}\nmetrics: {listen: 0.0.0.0:9109}\n"
        load_config(HubConfig, text, "hub.yaml")
    text = "broker: {url: mqtt://x:1883}\nmetrics: {listen: 0.0.0.0:9109, allow_remote: true}\n"
    assert load_config(HubConfig, text, "hub.yaml").metrics.port == 9109


# ----------------------------------------------------------------------- helpers


def _get(port: int, path: str) -> tuple[int, str, str]:
    """A plain HTTP GET: status, content type, body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.headers["content-type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["content-type"], error.read().decode()


async def scrape(port: int) -> Samples:
    """/metrics parsed by Prometheus's parser, as {(sample name, labels): value}."""
    status, content_type, body = await asyncio.to_thread(_get, port, "/metrics")
    assert status == 200 and content_type == CONTENT_TYPE
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


async def ready(port: int) -> tuple[int, dict[str, Any]]:
    status, _, body = await asyncio.to_thread(_get, port, "/readyz")
    return status, json.loads(body)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def agent_yaml(tmp: Path, uplink_url: str) -> str:
    """A simulated source every 20 ms into `sensors`, a pipeline, an uplink to `uplink_url`."""
    config = {
        "device_id": "pi-metrics",
        "data_dir": str(tmp / "agent-data"),
        "queue": {"commit_interval": "20ms"},
        "streams": {"sensors": {"uplink": True, "max_bytes": "8MiB"}, "warm": {}},
        "sources": [{
            "type": "simulated", "name": "sim", "stream": "sensors", "interval": "20ms",
            "signals": [{"name": "temp", "base": 21, "amplitude": 2, "period": "1s"}],
        }],
        "pipelines": [{
            "name": "warmth", "input": "sensors", "output": "warm",
            "steps": [{"filter": "temp > 0"}],
        }],
        "uplink": {
            "broker": {"url": uplink_url, "backoff_initial": "100ms", "backoff_max": "500ms"},
            "batch_max_delay": "100ms",
        },
        "metrics": {"listen": "127.0.0.1:0", "disconnected_grace": "300ms"},
    }  # fmt: skip
    return yaml.safe_dump(config)


@contextlib.asynccontextmanager
async def running_agent(text: str) -> AsyncIterator[Agent]:
    agent = Agent(parse_agent_config(text))
    await agent.open()
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:

        async def listening() -> bool:
            return agent.metrics is not None and agent.metrics.running

        await eventually(listening, 5, "the metrics endpoint")
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def metrics_port(agent: Agent) -> int:
    assert agent.metrics is not None
    return agent.metrics.port


# ----------------------------------------------------------------------- the agent


async def test_metrics_endpoint_values_move_as_events_flow(tmp_path: Path) -> None:
    async with running_agent(agent_yaml(tmp_path, f"mqtt://127.0.0.1:{free_port()}")) as agent:
        port = metrics_port(agent)
        sim = (("source", "sim"), ("stream", "sensors"))
        stored = ("edgestream_source_events_stored_total", sim)
        depth = ("edgestream_stream_depth_events", (("stream", "sensors"),))
        piped = ("edgestream_pipeline_events_in_total", (("pipeline", "warmth"),))

        async def flowing() -> bool:
            return (await scrape(port)).get(stored, 0) >= 5

        await eventually(flowing, 10, "events stored")
        first = await scrape(port)
        await asyncio.sleep(0.5)
        second = await scrape(port)

    assert second[stored] > first[stored]
    assert second[depth] > first[depth]
    assert second[piped] >= first[piped] > 0
    assert second[("edgestream_stream_max_bytes", (("stream", "sensors"),))] == 8 * 1024**2
    unsent = second[("edgestream_stream_oldest_unsent_age_seconds", (("stream", "sensors"),))]
    assert unsent > 0  # the uplink broker is unreachable: nothing leaves
    assert second[("edgestream_uplink_connected", ())] == 0
    assert second[("edgestream_uplink_batches_total", ())] == 0
    assert second[("process_resident_memory_bytes", ())] > 10 * 1024**2
    assert second[("process_cpu_seconds_total", ())] > 0
    lag = ("edgestream_stream_consumer_lag_events", (("consumer", "uplink"), ("stream", "sensors")))
    assert second[lag] > 0


async def test_readyz_says_the_uplink_broker_is_unreachable(tmp_path: Path) -> None:
    closed = free_port()
    async with running_agent(agent_yaml(tmp_path, f"mqtt://127.0.0.1:{closed}")) as agent:
        port = metrics_port(agent)
        status, _, body = await asyncio.to_thread(_get, port, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "alive"

        async def not_ready() -> bool:
            return (await ready(port))[0] == 503

        await eventually(not_ready, 5, "readiness to fail")
        _, answer = await ready(port)
    [reason] = answer["reasons"]
    assert f"uplink broker mqtt://127.0.0.1:{closed} not connected" in reason


# ------------------------------------------------------------------------ the hub


def hub_yaml(tmp: Path, url: str) -> str:
    return yaml.safe_dump({
        "hub_id": "hub-metrics",
        "broker": {"url": url, "backoff_initial": "100ms", "backoff_max": "500ms"},
        "store": {"type": "sqlite", "path": str(tmp / "hub-data" / "central.db")},
        "metrics": {"listen": "127.0.0.1:0", "disconnected_grace": "5s"},
    })  # fmt: skip


async def test_hub_metrics_count_committed_batches_and_devices(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    config = load_config(HubConfig, hub_yaml(tmp_path, mosquitto.url), "hub.yaml")
    store = SqliteCentralStore(config.store.path)  # type: ignore[union-attr]
    hub = Hub(config, store)
    metrics = hub_metrics_server(hub)
    assert await metrics.start()
    hub_task = asyncio.create_task(hub.run())
    try:
        async with running_agent(agent_yaml(tmp_path, mosquitto.url)) as agent:

            async def committed() -> bool:
                return hub.stats.batches >= 2

            await eventually(committed, 10, "two batches committed at the hub")
            agent_samples = await scrape(metrics_port(agent))
            agent_ready = await ready(metrics_port(agent))
        samples = await scrape(metrics.port)
        hub_ready = await ready(metrics.port)
    finally:
        hub_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hub_task
        await metrics.close()
        await store.close()

    assert agent_ready == (200, {"status": "ready", "reasons": []})
    assert agent_samples[("edgestream_uplink_connected", ())] == 1
    assert agent_samples[("edgestream_uplink_batches_total", ())] >= 1
    assert agent_samples[("edgestream_uplink_compression_ratio", ())] > 0
    assert agent_samples[("edgestream_uplink_last_ack_timestamp_seconds", ())] > time.time() - 60
    assert hub_ready == (200, {"status": "ready", "reasons": []})
    assert samples[("edgestream_hub_batches_total", ())] >= 2
    assert samples[("edgestream_hub_events_total", ())] > 0
    assert samples[("edgestream_hub_connected", ())] == 1
    device = (("device", "pi-metrics"),)
    assert samples[("edgestream_hub_device_events_total", device)] > 0
    assert 0 <= samples[("edgestream_hub_device_last_seen_age_seconds", device)] < 60
    assert samples[("edgestream_hub_devices", ())] == 1
