"""How a config class declares its keys, and how the walker and docs read them back.

`setting(...)` stores the description, example and bounds in the dataclass
field's metadata, so one declaration serves validation and the generated
reference alike.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
from typing import Any, Final, TypeVar, Union, dataclass_transform, get_args, get_origin
from typing import get_type_hints as _type_hints

from sync.config.errors import describe
from sync.config.units import DURATION, SIZE, format_duration, format_size

TAGGED_BY_TYPE: Final = "tagged_by_type"
"""Marks `Annotated[A | B, TAGGED_BY_TYPE]`: a mapping whose `type:` names the member's `kind`."""
TAGGED_BY_KEY: Final = "tagged_by_key"
"""Marks `Annotated[A | B, TAGGED_BY_KEY]`: a mapping with one key, the member's `kind`."""

_T = TypeVar("_T")


def setting(
    *,
    default: Any = dataclasses.MISSING,
    doc: str,
    example: Any = None,
    minimum: float | None = None,
    maximum: float | None = None,
    pattern: str | None = None,
) -> Any:
    """Declare a config key; without `default` the key is required.

    `minimum`/`maximum` bound numbers, durations, sizes, and the length of lists
    and mappings; `pattern` is a regular expression a string must match in full.
    """
    meta = {"doc": doc, "example": example, "minimum": minimum, "maximum": maximum}
    meta["pattern"] = pattern
    if isinstance(default, list | dict):
        factory = functools.partial(type(default), default)
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(setting,))
def config_class(cls: type[_T]) -> type[_T]:
    """Make `cls` a frozen, slotted, keyword-only dataclass, the shape the walker expects."""
    return dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """One config key as the walker and the docs see it."""

    name: str
    annotation: Any
    default: Any
    doc: str
    example: Any
    minimum: float | None
    maximum: float | None
    pattern: str | None

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


@functools.cache
def fields_of(cls: type) -> tuple[FieldSpec, ...]:
    """The keys of config class `cls`, in declaration order."""
    hints = _type_hints(cls, include_extras=True)
    return tuple(_field_spec(field, hints[field.name]) for field in dataclasses.fields(cls))


def _field_spec(field: dataclasses.Field[Any], annotation: Any) -> FieldSpec:
    default = field.default
    if field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    meta = field.metadata
    if "doc" not in meta:
        raise TypeError(f"field {field.name} must be declared with setting(doc=...)")
    return FieldSpec(
        name=field.name,
        annotation=annotation,
        default=default,
        doc=meta["doc"],
        example=meta["example"],
        minimum=meta["minimum"],
        maximum=meta["maximum"],
        pattern=meta["pattern"],
    )


def optional_inner(annotation: Any) -> Any | None:
    """`X` for an annotation `X | None`, else None."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return None
    args = get_args(annotation)
    rest = [arg for arg in args if arg is not type(None)]
    return rest[0] if len(args) == 2 and len(rest) == 1 else None


def annotated_parts(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """(base type, metadata) of `Annotated[base, *metadata]`; plain types have none."""
    if hasattr(annotation, "__metadata__"):
        return annotation.__origin__, tuple(annotation.__metadata__)
    return annotation, ()


def union_members(annotation: Any) -> tuple[type, ...]:
    """The classes of a tagged union `A | B`, or the one class of a single-member union."""
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(get_args(annotation))
    return (annotation,)


def tag_of(cls: type) -> str:
    """The `kind` a tagged-union member answers to."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str):
        raise TypeError(f"{cls.__name__} needs `kind: ClassVar[str]` to be in a tagged union")
    return kind


def format_value(annotation: Any, value: Any) -> str:
    """`value` written the way a user writes it for a key of this type (`250ms`, `1MiB`)."""
    _, marks = annotated_parts(optional_inner(annotation) or annotation)
    if DURATION in marks and isinstance(value, int | float):
        return format_duration(value)
    if SIZE in marks and isinstance(value, int | float):
        return format_size(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return describe(value)


def bounds_message(spec: FieldSpec, raw: Any, value: Any) -> str | None:
    """Why `value` breaks the key's minimum, maximum or pattern, or None when it fits.

    Lengths are judged on `raw`, the list as written, so an item already
    reported as invalid does not also make the list look too short.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return _pattern_message(spec, value)
    if isinstance(value, list | tuple | dict):
        return _length_message(spec, len(raw) if isinstance(raw, list | dict) else 0)
    if spec.minimum is not None and value < spec.minimum:
        return _range_message(spec, "at least", spec.minimum, value)
    if spec.maximum is not None and value > spec.maximum:
        return _range_message(spec, "at most", spec.maximum, value)
    return None


def _pattern_message(spec: FieldSpec, value: str) -> str | None:
    if spec.pattern is None or re.fullmatch(spec.pattern, value):
        return None
    return f"must match {spec.pattern}, got {describe(value)}"


def _range_message(spec: FieldSpec, relation: str, limit: float, value: Any) -> str:
    shown_limit = format_value(spec.annotation, limit)
    return f"must be {relation} {shown_limit}, got {format_value(spec.annotation, value)}"


def _length_message(spec: FieldSpec, length: int) -> str | None:
    if spec.minimum is not None and length < spec.minimum:
        if spec.minimum == 1:
            return "must not be empty"
        return f"must have at least {spec.minimum:g} entries, got {length}"
    if spec.maximum is not None and length > spec.maximum:
        return f"must have at most {spec.maximum:g} entries, got {length}"
    return None
