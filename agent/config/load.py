"""Reading the agent's config file, with every expression compiled up front.

Filters, window keys and aggregates are compiled while loading so that a typo
in an expression refuses the config at start-up, with its key path and column,
instead of surfacing when the first matching event arrives.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from agent.config.model import AgentConfig
from agent.config.mqtt_source import MqttSourceConfig
from agent.config.steps import STEP_CLASSES, StepConfig
from agent.pipeline.expr import ExprError, compile_expression, compile_predicate, parse_aggregate
from sync.config.errors import IssueKind, Problem
from sync.config.spec import Check, load_config, load_config_file


def load_agent_config(path: str | Path, env: Mapping[str, str] = os.environ) -> AgentConfig:
    """Read and validate an agent config file; raises ConfigError listing every problem."""
    return load_config_file(AgentConfig, path, env, checks=EXPRESSION_CHECKS)


def parse_agent_config(
    text: str, source: str = "<config>", env: Mapping[str, str] = os.environ
) -> AgentConfig:
    """`load_agent_config` for YAML text already in memory (tests, `edgestream check -`)."""
    return load_config(AgentConfig, text, source, env, checks=EXPRESSION_CHECKS)


def _check_step(step: StepConfig) -> list[Problem]:
    compilers = {
        "value": compile_expression,
        "predicate": compile_predicate,
        "aggregate": parse_aggregate,
    }
    return _problems((path, text, compilers[kind]) for path, text, kind in step.expressions())


def _check_mqtt_source(source: MqttSourceConfig) -> list[Problem]:
    return _problems((path, text, compile_expression) for path, text in source.expressions())


def _problems(expressions: Iterable[tuple[str, str, Callable[[str], Any]]]) -> list[Problem]:
    problems = []
    for path, text, compile_ in expressions:
        try:
            compile_(text)
        except ExprError as exc:
            message = f"syntax error at column {exc.column}: {exc.message}"
            problems.append(Problem(path, message, IssueKind.SYNTAX))
    return problems


EXPRESSION_CHECKS: Final[Mapping[type, Check]] = {
    **dict.fromkeys(STEP_CLASSES, _check_step),
    MqttSourceConfig: _check_mqtt_source,
}
