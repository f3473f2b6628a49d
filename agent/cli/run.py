"""`edgestream run -c FILE`: run the agent daemon."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from agent.cli.common import EXIT_CONFIG, install_stop_signals, print_config_error
from agent.config.load import load_agent_config
from agent.config.model import AgentConfig
from agent.daemon import Agent
from agent.logs import setup_logging
from sync.config.errors import ConfigError


def register(commands: Any) -> None:
    """Add the `run` subcommand."""
    parser = commands.add_parser("run", help="run the agent daemon")
    parser.add_argument("-c", "--config", required=True, help="agent YAML file")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Validate the whole config first; start nothing if any of it is wrong."""
    try:
        config = load_agent_config(args.config)
    except ConfigError as error:
        print_config_error(error)
        return EXIT_CONFIG
    setup_logging(config.log_level, config.log_format)
    asyncio.run(_run(config))
    return 0


async def _run(config: AgentConfig) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop)
    await Agent(config).run(stop)
