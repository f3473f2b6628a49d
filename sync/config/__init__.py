"""Config spec framework shared by the agent and the hub.

Config classes (frozen dataclasses declared with `setting`) are validated by
`load_config`, which reports every problem at once as a `ConfigError`, and
rendered into the reference docs by `render_reference`.
"""

from sync.config.docs import render_reference
from sync.config.errors import ConfigError, ConfigIssue, IssueKind, Problem
from sync.config.fields import TAGGED_BY_KEY, TAGGED_BY_TYPE, config_class, setting
from sync.config.spec import build, load_config, load_config_file
from sync.config.units import (
    DURATION,
    SIZE,
    Duration,
    Size,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)
from sync.config.yaml_loader import Locator, load_yaml

__all__ = [
    "DURATION",
    "SIZE",
    "TAGGED_BY_KEY",
    "TAGGED_BY_TYPE",
    "ConfigError",
    "ConfigIssue",
    "Duration",
    "IssueKind",
    "Locator",
    "Problem",
    "Size",
    "build",
    "config_class",
    "format_duration",
    "format_size",
    "load_config",
    "load_config_file",
    "load_yaml",
    "parse_duration",
    "parse_size",
    "render_reference",
    "setting",
]
