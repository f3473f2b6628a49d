"""Reading the agent's config file, with every expression compiled up front.

Filters, window keys and aggregates are compiled while loading so that a typo
in an expression refuses the config at start-up, with its key path and column,
instead of surfacing when the first matching event arrives.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from agent.config.model import AgentConfig, FilterStep, WindowStep
from agent.pipeline.expr import ExprError, compile_expression, parse_aggregate
from sync.config.errors import IssueKind, Problem, join_key
from sync.config.spec import Check, load_config, load_config_file


def load_agent_config(path: str | Path, env: Mapping[str, str] = os.environ) -> AgentConfig:
    """Read and validate an agent config file; raises ConfigError listing every problem."""
    return load_config_file(AgentConfig, path, env, checks=EXPRESSION_CHECKS)


def parse_agent_config(
    text: str, source: str = "<config>", env: Mapping[str, str] = os.environ
) -> AgentConfig:
    """`load_agent_config` for YAML text already in memory (tests, `edgestream check -`)."""
    return load_config(AgentConfig, text, source, env, checks=EXPRESSION_CHECKS)


def _check_filter(step: FilterStep) -> list[Problem]:
    return _problems([("expr", step.expr, compile_expression)])


def _check_window(step: WindowStep) -> list[Problem]:
    return _problems(_window_expressions(step))


def _window_expressions(step: WindowStep) -> Iterator[tuple[str, str, Callable[[str], Any]]]:
    if step.key is not None:
        yield "key", step.key, compile_expression
    for name, call in step.aggregates.items():
        yield join_key("aggregates", name), call, parse_aggregate


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
    FilterStep: _check_filter,
    WindowStep: _check_window,
}
