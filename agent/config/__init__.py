"""The agent's configuration: dataclass models and the loader that validates YAML into them."""

from agent.config.load import load_agent_config, parse_agent_config
from agent.config.model import (
    AgentConfig,
    MqttOutputConfig,
    PipelineConfig,
    QueueConfig,
    StreamConfig,
)
from agent.config.mqtt_source import KeyConfig, MqttSourceConfig, PayloadConfig, TopicConfig
from agent.config.steps import FilterStep, WindowStep
from sync.config.errors import ConfigError

__all__ = [
    "AgentConfig",
    "ConfigError",
    "FilterStep",
    "KeyConfig",
    "MqttOutputConfig",
    "MqttSourceConfig",
    "PayloadConfig",
    "PipelineConfig",
    "QueueConfig",
    "StreamConfig",
    "TopicConfig",
    "WindowStep",
    "load_agent_config",
    "parse_agent_config",
]
