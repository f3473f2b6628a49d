"""Config of the `http` source: local programs POST events to the agent.

Secure by default: the source listens on loopback only, so just programs on the device
itself can write into the queue. Listening on a network address needs both
`allow_remote: true` (saying so on purpose) and a token, because anyone on the LAN
who can reach the port could otherwise fill the queue with forged readings that the
hub then trusts as the device's own.

A token is printable ASCII without whitespace, checked at load (and in token_file
when the source starts, after its surrounding whitespace is stripped): an HTTP header
cannot carry anything else intact (surrounding spaces are trimmed, other bytes read
as latin-1), so any other token would pass the check and then refuse every request.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import ClassVar, Final

from agent.config.sensors import PolledSourceKeys
from sync.config.errors import IssueKind, Problem, describe
from sync.config.fields import config_class, setting
from sync.config.units import Size

HEALTH_PATH: Final = "/health"
"""Answered by every http source, so `path` cannot be it."""

_LISTEN: Final = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\[\]:\s]+)):(?P<port>\d{1,5})"
)
_LISTEN_EXPECTED: Final = "expected host:port such as 127.0.0.1:8787 or [::1]:8787"
_TOKEN_RULE: Final = (
    "must be printable ASCII without whitespace, as an Authorization header carries "
    "nothing else intact"
)
MAX_BODY_LIMIT: Final = 64 * 1024 * 1024
MAX_EVENTS_LIMIT: Final = 1_000_000


def token_problem(token: str) -> str | None:
    """Why `token` could never match an Authorization header, or None; never quotes it."""
    if all("!" <= char <= "~" for char in token):
        return None
    return _TOKEN_RULE


def parse_listen(text: str) -> tuple[str, int]:
    """(host, port) of `host:port` or `[v6]:port`; raises ValueError saying what is wrong."""
    match = _LISTEN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{_LISTEN_EXPECTED}, got {describe(text)}")
    port = int(match["port"])
    if port > 65535:
        raise ValueError(f"port must be at most 65535, got {port}")
    return match["v6"] or match["host"], port


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses; any other name may resolve anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@config_class
class HttpSourceConfig(PolledSourceKeys):
    """Accepts events POSTed as JSON or NDJSON and stores each request atomically."""

    kind: ClassVar[str] = "http"

    listen: str = setting(
        default="127.0.0.1:8787",
        doc="Address and port to listen on, as host:port ([::1]:8787 for IPv6); a "
        "non-loopback address also needs allow_remote and a token.",
        example="127.0.0.1:8787",
    )
    path: str = setting(
        default="/events",
        doc="URL path that accepts POSTed events; it is also each event's topic.",
        pattern=r"/[A-Za-z0-9_.~/-]*",
    )
    max_body: Size = setting(
        default=1024 * 1024,
        doc="Largest request body accepted; a bigger one is answered 413 unread.",
        minimum=1,
        maximum=MAX_BODY_LIMIT,
    )
    max_events: int = setting(
        default=10000,
        doc="Most events accepted in one request; more is answered 413.",
        minimum=1,
        maximum=MAX_EVENTS_LIMIT,
    )
    token: str | None = setting(
        default=None,
        doc="Bearer token every request must send (`Authorization: Bearer TOKEN`), "
        "printable ASCII without whitespace; prefer `${VAR}` or token_file over writing "
        "it here.",
        example="${EDGESTREAM_HTTP_TOKEN}",
    )
    token_file: str | None = setting(
        default=None,
        doc="File holding the token (surrounding whitespace ignored), read when the "
        "source starts, which retries while it is unreadable; exclusive with token.",
        example="/run/secrets/http_token",
    )
    key_field: str | None = setting(
        default=None,
        doc="Dotted path of the field that becomes the event key; unset: no key.",
        example="device.id",
    )
    time_field: str | None = setting(
        default=None,
        doc="Dotted path of the field holding the event time in epoch seconds; unset, "
        "missing, or more than a day ahead: the time of arrival.",
        example="ts",
    )
    allow_remote: bool = setting(
        default=False,
        doc="Allow a non-loopback listen address; a token is then required too, since "
        "anyone reaching the port could otherwise write events.",
    )

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to bind; only valid on a checked config."""
        return parse_listen(self.listen)

    def resolved_token(self) -> str | None:
        """The token, read from token_file when set; raises OSError or ValueError, whose
        message never holds the token."""
        if self.token_file is None:
            return self.token
        token = Path(self.token_file).read_bytes().strip().decode("latin-1")
        if not token:
            raise ValueError(f"token_file {self.token_file} is empty")
        problem = token_problem(token)
        if problem is not None:
            raise ValueError(f"token_file {self.token_file}: the token {problem}")
        return token

    def check(self) -> list[Problem]:
        problems = self._token_problems()
        if self.path == HEALTH_PATH:
            problems.append(Problem("path", f"{HEALTH_PATH} is reserved for the health check"))
        try:
            host, _ = parse_listen(self.listen)
        except ValueError as exc:
            return [*problems, Problem("listen", str(exc), IssueKind.WRONG_TYPE)]
        return problems + self._remote_problems(host)

    def _token_problems(self) -> list[Problem]:
        if self.token is not None and self.token_file is not None:
            return [Problem("token_file", "cannot be used together with token")]
        if self.token == "":
            return [Problem("token", "must not be empty")]
        problem = None if self.token is None else token_problem(self.token)
        return [] if problem is None else [Problem("token", problem)]

    def _remote_problems(self, host: str) -> list[Problem]:
        if is_loopback(host):
            return []
        if not self.allow_remote:
            message = (
                f"{host} is not a loopback address: set allow_remote: true and a token "
                "to accept events from the network"
            )
            return [Problem("listen", message)]
        if self.token is None and self.token_file is None:
            return [Problem("token", f"is required when listening on {host} (allow_remote)")]
        return []
