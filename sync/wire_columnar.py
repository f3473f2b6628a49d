"""Wire version 2's body: a batch's events as one block of columns, before compression.

Layout (every integer column is packed by `sync.wire_ints`):

    uvarint S, S bytes schema, JSON: [time_scale, ingest_scale, keys, patterns]
    8 column metas         (mode uvarint, base svarint, width uvarint) of the columns
                           below, in this order
    planes of seq          DELTA of (seq - index): 0 bytes for consecutive numbers
    planes of time         DELTA of event times as scaled integers (or IEEE bits)
    planes of ingest       OFFSET of ingest - event time, at the finer of both scales
    planes of key_ids      OFFSET; `keys` lists the distinct subjects (strings or null):
                           an event's key, or for a keyless event one payload string
                           field chosen per batch (see _subject_field)
    planes of pattern_ids  OFFSET; `patterns` lists them (sync.wire_patterns)
    planes of numbers      PLAIN: per pattern, per stored numeric field, the per-series
                           deltas of that pattern's events, in event order
    planes of raw_lengths  OFFSET: the length of each raw payload, in event order
    planes of text_lengths OFFSET: the length of each text value, ordered like numbers
    raw payload bytes      concatenated
    text bytes             concatenated: JSON texts of the fields whose entry is "j"

Why columns: a sensor batch repeats its keys, field names and units, and its numbers
change slowly; grouped by kind, zstd finds that redundancy instead of re-reading
`{"device":"pi-007","sensor":"temp"...` per event.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import orjson

from sync import wire_ints, wire_numbers
from sync.outbox import StoredEvent
from sync.wire_bytes import Reader, uvarint
from sync.wire_patterns import (
    Pattern,
    PatternBuilder,
    parse_object,
    parse_pattern,
    rebuild_payloads,
    series_values,
    split_object,
    subject_of,
    topic_template,
)
from sync.wire_types import WireFormatError

_SCHEMA_FIELDS = 4
_COLUMNS = 8
_FEW_PATTERNS = 16
_SUBJECT_SAMPLE = 64
_MIN_EVENT_BYTES = 32  # a version 1 row is never shorter
_DECODE_ERRORS = (
    TypeError, ValueError, KeyError, IndexError, OverflowError, AttributeError,
    ZeroDivisionError, StopIteration, RecursionError,
)  # fmt: skip


def encode_events(events: Sequence[StoredEvent]) -> list[bytes]:
    """The column block of a batch's events (uncompressed), as parts to concatenate.

    Each part is one byte plane (or the schema, or the raw payloads): the caller may
    compress each in its own zstd block, so each gets its own entropy table.
    """
    times = [float(e.event_time) for e in events]
    field = _subject_field(events)
    try:
        few = max(_FEW_PATTERNS, len(events) // 8)
        builders, pattern_ids, raw, subjects = _patterns(events, field, False, few)
    except _TooManyPatterns:
        builders, pattern_ids, raw, subjects = _patterns(events, field, True, len(events))
    keys = _key_index(subjects)
    key_ids = [keys[s] for s in subjects]
    time_scale, time_ints, ingest_scale, ingest_diffs = _times(times, events)
    described: list[object] = []
    number_columns: list[list[int]] = []
    texts: list[bytes] = []
    for builder in builders:
        specs, columns = builder.number_columns(times, key_ids)
        described.append(builder.describe(specs))
        number_columns.extend(columns)
        texts.extend(itertools.chain.from_iterable(builder.text_columns()))
    seq = [e.seq - i for i, e in enumerate(events)]
    packed = [
        wire_ints.pack(seq, wire_ints.DELTA),
        wire_ints.pack(time_ints, wire_ints.DELTA),
        wire_ints.pack(ingest_diffs, wire_ints.OFFSET),
        wire_ints.pack(key_ids, wire_ints.OFFSET),
        wire_ints.pack(pattern_ids, wire_ints.OFFSET),
        wire_ints.pack(list(itertools.chain.from_iterable(number_columns)), wire_ints.PLAIN),
        wire_ints.pack([len(p) for p in raw], wire_ints.OFFSET),
        wire_ints.pack([len(t) for t in texts], wire_ints.OFFSET),
    ]
    schema = orjson.dumps([time_scale, ingest_scale, list(keys), described])
    metas = b"".join(wire_ints.encode_meta(meta) for meta, _ in packed)
    planes = [plane for _, planes in packed for plane in planes]
    return [uvarint(len(schema)) + schema + metas, *planes, b"".join(raw), b"".join(texts)]


def _key_index(subjects: list[str | None]) -> dict[str | None, int]:
    """Distinct subjects numbered in sorted order: a sorted list of names compresses well."""
    distinct = sorted(set(subjects), key=lambda k: (k is not None, k or ""))
    return {key: i for i, key in enumerate(distinct)}


def _subject_field(events: Sequence[StoredEvent]) -> str | None:
    """The payload field that names a keyless event's subject (device, sensor id ...).

    Chosen on a sample: the string field with the most distinct values, unless every
    value differs (a message or an id is no subject). None when every event has a key.
    """
    distinct: dict[str, set[str]] = {}
    sampled = 0
    for event in itertools.islice((e for e in events if e.key is None), _SUBJECT_SAMPLE):
        sampled += 1
        for name, value in (parse_object(event.payload) or {}).items():
            if type(value) is str:
                distinct.setdefault(name, set()).add(value)
    counts = [(len(values), name) for name, values in distinct.items()]
    usable = [c for c in counts if c[0] < sampled or sampled < _SUBJECT_SAMPLE // 8]
    return max(usable)[1] if usable else None


class _TooManyPatterns(Exception):
    """Raised by _patterns as soon as a batch has more patterns than its limit."""


def _patterns(
    events: Sequence[StoredEvent], field: str | None, texts: bool, limit: int
) -> tuple[list[PatternBuilder], list[int], list[bytes], list[str | None]]:
    """Group events by pattern: builders, pattern ids, raw payloads, subjects."""
    index: dict[Any, int] = {}
    builders: list[PatternBuilder] = []
    pattern_ids: list[int] = []
    raw: list[bytes] = []
    subjects: list[str | None] = []
    templates: dict[tuple[str | None, str | None], object] = {}
    for i, event in enumerate(events):
        obj = parse_object(event.payload)
        keyed = event.key is not None
        subject = event.key if keyed else subject_of(obj, field)
        subjects.append(subject)
        split = None if obj is None else split_object(obj, subject, texts)
        where = (event.topic, subject)
        topic = templates.get(where, where)
        if topic is where:
            topic = templates[where] = topic_template(event.topic, subject)
        headers = None if event.headers is None else orjson.dumps(event.headers)
        if split is None:
            key: Any = (topic, headers, keyed, None, None)
            raw.append(bytes(event.payload))
        else:
            key = (topic, headers, keyed, split[0], split[1])
        pid = index.get(key)
        if pid is None:
            if len(builders) == limit:
                raise _TooManyPatterns
            pid = index[key] = len(builders)
            builders.append(PatternBuilder(key))
        builder = builders[pid]
        builder.members.append(i)
        if split is not None:
            builder.numbers.append(split[2])
            builder.texts.append(split[3])
        pattern_ids.append(pid)
    return builders, pattern_ids, raw, subjects


def _times(
    times: list[float], events: Sequence[StoredEvent]
) -> tuple[int, list[int], int, list[int]]:
    """Event times as integers, and ingest times as differences to them.

    Both go to the finer of their two decimal scales; when either has none, or the
    finer scale makes the integers too large, both go to IEEE bit patterns.
    """
    ingest = [float(e.ingest_time) for e in events]
    time_scale, time_ints = wire_numbers.to_ints(times)
    ingest_scale, ingest_ints = wire_numbers.to_ints(ingest)
    finer = time_ints
    if wire_numbers.BITS not in (time_scale, ingest_scale):
        top = max(time_scale, ingest_scale)
        finer = wire_numbers.rescale(time_ints, top - time_scale)
        ingest_ints = wire_numbers.rescale(ingest_ints, top - ingest_scale)
        if not (wire_numbers.fits(finer) and wire_numbers.fits(ingest_ints)):
            time_scale = ingest_scale = wire_numbers.BITS
    if wire_numbers.BITS in (time_scale, ingest_scale):
        time_scale, time_ints = wire_numbers.BITS, wire_numbers.to_bits(times)
        ingest_scale, ingest_ints = wire_numbers.BITS, wire_numbers.to_bits(ingest)
        finer = time_ints
    diffs = [b - a for a, b in zip(finer, ingest_ints, strict=True)]
    return time_scale, time_ints, ingest_scale, diffs


# ------------------------------------------------------------------ decoding


def decode_events(reader: Reader, count: int, max_size: int) -> list[StoredEvent]:
    """The events of the column block `reader` holds; WireFormatError when malformed.

    `max_size` bounds what the events may expand to, as it bounds a version 1 body:
    at most one event per 32 bytes, one number per 2 bytes, and `max_size` bytes of
    topics, headers and literal fields copied from the patterns into the events (a
    small block must not decode into gigabytes).
    """
    try:
        return _decode(reader, count, max_size)
    except WireFormatError:
        raise
    except _DECODE_ERRORS as exc:
        raise WireFormatError(f"malformed column block: {exc!r}") from exc


def _decode(reader: Reader, count: int, max_size: int) -> list[StoredEvent]:
    if count > max_size // _MIN_EVENT_BYTES:
        raise WireFormatError(f"{count} events is past the limit of {max_size} bytes")
    time_scale, ingest_scale, keys, raw_patterns = _schema(reader)
    metas = [wire_ints.decode_meta(reader) for _ in range(_COLUMNS)]
    seq_meta, time_meta, ingest_meta, key_meta, pattern_meta, number_meta = metas[:6]
    raw_meta, text_meta = metas[6:]
    seqs = [s + i for i, s in enumerate(wire_ints.unpack(seq_meta, count, reader))]
    time_ints = wire_ints.unpack(time_meta, count, reader)
    diffs = wire_ints.unpack(ingest_meta, count, reader)
    times, ingest = _decode_times(time_scale, time_ints, ingest_scale, diffs)
    key_ids = wire_ints.unpack(key_meta, count, reader)
    pattern_ids = wire_ints.unpack(pattern_meta, count, reader)
    patterns = [parse_pattern(p) for p in raw_patterns]
    members = _members(pattern_ids, len(patterns))
    _check_expansion(patterns, members, max_size)
    event_keys = [keys[k] for k in key_ids]
    numbers = _numbers(patterns, members, number_meta, reader, max_size // 2)
    raw_count = sum(len(m) for p, m in zip(patterns, members, strict=True) if p.fields is None)
    lengths = wire_ints.unpack(raw_meta, raw_count, reader)
    text_count = sum(len(m) * p.stored_texts for p, m in zip(patterns, members, strict=True))
    if text_count > max_size // 2:
        raise WireFormatError(f"{text_count} texts is past the limit of {max_size} bytes")
    text_lengths = wire_ints.unpack(text_meta, text_count, reader)
    raw = [reader.take(n) for n in lengths]
    texts = [reader.take(n) for n in text_lengths]
    if reader.remaining:
        raise WireFormatError(f"column block has {reader.remaining} unexpected trailing bytes")
    payloads = _payloads(
        patterns, members, pattern_ids, event_keys, key_ids, times, numbers, raw, texts
    )
    topics = _topics(patterns, pattern_ids, key_ids, event_keys)
    headers = [patterns[p].headers for p in pattern_ids]
    own_keys = [
        k if patterns[p].keyed else None for k, p in zip(event_keys, pattern_ids, strict=True)
    ]
    return [
        StoredEvent(s, t, i, k, topic, payload, None if h is None else dict(h))
        for s, t, i, k, topic, payload, h in zip(
            seqs, times, ingest, own_keys, topics, payloads, headers, strict=True
        )
    ]


def _check_expansion(patterns: list[Pattern], members: list[list[int]], max_size: int) -> None:
    expanded = sum(p.size * len(m) for p, m in zip(patterns, members, strict=True))
    if expanded > max_size:
        raise WireFormatError(f"patterns expand past the {max_size}-byte limit")


def _numbers(
    patterns: list[Pattern], members: list[list[int]], meta: Any, reader: Reader, limit: int
) -> list[list[int]]:
    """Every stored number column, pattern by pattern, field by field (one packed column)."""
    counts = [
        len(m) for p, m in zip(patterns, members, strict=True) for _ in range(p.stored_numbers)
    ]
    if sum(counts) > limit:
        raise WireFormatError(f"{sum(counts)} numbers is past the limit of {limit}")
    numbers = wire_ints.unpack(meta, sum(counts), reader)
    starts = itertools.accumulate(counts, initial=0)
    return [numbers[start : start + n] for start, n in zip(starts, counts, strict=False)]


def _schema(reader: Reader) -> list[Any]:
    try:
        schema = orjson.loads(reader.take(reader.uvarint()))
    except orjson.JSONDecodeError as exc:
        raise WireFormatError(f"column schema is not valid JSON: {exc}") from exc
    if not isinstance(schema, list) or len(schema) != _SCHEMA_FIELDS:
        raise WireFormatError(f"column schema is not a list of {_SCHEMA_FIELDS} fields")
    keys, patterns = schema[2], schema[3]
    if not isinstance(keys, list) or not all(k is None or isinstance(k, str) for k in keys):
        raise WireFormatError("column schema: keys must be strings or null")
    if not isinstance(patterns, list):
        raise WireFormatError("column schema: patterns must be a list")
    return schema


def _decode_times(
    time_scale: object, time_ints: list[int], ingest_scale: object, diffs: list[int]
) -> tuple[list[float], list[float]]:
    scales = (time_scale, ingest_scale)
    if not all(wire_numbers.valid_scale(s) for s in scales):
        raise WireFormatError(f"time scales out of range: {scales!r}")
    if (time_scale == wire_numbers.BITS) != (ingest_scale == wire_numbers.BITS):
        raise WireFormatError("time scales mix decimals and IEEE bits")
    times = wire_numbers.from_ints(time_scale, time_ints)  # type: ignore[arg-type]
    if time_scale == wire_numbers.BITS:
        ingest_ints = [a + b for a, b in zip(time_ints, diffs, strict=True)]
        return times, wire_numbers.from_bits(ingest_ints)
    top: int = max(time_scale, ingest_scale)  # type: ignore[call-overload]
    finer = wire_numbers.rescale(time_ints, top - time_scale)  # type: ignore[operator]
    ingest_ints = [a + b for a, b in zip(finer, diffs, strict=True)]
    return times, wire_numbers.from_ints(top, ingest_ints)


def _members(pattern_ids: list[int], patterns: int) -> list[list[int]]:
    members: list[list[int]] = [[] for _ in range(patterns)]
    for i, pid in enumerate(pattern_ids):
        members[pid].append(i)
    return members


def _payloads(
    patterns: list[Pattern], members: list[list[int]], pattern_ids: list[int],
    event_keys: list[str | None], key_ids: list[int], times: list[float],
    numbers: list[list[int]], raw: list[bytes], texts: list[bytes],
) -> list[bytes]:  # fmt: skip
    raw_iter, stored, text = iter(raw), iter(numbers), iter(texts)
    per_pattern: list[Any] = []
    for pattern, indices in zip(patterns, members, strict=True):
        if pattern.fields is None:
            per_pattern.append(raw_iter)
            continue
        ids = [key_ids[i] for i in indices]
        columns = [series_values(ids, next(stored)) for _ in range(pattern.stored_numbers)]
        keys = [event_keys[i] for i in indices]
        at = [times[i] for i in indices]
        text_columns = [
            list(itertools.islice(text, len(indices))) for _ in range(pattern.stored_texts)
        ]
        per_pattern.append(iter(rebuild_payloads(pattern, keys, at, columns, text_columns)))
    return [next(per_pattern[p]) for p in pattern_ids]


def _topics(
    patterns: list[Pattern], pattern_ids: list[int], key_ids: list[int],
    event_keys: list[str | None],
) -> list[str | None]:  # fmt: skip
    cache: dict[tuple[int, int], str | None] = {}
    topics: list[str | None] = []
    for pid, kid, key in zip(pattern_ids, key_ids, event_keys, strict=True):
        where = (pid, kid)
        if where not in cache:
            cache[where] = patterns[pid].topic_for(key)
        topics.append(cache[where])
    return topics
