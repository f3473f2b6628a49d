"""The agent daemon: one queue, its sources, pipelines, outputs and uplink, supervised.

Everything runs in one `asyncio.TaskGroup`, one task per component, keyed by kind
and name. A stop (SIGTERM, Ctrl-C) cancels the components -- sources first, so
intake stops -- and then closes the queue, which commits what is pending and
checkpoints. A reload (SIGHUP) stops and starts only the components whose config
changed (agent/reload.py). Nothing is lost by stopping any component at any point:
every hand-off acknowledges only after a commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.config.file_source import FileSourceConfig
from agent.config.http_source import HttpSourceConfig
from agent.config.model import AgentConfig, Source
from agent.config.mqtt_source import MqttSourceConfig
from agent.health import agent_readiness
from agent.logs import config_secrets, redact_secrets, setup_logging
from agent.metrics import agent_registry
from agent.outputs.mqtt import MqttOutput
from agent.pipeline.build import compile_pipeline
from agent.pipeline.runner import PipelineRunner
from agent.queue import DEADLETTER_STREAM, DurableQueue, StreamLimits
from agent.queue.errors import QueueError
from agent.reload import ReloadPlan, ReloadRefusedError, ReloadStats, plan_reload
from agent.sources.file import FileSource
from agent.sources.http import HttpSource
from agent.sources.local import polling_source
from agent.sources.mqtt import MqttSource
from agent.sources.polling import PollingSource
from sync import systemd
from sync.config.errors import ConfigError
from sync.device_keys import KeyFileError
from sync.metrics_server import MetricsServer
from sync.systemd import keep_watchdog_fed
from sync.uplink import CONSUMER as UPLINK_CONSUMER
from sync.uplink import Uplink

log = logging.getLogger(__name__)


RunningSource = MqttSource | PollingSource | FileSource | HttpSource

STOP_ORDER = ("source", "pipeline", "output", "uplink")
"""Intake stops first, so nothing new arrives while the rest finishes."""

T = TypeVar("T")

RELOAD_ERRORS = (ConfigError, ReloadRefusedError, KeyFileError, QueueError, OSError)
"""Why a reload is refused in the normal course of things (others log a traceback)."""

TaskKey = tuple[str, str]
"""(kind, name) of a running component's task."""


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
        self.reloads = ReloadStats()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: dict[TaskKey, asyncio.Task[None]] = {}

    async def open(self) -> None:
        """Open the queue, declare its consumers and build every component."""
        cfg = self.config
        self.queue = await DurableQueue.open(
            cfg.data_dir, stream_limits(cfg), commit_interval=cfg.queue.commit_interval,
            commit_max_events=cfg.queue.commit_max_events, synchronous=cfg.queue.synchronous,
        )  # fmt: skip
        await self.queue.register_consumers(consumers(cfg))
        self.parts = self._build(cfg, self.queue)
        self.metrics = self._metrics_server(self.queue)
        log.info(
            "Agent %s opened queue %s (epoch %s)", cfg.device_id, self.queue.path, self.queue.epoch
        )

    def _source(self, config: Source, queue: DurableQueue) -> RunningSource:
        """The running source of one configured source, by kind."""
        if isinstance(config, MqttSourceConfig):
            return MqttSource(config, queue, self.config.device_id, self.config.queue.max_pending)
        if isinstance(config, FileSourceConfig):
            return FileSource(config, queue)
        if isinstance(config, HttpSourceConfig):
            return HttpSource(config, queue)
        return polling_source(config, queue)

    def _build(
        self, cfg: AgentConfig, queue: DurableQueue, only: ReloadPlan | None = None
    ) -> Components:
        """The components of `cfg`; with a reload plan, only those it starts."""
        sources = None if only is None else only.sources.to_start
        pipelines = None if only is None else only.pipelines.to_start
        outputs = None if only is None else only.outputs.to_start
        parts = Components()
        parts.sources = [self._source(s, queue) for s in cfg.sources if _wanted(s.name, sources)]
        parts.pipelines = [
            PipelineRunner(
                compile_pipeline(p), queue, cfg.queue.read_batch, cfg.queue.commit_interval
            )
            for p in cfg.pipelines
            if _wanted(p.name, pipelines)
        ]
        parts.outputs = [
            MqttOutput(o, queue, cfg.device_id, cfg.queue.read_batch)
            for o in cfg.outputs
            if _wanted(o.name, outputs)
        ]
        uplink_streams = [name for name, s in cfg.streams.items() if s.uplink]
        if cfg.uplink is not None and uplink_streams and (only is None or only.uplink):
            parts.uplink = Uplink(cfg.uplink, queue, cfg.device_id, uplink_streams)
        return parts

    def _metrics_server(self, queue: DurableQueue) -> MetricsServer:
        """/metrics, /healthz and /readyz over the components just built."""
        cfg = self.config
        registry = agent_registry(cfg, queue, self.parts, self.reloads)
        readiness = agent_readiness(cfg.metrics, cfg.data_dir, queue, self.parts)
        return MetricsServer(cfg.metrics, registry, readiness, name="agent-metrics")

    def _summary(self) -> str:
        """One line for `systemctl status`: what runs."""
        p = self.parts
        uplink = "uplink on" if p.uplink is not None else "no uplink"
        return (
            f"{len(p.sources)} sources, {len(p.pipelines)} pipelines, "
            f"{len(p.outputs)} outputs, {uplink}"
        )

    async def run(
        self,
        stop: asyncio.Event,
        reload_requests: asyncio.Event | None = None,
        load_config: Callable[[], AgentConfig] | None = None,
    ) -> None:
        """Run every component until `stop` is set, then shut down cleanly.

        Each time `reload_requests` is set, `load_config` is called for the new config
        (a reload is refused, and logged, when it raises).
        """
        if self.queue is None:
            await self.open()
        assert self.queue is not None and self.metrics is not None
        await self.metrics.start()
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._start_all(self.parts)
                helpers = [group.create_task(keep_watchdog_fed(lambda: None))]
                if reload_requests is not None and load_config is not None:
                    helpers.append(group.create_task(self._serve_reloads(reload_requests,
                                                                         load_config)))  # fmt: skip
                systemd.notify("READY=1", f"STATUS={self._summary()}")
                await stop.wait()
                systemd.notify("STOPPING=1", "STATUS=stopping: committing what was received")
                log.info("Stopping: intake first, then pipelines, outputs and uplink")
                for task in helpers:
                    task.cancel()
                await self._stop(list(self._tasks))
        finally:
            self._group = None
            await self.metrics.close()
            await self.queue.close()
            log.info("Agent stopped; queue closed cleanly")

    # ------------------------------------------------------------ component tasks

    def _start_all(self, parts: Components) -> None:
        assert self._group is not None
        runs: list[tuple[TaskKey, Coroutine[Any, Any, None]]] = []
        runs += [(("source", s.name), s.run()) for s in parts.sources]
        runs += [(("pipeline", r.name), r.run()) for r in parts.pipelines]
        runs += [(("output", o.config.name), o.run()) for o in parts.outputs]
        if parts.uplink is not None:
            runs.append((("uplink", "uplink"), parts.uplink.run()))
        for key, coro in runs:
            self._tasks[key] = self._group.create_task(coro, name=f"edgestream[{key[0]}.{key[1]}]")

    async def _stop(self, keys: Iterable[TaskKey]) -> None:
        """Cancel these components, intake first, and wait until each has stopped."""
        wanted = set(keys)
        ordered = sorted(wanted & set(self._tasks), key=lambda k: STOP_ORDER.index(k[0]))
        tasks = [self._tasks.pop(key) for key in ordered]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -------------------------------------------------------------------- reload

    async def _serve_reloads(
        self, requests: asyncio.Event, load_config: Callable[[], AgentConfig]
    ) -> None:
        while True:
            await requests.wait()
            requests.clear()
            await self.reload_from(load_config)

    async def reload_from(self, load_config: Callable[[], AgentConfig]) -> bool:
        """Load the config again and apply it; on any error keep the running one."""
        systemd.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        self.reloads.last_at = time.time()
        try:
            plan = await self.reload(await asyncio.to_thread(load_config))
        except Exception as error:  # no config, however bad, may stop the daemon
            self.reloads.refused += 1
            self.reloads.last_ok = False
            expected = isinstance(error, RELOAD_ERRORS)
            log.error("Reload refused; still running the previous config:\n%s", error,
                      exc_info=None if expected else error)  # fmt: skip
            return False
        finally:
            systemd.notify("READY=1", f"STATUS={self._summary()}")
        self.reloads.applied += 1
        self.reloads.last_ok = True
        log.info("Config reloaded: %s", plan.describe())
        return True

    async def reload(self, new: AgentConfig) -> ReloadPlan:
        """Apply a validated config: only added, removed and changed components restart.

        Everything that can fail -- the plan, building the new components (they read
        key files), defining streams and consumers -- happens before any running
        component is stopped, so a refused reload changes nothing.
        """
        assert self.queue is not None and self._group is not None
        plan = plan_reload(self.config, new)
        built = self._build(new, self.queue, only=plan)
        await self.queue.reconfigure(stream_limits(new), consumers(new))
        await self._stop(
            [("source", n) for n in plan.sources.to_stop]
            + [("pipeline", n) for n in plan.pipelines.to_stop]
            + [("output", n) for n in plan.outputs.to_stop]
            + ([("uplink", "uplink")] if plan.uplink else [])
        )
        p = self.parts
        p.sources = _merge(p.sources, built.sources, [s.name for s in new.sources], _name)
        p.pipelines = _merge(p.pipelines, built.pipelines, [x.name for x in new.pipelines], _name)
        p.outputs = _merge(p.outputs, built.outputs, [o.name for o in new.outputs], _output_name)
        if plan.uplink:
            self.parts.uplink = built.uplink
        self.config = new
        if plan.live:
            setup_logging(new.log_level, new.log_format, secrets=config_secrets(new))
        else:
            redact_secrets(config_secrets(new))
        assert self.metrics is not None
        self.metrics.registry = agent_registry(new, self.queue, self.parts, self.reloads)
        self._start_all(built)
        return plan


def stream_limits(cfg: AgentConfig) -> dict[str, StreamLimits]:
    """The queue limits of every configured stream."""
    return {
        name: StreamLimits(s.max_bytes, s.max_age, s.overflow) for name, s in cfg.streams.items()
    }


def consumers(cfg: AgentConfig) -> dict[str, list[str]]:
    """Which consumers read which stream: pipelines, outputs and the uplink."""
    found: dict[str, list[str]] = {name: [] for name in cfg.streams}
    found[DEADLETTER_STREAM] = []
    for p in cfg.pipelines:
        for read in sorted(p.read()):
            found[read].append(f"pipeline:{p.name}")
    for o in cfg.outputs:
        found[o.stream].append(f"output:{o.name}")
    for name, stream in cfg.streams.items():
        if stream.uplink:
            found[name].append(UPLINK_CONSUMER)
    return found


def _name(component: RunningSource | PipelineRunner) -> str:
    return component.name


def _output_name(output: MqttOutput) -> str:
    return output.config.name


def _wanted(name: str, names: tuple[str, ...] | None) -> bool:
    return names is None or name in names


def _merge(
    running: list[T], built: list[T], order: Iterable[str], name_of: Callable[[T], str]
) -> list[T]:
    """The running components kept and the new ones built, in the config's order."""
    by_name = {name_of(item): item for item in [*running, *built]}
    return [by_name[name] for name in order]
