"""How to reach an MQTT broker: shared by agent sources and outputs, the uplink and the hub."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from sync.config.errors import IssueKind, Problem, describe
from sync.config.fields import config_class, setting
from sync.config.units import Duration, format_duration

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_URL_EXPECTED = "expected mqtt://host:port or mqtts://host:port"


@config_class
class TlsConfig:
    """TLS settings, used when the broker url starts with mqtts://."""

    ca_file: str | None = setting(
        default=None,
        doc="PEM file of the CA that signed the broker certificate; unset trusts the system CAs.",
        example="/etc/edgestream/ca.pem",
    )
    cert_file: str | None = setting(
        default=None,
        doc="PEM client certificate for brokers that require mutual TLS (it may include the key).",
        example="/etc/edgestream/device.crt",
    )
    key_file: str | None = setting(
        default=None,
        doc="PEM private key of the client certificate, if it is not inside cert_file.",
        example="/etc/edgestream/device.key",
    )
    insecure: bool = setting(
        default=False,
        doc="Skip the broker host name check; only for testing with a self-signed certificate.",
    )

    def check(self) -> list[Problem]:
        if self.key_file and not self.cert_file:
            return [Problem("key_file", "needs cert_file, the certificate this key belongs to")]
        return []


_URL_CREDENTIALS = (
    "must not hold credentials (user:password@): they would be shown wherever the url "
    "is (status, readiness, systemd); use username and password or password_file"
)


@config_class
class MqttConnectionConfig:
    """One MQTT broker connection: address, credentials, TLS, timeouts and reconnect backoff."""

    url: str = setting(
        doc="Broker address as mqtt://host:port or mqtts://host:port (TLS); "
        "the port defaults to 1883 or 8883.",
        example="mqtts://broker.example.com:8883",
    )
    client_id: str | None = setting(
        default=None,
        doc="MQTT client identifier, unique per broker; when unset it is "
        "`edgestream-<device_id>-<source name>` for an agent source, "
        "`edgestream-<device_id>-uplink` for the uplink and `edgestream-hub-<hub_id>` for the hub.",
    )
    username: str | None = setting(
        default=None, doc="User name for broker authentication.", example="sensor-gw-01"
    )
    password: str | None = setting(
        default=None,
        doc="Password for broker authentication; prefer `${MQTT_PASSWORD}` or password_file "
        "over writing it here.",
        example="${MQTT_PASSWORD}",
    )
    password_file: str | None = setting(
        default=None,
        doc="File holding the password (trailing newline ignored), read at each connect; "
        "exclusive with password.",
        example="/run/secrets/mqtt_password",
    )
    tls: TlsConfig = setting(default=TlsConfig(), doc="TLS settings for an mqtts:// url.")
    keepalive: Duration = setting(
        default=60.0,
        doc="Interval of MQTT keepalive pings, after which a silent connection counts as lost; "
        "0 turns them off. 60s is below carriers' NAT idle timeouts and costs about "
        "0.3 MB a day on a metered link (docs/uplink.md).",
        maximum=65535.0,
    )
    connect_timeout: Duration = setting(
        default=30.0,
        doc="How long one connection attempt (DNS, TCP, TLS, CONNACK) may take before "
        "retrying; 30s lets a cellular modem wake and finish a TLS handshake.",
        minimum=0.1,
    )
    backoff_initial: Duration = setting(
        default=1.0,
        doc="Wait before the first reconnect attempt; it doubles (with jitter) after each failure.",
        minimum=0.01,
    )
    backoff_max: Duration = setting(
        default=60.0, doc="Longest wait between reconnect attempts.", minimum=0.01
    )
    protocol: Literal["3.1.1", "5"] = setting(
        default="3.1.1", doc="MQTT protocol version spoken to the broker."
    )

    @property
    def host(self) -> str:
        """Broker host name or address from the url (IPv6 without brackets)."""
        return self._split().hostname or ""

    @property
    def port(self) -> int:
        """Broker port from the url, or 1883 (mqtt) / 8883 (mqtts)."""
        split = self._split()
        return split.port or _DEFAULT_PORTS.get(split.scheme, 1883)

    @property
    def use_tls(self) -> bool:
        """True for an mqtts:// url."""
        return self._split().scheme == "mqtts"

    def resolved_password(self) -> str | None:
        """The password, read from password_file when that is set (raises OSError if unreadable)."""
        if self.password_file is not None:
            return Path(self.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        return self.password

    def check(self) -> list[Problem]:
        problems = self._url_problems()
        if self.password is not None and self.password_file is not None:
            problems.append(Problem("password_file", "cannot be used together with password"))
        if self.tls != TlsConfig() and not self.use_tls and not problems:
            problems.append(Problem("tls", "needs an mqtts:// url; mqtt:// is not encrypted"))
        return problems + self._backoff_problems()

    def _backoff_problems(self) -> list[Problem]:
        if self.backoff_initial <= self.backoff_max:
            return []
        limit, got = format_duration(self.backoff_max), format_duration(self.backoff_initial)
        return [Problem("backoff_initial", f"must not exceed backoff_max ({limit}), got {got}")]

    def _split(self) -> SplitResult:
        return urlsplit(self.url)

    def _url_problems(self) -> list[Problem]:
        try:
            split = self._split()
            port_ok = split.port is None or split.port > 0
        except ValueError:  # a bad port, or an unclosed IPv6 bracket (`mqtt://[::1`)
            return [Problem("url", f"{_URL_EXPECTED}, got {describe(self.url)}",
                            IssueKind.WRONG_TYPE)]  # fmt: skip
        well_formed = split.scheme in _DEFAULT_PORTS and bool(split.hostname) and port_ok
        if well_formed and (split.username is not None or split.password is not None):
            # Never echo the url: it holds a secret. Status pages and systemd show urls.
            return [Problem("url", _URL_CREDENTIALS, IssueKind.CONFLICT)]
        if well_formed and split.path in ("", "/") and not split.query:
            return []
        message = f"{_URL_EXPECTED}, got {describe(self.url)}"
        return [Problem("url", message, IssueKind.WRONG_TYPE)]
