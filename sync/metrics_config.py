"""The `metrics` section shared by the agent and the hub: where /metrics and health listen.

On by default, on loopback: what Fluent Bit and Telegraf users expect (a local scrape
or `curl localhost` works without editing the file), it costs one idle socket and
nothing per event, and nothing leaves the machine. Listening on another address is an
explicit `allow_remote: true`, since the endpoints have no authentication.
"""

from __future__ import annotations

import ipaddress

from sync.config.errors import IssueKind, Problem, describe
from sync.config.fields import config_class, setting
from sync.config.units import Duration, Size

_LISTEN_PATTERN = r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):[0-9]{1,5}"


@config_class
class MetricsConfig:
    """The Prometheus /metrics endpoint and the /healthz and /readyz health endpoints."""

    enabled: bool = setting(
        default=True,
        doc="Serve the metrics and health endpoints; off opens no port at all.",
    )
    listen: str = setting(
        default="127.0.0.1:9108",
        doc="Address and port to listen on as host:port (IPv6 in brackets); "
        "a non-loopback host needs allow_remote.",
        example="127.0.0.1:9108",
        pattern=_LISTEN_PATTERN,
    )
    allow_remote: bool = setting(
        default=False,
        doc="Allow a non-loopback listen address; the endpoints have no authentication, "
        "so restrict access with a firewall.",
    )
    disconnected_grace: Duration = setting(
        default=60.0,
        doc="How long an MQTT connection may be down before readiness fails; "
        "short outages of a flaky link stay ready.",
        minimum=0.0,
    )
    min_free_disk: Size = setting(
        default=64 * 1024**2,
        doc="Readiness fails when the data folder's file system has less free space than this.",
        minimum=0,
    )

    def check(self) -> list[Problem]:
        host = self.host
        if self.allow_remote or _is_loopback(host):
            return []
        message = (
            f"{describe(host)} is not a loopback address; the endpoints have no "
            "authentication, set allow_remote: true to listen there anyway"
        )
        return [Problem("listen", message, IssueKind.CONFLICT)]

    @property
    def host(self) -> str:
        """The host part of `listen`, brackets removed."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port part of `listen`."""
        return int(self.listen.rpartition(":")[2])


@config_class
class HubMetricsConfig(MetricsConfig):
    """The hub's metrics and health endpoints: the agent's section on port 9109."""

    listen: str = setting(
        default="127.0.0.1:9109",
        doc="Address and port to listen on as host:port (IPv6 in brackets); "
        "a non-loopback host needs allow_remote.",
        example="127.0.0.1:9109",
        pattern=_LISTEN_PATTERN,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
