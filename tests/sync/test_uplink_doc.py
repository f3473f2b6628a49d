"""The example in docs/uplink.md is a valid uplink section, with the values the page explains."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from sync.config.spec import build
from sync.uplink import link_settings
from sync.uplink_config import UplinkConfig

DOC = Path(__file__).parent.parent.parent / "docs" / "uplink.md"


def test_the_documented_uplink_example_loads() -> None:
    (example,) = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    config = build(UplinkConfig, yaml.safe_load(example)["uplink"])
    assert config.max_bytes_per_second == 20 * 1024
    assert config.daily_budget == 50 * 1024**2
    assert config.stream("alerts").budget_exempt and config.stream("alerts").priority == 10
    assert config.stream("dashboard").drain_order == "newest_first"
    assert config.stream("unnamed").drain_order == "oldest_first"
    link = link_settings(config)
    assert (link.connect_timeout, link.keepalive, link.backoff_max) == (30.0, 60.0, 300.0)


def test_without_overrides_the_uplink_uses_the_broker_timings() -> None:
    config = build(UplinkConfig, {"broker": {"url": "mqtt://hub:1883", "keepalive": "20s"}})
    link = link_settings(config)
    assert (link.connect_timeout, link.keepalive, link.backoff_max) == (30.0, 20.0, 60.0)
    assert config.max_bytes_per_second is None and config.daily_budget is None


def test_wire_version_1_is_for_old_hubs_and_refuses_what_it_cannot_carry() -> None:
    import pytest

    from sync.config.errors import ConfigError
    from sync.config.spec import load_config

    old_hub = build(UplinkConfig, {"broker": {"url": "mqtt://hub"}, "wire_version": 1})
    assert old_hub.wire_version == 1
    text = 'broker: {url: "mqtt://hub"}\nwire_version: 1\nhmac_key_file: /k\n'
    with pytest.raises(ConfigError) as caught:
        load_config(UplinkConfig, text, "uplink.yaml", {})
    assert "hmac_key_file: needs wire_version 2" in str(caught.value)
