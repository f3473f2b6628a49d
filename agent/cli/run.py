"""`edgestream run -c FILE`: run the agent daemon."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
from typing import Any

from agent.cli.common import (
    EXIT_CONFIG,
    agent_config_or_report,
    install_stop_signals,
)
from agent.config.load import load_agent_config
from agent.config.model import AgentConfig
from agent.daemon import Agent
from agent.logs import config_secrets, setup_logging
from agent.pidfile import remove_pid, write_pid
from agent.queue import QueueError
from sync.device_keys import KeyFileError

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    """Add the `run` subcommand."""
    parser = commands.add_parser("run", help="run the agent daemon")
    parser.add_argument("-c", "--config", required=True, help="agent YAML file")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Validate the whole config first; start nothing if any of it is wrong."""
    config = agent_config_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    setup_logging(config.log_level, config.log_format, secrets=config_secrets(config))
    return asyncio.run(_run(config, args.config))


async def _run(config: AgentConfig, path: str) -> int:
    stop, reload_requests = asyncio.Event(), asyncio.Event()
    install_stop_signals(stop)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_requests.set)
    agent = Agent(config)
    try:
        await agent.open()
    except (QueueError, KeyFileError) as error:
        log.error("Cannot start: %s", error)
        return 1
    write_pid(config.data_dir)
    try:
        await agent.run(stop, reload_requests, functools.partial(load_agent_config, path))
    finally:
        remove_pid(config.data_dir)
    return 0
