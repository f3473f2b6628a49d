"""`edgestream hub -c FILE`: run the central hub."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import Any

from agent.cli import hub_status
from agent.cli.common import EXIT_CONFIG, install_stop_signals, print_config_error
from agent.logs import setup_logging
from sync.config.errors import ConfigError
from sync.hub.config import HubConfig, load_hub_config
from sync.hub.service import Hub
from sync.hub.store import CentralStore, SqliteCentralStore, StoreLockedError

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    """Add the `hub` subcommand: `hub -c FILE` serves, `hub status -c FILE` shows the fleet."""
    parser = commands.add_parser("hub", help="run the central hub, or show its fleet")
    parser.add_argument(
        "action", nargs="?", choices=("run", "status"), default="run",
        help="run (the default) serves; status prints the fleet table from the store",
    )  # fmt: skip
    parser.add_argument("-c", "--config", required=True, help="hub YAML file")
    hub_status.add_arguments(parser)
    parser.set_defaults(handler=dispatch)


def dispatch(args: argparse.Namespace) -> int:
    """`hub status` or `hub [run]`."""
    return hub_status.handle(args) if args.action == "status" else handle(args)


def handle(args: argparse.Namespace) -> int:
    """Validate, take ownership of the store, serve until stopped."""
    try:
        config = load_hub_config(args.config)
    except ConfigError as error:
        print_config_error(error)
        return EXIT_CONFIG
    setup_logging(config.log_level)
    try:
        store = SqliteCentralStore(config.store.path, config.store.synchronous)
    except StoreLockedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve(config, store))
    finally:
        store.close_now()
    return 0


async def _serve(config: HubConfig, store: CentralStore) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop)
    hub = Hub(config, store)
    task = asyncio.create_task(hub.run(), name="edgestream[hub]")
    log.info("Hub %s serving %s into %s", config.hub_id, config.broker.url, config.store.path)
    stopping = asyncio.create_task(stop.wait(), name="edgestream[hub].stop")
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task  # re-raises a crash of the hub, so the process exits non-zero
    log.info("Hub stopped: %d batches, %d events, %d duplicates dropped",
             hub.stats.batches, hub.stats.events, hub.stats.duplicates)  # fmt: skip
