"""The agent and hub models: contract field names, defaults, helpers and cross-checks."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from agent.config import (
    AgentConfig,
    FilterStep,
    MqttSourceConfig,
    TopicConfig,
    WindowStep,
    load_agent_config,
    parse_agent_config,
)
from agent.pipeline.expr import AGGREGATE_FUNCTIONS
from sync.config import ConfigError, build, load_config
from sync.hub.config import HubConfig, SqliteStoreConfig, load_hub_config
from sync.mqtt.config import MqttConnectionConfig, TlsConfig

FULL = """\
device_id: greenhouse-1
data_dir: /var/lib/edgestream
queue: {commit_interval: 100ms, max_pending: 500}
x-broker: &broker
  url: mqtts://broker.local
  username: gw
  password: ${MQTT_PASSWORD}
  tls: {ca_file: /etc/ca.pem}
streams:
  sensors: {max_bytes: 64MiB, max_age: 2d, overflow: block}
  sensors_1m: {uplink: true}
sources:
  - type: mqtt
    name: plant
    stream: sensors
    broker: *broker
    topics:
      - sensors/+/temp
      - {topic: alarms/#, qos: 2}
    payload: {time_field: ts, time_unit: ms}
    key: {topic_segment: 1}
pipelines:
  - name: per-minute
    input: sensors
    output: sensors_1m
    steps:
      - filter: temp > -40
      - window:
          size: 1m
          key: key
          lateness: 5s
          aggregates: {readings: count(), avg_temp: avg(temp)}
outputs:
  - type: mqtt
    name: local
    stream: sensors_1m
    broker: {url: "mqtt://localhost"}
uplink:
  broker: *broker
  batch_max_bytes: 512KiB
"""


def agent(text: str, env: dict[str, str] | None = None) -> AgentConfig:
    return parse_agent_config(text, "agent.yaml", env or {"MQTT_PASSWORD": "s3cret"})


def agent_errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        agent(dedent(text))
    return str(caught.value).splitlines()


def test_full_config_builds_typed_values() -> None:
    config = agent(FULL)
    assert config.queue.commit_interval == 0.1 and config.queue.commit_max_events == 50000
    assert config.streams["sensors"].max_bytes == 64 * 1024**2
    assert config.streams["sensors"].max_age == 2 * 86400.0
    assert config.streams["sensors_1m"].overflow == "drop_oldest"
    source = config.sources[0]
    assert isinstance(source, MqttSourceConfig)
    assert source.topics == (
        TopicConfig(topic="sensors/+/temp"),
        TopicConfig(topic="alarms/#", qos=2),
    )
    assert source.broker.password == "s3cret" and source.broker.tls == TlsConfig(
        ca_file="/etc/ca.pem"
    )
    assert source.payload.time_unit == "ms" and source.key.topic_segment == 1
    steps = config.pipelines[0].steps
    assert steps[0] == FilterStep(expr="temp > -40")
    assert isinstance(steps[1], WindowStep)
    assert (steps[1].size, steps[1].lateness, steps[1].idle) == (60.0, 5.0, 60.0)
    assert config.outputs[0].topic == "edgestream/{device_id}/{stream}/{key}"
    assert config.uplink is not None and config.uplink.batch_max_bytes == 512 * 1024


def test_lists_are_tuples_and_objects_are_frozen() -> None:
    config = agent(FULL)
    assert isinstance(config.sources, tuple) and isinstance(config.pipelines[0].steps, tuple)
    with pytest.raises(AttributeError):
        config.device_id = "other"  # type: ignore[misc]


def test_file_loader_reads_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(FULL, encoding="utf-8")
    config = load_agent_config(path, {"MQTT_PASSWORD": "from-env"})
    assert config.sources[0].broker.password == "from-env"


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://broker.local", "broker.local", 1883, False),
        ("mqtts://broker.local", "broker.local", 8883, True),
        ("mqtt://10.0.0.5:1884", "10.0.0.5", 1884, False),
        ("mqtts://[::1]:9883", "::1", 9883, True),
    ],
)
def test_broker_url_gives_host_port_and_tls(url: str, host: str, port: int, tls: bool) -> None:
    broker = build(MqttConnectionConfig, {"url": url})
    assert (broker.host, broker.port, broker.use_tls) == (host, port, tls)


@pytest.mark.parametrize(
    "url", ["localhost:1883", "mqtt://", "mqtt://h:abc", "mqtt://h:0", "tcp://h", "mqtt://h/x"]
)
def test_bad_broker_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(MqttConnectionConfig, f"url: '{url}'\n", "b.yaml", {})
    assert str(caught.value) == (
        f'b.yaml:1: url: expected mqtt://host:port or mqtts://host:port, got "{url}"'
    )


def test_password_file_is_read_without_its_newline(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n", encoding="utf-8")
    broker = build(MqttConnectionConfig, {"url": "mqtt://h", "password_file": str(secret)})
    assert broker.resolved_password() == "hunter2"
    assert build(MqttConnectionConfig, {"url": "mqtt://h"}).resolved_password() is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("tls: {ca_file: /ca.pem}", "tls: needs an mqtts:// url; mqtt:// is not encrypted"),
        (
            "backoff_initial: 2m",
            "backoff_initial: must not exceed backoff_max (1m), got 2m",
        ),
        ("protocol: 4", 'protocol: expected one of "3.1.1", "5", got "4"'),
    ],
)
def test_broker_conflicts(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(MqttConnectionConfig, f"url: mqtt://h\n{extra}\n", "b.yaml", {})
    assert str(caught.value) == f"b.yaml:2: {message}"


def test_tls_key_needs_its_certificate() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(MqttConnectionConfig, "url: mqtts://h\ntls: {key_file: /k}\n", "b.yaml", {})
    assert str(caught.value) == (
        "b.yaml:2: tls.key_file: needs cert_file, the certificate this key belongs to"
    )


def test_protocol_written_as_a_number_is_accepted() -> None:
    assert (
        load_config(MqttConnectionConfig, "url: mqtt://h\nprotocol: 5\n", "b", {}).protocol == "5"
    )


def test_uplink_stream_needs_the_uplink_section() -> None:
    text = FULL[: FULL.index("uplink:\n  broker")]
    assert agent_errors(text) == [
        "agent.yaml:11: streams.sensors_1m.uplink: is true but the top-level uplink section "
        "is not set"
    ]


def test_uplink_stream_settings_must_name_a_stream_that_is_sent() -> None:
    text = FULL + "  streams:\n    sensors_1n: {priority: 5}\n    sensors_1m: {priority: 1}\n"
    assert agent_errors(text) == [
        'agent.yaml:42: uplink.streams.sensors_1n: stream "sensors_1n" is not sent to the hub '
        '(set streams.sensors_1n.uplink: true) (did you mean "sensors_1m"?)'
    ]


def test_bad_uplink_section_is_reported_without_inventing_a_missing_one() -> None:
    text = FULL.replace("  batch_max_bytes: 512KiB", "  batch_max_bytes: huge") + "  qos: 0\n"
    text = text.replace("stream: sensors\n    broker", "stream: sensorz\n    broker")
    assert agent_errors(text) == [
        'agent.yaml:15: sources[0].stream: stream "sensorz" is not defined in streams '
        '(did you mean "sensors"?)',
        'agent.yaml:40: uplink.batch_max_bytes: expected a size such as 64MiB, got "huge"',
        "agent.yaml:41: uplink.qos: must be at least 1, got 0",
    ]


def test_names_must_be_unique_per_section() -> None:
    second = "  - {name: per-minute, input: sensors, output: sensors_1m, steps: []}\n"
    text = FULL.replace("outputs:\n", second + "outputs:\n")
    assert agent_errors(text) == [
        'agent.yaml:33: pipelines[1].name: name "per-minute" is already used by pipelines[0]'
    ]


def test_stream_names_are_checked_and_underscore_is_reserved() -> None:
    text = FULL.replace("  sensors_1m: {uplink: true}", "  _mine: {}\n  sensors_1m: {uplink: true}")
    assert agent_errors(text) == [
        'agent.yaml:11: streams._mine: stream names use letters, digits, "_", "." and "-" '
        'and must not start with "_"'
    ]


def test_deadletter_stream_can_be_read_but_not_written() -> None:
    text = FULL.replace(
        "    stream: sensors_1m\n    broker: {url", "    stream: _deadletter\n    broker: {url"
    )
    assert agent(text).outputs[0].stream == "_deadletter"
    assert agent_errors(
        text.replace("stream: sensors\n    broker", "stream: _deadletter\n    broker")
    ) == ['agent.yaml:15: sources[0].stream: stream "_deadletter" is not defined in streams']


def test_pipeline_must_not_feed_itself() -> None:
    text = FULL.replace("output: sensors_1m", "output: sensors")
    assert agent_errors(text) == [
        "agent.yaml:25: pipelines[0].output: must differ from input, or the pipeline feeds itself"
    ]


@pytest.mark.parametrize(
    "topic", ["a/#/b", "a+/b", "a/b#", "''", "$share//a", "$share/g+/a", "$share/g", "$share/g/a#"]
)
def test_bad_topic_filters_are_refused(topic: str) -> None:
    text = FULL.replace("      - sensors/+/temp", f"      - {topic}")
    shown = "" if topic == "''" else topic
    assert agent_errors(text) == [
        f"agent.yaml:18: sources[0].topics[0]: expected an MQTT topic filter such as "
        f'sensors/+/temp or $share/group/sensors/#, got "{shown}"'
    ]


@pytest.mark.parametrize("topic", ["$share/g/a/#", "$share/hubs/+/temp", "a/+/#", "#"])
def test_good_topic_filters_and_shared_subscriptions_load(topic: str) -> None:
    config = agent(FULL.replace("      - sensors/+/temp", f"      - '{topic}'"))
    assert config.sources[0].topics[0].topic == topic


def test_window_expressions_are_compiled_at_load() -> None:
    text = FULL.replace("key: key", "key: topic[").replace("avg(temp)", "mean(temp)")
    assert agent_errors(text) == [
        "agent.yaml:30: pipelines[0].steps[1].window.key: syntax error at column 6: "
        "invalid syntax: '[' was never closed",
        "agent.yaml:32: pipelines[0].steps[1].window.aggregates.avg_temp: syntax error at "
        "column 1: unknown aggregate 'mean' (valid: "
        f"{', '.join(AGGREGATE_FUNCTIONS)})",
    ]


def test_window_needs_size_and_aggregates() -> None:
    text = FULL.replace("          size: 1m\n", "").replace(
        "          aggregates: {readings: count(), avg_temp: avg(temp)}\n",
        "          aggregates: {}\n",
    )
    assert agent_errors(text) == [
        "agent.yaml:28: pipelines[0].steps[1].window.size: is required for tumbling windows",
        "agent.yaml:31: pipelines[0].steps[1].window.aggregates: must not be empty",
    ]


HUB = """\
hub_id: central
broker: {url: "mqtt://localhost:1884", protocol: "5"}
store: {type: sqlite, path: /data/hub.db}
allowed_devices: [greenhouse-1]
shared_group: hubs
"""


def test_hub_config_loads_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(HUB, encoding="utf-8")
    hub = load_hub_config(path, {})
    assert hub.store == SqliteStoreConfig(path="/data/hub.db")
    assert hub.allowed_devices == ("greenhouse-1",)
    assert (hub.max_batch_bytes, hub.topic_prefix) == (16 * 1024**2, "edgestream")


def test_hub_defaults() -> None:
    hub = build(HubConfig, {"broker": {"url": "mqtt://h"}})
    assert (hub.hub_id, hub.store, hub.allowed_devices, hub.shared_group) == (
        "hub",
        SqliteStoreConfig(),
        (),
        None,
    )


def test_hub_errors() -> None:
    text = (
        HUB.replace("type: sqlite, ", "")
        .replace("greenhouse-1", "green house")
        .replace("shared_group: hubs", "shared_group: a/b")
    )
    with pytest.raises(ConfigError) as caught:
        load_config(HubConfig, text, "hub.yaml", {})
    assert str(caught.value).splitlines() == [
        'hub.yaml:3: store.type: required key is missing (one of "sqlite", "jetstream")',
        'hub.yaml:4: allowed_devices[0]: must match [A-Za-z0-9_.-]{1,64}, got "green house"',
        'hub.yaml:5: shared_group: must match [^/+#\\s]+, got "a/b"',
    ]
