"""The widened MQTT source's decoding: formats, extraction, tags, keys, user properties, rates."""

from __future__ import annotations

import math
import time
from textwrap import dedent, indent
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config.load import parse_agent_config
from agent.config.mqtt_source import MqttSourceConfig
from agent.queue import NewEvent
from agent.sources.decode import DeadLetter, MessageDecoder, trusted_time, user_properties
from agent.sources.payloads import DecodeFailure, parse_csv, parse_keyvalue, to_number
from agent.sources.rate_limit import TopicRateLimiter
from sync.config import ConfigError
from sync.mqtt.message import MqttMessage


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
    config = parse_agent_config(text).sources[0]
    assert isinstance(config, MqttSourceConfig)
    return config


def refused(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        source(extra)
    return [line.split(": ", 1)[1] for line in str(caught.value).splitlines()]


def message(
    payload: bytes, topic: str = "site/lab/temp", props: tuple[tuple[str, str], ...] = ()
) -> MqttMessage:
    return MqttMessage(topic, payload, 1, False, 1, False, props, time.time())


def decoded(extra: str, payload: bytes, **kwargs: Any) -> NewEvent:
    event = MessageDecoder(source(extra)).decode(message(payload, **kwargs))
    assert isinstance(event, NewEvent), event
    return event


def dead(extra: str, payload: bytes) -> DeadLetter:
    event = MessageDecoder(source(extra)).decode(message(payload))
    assert isinstance(event, DeadLetter), event
    return event


def fields(event: NewEvent) -> Any:
    return orjson.loads(event.payload)


# ---------------------------------------------------------------- formats


def test_json_without_changes_keeps_the_received_bytes() -> None:
    raw = b'{"t":  21.5}'
    assert decoded("", raw).payload == raw


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b"21.5", 21.5), (b" -3\n", -3), (b"1e3", 1000.0), (b"0", 0)],
)
def test_number_payloads_become_one_named_field(payload: bytes, expected: float) -> None:
    event = decoded("payload: {format: number, field: temp}", payload)
    assert fields(event) == {"temp": expected}


@pytest.mark.parametrize("payload", [b"", b"abc", b"nan", b"inf", b"1_000", b"0x10", b"1 2"])
def test_a_payload_that_is_not_a_number_is_dead_lettered(payload: bytes) -> None:
    assert dead("payload: {format: number}", payload).reason == "invalid_number"


def test_csv_payloads_are_named_by_columns_and_numbers_parsed() -> None:
    extra = "payload: {format: csv, columns: [temp, hum, state]}"
    assert fields(decoded(extra, b'21.5, 40,"on"\n')) == {"temp": 21.5, "hum": 40, "state": "on"}
    letter = dead(extra, b"21.5,40")
    assert letter.reason == "invalid_csv"
    assert "expected 3 values (temp, hum, state), got 2" in (letter.event.headers or "")


def test_csv_with_another_separator() -> None:
    extra = "payload: {format: csv, columns: [a, b], separator: ';'}"
    assert fields(decoded(extra, b"1;2")) == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"temp=21.5 hum=40", {"temp": 21.5, "hum": 40}),
        (b"temp=21.5,hum=40;state=ok\n", {"temp": 21.5, "hum": 40, "state": "ok"}),
        (b'name="pump 1"', {"name": "pump 1"}),
        (b"a=", {"a": ""}),
        (b"a='x=1, y' b=2", {"a": "x=1, y", "b": 2}),
    ],
)
def test_keyvalue_payloads(payload: bytes, expected: dict[str, Any]) -> None:
    assert fields(decoded("payload: {format: keyvalue}", payload)) == expected


@pytest.mark.parametrize(
    "payload", [b"", b"   ", b"temp 21", b"=5", b"\xff=1", b"a=1 b", b'a="open', b"a=b=c"]
)
def test_bad_keyvalue_payloads_are_dead_lettered(payload: bytes) -> None:
    assert dead("payload: {format: keyvalue}", payload).reason in {
        "invalid_keyvalue",
        "invalid_utf8",
    }


def test_raw_payloads_are_kept_as_bytes_even_when_not_text() -> None:
    assert decoded("payload: {format: raw}", b"\x00\xff").payload == b"\x00\xff"


@given(st.binary(max_size=200))
def test_no_parser_raises_on_any_bytes(raw: bytes) -> None:
    for parse in (parse_keyvalue, lambda r: parse_csv(r, ("a", "b"), ",")):
        result = parse(raw)
        assert isinstance(result, DecodeFailure | dict)


@given(
    st.one_of(
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
    )
)
def test_every_finite_number_round_trips_through_its_text(number: float) -> None:
    assert to_number(repr(number)) == number


@pytest.mark.parametrize("text", ["18446744073709551616", "-9223372036854775809", "9" * 5000])
def test_integers_beyond_64_bits_are_not_numbers(text: str) -> None:
    assert to_number(text) is None


def test_a_long_digit_string_stays_text_in_keyvalue_and_csv() -> None:
    iccid = "89012607200000000720"
    event = decoded("payload: {format: keyvalue}", f"iccid={iccid} rssi=-71".encode())
    assert fields(event) == {"iccid": iccid, "rssi": -71}
    event = decoded("payload: {format: csv, columns: [iccid]}", iccid.encode())
    assert fields(event) == {"iccid": iccid}


@pytest.mark.parametrize(
    ("extra", "payload"),
    [
        ("payload: {extract: {big: 'n * 100000000000000000000'}}", b'{"n": 10}'),
        ("key: {expression: 'n ** 5000'}", b'{"n": 10}'),
        ("payload: {time_field: n}", b'{"n": 1e308}'),
    ],
)
def test_values_json_cannot_carry_are_dead_lettered_never_raised(
    extra: str, payload: bytes
) -> None:
    result = MessageDecoder(source(extra)).decode(message(payload))
    if isinstance(result, DeadLetter):
        assert result.reason == "undecodable"
    else:  # a time that cannot be one falls back to arrival
        assert abs(result.event_time - result.ingest_time) < 1e-6


# ---------------------------------------------------------------- fields, tags, keys


def test_extracted_fields_are_added_from_expressions() -> None:
    extra = """\
        payload:
          extract: {temp: "data.raw / 10", room: "topic[1]", missing: "nope.x"}
        """
    event = decoded(extra, b'{"data": {"raw": 215}}')
    assert fields(event) == {"data": {"raw": 215}, "temp": 21.5, "room": "lab"}


def test_extract_only_keeps_just_the_extracted_fields() -> None:
    extra = "payload: {extract: {temp: 'data.raw / 10'}, extract_only: true}"
    assert fields(decoded(extra, b'{"data": {"raw": 215}}')) == {"temp": 21.5}


def test_extraction_reads_a_bare_number_as_value() -> None:
    extra = "payload: {extract: {f: 'value * 1.8 + 32'}}"
    assert fields(decoded(extra, b"20")) == {"value": 20, "f": 68.0}


def test_tags_and_topic_tags_are_added_with_tags_winning() -> None:
    extra = """\
        tags: {site: hq}
        topic_tags: {site: 0, room: 1, sensor: -1, deep: 9}
        """
    event = decoded(extra, b'{"t": 1, "room": "payload"}')
    assert fields(event) == {"t": 1, "room": "lab", "sensor": "temp", "site": "hq"}


def test_key_from_an_expression_over_payload_and_topic() -> None:
    event = decoded("key: {expression: \"topic[1] + '/' + id\"}", b'{"id": "a7"}')
    assert event.key == "lab/a7"
    assert decoded("key: {expression: 'nope'}", b"{}").key is None


def test_key_field_can_name_an_extracted_field() -> None:
    extra = """\
        payload: {extract: {dev: "meta.device"}}
        key: {field: dev}
        """
    assert decoded(extra, b'{"meta": {"device": 7}}').key == "7"


def test_mqtt5_user_properties_go_into_headers() -> None:
    props = (("unit", "C"), ("trace", "1"), ("trace", "2"))
    event = decoded("", b"{}", props=props)
    assert orjson.loads(event.headers or "{}") == {
        "user_properties": {"unit": "C", "trace": ["1", "2"]}
    }
    assert decoded("user_properties: false", b"{}", props=props).headers is None
    assert user_properties((("a", "1"),) * 3) == {"a": ["1", "1", "1"]}


def test_user_properties_and_a_future_time_share_the_headers() -> None:
    ahead = time.time() + 3 * 86400
    event = decoded("payload: {time_field: ts}", b'{"ts": %f}' % ahead, props=(("a", "b"),))
    headers = orjson.loads(event.headers or "{}")
    assert set(headers) == {"time_in_future", "user_properties"}


# ---------------------------------------------------------------- bad config


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("payload: {format: csv}", "sources[0].payload.columns: is required when format is csv"),
        (
            "payload: {columns: [a]}",
            "sources[0].payload.columns: is only used with format csv, not json",
        ),
        ("payload: {format: csv, columns: [a, a]}", "sources[0].payload.columns[1]: is used twice"),
        (
            "payload: {format: raw, extract: {a: b}}",
            "sources[0].payload.extract: needs decoded fields; format raw keeps bytes",
        ),
        (
            "payload: {extract_only: true}",
            "sources[0].payload.extract_only: is true but no extract fields are set",
        ),
        (
            "payload: {format: raw}\ntags: {a: b}",
            "sources[0].tags: needs decoded fields; payload format raw keeps bytes",
        ),
        (
            "key: {field: a, expression: b}",
            "sources[0].key.expression: cannot be used together with field; choose one",
        ),
        ("rate_limit: {per_second: 0}", "sources[0].rate_limit.per_second: must be at least 0.001"),
    ],
)
def test_bad_decoding_config_is_refused_with_its_path(extra: str, problem: str) -> None:
    problems = refused(extra)
    assert any(p.startswith(problem.split(": ", 1)[0]) for p in problems), problems
    assert any(problem.split(": ", 1)[1] in p for p in problems), problems


def test_a_bad_extract_expression_is_refused_at_load_with_its_column() -> None:
    problems = refused("payload: {extract: {a: 'data.raw /'}}")
    assert len(problems) == 1
    assert problems[0].startswith("sources[0].payload.extract.a: syntax error at column")


def test_a_bad_key_expression_is_refused_at_load() -> None:
    problems = refused("key: {expression: 'x.lower()'}")
    assert problems[0].startswith("sources[0].key.expression: syntax error")


# ---------------------------------------------------------------- rate limit


def test_rate_limiter_allows_a_burst_then_the_average_rate_per_topic() -> None:
    limiter = TopicRateLimiter(per_second=2, capacity=3)
    assert [limiter.allow("a", 100.0) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow("b", 100.0)  # another topic has its own bucket
    assert not limiter.allow("a", 100.4)  # 0.8 tokens
    assert limiter.allow("a", 100.5)  # 1.0 token
    allowed = sum(limiter.allow("a", 200.0 + i / 100) for i in range(1000))  # 10 s at 100/s
    assert 3 + 19 <= allowed <= 3 + 21


def test_rate_limiter_keeps_a_bounded_number_of_topics() -> None:
    limiter = TopicRateLimiter(per_second=1, capacity=1, max_topics=100)
    for i in range(10_000):
        limiter.allow(f"t/{i}", 1.0)
    assert limiter.topics == 100


def test_a_clock_stepped_back_neither_mints_tokens_nor_starves_the_topic() -> None:
    limiter = TopicRateLimiter(per_second=1, capacity=1)
    assert limiter.allow("a", 100.0)
    assert not limiter.allow("a", 50.0)  # the step back gives nothing
    assert not limiter.allow("a", 50.5)
    assert limiter.allow("a", 51.0)  # refills at the normal rate from the new time
    allowed = sum(limiter.allow("a", 51.0 + i / 10) for i in range(1, 101))
    assert allowed == 10


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_time_is_replaced_by_the_arrival_time(bad: float) -> None:
    assert trusted_time(bad, 1_700_000_000.0, 10.0) == (1_700_000_000.0, repr(bad))
