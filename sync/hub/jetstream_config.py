"""Settings of the JetStream central store (`store: {type: jetstream}` in the hub YAML).

Kept apart from the SQLite settings because it is a backend of its own: a fleet that
outgrows one hub machine points several hubs at one NATS cluster, and every key here is
about that cluster (how to reach it, which stream, how long it remembers message ids).
"""

from __future__ import annotations

from typing import ClassVar, Literal
from urllib.parse import urlsplit

from sync.config.errors import IssueKind, Problem, describe
from sync.config.fields import config_class, setting
from sync.config.units import Duration, Size

_SCHEMES = ("nats", "tls")
_NAME = r"[A-Za-z0-9_-]{1,64}"
_TOKENS = r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*"


@config_class
class JetStreamStoreConfig:
    """The clustered central store: one NATS JetStream stream shared by any number of hubs."""

    kind: ClassVar[str] = "jetstream"

    servers: tuple[str, ...] = setting(
        default=("nats://127.0.0.1:4222",),
        doc="NATS server URLs as nats://host:port or tls://host:port; "
        "the client fails over between them.",
        example=["nats://nats-1:4222", "nats://nats-2:4222"],
        minimum=1,
    )
    stream: str = setting(
        default="EDGESTREAM",
        doc="Name of the JetStream stream that holds every device's events.",
        pattern=_NAME,
    )
    subject_prefix: str = setting(
        default="edgestream",
        doc="First subject tokens of every message; the stream captures `<subject_prefix>.>`.",
        pattern=_TOKENS,
    )
    granularity: Literal["event", "batch"] = setting(
        default="event",
        doc="One JetStream message per event (consumers filter by key, dedupe is per "
        "event) or per received batch as JSON lines (fewer, larger messages: faster, "
        "but consumers unpack batches).",
    )
    duplicate_window: Duration = setting(
        default=7200.0,
        doc="How long JetStream remembers message ids to drop duplicates; must exceed the "
        "longest time a device may keep retrying one batch.",
        minimum=1.0,
    )
    create: bool = setting(
        default=True,
        doc="Create the stream when it is missing; an existing stream is always checked "
        "against these settings and a mismatch stops the hub.",
    )
    retention: Literal["limits", "interest", "workqueue"] = setting(
        default="limits", doc="JetStream retention policy of the stream when it is created."
    )
    max_bytes: Size | None = setting(
        default=None,
        doc="Size limit of the stream, oldest messages removed first; unset means no limit.",
        example="50GiB",
        minimum=1,
    )
    max_age: Duration | None = setting(
        default=None,
        doc="Age after which messages are removed from the stream; unset keeps them forever.",
        example="30d",
        minimum=1.0,
    )
    replicas: int = setting(
        default=1,
        doc="Number of copies of the stream in a NATS cluster (1 to 5).",
        minimum=1,
        maximum=5,
    )
    storage: Literal["file", "memory"] = setting(
        default="file",
        doc="Where the stream keeps its messages; memory loses them when the server stops.",
    )
    publish_timeout: Duration = setting(
        default=10.0,
        doc="How long a commit waits for JetStream's acknowledgements before it is retried.",
        minimum=0.1,
    )
    fleet_bucket: str = setting(
        default="EDGESTREAM_FLEET",
        doc="Key-value bucket holding each device stream's position for the fleet view.",
        pattern=_NAME,
    )
    user: str | None = setting(
        default=None, doc="User name for NATS authentication.", example="hub"
    )
    password: str | None = setting(
        default=None,
        doc="Password for NATS authentication; prefer `${NATS_PASSWORD}` over writing it here.",
        example="${NATS_PASSWORD}",
    )
    token: str | None = setting(
        default=None,
        doc="Token for NATS token authentication; prefer `${NATS_TOKEN}` over writing it here.",
        example="${NATS_TOKEN}",
    )
    creds_file: str | None = setting(
        default=None,
        doc="NATS credentials file (JWT and NKey seed) for decentralised authentication.",
        example="/etc/edgestream-hub/hub.creds",
    )
    ca_file: str | None = setting(
        default=None,
        doc="PEM file of the CA that signed the NATS server certificate; "
        "unset trusts the system CAs.",
        example="/etc/edgestream-hub/nats-ca.pem",
    )

    @property
    def uses_tls(self) -> bool:
        """True when any server url asks for TLS."""
        return any(urlsplit(url).scheme == "tls" for url in self.servers)

    def check(self) -> list[Problem]:
        problems = [
            Problem(f"servers[{i}]", _bad_url(url), IssueKind.WRONG_TYPE)
            for i, url in enumerate(self.servers)
            if not _url_ok(url)
        ]
        if self.password is not None and self.user is None:
            problems.append(Problem("password", "needs user, the name this password belongs to"))
        if self.token is not None and self.user is not None:
            problems.append(Problem("token", "cannot be used together with user and password"))
        return problems


def _url_ok(url: str) -> bool:
    split = urlsplit(url)
    try:
        port_ok = split.port is None or split.port > 0
    except ValueError:
        port_ok = False
    return split.scheme in _SCHEMES and bool(split.hostname) and port_ok


def _bad_url(url: str) -> str:
    return f"expected nats://host:port or tls://host:port, got {describe(url)}"
