"""GPIO input lines: their state on every poll and the edges counted in between.

The lines are requested from the kernel's GPIO character device (`/dev/gpiochip*`,
uAPI v2) through `gpiod`, the official libgpiod bindings, an optional dependency
(`pip install edgestream[gpio]`) imported only when a gpio source runs. The kernel
does the inversion (`active_low`), the bias and the debouncing, and queues each edge
with its time, so no edge is lost between two polls even at long intervals.

Edges are read as soon as the request's file descriptor becomes readable (an event
loop reader, never a thread or a blocking wait) and counted per line. Each poll emits
one event with, for a line named `door`:

    door          0 or 1, the line's logical value (after active_low) at the poll
    door_rising   edges 0 -> 1 since the previous event (when `edges` has rising)
    door_falling  edges 1 -> 0 since the previous event (when `edges` has falling)

With `emit_on_change`, each edge also becomes an event of its own, stamped with the
kernel's edge time (monotonic, converted to wall time when read) and stored before
the poll's event: `{"door": 1, "door_edge": "rising"}`. A storm of edges between two
polls (a bouncing contact without `debounce`) keeps at most MAX_PENDING_EDGES of those
events; the counters stay exact.

A chip that is missing, busy or not permitted, or gpiod not installed, fails the
read with a message saying what to do; the next poll tries to open it again. Counts
restart at zero whenever the lines are (re)opened.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol

from agent.config.gpio_source import GpioLineConfig, GpioSourceConfig
from agent.sources.polling import Reading

if TYPE_CHECKING:
    import gpiod

log = logging.getLogger(__name__)

MAX_PENDING_EDGES: Final = 10_000
"""Per-edge events kept between two polls; beyond it they are dropped, counts are not."""
INSTALL_HINT: Final = "install edgestream[gpio] (the gpiod package, libgpiod 2 bindings)"


class GpioError(RuntimeError):
    """The lines could not be opened or read; the message says why and what to do."""


class Edge(NamedTuple):
    """One change of a line's logical value, as the kernel queued it."""

    offset: int
    rising: bool
    timestamp_ns: int
    """CLOCK_MONOTONIC nanoseconds, the clock of Python's time.monotonic_ns()."""


class GpioLines(Protocol):
    """Requested input lines of one chip: the little the reader needs from libgpiod."""

    @property
    def fd(self) -> int:
        """Readable when edges are queued."""
        ...

    def get_values(self) -> list[int]:
        """The logical values (0 or 1) of the lines, in the order of the config."""
        ...

    def read_edges(self) -> list[Edge]:
        """The queued edges, oldest first; empty when there are none (never blocks)."""
        ...

    def close(self) -> None:
        """Release the lines."""
        ...


OpenLines = Callable[[GpioSourceConfig], GpioLines]


class GpioReader:
    """Reads the configured lines on each poll and counts their edges in between."""

    def __init__(self, config: GpioSourceConfig, open_lines: OpenLines | None = None) -> None:
        self.config = config
        self.path = chip_path(config)
        self._open_lines = open_lines or open_gpiod
        self._by_offset = {line.offset: line for line in config.lines}
        self._lines: GpioLines | None = None
        self._counts: dict[str, int] = {}
        self._pending: list[Reading] = []
        self._failure: str | None = None
        self._dropped_since_poll = 0
        self.dropped_edge_events = 0
        """Per-edge events not kept because over MAX_PENDING_EDGES were waiting."""

    async def read(self) -> list[Reading]:
        """The per-edge events since the last poll, then this poll's event."""
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise GpioError(f"edge events of {self.path} failed, reopening: {failure}")
        lines = self._lines or self._open()
        try:
            self._drain(lines)
            values = lines.get_values()
        except OSError as exc:
            self.close()
            raise GpioError(f"reading lines of {self.path} failed: {exc}") from exc
        fields = {line.field: value for line, value in zip(self.config.lines, values, strict=True)}
        readings = [*self._pending, Reading(None, {**fields, **self._counts})]
        self._pending, self._dropped_since_poll = [], 0
        self._counts = dict.fromkeys(self._counts, 0)
        return readings

    def close(self) -> None:
        """Stop watching the edges and release the lines; the next read reopens them."""
        lines, self._lines = self._lines, None
        if lines is not None:
            asyncio.get_running_loop().remove_reader(lines.fd)
            lines.close()

    def _open(self) -> GpioLines:
        lines = self._open_lines(self.config)
        self._lines = lines
        self._counts = {name: 0 for line in self.config.lines for name in counters(line)}
        self._pending = []
        if self._counts:
            asyncio.get_running_loop().add_reader(lines.fd, self._on_readable)
        return lines

    def _on_readable(self) -> None:
        """Loop callback: an error here must not escape into the loop, so it is kept."""
        if self._lines is None:
            return
        try:
            self._drain(self._lines)
        except Exception as exc:  # any error: stop watching, or a level-triggered fd spins
            self._failure = str(exc) or type(exc).__name__
            self.close()

    def _drain(self, lines: GpioLines) -> None:
        edges = lines.read_edges()
        if not edges:
            return
        now_wall, now_ns = time.time(), time.monotonic_ns()
        for edge in edges:
            line = self._by_offset.get(edge.offset)
            kind = "rising" if edge.rising else "falling"
            if line is None or f"{line.field}_{kind}" not in self._counts:
                continue  # the kernel only queues edges it was asked for
            self._counts[f"{line.field}_{kind}"] += 1
            if self.config.emit_on_change:
                when = now_wall - (now_ns - edge.timestamp_ns) / 1e9
                fields = {line.field: int(edge.rising), f"{line.field}_edge": kind}
                self._keep(Reading(None, fields, when))

    def _keep(self, reading: Reading) -> None:
        if len(self._pending) < MAX_PENDING_EDGES:
            self._pending.append(reading)
            return
        if self._dropped_since_poll == 0:
            log.warning(
                "Source %s: over %d edges since the last poll; per-edge events dropped, "
                "counts kept (set a debounce?)", self.config.name, MAX_PENDING_EDGES
            )  # fmt: skip
        self._dropped_since_poll += 1
        self.dropped_edge_events += 1


def counters(line: GpioLineConfig) -> list[str]:
    """The edge counters a line's poll events carry (its `_edge` field is per-edge only)."""
    return [name for name in line.counters() if not name.endswith("_edge")]


def chip_path(config: GpioSourceConfig) -> str:
    """The chip's device: a name under `root`, or a full path as written."""
    return str(Path(config.root) / config.chip)


# --- the real lines, over libgpiod v2 ------------------------------------------------


def require_gpiod() -> None:
    """Raise a GpioError saying what to install when gpiod (v2 API) is not importable."""
    try:
        import gpiod
    except ImportError:
        raise GpioError(f"the gpio source needs gpiod: {INSTALL_HINT}") from None
    if not hasattr(gpiod, "request_lines"):
        version = getattr(gpiod, "__version__", "?")
        raise GpioError(
            f"gpiod {version} has the old v1 API (Debian's python3-libgpiod?); {INSTALL_HINT}"
        )


def line_settings(line: GpioLineConfig) -> gpiod.LineSettings:
    """The libgpiod settings of one configured input line."""
    require_gpiod()
    import gpiod
    from gpiod.line import Bias, Direction
    from gpiod.line import Edge as Detect

    return gpiod.LineSettings(
        direction=Direction.INPUT,
        edge_detection=Detect[line.edges.upper()],
        bias=Bias[line.bias.upper()],
        active_low=line.active_low,
        debounce_period=timedelta(seconds=line.debounce),
    )


def open_gpiod(config: GpioSourceConfig) -> GpioLines:
    """Request the configured lines as inputs; a GpioError says why it failed."""
    require_gpiod()
    import gpiod

    path = chip_path(config)
    settings: dict[Iterable[int | str] | int | str, gpiod.LineSettings | None] = {
        line.offset: line_settings(line) for line in config.lines
    }
    consumer = f"edgestream[{config.name}]"
    try:
        request = gpiod.request_lines(path, config=settings, consumer=consumer)
    except OSError as exc:
        raise GpioError(open_failure(path, exc)) from exc
    except ValueError as exc:  # an offset the chip does not have
        raise GpioError(f"cannot request lines on {path}: {exc}") from exc
    return GpiodLines(request, [line.offset for line in config.lines])


def open_failure(path: str, exc: OSError) -> str:
    """What went wrong opening the chip, in words that suggest the fix."""
    if exc.errno == errno.ENOENT:
        return f"no GPIO chip at {path} (check `chip` and `root`; `gpiodetect` lists them)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied on {path}: add the agent's user to the gpio group"
    if exc.errno == errno.EBUSY:
        return f"lines of {path} are in use by another program or driver (see `gpioinfo`)"
    if exc.errno in (errno.ENODEV, errno.ENOTTY):
        return f"{path} is not a GPIO chip"
    return f"cannot request lines on {path}: {exc}"


class GpiodLines:
    """GpioLines over a libgpiod v2 line request."""

    def __init__(self, request: gpiod.LineRequest, offsets: list[int]) -> None:
        self._request = request
        self._offsets = offsets

    @property
    def fd(self) -> int:
        return self._request.fd

    def get_values(self) -> list[int]:
        return [int(bool(value)) for value in self._request.get_values(self._offsets)]

    def read_edges(self) -> list[Edge]:
        if not self._request.wait_edge_events(0):
            return []
        from gpiod import EdgeEvent

        rising = EdgeEvent.Type.RISING_EDGE
        return [
            Edge(event.line_offset, event.event_type is rising, event.timestamp_ns)
            for event in self._request.read_edge_events()
        ]

    def close(self) -> None:
        self._request.release()
