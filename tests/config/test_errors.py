"""Every kind of config mistake gives one exact line: `<file>:<line>: <path>: <message>`."""

from __future__ import annotations

from textwrap import dedent

import pytest

from agent.config import parse_agent_config
from sync.config.errors import ConfigError, ConfigIssue, IssueKind

SOURCE = """\
device_id: dev-1
streams:
  sensors: {}
sources:
  - type: mqtt
    name: plant
    stream: sensors
    broker:
      url: mqtt://localhost:1884
    topics:
      - topic: sensors/#
"""


def refuse(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(dedent(text), "agent.yaml", env or {})
    return caught.value


def lines(text: str, env: dict[str, str] | None = None) -> list[str]:
    return str(refuse(text, env)).splitlines()


def test_valid_base_config_loads() -> None:
    assert parse_agent_config(SOURCE, "agent.yaml", {}).device_id == "dev-1"


def test_unknown_key_suggests_the_closest_key() -> None:
    assert lines(SOURCE + "        qso: 1\n") == [
        'agent.yaml:12: sources[0].topics[0].qso: unknown key (did you mean "qos"?)'
    ]


def test_unknown_key_without_a_close_match_lists_the_valid_keys() -> None:
    assert lines(SOURCE + "        colour: red\n") == [
        'agent.yaml:12: sources[0].topics[0].colour: unknown key (expected one of "topic", "qos")'
    ]


def test_misspelt_type_key_is_suggested() -> None:
    text = SOURCE.replace("  - type: mqtt", "  - typ: mqtt")
    assert lines(text) == [
        'agent.yaml:5: sources[0].type: required key is missing (one of "mqtt", "simulated", '
        '"system", "thermal", "w1", "iio", "gpio", "command", "file", "http")',
        'agent.yaml:5: sources[0].typ: unknown key (did you mean "type"?)',
    ]


def test_missing_top_level_key_points_at_line_one() -> None:
    assert lines(SOURCE.replace("device_id: dev-1\n", "")) == [
        "agent.yaml:1: device_id: required key is missing"
    ]


def test_missing_nested_key_points_at_its_parent() -> None:
    assert lines(SOURCE.replace("    stream: sensors\n", "")) == [
        "agent.yaml:5: sources[0].stream: required key is missing"
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("qos: abc", 'sources[0].topics[0].qos: expected an integer, got "abc"'),
        ("qos: true", "sources[0].topics[0].qos: expected an integer, got true"),
        ("qos: 1.5", "sources[0].topics[0].qos: expected an integer, got 1.5"),
        ("qos: [1]", "sources[0].topics[0].qos: expected an integer, got a list"),
    ],
)
def test_wrong_type_says_what_was_expected_and_got(extra: str, message: str) -> None:
    assert lines(SOURCE + f"        {extra}\n") == [f"agent.yaml:12: {message}"]


def test_number_where_text_is_expected_asks_for_quotes() -> None:
    assert lines(SOURCE.replace("topic: sensors/#", "topic: 42")) == [
        "agent.yaml:11: sources[0].topics[0].topic: expected a string, got 42 (put it in quotes)"
    ]


@pytest.mark.parametrize(
    ("value", "got"), [("yes", '"yes"'), ("1", "1"), ('"true"', '"true"'), ("off", '"off"')]
)
def test_booleans_accept_only_true_and_false(value: str, got: str) -> None:
    text = SOURCE + f"    clean_session: {value}\n"
    assert lines(text) == [
        f"agent.yaml:12: sources[0].clean_session: expected true or false, got {got}"
    ]


def test_enum_lists_the_choices() -> None:
    text = SOURCE.replace("  sensors: {}", "  sensors:\n    overflow: fifo")
    assert lines(text) == [
        'agent.yaml:4: streams.sensors.overflow: expected one of "drop_oldest", "drop_newest", '
        '"block", got "fifo"'
    ]


def test_enum_suggests_a_close_choice() -> None:
    text = SOURCE.replace("  sensors: {}", "  sensors:\n    overflow: drop-oldest")
    assert lines(text)[0].endswith('got "drop-oldest" (did you mean "drop_oldest"?)')


@pytest.mark.parametrize(
    ("value", "got"), [("ten", '"ten"'), ("5", "5"), ("'5'", '"5"'), ("1m1h", None)]
)
def test_bad_duration(value: str, got: str | None) -> None:
    text = SOURCE.replace("  sensors: {}", f"  sensors:\n    max_age: {value}")
    expected = "expected a duration such as 10s"
    if got is None:
        message = f'{expected} (each unit once, largest first), got "1m1h"'
    else:
        message = f"{expected}, got {got}"
    assert lines(text) == [f"agent.yaml:4: streams.sensors.max_age: {message}"]


def test_bad_size() -> None:
    text = SOURCE.replace("  sensors: {}", "  sensors:\n    max_bytes: lots")
    assert lines(text) == [
        'agent.yaml:4: streams.sensors.max_bytes: expected a size such as 64MiB, got "lots"'
    ]


@pytest.mark.parametrize(
    ("setting", "path", "message"),
    [
        ("qos: 3", "sources[0].topics[0].qos", "must be at most 2, got 3"),
        ("qos: -1", "sources[0].topics[0].qos", "must be at least 0, got -1"),
    ],
)
def test_out_of_range_numbers(setting: str, path: str, message: str) -> None:
    assert lines(SOURCE + f"        {setting}\n") == [f"agent.yaml:12: {path}: {message}"]


def test_out_of_range_is_shown_in_the_keys_unit() -> None:
    text = SOURCE.replace("mqtt://localhost:1884", "mqtt://h\n      connect_timeout: 10ms")
    assert lines(text) == [
        "agent.yaml:10: sources[0].broker.connect_timeout: must be at least 100ms, got 10ms"
    ]


def test_out_of_range_count_and_empty_list() -> None:
    text = SOURCE.replace("      - topic: sensors/#\n", "") + "queue:\n  commit_max_events: 0\n"
    assert lines(text) == [
        "agent.yaml:10: sources[0].topics: must not be empty",
        "agent.yaml:12: queue.commit_max_events: must be at least 1, got 0",
    ]


def test_pattern_mismatch() -> None:
    assert lines(SOURCE.replace("dev-1", "my device")) == [
        'agent.yaml:1: device_id: must match [A-Za-z0-9_.-]{1,64}, got "my device"'
    ]


def test_conflicting_keys() -> None:
    text = SOURCE + "    key:\n      topic_segment: 1\n      field: id\n"
    assert lines(text) == [
        "agent.yaml:14: sources[0].key.field: cannot be used together with topic_segment; "
        "choose one"
    ]


def test_bad_stream_reference_suggests_a_stream() -> None:
    assert lines(SOURCE.replace("stream: sensors", "stream: sensorz")) == [
        'agent.yaml:7: sources[0].stream: stream "sensorz" is not defined in streams '
        '(did you mean "sensors"?)'
    ]


def test_missing_environment_variable() -> None:
    text = SOURCE.replace("url: mqtt://localhost:1884", "url: ${BROKER_URL}")
    assert lines(text) == [
        'agent.yaml:9: sources[0].broker.url: environment variable "BROKER_URL" is not set '
        "(write ${BROKER_URL:-default} to give a default)"
    ]


def test_malformed_variable_reference() -> None:
    text = SOURCE.replace("url: mqtt://localhost:1884", "url: mqtt://${HOST")
    assert lines(text)[0] == (
        "agent.yaml:9: sources[0].broker.url: bad variable reference; "
        "write ${NAME} or ${NAME:-default}, or $${ for a literal ${"
    )


def test_yaml_syntax_error_has_line_and_column() -> None:
    text = SOURCE.replace("    name: plant", "    name: plant: x")
    assert lines(text) == [
        "agent.yaml:6: YAML syntax error at column 16: mapping values are not allowed here"
    ]


def test_bad_indentation_is_a_syntax_error() -> None:
    text = SOURCE.replace("    name: plant", "   name: plant")
    assert lines(text)[0].startswith("agent.yaml:6: YAML syntax error at column 4: ")


def test_duplicate_key_names_both_lines() -> None:
    text = SOURCE.replace("    name: plant\n", "    name: plant\n    name: plant2\n")
    assert lines(text) == ["agent.yaml:7: sources[0].name: duplicate key (first defined on line 6)"]


def test_expression_syntax_error_has_the_column() -> None:
    text = SOURCE + dedent("""\
        pipelines:
          - name: hot
            input: sensors
            output: sensors
            steps:
              - filter: "temp >"
        """)
    lines_ = lines(text.replace("output: sensors", "output: hot"))
    assert lines_ == [
        'agent.yaml:15: pipelines[0].output: stream "hot" is not defined in streams',
        "agent.yaml:17: pipelines[0].steps[0].filter: syntax error at column 7: "
        "unexpected end of expression",
    ]


def test_each_error_class_has_its_kind() -> None:
    text = SOURCE.replace("stream: sensors", "stream: nope") + "        qso: 1\n        qos: x\n"
    text += "    key: {topic_segment: 1, field: id}\nqueue: {commit_interval: 5, read_batch: 0}\n"
    kinds = {issue.path: issue.kind for issue in refuse(text).issues}
    assert kinds == {
        "sources[0].stream": IssueKind.BAD_REFERENCE,
        "sources[0].topics[0].qso": IssueKind.UNKNOWN_KEY,
        "sources[0].topics[0].qos": IssueKind.WRONG_TYPE,
        "sources[0].key.field": IssueKind.CONFLICT,
        "queue.commit_interval": IssueKind.WRONG_TYPE,
        "queue.read_batch": IssueKind.OUT_OF_RANGE,
    }


def test_issue_without_line_or_path_formats_cleanly() -> None:
    issues = [
        ConfigIssue("a.b", "broken", None, IssueKind.CONFLICT),
        ConfigIssue("", "not YAML", 3, IssueKind.SYNTAX),
    ]
    assert str(ConfigError(issues, "x.yaml")) == "x.yaml: a.b: broken\nx.yaml:3: not YAML"
