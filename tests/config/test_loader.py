"""The framework: YAML positions, ${VAR} expansion, the walker and its recovery rules."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Annotated, ClassVar

import pytest

from agent.config import parse_agent_config
from sync.config import (
    TAGGED_BY_KEY,
    ConfigError,
    Duration,
    Problem,
    build,
    config_class,
    load_config,
    load_config_file,
    load_yaml,
    setting,
)
from sync.config.env import expand_env
from sync.mqtt.config import MqttConnectionConfig


@config_class
class Gauge:
    """A test class with a number, a bounded duration and a cross-field rule."""

    kind: ClassVar[str] = "gauge"
    shorthand: ClassVar[str] = "scale"

    scale: float = setting(default=1.0, doc="Scale.")
    every: Duration = setting(default=1.0, doc="Period.", minimum=0.5)
    limit: float | None = setting(default=None, doc="Limit.")

    def check(self) -> list[Problem]:
        if self.limit is not None and self.limit < self.scale:
            return [Problem("limit", "must not be below scale")]
        return []


@config_class
class Counter:
    """A test step without shorthand."""

    kind: ClassVar[str] = "counter"

    start: int = setting(doc="Start.")


@config_class
class Panel:
    """A test root class."""

    name: str = setting(doc="Name.")
    steps: list[Annotated[Gauge | Counter, TAGGED_BY_KEY]] = setting(default=[], doc="Steps.")


def panel_errors(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(Panel, dedent(text), "p.yaml", env or {})
    return str(caught.value).splitlines()


def test_locator_gives_the_line_of_every_key_path() -> None:
    text = "a:\n  b:\n    - x: 1\n    -\n      y: 2\nc: 3\n"
    value, locator, issues = load_yaml(text, "t.yaml")
    assert value == {"a": {"b": [{"x": 1}, {"y": 2}]}, "c": 3}
    assert issues == []
    paths = ["a", "a.b", "a.b[0].x", "a.b[1]", "a.b[1].y", "c"]
    assert {path: locator.line(path) for path in paths} == {
        "a": 1,
        "a.b": 2,
        "a.b[0].x": 3,
        "a.b[1]": 5,
        "a.b[1].y": 5,
        "c": 6,
    }


def test_locator_falls_back_to_the_nearest_parent() -> None:
    _, locator, _ = load_yaml("a:\n  b:\n    c: 1\n", "t.yaml")
    assert locator.line("a.b.missing") == 2
    assert locator.line("a.b.c[3].d") == 3
    assert locator.line("zzz") == 1


def test_merge_keys_reuse_a_section_and_own_keys_win() -> None:
    text = "base: &b\n  url: mqtt://h\n  qos: 1\none:\n  <<: *b\n  qos: 2\ntwo: *b\nthree: *b\n"
    value, _, issues = load_yaml(text, "t.yaml")
    assert value["one"] == {"url": "mqtt://h", "qos": 2}
    assert value["two"] == value["three"] == {"url": "mqtt://h", "qos": 1}
    assert issues == []


def test_only_true_and_false_are_booleans() -> None:
    value, _, _ = load_yaml("a: NO\nb: yes\nc: true\nd: False\ne: on\n", "t.yaml")
    assert value == {"a": "NO", "b": "yes", "c": True, "d": False, "e": "on"}


@pytest.mark.parametrize(
    ("yaml_value", "expected"),
    [
        ("${HOST}", "broker.local"),
        ("mqtt://${HOST}:1884", "mqtt://broker.local:1884"),
        ("${NOPE:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("x${EMPTY}y", "xy"),
        ("$${HOST}", "${HOST}"),
        ("${QOS}", 2),
        ("${NOPE:-1.5}", 1.5),
        ("${FLAG:-true}", True),
        ('"${QOS}"', "2"),
        ("'${NOPE:-1}'", "1"),
        ("cost $5", "cost $5"),
    ],
)
def test_environment_variables_expand_in_values(yaml_value: str, expected: object) -> None:
    env = {"HOST": "broker.local", "EMPTY": "", "QOS": "2"}
    value, locator, _ = load_yaml(f"key: {yaml_value}\n", "t.yaml")
    expanded, issues = expand_env(value, locator, env)
    assert issues == []
    assert expanded == {"key": expected}


def test_environment_variable_never_injects_yaml_structure() -> None:
    value, locator, _ = load_yaml("key: ${EVIL}\n", "t.yaml")
    expanded, _ = expand_env(value, locator, {"EVIL": "x\nother: 1"})
    assert expanded == {"key": "x\nother: 1"}


def test_unset_variable_is_reported_once_not_also_as_a_wrong_type() -> None:
    text = "url: ${URL}\nkeepalive: ${KEEPALIVE}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(MqttConnectionConfig, text, "b.yaml", {})
    assert [(i.path, i.line) for i in caught.value.issues] == [("url", 1), ("keepalive", 2)]
    assert all("environment variable" in i.message for i in caught.value.issues)


def test_all_errors_are_reported_at_once_in_line_order() -> None:
    text = """\
    device_id: dev 1
    queue:
      commit_interval: ten
      read_bach: 5
    streams:
      sensors: {}
    sources:
      - type: mqtt
        name: a
        stream: sensorz
        broker: {url: "http://x", password: p, password_file: /p}
        topics: [sensors/#]
    pipelines:
      - name: p
        input: sensors
        output: sensors
        steps:
          - window: {size: 10x, aggregates: {n: count()}}
          - filter: "temp >"
    """
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(dedent(text), "a.yaml", {})
    assert str(caught.value).splitlines() == [
        'a.yaml:1: device_id: must match [A-Za-z0-9_.-]{1,64}, got "dev 1"',
        'a.yaml:3: queue.commit_interval: expected a duration such as 10s, got "ten"',
        'a.yaml:4: queue.read_bach: unknown key (did you mean "read_batch"?)',
        'a.yaml:10: sources[0].stream: stream "sensorz" is not defined in streams '
        '(did you mean "sensors"?)',
        "a.yaml:11: sources[0].broker.url: expected mqtt://host:port or mqtts://host:port, "
        'got "http://x"',
        "a.yaml:11: sources[0].broker.password_file: cannot be used together with password",
        "a.yaml:16: pipelines[0].output: must differ from input, or the pipeline feeds itself",
        'a.yaml:18: pipelines[0].steps[0].window.size: expected a duration such as 10s, got "10x"',
        "a.yaml:19: pipelines[0].steps[1].filter: syntax error at column 7: "
        "unexpected end of expression",
    ]


def test_invalid_stream_entry_does_not_invent_reference_errors() -> None:
    text = """\
    device_id: d
    streams:
      sensors: 5
    sources:
      - {type: mqtt, name: a, stream: sensors, broker: {url: "mqtt://h"}, topics: [t]}
    """
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(dedent(text), "a.yaml", {})
    assert str(caught.value) == "a.yaml:3: streams.sensors: expected a mapping, got 5"


def test_key_that_fell_back_to_its_default_skips_the_objects_checks() -> None:
    assert panel_errors("name: x\nsteps:\n  - gauge: {scale: big, limit: 0.5}\n") == [
        'p.yaml:3: steps[0].gauge.scale: expected a number, got "big"'
    ]
    assert panel_errors("name: x\nsteps:\n  - gauge: {scale: 2, limit: 1}\n") == [
        "p.yaml:3: steps[0].gauge.limit: must not be below scale"
    ]


def test_float_accepts_an_integer() -> None:
    panel = load_config(Panel, "name: x\nsteps:\n  - gauge: {scale: 2, limit: 3}\n", "p", {})
    assert panel.steps == [Gauge(scale=2.0, limit=3.0)]
    assert isinstance(panel.steps[0], Gauge) and isinstance(panel.steps[0].scale, float)


def test_shorthand_scalar_fills_the_shorthand_key_and_errors_use_the_step_path() -> None:
    panel = load_config(Panel, "name: x\nsteps:\n  - gauge: 4\n  - counter: {start: 2}\n", "p", {})
    assert panel.steps == [Gauge(scale=4.0), Counter(start=2)]
    assert panel_errors("name: x\nsteps:\n  - gauge: four\n") == [
        'p.yaml:3: steps[0].gauge: expected a number, got "four"'
    ]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("counter: 3", "steps[0].counter: expected a mapping, got 3"),
        ("gage: 3", 'steps[0].gage: unknown key (did you mean "gauge"?)'),
        ("bogus: 3", 'steps[0].bogus: unknown key (expected one of "gauge", "counter")'),
        (
            "{gauge: 1, counter: {start: 1}}",
            'steps[0]: expected a mapping with a single key, one of "gauge", "counter", '
            'got 2 keys: "gauge", "counter"',
        ),
        (
            "just text",
            'steps[0]: expected a mapping with a single key, one of "gauge", "counter", '
            'got "just text"',
        ),
        ("gauge: {every: 100ms}", "steps[0].gauge.every: must be at least 500ms, got 100ms"),
        ("counter:", "steps[0].counter.start: required key is missing"),
    ],
)
def test_single_key_union_errors(step: str, message: str) -> None:
    assert panel_errors(f"name: x\nsteps:\n  - {step}\n") == [f"p.yaml:3: {message}"]


def test_bad_list_item_is_left_out_and_the_rest_still_checked() -> None:
    text = "name: x\nsteps:\n  - counter: {start: a}\n  - counter: {start: b}\n  - gauge: 1\n"
    assert panel_errors(text) == [
        'p.yaml:3: steps[0].counter.start: expected an integer, got "a"',
        'p.yaml:4: steps[1].counter.start: expected an integer, got "b"',
    ]


def test_empty_file_reports_the_required_keys() -> None:
    assert panel_errors("") == ["p.yaml: name: required key is missing"]
    assert panel_errors("# only a comment\n") == ["p.yaml: name: required key is missing"]


def test_top_level_must_be_a_mapping() -> None:
    assert panel_errors("- a\n- b\n") == ["p.yaml:1: expected a mapping, got a list"]


def test_mapping_keys_must_be_text() -> None:
    text = "device_id: d\nstreams:\n  1: {}\n"
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(text, "a.yaml", {})
    assert str(caught.value) == "a.yaml:3: streams.1: expected a text key, got 1 (put it in quotes)"


def test_empty_section_takes_its_defaults() -> None:
    config = parse_agent_config("device_id: d\nqueue:\nstreams:\n  s:\n", "a.yaml", {})
    assert config.queue.commit_interval == 0.1
    assert config.streams["s"].max_bytes == 256 * 1024**2


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config_file(Panel, missing, {})
    assert str(caught.value) == f"{missing}: cannot read the file: No such file or directory"


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "panel.yaml"
    path.write_text("name: x\nnme: y\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config_file(Panel, path, {})
    assert str(caught.value) == f'{path}:2: nme: unknown key (did you mean "name"?)'


def test_build_validates_parsed_data_without_a_file() -> None:
    assert build(Panel, {"name": "x", "steps": [{"counter": {"start": 1}}]}).steps == [
        Counter(start=1)
    ]
    with pytest.raises(ConfigError) as caught:
        build(Panel, {"steps": []}, source="inline")
    assert str(caught.value) == "inline: name: required key is missing"


def test_yaml_structure_mistakes_are_reported_with_lines() -> None:
    text = "base: &b {x: 1, x: 2}\nc:\n  <<: 5\n? [1]\n: y\n"
    _, _, issues = load_yaml(text, "t.yaml")
    assert sorted((issue.line, issue.path, issue.message) for issue in issues) == [
        (1, "base.x", "duplicate key (first defined on line 1)"),
        (3, "c", "merge key << expects a mapping or an alias such as *broker"),
        (4, "", "a mapping key must be a plain value"),
    ]
