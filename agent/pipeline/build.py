"""Turn a validated pipeline config into the objects that run it.

Expressions were already compiled once at config load (errors reported there); here
they are compiled again into the callables the hot loop uses. This is the one place
that knows which config step becomes which runtime object, so adding a step kind
touches this file and the step's own module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from agent.config.model import FilterStep, PipelineConfig, WindowStep
from agent.pipeline.aggregates import AGGREGATES
from agent.pipeline.expr import compile_expression, compile_predicate, parse_aggregate
from agent.pipeline.windows.tumbling import AggregateSpec, TumblingWindow
from agent.pipeline.windows.tumbling import Arg as KeyFn


@dataclass(slots=True)
class CompiledPipeline:
    """A pipeline ready to run: its filters, its optional window and its identity."""

    config: PipelineConfig
    filters: list[KeyFn]
    window: TumblingWindow | None
    window_key: KeyFn | None
    use_ingest_time: bool
    idle: float
    state_name: str


def compile_pipeline(config: PipelineConfig) -> CompiledPipeline:
    """Build the runtime objects of one pipeline."""
    filters = [compile_predicate(s.expr).fn for s in config.steps if isinstance(s, FilterStep)]
    windows = [s for s in config.steps if isinstance(s, WindowStep)]
    window = key_fn = None
    use_ingest, idle = False, float("inf")
    if windows:
        step = windows[0]
        window = TumblingWindow(step.size, step.lateness, _aggregates(step))
        key_fn = compile_expression(step.key).fn if step.key else None
        use_ingest, idle = step.time == "ingest", step.idle
    return CompiledPipeline(config, filters, window, key_fn, use_ingest, idle, _state_name(config))


def _aggregates(step: WindowStep) -> list[AggregateSpec]:
    specs = []
    for name, text in step.aggregates.items():
        call = parse_aggregate(text)
        specs.append(AggregateSpec(name, AGGREGATES[call.func], call.arg.fn if call.arg else None))
    return specs


def _state_name(config: PipelineConfig) -> str:
    """Name the window state after the definition, so a changed pipeline starts fresh.

    Old state read by a different definition would be silently misread; a new name
    makes the restart explicit (the runner logs it) instead.
    """
    definition = repr(config.steps).encode()
    return "window:" + hashlib.sha256(definition).hexdigest()[:16]
