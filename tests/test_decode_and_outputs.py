"""Payload decoding edge cases, output topic safety, and aggregates that never overflow."""

from __future__ import annotations

import time

import orjson
import pytest

from agent.config.load import parse_agent_config
from agent.config.mqtt_source import MqttSourceConfig
from agent.outputs.mqtt import MqttOutput
from agent.pipeline.aggregates import AGGREGATES, finite_number
from agent.queue import NewEvent
from agent.sources.decode import DeadLetter, MessageDecoder
from sync.config import ConfigError
from sync.mqtt.message import MqttMessage
from sync.outbox import StoredEvent

CONFIG = """\
device_id: pi
streams: {s: {}}
sources:
  - type: mqtt
    name: src
    stream: s
    broker: {url: "mqtt://127.0.0.1:1"}
    topics: ["a/#"]
    payload: {time_field: ts, time_unit: ms, max_future: 1h}
    key: {field: dev}
outputs:
  - {type: mqtt, name: o, stream: s, broker: {url: "mqtt://127.0.0.1:1"}, topic: "x/{key}/{topic}"}
"""


def message(payload: bytes, topic: str = "a/b") -> MqttMessage:
    return MqttMessage(topic, payload, 1, False, 1, False, (), time.time())


def decode(payload: bytes) -> NewEvent | DeadLetter:
    source = parse_agent_config(CONFIG).sources[0]
    assert isinstance(source, MqttSourceConfig)
    return MessageDecoder(source).decode(message(payload))


def test_event_time_and_key_come_from_the_payload() -> None:
    event = decode(b'{"ts": 1764201600123, "dev": 7}')
    assert isinstance(event, NewEvent)
    assert event.event_time == 1764201600.123
    assert event.key == "7"


def test_an_event_time_far_in_the_future_falls_back_to_arrival() -> None:
    ahead = (time.time() + 86400) * 1000
    event = decode(orjson.dumps({"ts": ahead}))
    assert isinstance(event, NewEvent)
    assert abs(event.event_time - event.ingest_time) < 1e-6
    assert event.headers is not None and "time_in_future" in event.headers


def test_a_bare_number_is_accepted_and_a_list_is_dead_lettered() -> None:
    assert isinstance(decode(b"21.5"), NewEvent)
    dead = decode(b"[1, 2]")
    assert isinstance(dead, DeadLetter) and dead.reason == "unsupported_json"


def test_output_topics_never_carry_wildcards() -> None:
    config = parse_agent_config(CONFIG)
    output = MqttOutput(config.outputs[0], None, "pi", 10)  # type: ignore[arg-type]
    event = StoredEvent(1, 1.0, 1.0, "a+b/#c", "t/+/x", b"{}")
    assert output.topic_for(event) == "x/a_b__c/t/_/x"
    assert output.topic_for(StoredEvent(2, 1.0, 1.0, None, None, b"{}")) == "x/_/_"


def test_aggregates_stay_finite_and_serialisable() -> None:
    total, mean, high = AGGREGATES["sum"], AGGREGATES["avg"], AGGREGATES["max"]
    s, a, m = total.initial(), mean.initial(), high.initial()
    raw = (2**62, 2**62, 2**70, 1e308, 1e308, float("inf"), float("nan"), True, "9", None)
    for value in [finite_number(v) for v in raw]:  # what a window hands numeric aggregates
        if value is not None:
            s, a = total.fold(s, [value], None), mean.fold(a, [value], None)
            m = high.fold(m, [value], None)
    orjson.dumps([s, a, m])  # would raise on a 65-bit int or produce null for inf
    assert total.result(s) > 1e308 / 2
    assert mean.result(a) is not None
    assert high.result(m) == 1e308


def test_output_topics_can_use_payload_fields() -> None:
    text = CONFIG.replace("x/{key}/{topic}", "x/{key}/{payload.sensor}/{payload.env.site}")
    assert "{payload.sensor}" in text
    output = MqttOutput(parse_agent_config(text).outputs[0], None, "pi", 10)  # type: ignore[arg-type]
    body = orjson.dumps({"sensor": "t/#1", "env": {"site": True}})
    assert output.topic_for(StoredEvent(1, 1.0, 1.0, "k", None, body)) == "x/k/t__1/true"
    assert output.topic_for(StoredEvent(2, 1.0, 1.0, "k", None, b"[1]")) == "x/k/_/_"
    assert output.topic_for(StoredEvent(3, 1.0, 1.0, "k", None, b"not json")) == "x/k/_/_"


def test_unknown_topic_placeholders_are_refused() -> None:
    for bad in ("{payload}", "{payload.}", "{sensor}"):
        with pytest.raises(ConfigError, match="unknown placeholder"):
            parse_agent_config(CONFIG.replace("x/{key}/{topic}", f"x/{bad}"))
