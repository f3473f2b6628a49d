"""docs/configuration.md is generated from the config classes and must not drift."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import pytest

from agent.config.model import AgentConfig
from sync.config.fields import FieldSpec, annotated_parts, fields_of, optional_inner
from sync.hub.config import HubConfig

ROOT = Path(__file__).resolve().parents[2]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_config_docs", ROOT / "scripts/gen_config_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_reference_matches_the_config_classes() -> None:
    committed = (ROOT / "docs/configuration.md").read_text(encoding="utf-8")
    assert committed == load_generator().render_page(), (
        "docs/configuration.md is stale: run python scripts/gen_config_docs.py"
    )


def test_defaults_and_rules_are_written_for_people() -> None:
    page = load_generator().render_page()
    for text in ["`250ms`", "`256MiB`", "`7d`", "`256KiB`", "`16MiB`", "`1m`", "From 0 to 2."]:
        assert text in page
    assert "`edgestream-<device_id>-<source name>`" in page
    assert "`edgestream-hub-<hub_id>`" in page
    assert "${VAR:-default}" in page


def config_classes(cls: type, seen: set[type] | None = None) -> Iterator[type]:
    seen = set() if seen is None else seen
    if cls in seen:
        return
    seen.add(cls)
    yield cls
    for spec in fields_of(cls):
        for nested in nested_classes(spec.annotation):
            yield from config_classes(nested, seen)


def nested_classes(annotation: Any) -> Iterator[type]:
    base, _ = annotated_parts(optional_inner(annotation) or annotation)
    if isinstance(base, type) and dataclasses.is_dataclass(base):
        yield base
    for arg in get_args(base):
        yield from nested_classes(arg)


ALL_FIELDS = [
    pytest.param(spec, id=f"{cls.__name__}.{spec.name}")
    for root in (AgentConfig, HubConfig)
    for cls in config_classes(root)
    for spec in fields_of(cls)
]


@pytest.mark.parametrize("spec", ALL_FIELDS)
def test_every_key_has_a_sentence_of_description(spec: FieldSpec) -> None:
    assert spec.doc[0].isupper() and len(spec.doc.split()) >= 4, spec.doc
