"""Dotted field paths (``env.temp``) read, written and removed on JSON payloads.

Steps that reshape payloads (map, select, split) never mutate an object they did
not create: a payload may be shared with a side stream or a held event. They take
a shallow `writable` copy, and `set_path`/`pop_path` copy each nested object on
the way down before changing it (copy on write, cheaper than a deep copy).
"""

from __future__ import annotations

from typing import Any

Path = tuple[str, ...]

MISSING: Any = object()
"""Returned by `get_path` when a field is absent (null is a present value)."""


def parse_path(text: str) -> Path:
    """``"env.temp"`` -> ``("env", "temp")``."""
    return tuple(text.split("."))


def get_path(payload: Any, path: Path) -> Any:
    """The value at ``path``, or MISSING."""
    current = payload
    for part in path:
        if type(current) is not dict or part not in current:
            return MISSING
        current = current[part]
    return current


def set_path(payload: dict[str, Any], path: Path, value: Any) -> None:
    """Write ``value`` at ``path``, creating (or replacing non-object) parents."""
    current = payload
    for part in path[:-1]:
        child = current.get(part)
        child = current[part] = dict(child) if type(child) is dict else {}
        current = child
    current[path[-1]] = value


def pop_path(payload: dict[str, Any], path: Path) -> Any:
    """Remove and return the value at ``path`` (MISSING when absent)."""
    if get_path(payload, path) is MISSING:
        return MISSING
    current = payload
    for part in path[:-1]:
        child = current[part] = dict(current[part])
        current = child
    return current.pop(path[-1])


def writable(payload: Any) -> dict[str, Any]:
    """A private shallow copy of an object payload; a non-object becomes ``{"value": it}``."""
    if type(payload) is dict:
        return dict(payload)
    return {} if payload is None else {"value": payload}
