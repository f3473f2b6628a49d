"""Reaching NATS and making sure the JetStream stream is the one the config describes.

The hub trusts the stream for deduplication (its duplicate window) and for keeping the
data (its limits), so at start it checks an existing stream instead of silently using
whatever is there: a window shorter than the devices' retries would let duplicates
through, and a different retention or size limit would drop data nobody asked to drop.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from sync.config.units import format_duration, format_size
from sync.hub.jetstream_config import JetStreamStoreConfig
from sync.hub.store import StoreConfigError, StoreUnavailableError

log = logging.getLogger(__name__)

_RECONNECT_WAIT = 1.0


class JetStreamConfigError(StoreConfigError):
    """The stream is missing (and `create` is off) or differs from the config: do not start."""


async def connect(config: JetStreamStoreConfig, name: str) -> Client:
    """Connect, with reconnects that go on forever and no silent outbound buffering.

    `pending_size=0` makes a publish while disconnected fail at once instead of being
    buffered: the commit then fails, the hub retries it, and nothing is acked meanwhile.
    """
    opened: list[Client] = []
    try:
        nc = await nats.connect(
            servers=list(config.servers), name=name, **_auth(config), **_callbacks(opened),
            allow_reconnect=True, max_reconnect_attempts=-1,
            reconnect_time_wait=_RECONNECT_WAIT, connect_timeout=config.publish_timeout,
            pending_size=0,
        )  # fmt: skip
    except (OSError, nats.errors.Error) as exc:
        servers = ", ".join(config.servers)
        raise StoreUnavailableError(f"cannot reach NATS at {servers}: {exc!r}") from exc
    opened.append(nc)
    return nc


def _auth(config: JetStreamStoreConfig) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if config.user is not None:
        options.update(user=config.user, password=config.password)
    if config.token is not None:
        options["token"] = config.token
    if config.creds_file is not None:
        options["user_credentials"] = config.creds_file
    if config.uses_tls or config.ca_file is not None:
        options["tls"] = ssl.create_default_context(cafile=config.ca_file)
    return options


def _callbacks(opened: list[Client]) -> dict[str, Any]:
    """Log lines for the connection's life; a close we asked for is not a lost connection."""

    async def disconnected() -> None:
        if opened and opened[0].is_closed:
            return
        log.warning("NATS connection lost; commits wait for it to come back")

    async def reconnected() -> None:
        log.info("NATS connection re-established")

    async def error(exc: Exception) -> None:
        log.warning("NATS client error: %s", exc)

    return {"disconnected_cb": disconnected, "reconnected_cb": reconnected, "error_cb": error}


def wanted_stream(config: JetStreamStoreConfig) -> StreamConfig:
    """The stream the config describes."""
    return StreamConfig(
        name=config.stream,
        subjects=[f"{config.subject_prefix}.>"],
        retention=RetentionPolicy(config.retention),
        storage=StorageType(config.storage),
        num_replicas=config.replicas,
        max_bytes=config.max_bytes if config.max_bytes is not None else -1,
        max_age=config.max_age if config.max_age is not None else 0,
        duplicate_window=config.duplicate_window,
    )


async def ensure_stream(js: JetStreamContext, config: JetStreamStoreConfig) -> None:
    """Create the stream if allowed and missing; check it otherwise."""
    try:
        info = await js.stream_info(config.stream)
    except nats.js.errors.NotFoundError:
        if not config.create:
            msg = f"JetStream stream {config.stream!r} does not exist and store.create is false"
            raise JetStreamConfigError(msg) from None
        await js.add_stream(wanted_stream(config))
        log.info("Created JetStream stream %s for %s.>", config.stream, config.subject_prefix)
        return
    differences = stream_differences(info.config, config)
    if differences:
        listed = "; ".join(differences)
        msg = f"JetStream stream {config.stream!r} does not match the hub config: {listed}"
        raise JetStreamConfigError(msg)


def stream_differences(actual: StreamConfig, config: JetStreamStoreConfig) -> list[str]:
    """Each way the existing stream differs from what the config asks, in words."""
    want = wanted_stream(config)
    found: list[str] = []
    subject = f"{config.subject_prefix}.>"
    if subject not in (actual.subjects or []):
        found.append(f"subjects are {actual.subjects}, expected to include {subject!r}")
    if actual.duplicate_window < config.duplicate_window:
        found.append(
            f"duplicate_window is {format_duration(actual.duplicate_window)}, "
            f"needs at least {format_duration(config.duplicate_window)}"
        )
    found += _same("retention", _value(actual.retention), config.retention)
    found += _same("storage", _value(actual.storage), config.storage)
    found += _same("replicas", actual.num_replicas, config.replicas)
    found += _limit("max_bytes", actual.max_bytes, want.max_bytes, format_size)
    found += _limit("max_age", actual.max_age, want.max_age, format_duration)
    return found


def _value(enum: Any) -> Any:
    return getattr(enum, "value", enum)


def _same(name: str, actual: Any, wanted: Any) -> list[str]:
    return [] if actual == wanted else [f"{name} is {actual}, config says {wanted}"]


def _limit(name: str, actual: Any, wanted: Any, fmt: Any) -> list[str]:
    def words(value: Any) -> str:
        return "unlimited" if value in (None, -1, 0) else str(fmt(value))

    if words(actual) == words(wanted):
        return []
    return [f"{name} is {words(actual)}, config says {words(wanted)}"]
