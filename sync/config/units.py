"""Durations and sizes as people write them in YAML: `250ms`, `1m30s`, `256MiB`.

A bare number is refused for durations because `timeout: 5` could mean
seconds or milliseconds; the unit makes the file readable without the docs.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Final

from sync.config.errors import describe

DURATION: Final = "duration"
SIZE: Final = "size"

Duration = Annotated[float, DURATION]
"""A field holding seconds, written in YAML as `250ms`, `10s`, `5m`, `2h`, `7d` or `1m30s`."""
Size = Annotated[int, SIZE]
"""A field holding bytes, written in YAML as `512KiB`, `64MiB`, `1GiB`, `10MB` or an integer."""

_DURATION_UNITS: Final = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|[dhms])")
_DURATION_WHOLE: Final = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|[dhms]))+")

_BINARY_UNITS: Final = {"TiB": 1024**4, "GiB": 1024**3, "MiB": 1024**2, "KiB": 1024}
_DECIMAL_UNITS: Final = {"TB": 1000**4, "GB": 1000**3, "MB": 1000**2, "KB": 1000}
_SIZE_UNITS: Final = {
    name.upper(): factor for name, factor in {**_BINARY_UNITS, **_DECIMAL_UNITS, "B": 1}.items()
}
_SIZE_TEXT: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?", re.IGNORECASE)

DURATION_EXPECTED: Final = "expected a duration such as 10s"
SIZE_EXPECTED: Final = "expected a size such as 64MiB"


def parse_duration(text: str) -> float:
    """Seconds in `text`; units d, h, m, s, ms, largest first; `"0"` alone needs none.

    Raises ValueError with a message fit for a config issue.
    """
    stripped = text.strip()
    if stripped == "0":
        return 0.0
    if not _DURATION_WHOLE.fullmatch(stripped):
        raise ValueError(f"{DURATION_EXPECTED}, got {describe(text)}")
    parts = _DURATION_PART.findall(stripped)
    scales = [_DURATION_UNITS[unit] for _, unit in parts]
    if any(later >= earlier for earlier, later in itertools.pairwise(scales)):
        raise ValueError(
            f"{DURATION_EXPECTED} (each unit once, largest first), got {describe(text)}"
        )
    return sum(float(number) * scale for (number, _), scale in zip(parts, scales, strict=True))


def parse_size(text: str | int) -> int:
    """Bytes in `text`: an integer is bytes; KiB/MiB/GiB/TiB are binary, KB/MB/GB/TB decimal.

    Raises ValueError with a message fit for a config issue.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"{SIZE_EXPECTED}, got {text}")
        return text
    match = _SIZE_TEXT.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{SIZE_EXPECTED}, got {describe(text)}")
    number, unit = match.groups()
    return round(float(number) * _SIZE_UNITS[(unit or "B").upper()])


def format_duration(seconds: float) -> str:
    """The shortest readable form that `parse_duration` reads back: 0.25 -> `250ms`."""
    remaining = round(seconds * 1000)
    if remaining == 0:
        return "0s"
    parts = []
    for unit, scale in _DURATION_UNITS.items():
        count, remaining = divmod(remaining, round(scale * 1000))
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def format_size(n: int) -> str:
    """The largest whole unit that fits: 268435456 -> `256MiB`, 10000000 -> `10MB`."""
    for units in (_BINARY_UNITS, _DECIMAL_UNITS):
        for name, factor in units.items():
            if n >= factor and n % factor == 0:
                return f"{n // factor}{name}"
    return f"{n}B"
