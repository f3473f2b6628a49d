"""Logging set-up: readable lines on a terminal, JSON lines when asked for, no secrets.

Every record passes a redaction filter on the one handler before it is written, so no
component has to remember it: a password in a URL (`mqtt://user:***@host`), a bearer
token, `password=...`, and every secret value the loaded config holds (MQTT and NATS
passwords and tokens, the HTTP source's token, HMAC keys) are replaced by `***` in
the message, its arguments, the exception text and structured extra fields.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from sync.condition_log import set_summary_interval

MASK = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not redacted by value: masking every "abc" would garble logs."""

_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_BEARER = re.compile(r"(?i)\b(?P<head>bearer\s+)[A-Za-z0-9._~+/=-]+")
_KEY_VALUE = re.compile(
    r"(?i)\b(?P<head>(?:password|passwd|pwd|token|secret|api_?key)=)[^\s&;,'\"]+"
)

_SECRET_VALUE_KEYS = frozenset({"password", "token"})
_SECRET_FILE_KEYS = frozenset({"password_file", "token_file", "hmac_key_file"})
_KEYS_FILE_KEYS = frozenset({"device_keys_file"})

_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))).union(
    {"message", "asctime", "taskName"}
)


class Redactor:
    """Replaces secrets in text: URL passwords, bearer tokens and known secret values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: frozenset[str] = frozenset()
        self._values: re.Pattern[str] | None = None
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Redact these values from now on (those shorter than MIN_SECRET_LENGTH are ignored)."""
        usable = frozenset(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)
        self.secrets = usable
        ordered = sorted(usable, key=len, reverse=True)  # longest first: one may hold another
        self._values = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        """`text` with every secret replaced by `***`."""
        if self._values is not None:
            text = self._values.sub(MASK, text)
        text = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
        text = _BEARER.sub(rf"\g<head>{MASK}", text)
        return _KEY_VALUE.sub(rf"\g<head>{MASK}", text)


class RedactingFilter(logging.Filter):
    """Renders the message once, redacted, so neither formatter can print a secret."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor.redact
        message = _message(record)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in extra_fields(record).items():
            if isinstance(value, str):
                setattr(record, name, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for journald or a log shipper.

    Keys: ts (Unix seconds), level, logger, msg, exc (the traceback, when there is one;
    its newlines are escaped, so a record is always one line), stack, and any extra
    fields the call passed (`log.info(..., extra={"device": d})`).
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render the record with its time, level, logger, message and extra fields."""
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        for name, value in extra_fields(record).items():
            entry.setdefault(name, value)
        return orjson.dumps(entry, default=str).decode()


_REDACTOR = Redactor()


def setup_logging(
    level: str = "info",
    fmt: str = "text",
    *,
    secrets: Iterable[str] | None = None,
    summary_interval: float | None = None,
) -> None:
    """Configure the root logger for the process (idempotent; a reload may call it again).

    `secrets` (see `config_secrets`) replaces the values redacted by value; None keeps
    the ones given before. `summary_interval` sets how often a repeating condition is
    summarised (sync/condition_log.py); None keeps the current one (5 minutes).
    """
    if secrets is not None:
        _REDACTOR.set_secrets(secrets)
    if summary_interval is not None:
        set_summary_interval(summary_interval)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(_REDACTOR))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def redact_secrets(secrets: Iterable[str]) -> None:
    """Redact these secret values from now on (a reload may bring new ones)."""
    _REDACTOR.set_secrets(secrets)


def redact(text: str) -> str:
    """`text` as the log handler would write it (for output printed without logging)."""
    return _REDACTOR.redact(text)


def config_secrets(*configs: object) -> set[str]:
    """Every secret a loaded config holds, to pass to `setup_logging(secrets=...)`.

    Walks the config objects: values of `password` and `token` keys, the contents of
    `password_file`, `token_file` and `hmac_key_file`, and every key of the hub's
    `device_keys_file` (hex, both cases). A file that cannot be read adds nothing: the
    component that needs it reports that itself.
    """
    found: set[str] = set()
    for config in configs:
        _collect(config, found)
    return found


def _collect(value: object, found: set[str]) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            _collect_field(item.name, getattr(value, item.name), found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, found)


def _collect_field(name: str, value: object, found: set[str]) -> None:
    if isinstance(value, str):
        if name in _SECRET_VALUE_KEYS:
            found.add(value)
        elif name in _SECRET_FILE_KEYS:
            found.update(_file_words(value, column=0))
        elif name in _KEYS_FILE_KEYS:
            found.update(_file_words(value, column=1))
        return
    _collect(value, found)


def _file_words(path: str, column: int) -> set[str]:
    """The stripped content (column 0 of a one-value file) or one column of each line."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    if column == 0:
        stripped = text.strip()
        return {stripped, stripped.lower(), stripped.upper()} if stripped else set()
    words: set[str] = set()
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) > column:
            words.update({parts[column], parts[column].lower(), parts[column].upper()})
    return words


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The attributes a call added with `extra=`, not the standard ones of every record."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}


def _message(record: logging.LogRecord) -> str:
    """The rendered message; a call whose arguments do not fit its format still shows."""
    try:
        return record.getMessage()
    except (TypeError, ValueError, KeyError):
        return f"{record.msg!r} {record.args!r}"
