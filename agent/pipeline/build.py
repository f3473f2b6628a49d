"""Turn a validated pipeline config into the chain of operators that runs it.

Expressions were already compiled once at config load (errors reported there);
here they are compiled again into the callables the hot loops use. This is the one
place that knows which config step becomes which operator, so adding a step kind
touches this file, `agent/config/steps.py` and the step's own module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.config.model import PipelineConfig
from agent.config.steps import (
    DeadbandStep,
    DedupeStep,
    DownsampleStep,
    FilterStep,
    JoinStep,
    MapStep,
    RouteStep,
    SelectStep,
    SplitStep,
    StepConfig,
    ThrottleStep,
    WindowStep,
)
from agent.pipeline.aggregates import aggregate_for
from agent.pipeline.chain import Chain
from agent.pipeline.expr import compile_expression, parse_aggregate
from agent.pipeline.operator import Operator
from agent.pipeline.steps.filter import Filter
from agent.pipeline.steps.map import Map
from agent.pipeline.steps.route import Route
from agent.pipeline.steps.select import Select
from agent.pipeline.steps.split import Split
from agent.pipeline.windows.aggregation import AggregateSet, AggregateSpec
from agent.pipeline.windows.common import WindowSettings
from agent.pipeline.windows.time_window import TimeWindow


@dataclass(slots=True)
class CompiledPipeline:
    """A pipeline ready to run: its chain, the state name of each stateful step, its inputs.

    ``state_names[i]`` names step i's snapshot after the definition of steps 0..i, so
    changing a step starts its state (and that of the steps after it) afresh, while
    the steps before it keep theirs.
    """

    config: PipelineConfig
    chain: Chain
    state_names: dict[int, str]
    side_inputs: list[tuple[int, str]]


def compile_pipeline(config: PipelineConfig) -> CompiledPipeline:
    """Build the runtime objects of one pipeline."""
    operators = [build_step(step) for step in config.steps]
    state_names = {
        i: _state_name(config.steps[: i + 1], i)
        for i, operator in enumerate(operators)
        if operator.stateful
    }
    side_inputs = [(i, stream) for i, op in enumerate(operators) for stream in op.side_inputs]
    return CompiledPipeline(config, Chain(operators), state_names, side_inputs)


def build_step(step: StepConfig) -> Operator:
    """The operator of one configured step."""
    return _BUILDERS[type(step)](step)


def window_settings(step: WindowStep) -> WindowSettings:
    """The kind-independent part of a window step."""
    return WindowSettings(
        aggregates=AggregateSet([_aggregate(name, text) for name, text in step.aggregates.items()]),
        key=compile_expression(step.key) if step.key is not None else None,
        use_ingest_time=step.time == "ingest",
        lateness=step.lateness,
        idle=step.idle,
        late_stream=None if step.late == "drop" else step.late,
    )


def _aggregate(name: str, text: str) -> AggregateSpec:
    call = parse_aggregate(text)
    return AggregateSpec(name, aggregate_for(call.func, call.param), call.arg)


def _window(step: WindowStep) -> Operator:
    settings = window_settings(step)
    if step.type in ("tumbling", "hopping"):
        assert step.size is not None
        return TimeWindow(settings, step.size, step.slide)
    if step.type == "session":
        from agent.pipeline.windows.session import SessionWindow

        assert step.gap is not None
        return SessionWindow(settings, step.gap, step.max_length)
    from agent.pipeline.windows.count import CountWindow

    assert step.events is not None
    return CountWindow(settings, step.events, step.every)


def _deadband(step: DeadbandStep) -> Operator:
    from agent.pipeline.steps.deadband import Deadband

    return Deadband(step)


def _dedupe(step: DedupeStep) -> Operator:
    from agent.pipeline.steps.dedupe import Dedupe

    return Dedupe(step)


def _throttle(step: ThrottleStep) -> Operator:
    from agent.pipeline.steps.throttle import Throttle

    return Throttle(step)


def _downsample(step: DownsampleStep) -> Operator:
    from agent.pipeline.steps.downsample import Downsample

    return Downsample(step)


def _join(step: JoinStep) -> Operator:
    if step.type == "table":
        from agent.pipeline.joins.table import TableJoin

        return TableJoin(step)
    from agent.pipeline.joins.interval import WindowJoin

    return WindowJoin(step)


_BUILDERS: dict[type, Callable[[Any], Operator]] = {
    FilterStep: Filter,
    MapStep: Map,
    SelectStep: Select,
    SplitStep: Split,
    RouteStep: Route,
    DeadbandStep: _deadband,
    DedupeStep: _dedupe,
    ThrottleStep: _throttle,
    DownsampleStep: _downsample,
    WindowStep: _window,
    JoinStep: _join,
}


def _state_name(steps: tuple[StepConfig, ...], index: int) -> str:
    """Name a step's state after the definitions up to it (see CompiledPipeline)."""
    definition = repr(steps).encode()
    return f"step{index}:" + hashlib.sha256(definition).hexdigest()[:16]
