"""Markdown reference tables rendered from config classes, so the docs cannot drift.

Each config class becomes one section (key, type, default, description),
in the order a reader meets them; a class used in several places (an MQTT
broker) is described once and linked from the others.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Final, Literal, get_args, get_origin

import yaml

from sync.config.fields import (
    TAGGED_BY_KEY,
    TAGGED_BY_TYPE,
    FieldSpec,
    annotated_parts,
    fields_of,
    format_value,
    optional_inner,
    tag_of,
    union_members,
)
from sync.config.units import DURATION, SIZE

_SCALAR_NAMES: Final = {str: "string", int: "integer", float: "number", bool: "boolean"}
_HEADER: Final = ["| Key | Type | Default | Description |", "|---|---|---|---|"]


def render_reference(cls: type, title: str) -> str:
    """A `## title` chapter with one table per config class reachable from `cls`."""
    renderer = _Renderer(_slug(title))
    body = renderer.section(_Section(cls, "", None))
    return "\n".join([f"## {title}", "", *body])


@dataclasses.dataclass(frozen=True)
class _Section:
    """A config class at a display path; `tag` is `type: mqtt` or a step key such as `filter`."""

    cls: type
    path: str
    tag: str | None

    @property
    def label(self) -> str:
        if not self.path:
            return "Top level"
        return f"`{self.path}` with `{self.tag}`" if self.tag else f"`{self.path}`"


class _Renderer:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.anchors: dict[type, str] = {}
        self.pending: list[_Section] = []

    def section(self, section: _Section) -> list[str]:
        """The section's heading and table, then the sections of the classes it introduced."""
        self.anchors.setdefault(section.cls, self._anchor(section))
        before = len(self.pending)
        rows = [self._row(spec, section.path) for spec in fields_of(section.cls)]
        if section.tag and section.tag.startswith("type: "):
            kind = section.tag.removeprefix("type: ")
            rows.insert(0, f'| `type` | `"{kind}"` | required | Selects this kind. |')
        lines = [f'<a id="{self.anchors[section.cls]}"></a>', f"### {section.label}", ""]
        lines += [_intro(section.cls), "", *_HEADER, *rows, ""]
        children, self.pending = self.pending[before:], self.pending[:before]
        for child in children:
            lines += self.section(child)
        return lines

    def _anchor(self, section: _Section) -> str:
        return "-".join(filter(None, [self.prefix, _slug(section.path), _slug(section.tag or "")]))

    def _row(self, spec: FieldSpec, path: str) -> str:
        child = f"{path}.{spec.name}" if path else spec.name
        cells = [f"`{spec.name}`", self._type_text(spec.annotation, child)]
        cells += [_default_text(spec), _description(spec)]
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    def _type_text(self, annotation: Any, path: str) -> str:
        annotation = optional_inner(annotation) or annotation
        base, marks = annotated_parts(annotation)
        if DURATION in marks or SIZE in marks:
            return "duration" if DURATION in marks else "size"
        if TAGGED_BY_TYPE in marks or TAGGED_BY_KEY in marks:
            by_type = TAGGED_BY_TYPE in marks
            return " or ".join(self._member_link(m, path, by_type) for m in union_members(base))
        return self._plain_type_text(base, path)

    def _plain_type_text(self, base: Any, path: str) -> str:
        origin = get_origin(base)
        if origin is Literal:
            return "one of " + ", ".join(f'`"{choice}"`' for choice in get_args(base))
        if origin in (list, tuple):
            return "list of " + self._type_text(get_args(base)[0], f"{path}[]")
        if origin is dict:
            return "map of name to " + self._type_text(get_args(base)[1], f"{path}.<name>")
        if isinstance(base, type) and dataclasses.is_dataclass(base):
            return self._link(_Section(base, path, None), "mapping")
        return _SCALAR_NAMES[base]

    def _member_link(self, member: type, path: str, by_type: bool) -> str:
        kind = tag_of(member)
        if by_type:
            return self._link(_Section(member, path, f"type: {kind}"), f"`type: {kind}`")
        return self._link(_Section(member, f"{path}.{kind}", None), f"`{kind}`")

    def _link(self, section: _Section, text: str) -> str:
        """A link to the class's section, queuing the section when it is new."""
        if section.cls not in self.anchors:
            self.anchors[section.cls] = self._anchor(section)
            self.pending.append(section)
        return f"[{text}](#{self.anchors[section.cls]})"


def _intro(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def _default_text(spec: FieldSpec) -> str:
    default = spec.default
    if spec.required:
        return "required"
    if default is None:
        return "unset"
    if dataclasses.is_dataclass(default):
        return "defaults below"
    if isinstance(default, tuple | list | dict):
        return f"`{_flow_yaml(default)}`"
    return f"`{format_value(spec.annotation, default)}`"


def _description(spec: FieldSpec) -> str:
    parts = [spec.doc.rstrip(".") + "."]
    bounds = _bounds_text(spec)
    if bounds:
        parts.append(bounds)
    if spec.pattern:
        parts.append(f"Must match `{spec.pattern}`.")
    if spec.example is not None:
        parts.append(f"Example: `{_flow_yaml(spec.example)}`.")
    return " ".join(parts)


def _bounds_text(spec: FieldSpec) -> str | None:
    low, high = spec.minimum, spec.maximum
    base = optional_inner(spec.annotation) or spec.annotation
    if get_origin(annotated_parts(base)[0]) in (list, tuple, dict):
        return f"At least {low:g} entry." if low == 1 else None
    show = [None if v is None else format_value(spec.annotation, v) for v in (low, high)]
    if show[0] is not None and show[1] is not None:
        return f"From {show[0]} to {show[1]}."
    if show[0] is not None:
        return f"At least {show[0]}."
    return None if show[1] is None else f"At most {show[1]}."


def _flow_yaml(value: Any) -> str:
    """A value as one line of YAML, the way it would be written in a config file."""
    if isinstance(value, str):
        return value
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000)
    return text.strip().removesuffix("...").strip()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
