"""Payload patterns: what a sensor stream repeats, factored out of every event.

An event's *pattern* is everything about it that is not a number: its topic (with the
segment that equals the event's key replaced by a placeholder, so `plant/pi-007/temp`
and `plant/pi-012/temp` share one pattern), its headers, its payload's field names and
every non-numeric field value (again with the key as a placeholder). A gateway's
stream has a handful of patterns however many devices feed it, so an event costs a key
id, a pattern id and its numbers, and the numbers are delta-encoded per *series*
(key, pattern): a random walk's next reading is close to the last one.

Only a payload that is a JSON object whose compact re-serialisation (orjson) is
byte-identical to the stored bytes is split into fields; every other payload (binary,
not JSON, not an object, other spacing, integers beyond 64 bits) is kept raw, so the
payload bytes always round-trip exactly.

A keyless event's *subject* (what the key placeholder stands for) is one payload
string field chosen per batch (sync.wire_columnar._subject_field), so a stream whose
device id is only in the payload still gets few patterns and per-device series.

A pattern in the schema is `[topic, headers, keyed]` for raw payloads, or
`[topic, headers, keyed, fields, entries]` (`keyed` 1: the event's key is the subject,
0: the event has no key): `topic` is null, a string, or a list of segments
where null stands for the key; an entry is null (the key), `[value]` (a literal JSON
value), `"j"` (the value's JSON text is in the text column), or a numeric spec: `"i"`
integer, `"f<d>"` float at d decimals, `"fb"` float as IEEE bits, `"i=t"` / `"f=t"`
equal to the event time (stored nowhere).

Strings are literals of the pattern while that keeps patterns few; a batch where it
would not (more than max(16, events / 8) patterns: ids, log messages, random blobs)
puts every non-key, non-numeric value in the text column instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from sync import wire_numbers
from sync.wire_types import WireFormatError

KEY: None = None  # the placeholder for "the event's key" in templates and entries
_FLOAT, _INT, _TEXT = 0, 1, 2
Signature = tuple[object, ...]
PatternKey = tuple[object, ...]
_loads = orjson.loads
_dumps = orjson.dumps


MAX_NESTING = 64
"""Deeper payloads travel raw: orjson writes at most 254 levels, and the hub rebuilds a
columnar payload inside the batch's own structure, so a payload near that limit would
encode here and fail to decode there."""


def parse_object(payload: bytes) -> dict[str, Any] | None:
    """The payload as a JSON object, if it is one in compact form (else it stays raw)."""
    if payload[:1] != b"{":
        return None
    try:
        obj = _loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict or _deep(payload, obj) or _dumps(obj) != payload:
        return None
    return obj


def _deep(payload: bytes, obj: dict[str, Any]) -> bool:
    """Nested past MAX_NESTING; fewer brackets than that cannot be, whatever their order."""
    brackets = payload.count(b"{") + payload.count(b"[")
    return brackets > MAX_NESTING and _nests_deeper(obj, MAX_NESTING)


def _nests_deeper(obj: dict[str, Any], limit: int) -> bool:
    """True when containers nest more than `limit` levels (iterative: no recursion)."""
    pending: list[tuple[Any, int]] = [(obj, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > limit:
            return True
        children = value.values() if type(value) is dict else value
        pending.extend((c, depth + 1) for c in children if type(c) is dict or type(c) is list)
    return False


def subject_of(obj: dict[str, Any] | None, field: str | None) -> str | None:
    """A keyless event's subject: its payload's `field` when that is a string."""
    value = None if obj is None or field is None else obj.get(field)
    return value if type(value) is str else None


def split_object(obj: dict[str, Any], subject: str | None, texts: bool) -> tuple[Any, ...]:
    """(fields, signature, numbers, texts) of a payload object.

    With `texts`, a value that is neither a number nor the subject goes to the text
    column (its JSON text) instead of into the signature: for batches whose strings
    are all different (ids, messages, blobs), where one pattern per event would cost more.
    """
    signature: list[object] = []
    numbers: list[Any] = []
    text: list[bytes] = []
    for value in obj.values():
        kind = type(value)
        if kind is float or kind is int:
            signature.append(_FLOAT if kind is float else _INT)
            numbers.append(value)
        elif kind is str and value == subject:
            signature.append(KEY)
        elif texts:
            signature.append(_TEXT)
            text.append(_dumps(value))
        else:
            signature.append(value if kind is str else _dumps(value))
    return tuple(obj), tuple(signature), numbers, text


def topic_template(topic: str | None, key: str | None) -> object:
    """The topic with the segment equal to the key replaced by KEY (a tuple), else as is."""
    if topic is None or key is None or key not in topic:
        return topic
    parts = topic.split("/")
    if key not in parts:
        return topic
    return tuple(KEY if part == key else part for part in parts)


@dataclass(slots=True)
class PatternBuilder:
    """One pattern being encoded: its members and their numbers, field by field."""

    key: PatternKey
    members: list[int] = field(default_factory=list)
    numbers: list[list[Any]] = field(default_factory=list)
    texts: list[list[bytes]] = field(default_factory=list)

    def text_columns(self) -> list[list[bytes]]:
        """The JSON texts of each text field, in member order."""
        width = len(self.texts[0]) if self.texts else 0
        return [[row[j] for row in self.texts] for j in range(width)]

    def describe(self, specs: list[str]) -> list[object]:
        """The pattern's schema entry, given the numeric specs chosen for its fields."""
        topic, headers, keyed, fields, signature = self.key
        head = [topic, None if headers is None else orjson.Fragment(headers), int(keyed)]  # type: ignore[arg-type, call-overload]
        if fields is None:
            return head
        spec = iter(specs)
        entries = [_entry(item, spec) for item in signature]  # type: ignore[attr-defined]
        return [*head, list(fields), entries]  # type: ignore[call-overload]

    def number_columns(
        self, times: list[float], key_ids: list[int]
    ) -> tuple[list[str], list[list[int]]]:
        """A spec per numeric field and, for the stored ones, their per-series deltas."""
        signature = self.key[4]
        if signature is None:
            return [], []
        kinds = [s for s in signature if s is _FLOAT or s is _INT]  # type: ignore[attr-defined]
        at = [times[i] for i in self.members]
        keys = [key_ids[i] for i in self.members]
        specs, columns = [], []
        for j, kind in enumerate(kinds):
            values = [row[j] for row in self.numbers]
            spec, ints = _number_spec(values, kind, at)
            specs.append(spec)
            if ints is not None:
                columns.append(series_deltas(keys, ints))
        return specs, columns


def _entry(item: object, spec: Any) -> object:
    if item is KEY:
        return None
    if item is _FLOAT or item is _INT:
        return next(spec)
    if item is _TEXT:
        return "j"
    if isinstance(item, bytes):
        return [orjson.Fragment(item)]
    return [item]


def _number_spec(values: list[Any], kind: int, at: list[float]) -> tuple[str, list[int] | None]:
    prefix = "f" if kind == _FLOAT else "i"
    if values == at and 0.0 not in values:
        return prefix + "=t", None
    if kind == _INT:
        return "i", values
    scale, ints = wire_numbers.to_ints(values)
    return ("fb" if scale == wire_numbers.BITS else f"f{scale}"), ints


def series_deltas(keys: list[int], values: list[int]) -> list[int]:
    """Each value minus the previous value of its series (same key), else of the pattern."""
    last: dict[int, int] = {}
    previous = 0
    out = []
    for key, value in zip(keys, values, strict=True):
        out.append(value - last.get(key, previous))
        last[key] = previous = value
    return out


def series_values(keys: list[int], deltas: list[int]) -> list[int]:
    """The inverse of series_deltas."""
    last: dict[int, int] = {}
    previous = 0
    out = []
    for key, delta in zip(keys, deltas, strict=True):
        previous = last[key] = last.get(key, previous) + delta
        out.append(previous)
    return out


# ------------------------------------------------------------------ decoding


@dataclass(frozen=True, slots=True)
class Pattern:
    """A decoded pattern, validated: nothing in it can make decoding crash or hang."""

    topic: object
    headers: dict[str, Any] | None
    keyed: bool  # the event's key is the subject (else the event has no key)
    fields: tuple[str, ...] | None
    entries: tuple[object, ...]
    size: int  # bytes of its JSON: what each of its events may copy (key and numbers aside)
    stored_numbers: int  # how many number columns its events carry in the block
    stored_texts: int  # how many text columns

    def topic_for(self, key: str | None) -> str | None:
        """The event's topic, its key substituted back."""
        if self.topic is None or isinstance(self.topic, str):
            return self.topic
        if key is None:
            raise WireFormatError("a keyless event has a key-dependent topic")
        return "/".join(key if part is KEY else part for part in self.topic)  # type: ignore[attr-defined]


_PARSED: dict[bytes, Pattern] = {}
_PARSED_MAX = 4096


def parse_pattern(raw: object) -> Pattern:
    """A schema entry as a Pattern; WireFormatError when it is not one.

    Parsed patterns are remembered by their JSON text (a fleet sends the same few over
    and over; validating them again cost a third of decoding a batch of 10).
    """
    text = orjson.dumps(raw)
    pattern = _PARSED.get(text)
    if pattern is None:
        pattern = _parse(raw, len(text))
        if len(_PARSED) < _PARSED_MAX:
            _PARSED[text] = pattern
    return pattern


def _parse(raw: object, size: int) -> Pattern:
    if not isinstance(raw, list) or len(raw) not in (3, 5):
        raise WireFormatError(
            f"a pattern is not [topic, headers, keyed(, fields, entries)]: {raw!r}"
        )
    topic, headers, keyed = raw[0], raw[1], raw[2]
    if keyed not in (0, 1) or type(keyed) is not int:
        raise WireFormatError(f"a pattern's keyed flag is not 0 or 1: {keyed!r}")
    if not (topic is None or isinstance(topic, str) or _is_template(topic)):
        raise WireFormatError(f"a pattern's topic is malformed: {topic!r}")
    if headers is not None and not isinstance(headers, dict):
        raise WireFormatError("a pattern's headers are not an object")
    template = tuple(topic) if isinstance(topic, list) else topic
    if len(raw) == 3:
        return Pattern(template, headers, bool(keyed), None, (), size, 0, 0)
    fields, entries = raw[3], raw[4]
    if not (isinstance(fields, list) and isinstance(entries, list)):
        raise WireFormatError("a pattern's fields and entries must be lists")
    if len(fields) != len(entries) or not all(isinstance(f, str) for f in fields):
        raise WireFormatError("a pattern's fields and entries do not match")
    if not all(_valid_entry(e) for e in entries):
        raise WireFormatError(f"a pattern has a malformed entry: {entries!r}")
    numbers = sum(1 for e in entries if isinstance(e, str) and e[0] in "if" and e[-2:] != "=t")
    texts = entries.count("j")
    return Pattern(
        template, headers, bool(keyed), tuple(fields), tuple(entries), size, numbers, texts
    )


def _is_template(topic: object) -> bool:
    return isinstance(topic, list) and all(p is None or isinstance(p, str) for p in topic)


def _valid_entry(entry: object) -> bool:
    if entry is None or (isinstance(entry, list) and len(entry) == 1):
        return True
    if entry in ("i", "i=t", "f=t", "fb", "j"):
        return True
    return (
        isinstance(entry, str)
        and entry[:1] == "f"
        and entry[1:].isdecimal()
        and wire_numbers.valid_scale(int(entry[1:]))
    )


def rebuild_payloads(
    pattern: Pattern,
    keys: list[str | None],
    times: list[float],
    numbers: list[list[int]],
    texts: list[list[bytes]],
) -> list[bytes]:
    """The payloads of one pattern's events, from their keys, times, numbers and texts."""
    count = len(keys)
    if pattern.fields is None:
        raise AssertionError("raw patterns carry no fields")
    if not pattern.fields:
        return [b"{}"] * count
    stored, text = iter(numbers), iter(texts)
    columns = [_column(entry, keys, times, stored, text, count) for entry in pattern.entries]
    fields = pattern.fields
    return [_dumps(dict(zip(fields, row, strict=True))) for row in zip(*columns, strict=True)]


def _column(
    entry: object, keys: list[str | None], times: list[float], stored: Any, text: Any,
    count: int,
) -> list[Any]:  # fmt: skip
    if entry is None:
        return keys
    if isinstance(entry, list):
        return [entry[0]] * count
    if entry == "j":
        return [orjson.Fragment(t) for t in next(text)]
    if entry in ("f=t", "i=t"):
        return times if entry == "f=t" else [int(t) for t in times]
    return _numbers(str(entry), next(stored))


def _numbers(spec: str, ints: list[int]) -> list[Any]:
    if spec == "i":
        return ints
    return wire_numbers.from_ints(wire_numbers.BITS if spec == "fb" else int(spec[1:]), ints)
