"""Closures that read payload field paths, topic segments and event metadata.

A path is the chain of constant keys in ``env.temp``, ``readings[0]`` or
``payload["tags"]["site"]``; it is resolved with plain dict lookups and turns
into null as soon as a step is missing or of the wrong shape. When the payload
itself is not an object (a bare number from a simple sensor), the root field
``value`` is the whole payload, so ``value > 15`` works for both shapes.
"""

from __future__ import annotations

from typing import Any

from agent.pipeline.expr.meta import EventMeta
from agent.pipeline.expr.nodes import Fn, PathKey
from agent.pipeline.expr.values import get_item

BARE_VALUE = "value"
"""The root field name that stands for a payload that is not an object."""


def whole_payload(payload: Any, meta: EventMeta) -> Any:
    """``payload`` with no path."""
    return payload


def no_value(payload: Any, meta: EventMeta) -> Any:
    """What a field reads as when the payload is not an object."""
    return None


def non_object_root(key: PathKey) -> Fn:
    """How the first step of a path reads a payload that is not a dict."""
    if key == BARE_VALUE:
        return whole_payload
    if type(key) is int:

        def index(payload: Any, meta: EventMeta) -> Any:
            return get_item(payload, key)

        return index
    return no_value


def path_getter(path: tuple[PathKey, ...]) -> Fn:
    """A closure reading ``path`` from the payload, specialised for short paths."""
    if not path:
        return whole_payload
    first = path[0]
    other = non_object_root(first)
    if len(path) == 1:

        def single(payload: Any, meta: EventMeta) -> Any:
            return payload.get(first) if type(payload) is dict else other(payload, meta)

        return single
    rest = path[1:]

    def nested(payload: Any, meta: EventMeta) -> Any:
        current = payload.get(first) if type(payload) is dict else other(payload, meta)
        for key in rest:
            if type(current) is dict:
                current = current.get(key)
            elif current is None:
                return None
            else:
                current = get_item(current, key)
        return current

    return nested


def topic(payload: Any, meta: EventMeta) -> Any:
    """The full topic string."""
    return meta.topic


def key(payload: Any, meta: EventMeta) -> Any:
    """The event key chosen by the source (a topic segment or a payload field)."""
    return meta.key


def event_time(payload: Any, meta: EventMeta) -> Any:
    """When the event happened, seconds since the epoch."""
    return meta.event_time


def ingest_time(payload: Any, meta: EventMeta) -> Any:
    """When the agent received the event, seconds since the epoch."""
    return meta.ingest_time


META_NAMES: dict[str, Fn] = {
    "topic": topic,
    "key": key,
    "event_time": event_time,
    "ingest_time": ingest_time,
}
"""Reserved names that read event metadata instead of payload fields."""


def topic_segment(index: int) -> Fn:
    """``topic[i]``: one ``/``-separated level of the topic, negative from the end."""

    def segment(payload: Any, meta: EventMeta) -> Any:
        levels = meta.topic.split("/")
        return levels[index] if -len(levels) <= index < len(levels) else None

    return segment


def dynamic_topic_segment(index_fn: Fn) -> Fn:
    """``topic[expr]`` where the index is only known per event."""

    def segment(payload: Any, meta: EventMeta) -> Any:
        index = index_fn(payload, meta)
        if type(index) is not int:
            return None
        levels = meta.topic.split("/")
        return levels[index] if -len(levels) <= index < len(levels) else None

    return segment
