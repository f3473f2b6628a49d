"""The HTTP endpoints of /metrics, /healthz and /readyz, on the shared small server.

Liveness answers 200 as long as the event loop answers at all: a blocked or dead loop
is what a restart fixes. Readiness answers 503 with the reasons when the process runs
but cannot do its job (broker unreachable, disk nearly full, database read-only):
restarting would not help, so an orchestrator should alert rather than kill.

The hub adds its read-only fleet page to the same server (`routes`, see
sync/hub/fleet_page.py). A browser opens up to six connections to one host, and through
an SSH tunnel they all come from one address, hence `max_per_peer` of 8.

A port already taken does not stop the process: the data path matters more than its
instruments, so the failure is logged and the process runs without the endpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from sync.http_server import HttpServer
from sync.http_types import Handler, Request, Response, json_response
from sync.metrics import CONTENT_TYPE, Registry
from sync.metrics_config import MetricsConfig

log = logging.getLogger(__name__)

Readiness = Callable[[], Awaitable[list[str]]]
"""Returns why the process is not ready; an empty list means ready."""


class MetricsServer:
    """Serves a registry and a readiness check on the configured address."""

    def __init__(
        self,
        config: MetricsConfig,
        registry: Registry,
        readiness: Readiness,
        name: str,
        routes: Mapping[tuple[str, str], Handler] | None = None,
    ) -> None:
        """`routes` are served beside the four endpoints (the hub's fleet page)."""
        self.config = config
        self.registry = registry
        self.readiness = readiness
        self.server = HttpServer(
            {
                ("GET", "/metrics"): self._metrics,
                ("GET", "/healthz"): self._healthz,
                ("GET", "/readyz"): self._readyz,
                ("GET", "/status"): self._status,
                **(routes or {}),
            },
            host=config.host, port=config.port, max_body=0, name=name,
            max_connections=16, max_per_peer=8, idle_timeout=60.0,
        )  # fmt: skip
        self.running = False

    @property
    def port(self) -> int:
        """The bound port (useful with port 0 in tests)."""
        return self.server.port

    async def start(self) -> bool:
        """Listen if enabled; False when disabled or the address cannot be bound."""
        if not self.config.enabled:
            return False
        try:
            await self.server.start()
        except OSError as error:
            log.error(
                "Metrics endpoint not started: cannot listen on %s (%s); running without it",
                self.config.listen, error.strerror or error,
            )  # fmt: skip
            return False
        self.running = True
        log.info("Metrics and health endpoints on http://%s/metrics", self.config.listen)
        return True

    async def close(self) -> None:
        """Stop listening, if started."""
        if self.running:
            self.running = False
            await self.server.close()

    async def _metrics(self, request: Request) -> Response:
        return Response(200, await self.registry.render(), content_type=CONTENT_TYPE)

    async def _healthz(self, request: Request) -> Response:
        return json_response(200, {"status": "alive"})

    async def _status(self, request: Request) -> Response:
        """The same figures as /metrics, as JSON, for `edgestream status`."""
        families = {
            f.name: [{"labels": dict(labels), "value": value} for labels, value in f.samples]
            for f in await self.registry.collect()
        }
        return json_response(200, {"families": families, "not_ready": await self.readiness()})

    async def _readyz(self, request: Request) -> Response:
        reasons = await self.readiness()
        if reasons:
            return json_response(503, {"status": "not ready", "reasons": reasons})
        return json_response(200, {"status": "ready", "reasons": []})
