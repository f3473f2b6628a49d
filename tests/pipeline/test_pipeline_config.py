"""Bad pipelines are refused at load with a precise message; good ones of every kind load."""

from __future__ import annotations

from textwrap import dedent

import pytest

from agent.config import parse_agent_config
from agent.config.steps import STEP_CLASSES
from agent.pipeline.build import compile_pipeline
from sync.config import ConfigError

HEAD = """\
device_id: pi
streams: {raw: {}, out: {}, alerts: {}, cal: {}, late: {}, mid: {}}
pipelines:
"""


def load(pipelines: str) -> None:
    parse_agent_config(HEAD + dedent(pipelines))


def refusal(pipelines: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(pipelines)
    return str(caught.value)


def test_unknown_step_is_refused_with_a_suggestion() -> None:
    message = refusal("""\
      - name: p
        input: raw
        output: out
        steps: [{filtr: "x > 1"}]
    """)
    assert "filtr" in message and "filter" in message


def test_unknown_aggregate_is_refused_with_its_column() -> None:
    message = refusal("""\
      - name: p
        input: raw
        output: out
        steps: [{window: {size: 1m, aggregates: {m: median(x)}}}]
    """)
    assert "pipelines[0].steps[0].window.aggregates.m" in message
    assert "unknown aggregate 'median'" in message and "column 1" in message


def test_bad_expression_is_refused_with_path_and_column() -> None:
    message = refusal("""\
      - name: p
        input: raw
        output: out
        steps: [{map: {set: {f: "temp *"}}}]
    """)
    assert "pipelines[0].steps[0].map.set.f" in message and "column" in message


def test_window_without_a_size_is_refused() -> None:
    message = refusal("""\
      - name: p
        input: raw
        output: out
        steps: [{window: {aggregates: {n: count()}}}]
    """)
    assert "size: is required for tumbling windows" in message


def test_options_of_another_window_kind_are_refused() -> None:
    message = refusal("""\
      - name: p
        input: raw
        output: out
        steps: [{window: {type: session, gap: 5s, size: 1m, aggregates: {n: count()}}}]
    """)
    assert "size: does not apply to session windows" in message


def test_a_cycle_between_pipelines_is_refused() -> None:
    message = refusal("""\
      - name: a
        input: raw
        output: mid
      - name: b
        input: mid
        output: out
        steps: [{route: [{when: "x > 1", to: raw}]}]
    """)
    assert "cycle: a -> b -> a" in message


def test_route_and_late_streams_must_exist() -> None:
    message = refusal("""\
      - name: p
        input: raw
        output: out
        steps:
          - route: [{when: "x > 1", to: alarms}]
          - window: {size: 1m, late: latte, aggregates: {n: count()}}
    """)
    assert 'steps[0].route.rules[0].to: stream "alarms" is not defined' in message
    assert 'steps[1].window.late: stream "latte" is not defined' in message


def test_deadband_needs_a_band() -> None:
    message = refusal("""\
      - name: p
        input: raw
        output: out
        steps: [{deadband: {value: temp}}]
    """)
    assert "set absolute, relative or both" in message


EVERY_STEP = """\
  - name: all
    input: raw
    output: out
    steps:
      - filter: "temp > -40"
      - map: {set: {f: "temp * 1.8 + 32"}, rename: {t: temp2}, convert: {c: c_to_f}, drop: [x]}
      - select: [temp, f, device, readings]
      - split: readings
      - route: [{when: "temp > 80", to: alerts}]
      - deadband: {value: temp, absolute: 0.5, heartbeat: 5m}
      - dedupe: {fields: [temp], horizon: 1m}
      - throttle: {rate: 10, per: 1s, mode: latest}
      - downsample: {interval: 1s, keep: last}
      - join: {stream: cal, into: calibration}
      - join: {type: window, stream: cal, within: 5s}
      - window: {type: tumbling, size: 1m, late: late, aggregates: {n: count()}}
      - window: {type: hopping, size: 1m, slide: 10s, aggregates: {n: count()}}
      - window: {type: session, gap: 30s, max_length: 1h, aggregates: {n: count()}}
      - window:
          type: count
          events: 10
          every: 5
          aggregates:
            n: count()
            s: stddev(temp)
            p: p99(temp)
            q: percentile(temp, 99.9)
            r: rate(counter)
            d: delta(counter)
            u: distinct(device)
"""


def test_every_step_kind_loads_and_compiles() -> None:
    config = parse_agent_config(HEAD + EVERY_STEP)
    kinds = {type(step) for step in config.pipelines[0].steps}
    assert kinds == set(STEP_CLASSES)
    compiled = compile_pipeline(config.pipelines[0])
    assert len(compiled.chain.operators) == len(config.pipelines[0].steps)
    assert [stream for _, stream in compiled.side_inputs] == ["cal", "cal"]
    assert config.pipelines[0].written() == {"out", "alerts", "late"}
