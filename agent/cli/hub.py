"""`edgestream hub -c FILE`: run the central hub."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from agent.cli import hub_status
from agent.cli.common import EXIT_CONFIG, install_stop_signals, print_config_error
from agent.logs import config_secrets, setup_logging
from sync import systemd
from sync.backoff import retry_until_done
from sync.config.errors import ConfigError
from sync.device_keys import KeyFileError
from sync.hub.config import HubConfig, SqliteStoreConfig, load_hub_config
from sync.hub.fleet_page import fleet_page_routes
from sync.hub.jetstream_config import JetStreamStoreConfig
from sync.hub.metrics import hub_readiness, hub_registry
from sync.hub.republish import Republisher
from sync.hub.service import Hub
from sync.hub.store import (
    CentralStore,
    SqliteCentralStore,
    StoreConfigError,
    StoreLockedError,
    StoreUnavailableError,
)
from sync.metrics_server import MetricsServer
from sync.systemd import keep_watchdog_fed

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
    """Validate, open the store (owning it, for SQLite), serve until stopped."""
    try:
        config = load_hub_config(args.config)
    except ConfigError as error:
        print_config_error(error)
        return EXIT_CONFIG
    setup_logging(config.log_level, config.log_format, secrets=config_secrets(config))
    try:
        asyncio.run(_serve(config))
    except (StoreLockedError, StoreConfigError, KeyFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


async def _open_store(config: HubConfig) -> CentralStore:
    """The configured store; a JetStream server not reachable yet is waited for."""
    store = config.store
    if isinstance(store, SqliteStoreConfig):
        republish = config.republish is not None
        return SqliteCentralStore(store.path, store.synchronous, republish=republish)
    return await retry_until_done(
        lambda: _open_jetstream(store, f"edgestream-hub-{config.hub_id}"),
        what="Opening the JetStream store",
        errors=(StoreUnavailableError,),
        logger=log,
    )


async def _open_jetstream(settings: JetStreamStoreConfig, name: str) -> CentralStore:
    from sync.hub.jetstream_store import JetStreamCentralStore  # nats-py only for this store

    return await JetStreamCentralStore.open(settings, name=name)


def _republisher(config: HubConfig, store: CentralStore) -> Republisher | None:
    """The MQTT republish sink, when configured (the config allows it with SQLite only)."""
    if config.republish is None or not isinstance(store, SqliteCentralStore):
        return None
    return Republisher(config.republish, config.broker, store, config.hub_id)


def _where(config: HubConfig) -> str:
    store = config.store
    if isinstance(store, SqliteStoreConfig):
        return store.path
    return f"JetStream stream {store.stream} at {', '.join(store.servers)}"


async def _serve(config: HubConfig) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop)
    opening = asyncio.create_task(_open_store(config), name="edgestream[hub].open")
    stopping = asyncio.create_task(stop.wait(), name="edgestream[hub].stop")
    await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not opening.done():
        opening.cancel()
        stopping.cancel()
        return
    store = opening.result()
    try:
        await _run_hub(config, store, stopping)
    finally:
        await store.close()


async def _run_hub(config: HubConfig, store: CentralStore, stopping: asyncio.Task[Any]) -> None:
    hub = Hub(config, store, _republisher(config, store))
    metrics = hub_metrics_server(hub)
    await metrics.start()
    try:
        await _serve_hub(config, hub, stopping)
    finally:
        await metrics.close()


def hub_metrics_server(hub: Hub) -> MetricsServer:
    """/metrics, /healthz, /readyz and the read-only fleet page (/) of a hub."""
    settings = hub.config.metrics
    readiness = hub_readiness(hub, settings.disconnected_grace, settings.min_free_disk)
    return MetricsServer(
        settings, hub_registry(hub), readiness, name="hub-metrics", routes=fleet_page_routes(hub)
    )


async def _serve_hub(config: HubConfig, hub: Hub, stopping: asyncio.Task[Any]) -> None:
    task = asyncio.create_task(hub.run(), name="edgestream[hub]")
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hub.reload_keys)
    watchdog = asyncio.create_task(keep_watchdog_fed(lambda: None), name="edgestream[watchdog]")
    log.info("Hub %s serving %s into %s", config.hub_id, config.broker.url, _where(config))
    systemd.notify("READY=1", f"STATUS=serving {config.broker.url} into {_where(config)}")
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    systemd.notify("STOPPING=1")
    stopping.cancel()
    watchdog.cancel()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task  # re-raises a crash of the hub, so the process exits non-zero
    log.info("Hub stopped: %d batches, %d events, %d duplicates dropped",
             hub.stats.batches, hub.stats.events, hub.stats.duplicates)  # fmt: skip
