"""The hub's read-only fleet page: static files and the JSON they read, on /metrics' port.

Everything is served by the hub itself (package data in sync/hub/web, plain JavaScript,
no build step, nothing from a CDN), so the page works on an isolated network through
an SSH tunnel. Routes, all GET (HEAD answered by the server, anything else 405):

    /                       the fleet table          /api/fleet         its data
    /device?id=<device>     one device, with a chart /api/device?id=..  its data
    /static/<file>          the page's CSS and JavaScript

Device ids come from the network: the page's script writes them with `textContent`
and attribute setters only, and every answer carries a Content-Security-Policy that
allows nothing but this origin's own files (no inline script, no eval, no frames), so
even a markup-shaped device id stays text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Final

from sync.http_types import Handler, Request, Response, error_response, json_response
from sync.hub.fleet_views import FleetReader, StoreUnreadableError, View, reader_for
from sync.hub.service import Hub

log = logging.getLogger(__name__)

SECURITY_HEADERS: Final = (
    ("content-security-policy",
     "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
     " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none';"
     " frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
)  # fmt: skip
_NO_STORE: Final = (("cache-control", "no-store"),)
_HTML: Final = "text/html; charset=utf-8"
_FILES: Final = {
    "/": ("index.html", _HTML),
    "/device": ("device.html", _HTML),
    "/static/fleet.css": ("fleet.css", "text/css; charset=utf-8"),
    "/static/common.js": ("common.js", "text/javascript; charset=utf-8"),
    "/static/fleet.js": ("fleet.js", "text/javascript; charset=utf-8"),
    "/static/device.js": ("device.js", "text/javascript; charset=utf-8"),
}
_Clock = Callable[[], float]


def fleet_page_routes(hub: Hub, clock: _Clock = time.time) -> dict[tuple[str, str], Handler]:
    """The page's routes for the hub's HTTP server."""
    routes = {("GET", path): _static(name, kind) for path, (name, kind) in _FILES.items()}
    api = FleetApi(hub, reader_for(hub.store), clock)
    routes["GET", "/api/fleet"] = api.fleet
    routes["GET", "/api/device"] = api.device
    return routes


def _static(name: str, content_type: str) -> Handler:
    """A handler answering one package-data file, read once here."""
    body = resources.files("sync.hub.web").joinpath(name).read_bytes()
    response = Response(200, body, content_type, (*SECURITY_HEADERS, ("cache-control", "no-cache")))

    async def handler(request: Request) -> Response:
        return response

    return handler


class FleetApi:
    """The JSON the page reads; the hub's own counters ride along with the table."""

    def __init__(self, hub: Hub, reader: FleetReader | None, clock: _Clock) -> None:
        self.hub, self.reader, self.clock = hub, reader, clock
        self._failing: str | None = None
        """The read failure last logged: a page refreshing every 5 s logs it once."""

    async def fleet(self, request: Request) -> Response:
        """GET /api/fleet: the fleet table (the first PAGE_LIMIT devices by id)."""
        return await self._answer(self._fleet_view)

    async def device(self, request: Request) -> Response:
        """GET /api/device?id=...: one device; 404 when the store does not know it."""
        device = request.query.get("id", "")
        if not device:  # its length is bounded by the server's request-head limit
            return _error(400, "give a device id: /api/device?id=<device>")
        return await self._answer(lambda: self._device_view(device))

    async def _fleet_view(self) -> View | None:
        assert self.reader is not None
        view = await self.reader.fleet(self.clock())
        stats = self.hub.stats
        view["hub"] = {
            "hub_id": self.hub.config.hub_id, "connected": self.hub.connection.is_connected,
            "batches": stats.batches, "events": stats.events,
            "duplicates": stats.duplicates, "rejected": stats.rejected,
            "rejected_by": dict(sorted(stats.rejected_by.items())),
        }  # fmt: skip
        return view

    async def _device_view(self, device: str) -> View | None:
        assert self.reader is not None
        return await self.reader.device(device, self.clock())

    async def _answer(self, read: Callable[[], Awaitable[View | None]]) -> Response:
        if self.reader is None:
            return _error(501, "this hub's store keeps no fleet view")
        try:
            view = await read()
        except StoreUnreadableError as exc:
            if str(exc) != self._failing:
                log.warning("Fleet page: %s", exc)
                self._failing = str(exc)
            return _error(503, str(exc))
        if self._failing is not None:
            log.info("Fleet page: the store is readable again")
            self._failing = None
        if view is None:
            return _error(404, "the hub has no such device")
        return json_response(200, view, (*SECURITY_HEADERS, *_NO_STORE))


def _error(status: int, message: str) -> Response:
    return error_response(status, message, (*SECURITY_HEADERS, *_NO_STORE))
