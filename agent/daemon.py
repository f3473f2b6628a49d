"""The agent daemon: one queue, its sources, pipelines, outputs and uplink, supervised.

Everything runs in one `asyncio.TaskGroup`, each task named after its component. A
stop (SIGTERM, Ctrl-C) cancels the components -- sources first, so intake stops --
and then closes the queue, which commits what is pending and checkpoints. Nothing is
lost by stopping at any point: every hand-off acknowledges only after a commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from agent.config.file_source import FileSourceConfig
from agent.config.http_source import HttpSourceConfig
from agent.config.model import AgentConfig, Source
from agent.config.mqtt_source import MqttSourceConfig
from agent.health import agent_readiness
from agent.metrics import agent_registry
from agent.outputs.mqtt import MqttOutput
from agent.pipeline.build import compile_pipeline
from agent.pipeline.runner import PipelineRunner
from agent.queue import DEADLETTER_STREAM, DurableQueue, StreamLimits
from agent.sources.file import FileSource
from agent.sources.http import HttpSource
from agent.sources.local import polling_source
from agent.sources.mqtt import MqttSource
from agent.sources.polling import PollingSource
from sync import systemd
from sync.metrics_server import MetricsServer
from sync.systemd import keep_watchdog_fed
from sync.uplink import CONSUMER as UPLINK_CONSUMER
from sync.uplink import Uplink

log = logging.getLogger(__name__)


RunningSource = MqttSource | PollingSource | FileSource | HttpSource


@dataclass(slots=True)
class Components:
    """The running parts of one agent, built from its config."""

    sources: list[RunningSource] = field(default_factory=list)
    pipelines: list[PipelineRunner] = field(default_factory=list)
    outputs: list[MqttOutput] = field(default_factory=list)
    uplink: Uplink | None = None


class Agent:
    """Builds the components from a validated config and runs them until stopped."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.queue: DurableQueue | None = None
        self.parts = Components()
        self.metrics: MetricsServer | None = None

    async def open(self) -> None:
        """Open the queue, declare its consumers and build every component."""
        cfg = self.config
        limits = {
            name: StreamLimits(s.max_bytes, s.max_age, s.overflow)
            for name, s in cfg.streams.items()
        }
        self.queue = await DurableQueue.open(
            cfg.data_dir, limits, commit_interval=cfg.queue.commit_interval,
            commit_max_events=cfg.queue.commit_max_events, synchronous=cfg.queue.synchronous,
        )  # fmt: skip
        await self.queue.register_consumers(self._consumers())
        self.parts = self._build(self.queue)
        self.metrics = self._metrics_server(self.queue)
        log.info(
            "Agent %s opened queue %s (epoch %s)", cfg.device_id, self.queue.path, self.queue.epoch
        )

    def _consumers(self) -> dict[str, list[str]]:
        consumers: dict[str, list[str]] = {name: [] for name in self.config.streams}
        consumers[DEADLETTER_STREAM] = []
        for p in self.config.pipelines:
            for read in sorted(p.read()):
                consumers[read].append(f"pipeline:{p.name}")
        for o in self.config.outputs:
            consumers[o.stream].append(f"output:{o.name}")
        for name, stream in self.config.streams.items():
            if stream.uplink:
                consumers[name].append(UPLINK_CONSUMER)
        return consumers

    def _source(self, config: Source, queue: DurableQueue) -> RunningSource:
        """The running source of one configured source, by kind."""
        if isinstance(config, MqttSourceConfig):
            return MqttSource(config, queue, self.config.device_id, self.config.queue.max_pending)
        if isinstance(config, FileSourceConfig):
            return FileSource(config, queue)
        if isinstance(config, HttpSourceConfig):
            return HttpSource(config, queue)
        return polling_source(config, queue)

    def _build(self, queue: DurableQueue) -> Components:
        cfg = self.config
        parts = Components()
        parts.sources = [self._source(s, queue) for s in cfg.sources]
        parts.pipelines = [
            PipelineRunner(
                compile_pipeline(p), queue, cfg.queue.read_batch, cfg.queue.commit_interval
            )
            for p in cfg.pipelines
        ]
        parts.outputs = [
            MqttOutput(o, queue, cfg.device_id, cfg.queue.read_batch) for o in cfg.outputs
        ]
        uplink_streams = [name for name, s in cfg.streams.items() if s.uplink]
        if cfg.uplink is not None and uplink_streams:
            parts.uplink = Uplink(cfg.uplink, queue, cfg.device_id, uplink_streams)
        return parts

    def _metrics_server(self, queue: DurableQueue) -> MetricsServer:
        """/metrics, /healthz and /readyz over the components just built."""
        cfg = self.config
        registry = agent_registry(cfg, queue, self.parts)
        readiness = agent_readiness(cfg.metrics, cfg.data_dir, queue, self.parts)
        return MetricsServer(cfg.metrics, registry, readiness, name="agent-metrics")

    def _coroutines(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        p = self.parts
        runs: list[tuple[str, Coroutine[Any, Any, None]]] = []
        runs += [(f"src.{s.name}", s.run()) for s in p.sources]
        runs += [(f"pipeline.{r.name}", r.run()) for r in p.pipelines]
        runs += [(f"out.{o.config.name}", o.run()) for o in p.outputs]
        if p.uplink is not None:
            runs.append(("uplink", p.uplink.run()))
        return runs

    def _summary(self) -> str:
        """One line for `systemctl status`: what runs."""
        p = self.parts
        uplink = "uplink on" if p.uplink is not None else "no uplink"
        return (
            f"{len(p.sources)} sources, {len(p.pipelines)} pipelines, "
            f"{len(p.outputs)} outputs, {uplink}"
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run every component until `stop` is set, then shut down cleanly."""
        if self.queue is None:
            await self.open()
        assert self.queue is not None and self.metrics is not None
        await self.metrics.start()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(coro, name=f"edgestream[{name}]")
                    for name, coro in self._coroutines()
                ]
                tasks.append(group.create_task(keep_watchdog_fed(lambda: None)))
                systemd.notify("READY=1", f"STATUS={self._summary()}")
                await stop.wait()
                systemd.notify("STOPPING=1", "STATUS=stopping: committing what was received")
                log.info("Stopping: intake first, then pipelines, outputs and uplink")
                for task in tasks:  # sources were created first, so they stop first
                    task.cancel()
        finally:
            await self.metrics.close()
            await self.queue.close()
            log.info("Agent stopped; queue closed cleanly")
