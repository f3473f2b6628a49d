"""Per-event metadata that expressions can read besides the payload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, init=False)
class EventMeta:
    """Where and when an event happened; built once per event, so it must be cheap.

    The generated ``__init__`` of a frozen dataclass goes through
    ``object.__setattr__`` once per field; writing the slots through their
    descriptors keeps the instance immutable at half the construction cost.
    """

    topic: str
    key: str | None
    event_time: float
    ingest_time: float

    def __init__(self, topic: str, key: str | None, event_time: float, ingest_time: float) -> None:
        _set_topic(self, topic)
        _set_key(self, key)
        _set_event_time(self, event_time)
        _set_ingest_time(self, ingest_time)


def _slot_setter(name: str) -> Callable[[EventMeta, Any], None]:
    """The slot descriptor's ``__set__``, which bypasses the frozen ``__setattr__``."""
    setter: Callable[[EventMeta, Any], None] = EventMeta.__dict__[name].__set__
    return setter


_set_topic = _slot_setter("topic")
_set_key = _slot_setter("key")
_set_event_time = _slot_setter("event_time")
_set_ingest_time = _slot_setter("ingest_time")
