"""Exceptions raised by the MQTT connection, and how connect failures are described and logged."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from sync.condition_log import ConditionLog, Wording

_LOG = logging.getLogger("sync.mqtt.connection")

# MQTT 5 CONNACK reason codes that mean "your credentials are wrong"; paho maps the
# MQTT 3.1.1 return codes 4 and 5 onto the same two values.
_AUTH_REASON_CODES = frozenset({0x86, 0x87})


class MqttError(Exception):
    """Base class of every error raised by ``sync.mqtt``."""


class MqttConnectError(MqttError):
    """The broker answered CONNECT with a refusal (CONNACK reason code >= 0x80)."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(f"Broker refused the connection: {reason} (code {code})")
        self.reason = reason
        self.code = code

    @property
    def is_auth_failure(self) -> bool:
        """True for bad user name or password and not authorised: retrying will not fix it."""
        return self.code in _AUTH_REASON_CODES


class MqttPublishError(MqttError):
    """The broker refused a QoS 1/2 publish (MQTT 5 PUBACK/PUBREC reason code >= 0x80)."""

    def __init__(self, topic: str, reason: str, code: int) -> None:
        super().__init__(f"Broker refused publish to {topic}: {reason} (code {code})")
        self.topic = topic
        self.reason = reason
        self.code = code


class MqttConnectionLost(MqttError):
    """The socket closed while a QoS 0 packet was still queued, so paho dropped it."""


class MqttConnectionClosed(MqttError):
    """The connection was shut down (``run()`` ended) before the operation completed."""


def describe_connect_failure(exc: BaseException, timeout: float) -> str:
    """Say in a few words why a connect attempt failed, for the rate-limited log line."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    for kind, describe in _DESCRIPTIONS:
        if isinstance(exc, kind):
            return describe(exc)
    return f"{type(exc).__name__}: {exc}"


# Most specific first: every entry after MqttConnectError is an OSError subclass.
_DESCRIPTIONS: tuple[tuple[type[BaseException], Callable[[Any], str]], ...] = (
    (MqttConnectError, str),
    (socket.gaierror, lambda exc: f"cannot resolve host name ({exc.strerror})"),
    (
        ssl.SSLCertVerificationError,
        lambda exc: f"TLS certificate verification failed ({exc.verify_message})",
    ),
    (ssl.SSLError, lambda exc: f"TLS handshake failed ({exc.reason})"),
    (ConnectionRefusedError, lambda _exc: "connection refused"),
    (OSError, lambda exc: exc.strerror or f"{type(exc).__name__}: {exc}"),
)


_WORDING = Wording(
    started="MQTT %(subject)s %(detail)s",
    still="MQTT %(subject)s still cannot connect: %(count)s more failed attempt(s) in the "
    "last %(interval)s; latest: %(detail)s",
    cleared="MQTT %(subject)s reconnected to %(url)s after %(total)s failure(s); "
    "it was down for %(duration)s",
)


class ConnectFailureLog:
    """Logs an outage once, not once per retry (see sync/condition_log.py).

    A device whose broker is down for a day would otherwise write a line per attempt;
    here the loss (or the first failed connect) is logged, then a summary with the
    count every summary interval, and the success that ends it says how long it was
    down. A failure of another class (bad credentials, TLS) is logged when it appears.
    """

    def __init__(self, name: str, url: str) -> None:
        self._name = name
        self._url = url
        self._ever_connected = False
        self._conditions = ConditionLog(name, logger=_LOG, wording=_WORDING, fields={"url": url})

    def failed(self, condition: str, *, auth: bool) -> None:
        """Record one failed attempt; bad credentials log as an error, the rest as warnings."""
        self._conditions.failed(
            f"cannot connect to {self._url}: {condition}",
            kind="auth" if auth else _failure_class(condition),
            level=logging.ERROR if auth else logging.WARNING,
        )

    def connected(self) -> None:
        """Log the success that ends an outage (or the first connect)."""
        if not self._conditions.cleared():
            verb = "reconnected" if self._ever_connected else "connected"
            _LOG.info("MQTT %s %s to %s", self._name, verb, self._url)
        self._ever_connected = True

    def lost(self, reason: str) -> None:
        """Log a connection that was up and went down: the start of an outage."""
        self._conditions.failed(f"lost the connection to {self._url}: {reason}", kind="unreachable")


def _failure_class(description: str) -> str:
    """Failures that mean "the broker is not there" are one condition; others are their own."""
    if description.startswith(("Broker refused", "TLS")):
        return description
    return "unreachable"
