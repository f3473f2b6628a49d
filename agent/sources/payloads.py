"""Payload formats a source accepts: JSON, a bare number, a CSV line, `key=value` pairs.

Each parser turns bytes into the value an event stores (an object, or a number for
JSON) or a `DecodeFailure` naming what is wrong, so the caller can dead-letter it
with a reason. Parsers never raise on bad input; nothing is guessed silently: a CSV
line with the wrong number of values or a pair without `=` is a failure, not a
partial event.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from agent.config.mqtt_source import PayloadConfig


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """Why a payload is not acceptable: a short kind (counted) and a detail (kept)."""

    kind: str
    detail: str


INT_MIN: Final = -(2**63)
UINT_LIMIT: Final = 2**64
"""Integers stored as numbers fit a signed or unsigned 64-bit word."""

Parser = Callable[[bytes], Any]
"""Bytes to a decoded value, or a DecodeFailure."""

_PAIR: Final = r"""([^=\s,;"']+)=("[^"]*"|'[^']*'|[^\s,;"'=]*)"""
_PAIRS: Final = re.compile(_PAIR)
_PAIR_LINE: Final = re.compile(rf"[\s,;]*{_PAIR}(?:[\s,;]+{_PAIR})*[\s,;]*")


def parser_for(config: PayloadConfig) -> Parser:
    """The parser of the configured format (not called for raw, which keeps bytes)."""
    if config.format == "number":
        field = config.field
        return lambda raw: _wrap(parse_number(raw), field)
    if config.format == "csv":
        columns, separator = config.columns, config.separator
        return lambda raw: parse_csv(raw, columns, separator)
    if config.format == "keyvalue":
        return parse_keyvalue
    return parse_json


def parse_json(raw: bytes) -> Any:
    """A JSON object or number (a bare reading); arrays, strings and null are refused."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = _text(raw)
        return text if isinstance(text, DecodeFailure) else _invalid_json(exc)
    if isinstance(value, bool) or not isinstance(value, dict | int | float):
        kind = type(value).__name__
        return DecodeFailure("unsupported_json", f"expected a JSON object or number, got {kind}")
    return value


def _invalid_json(exc: orjson.JSONDecodeError) -> DecodeFailure:
    return DecodeFailure("invalid_json", f"payload is not valid JSON: {exc}")


def parse_number(raw: bytes) -> Any:
    """One finite number, surrounding white space allowed: `21.5`, `-3`, `1e3`."""
    text = _text(raw)
    if isinstance(text, DecodeFailure):
        return text
    number = to_number(text.strip())
    if number is None:
        sample = text.strip()[:40]
        return DecodeFailure("invalid_number", f"expected a number, got {sample!r}")
    return number


def parse_csv(raw: bytes, columns: tuple[str, ...], separator: str) -> Any:
    """One line of values, named by `columns`; numbers become numbers, quotes are stripped."""
    text = _text(raw)
    if isinstance(text, DecodeFailure):
        return text
    line = text.strip("\r\n")
    if "\n" in line:
        return DecodeFailure("invalid_csv", "expected one line of values, got several")
    values = [_unquote(v.strip()) for v in line.split(separator)]
    if len(values) != len(columns):
        detail = f"expected {len(columns)} values ({', '.join(columns)}), got {len(values)}"
        return DecodeFailure("invalid_csv", detail)
    return {name: number_or_text(value) for name, value in zip(columns, values, strict=True)}


def parse_keyvalue(raw: bytes) -> Any:
    """`temp=21.5 hum=40` (spaces, commas, semicolons or new lines between; quotes allowed)."""
    text = _text(raw)
    if isinstance(text, DecodeFailure):
        return text
    if not _PAIR_LINE.fullmatch(text):
        detail = f"expected name=value pairs, got {text[:40]!r}"
        return DecodeFailure("invalid_keyvalue", detail)
    return {name: number_or_text(_unquote(value)) for name, value in _PAIRS.findall(text)}


def to_number(text: str) -> int | float | None:
    """An int or a finite float spelled in `text`, else None (`nan`, `inf`, `1_000` are not).

    An integer beyond 64 bits is not a number here: JSON consumers (and orjson) cannot
    carry it, and such long digit strings are identifiers (a SIM's ICCID), kept as text.
    """
    if "_" in text:
        return None
    try:
        whole = int(text)
    except ValueError:
        pass
    else:
        return whole if INT_MIN <= whole < UINT_LIMIT else None
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or text.lower().lstrip("+-").startswith(("in", "na")):
        return None
    return number


def number_or_text(value: str) -> Any:
    """A number when the text is one, the text otherwise (`on`, `ok`, a serial number)."""
    number = to_number(value)
    return value if number is None else number


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _wrap(value: Any, field: str) -> Any:
    return value if isinstance(value, DecodeFailure) else {field: value}


def _text(raw: bytes) -> str | DecodeFailure:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return DecodeFailure("invalid_utf8", "payload is not valid UTF-8")
