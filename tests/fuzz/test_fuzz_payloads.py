"""Fuzzing the MQTT source's MessageDecoder: every message is an event or a dead letter.

The promise (agent/sources/decode.py): `decode` never raises; a payload that cannot be
stored becomes a DeadLetter with a reason, and what becomes an event is storable (a
finite time, headers as JSON text, the payload as received or as a JSON object).
"""

from __future__ import annotations

import math
import time
from textwrap import dedent, indent

import orjson
from hypothesis import given
from hypothesis import strategies as st

from agent.config.load import parse_agent_config
from agent.config.mqtt_source import MqttSourceConfig
from agent.queue import NewEvent
from agent.sources.decode import DEADLETTER_SAMPLE, DeadLetter, MessageDecoder
from sync.mqtt.message import MqttMessage
from sync.outbox import StoredEvent
from sync.wire import Batch, decode, encode
from tests.fuzz.budget import fuzz

DECODERS_SETTINGS = {
    "json": "payload: {format: json}",
    "json_rewritten": """\
        payload:
          format: json
          time_field: t.s
          time_unit: ms
          extract: {v: "value * 2", big: "n * 100000000000000000000", s: "lower(name)"}
        tags: {site: lab}
        topic_tags: {room: 1, last: -1}
        key: {expression: "coalesce(id, topic[2])"}
        user_properties: true
        """,
    "json_key_field": "payload: {format: json, extract_only: true, extract: {x: a.b}}\n"
    "key: {field: id}",
    "number": "payload: {format: number, field: reading}",
    "csv": "payload: {format: csv, columns: [a, b, c], separator: ';'}",
    "keyvalue": "payload: {format: keyvalue, time_field: ts}\nkey: {topic_segment: 1}",
    "raw": "payload: {format: raw, max_size: 512}\nuser_properties: true",
}


def source(extra: str) -> MqttSourceConfig:
    text = dedent("""\
        device_id: pi
        streams: {s: {}}
        sources:
          - type: mqtt
            name: src
            stream: s
            broker: {url: "mqtt://127.0.0.1:1"}
            topics: ["site/#"]
        """) + indent(dedent(extra), "    ")
    config = parse_agent_config(text, env={}).sources[0]
    assert isinstance(config, MqttSourceConfig)
    return config


DECODERS = {name: MessageDecoder(source(extra)) for name, extra in DECODERS_SETTINGS.items()}

NUMBER_SPELLINGS = st.sampled_from(
    [
        b"NaN", b"nan", b"-nan", b"Infinity", b"-Infinity", b"inf", b"+inf", b"1e309",
        b"-1e309", b"1e-400", b"18446744073709551616", b"-9223372036854775809", b"9" * 5000,
        b"0x10", b"1_000", b"\xd9\xa3", b"\xef\xbc\x91", b"1.", b".5", b"-0", b"+1", b" 7 \n",
    ]
)  # fmt: skip
INVALID_UTF8 = st.sampled_from(
    [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80"]
)
NAMES = st.sampled_from(["t", "s", "value", "n", "name", "id", "a", "b"]) | st.text(max_size=3)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


def _json(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # NaN is written as null; only huge ints fail
        return b"{}"


def _spelled(number: bytes) -> st.SearchStrategy[bytes]:
    return st.sampled_from(
        [number, b'{"value": %s, "n": %s}' % (number, number), b"a=%s b=%s" % (number, number),
         number + b";1;2"]
    )  # fmt: skip


def _nested(depth: int) -> bytes:
    return b'{"value":' + b"[" * depth + b"]" * depth + b"}"


@st.composite
def _broken_utf8(draw: st.DrawFn) -> bytes:
    valid = _json(draw(JSON))
    at = draw(st.integers(0, len(valid)))
    return valid[:at] + draw(INVALID_UTF8) + valid[at:]


_CELLS = st.lists(st.text(max_size=5) | NUMBER_SPELLINGS.map(bytes.decode), max_size=6)
_PAIRS = st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)), max_size=6)
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    JSON.map(_json),
    NUMBER_SPELLINGS.flatmap(_spelled),
    st.sampled_from([1, 50, 253, 254, 255, 600, 1023, 1024, 1025, 3000]).map(_nested),
    st.tuples(st.sampled_from([";", ",", "\n"]), _CELLS).map(lambda s: s[0].join(s[1]).encode()),
    _PAIRS.map(lambda pairs: " ".join(f"{k}={v}" for k, v in pairs).encode()),
    _broken_utf8(),
    st.sampled_from([3, 100_000]).map(lambda width: b";".join([b"1"] * width)),  # huge CSV
)
"""Random bytes, JSON of any shape, odd numbers, CSV and key=value lines, deep nesting."""


TOPICS = st.lists(st.text(max_size=4), min_size=1, max_size=5).map(
    lambda levels: "/".join(["site", *levels])
)
PROPERTIES = st.lists(st.tuples(st.text(max_size=3), st.text(max_size=3)), max_size=3).map(tuple)


def check(result: NewEvent | DeadLetter, raw: bytes, decoder: str) -> None:
    if isinstance(result, DeadLetter):
        assert result.reason
        headers = orjson.loads(result.event.headers or "")
        assert headers["reason"] == result.reason and headers["detail"]
        assert headers["size"] == len(raw) and len(result.event.payload) <= DEADLETTER_SAMPLE
        return
    assert isinstance(result, NewEvent)
    assert math.isfinite(result.event_time)
    assert result.key is None or isinstance(result.key, str)
    if result.headers is not None:
        assert isinstance(orjson.loads(result.headers), dict)
    if decoder in ("json", "raw"):
        assert result.payload == raw  # kept byte for byte
    else:
        assert isinstance(orjson.loads(result.payload), dict)


@fuzz(250)
@given(st.sampled_from(sorted(DECODERS)), PAYLOADS, TOPICS, PROPERTIES)
def test_every_message_becomes_an_event_or_a_dead_letter(
    decoder: str, raw: bytes, topic: str, properties: tuple[tuple[str, str], ...]
) -> None:
    message = MqttMessage(topic, raw, 1, False, 1, False, properties, 1764201600.0)
    started = time.perf_counter()
    result = DECODERS[decoder].decode(message)
    assert time.perf_counter() - started < 2.0
    check(result, raw, decoder)


def test_an_event_the_mqtt_source_accepts_can_be_sent_to_the_hub() -> None:
    raw = b'{"value":' + b"[" * 253 + b"]" * 253 + b"}"
    message = MqttMessage("site/a", raw, 1, False, 1, False, (), 1764201600.0)
    event = DECODERS["json"].decode(message)
    assert isinstance(event, NewEvent)
    stored = StoredEvent(1, event.event_time, event.ingest_time, event.key, event.topic,
                         event.payload, None)  # fmt: skip
    batch = Batch("pi", "e", "s", [stored], [], 1)
    assert decode(encode(batch)) == batch
