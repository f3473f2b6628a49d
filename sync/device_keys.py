"""Files both ends of a link must share: per-device HMAC keys and wire dictionaries.

Per-device HMAC keys: a device signs its batches, the hub checks them.

Client certificates and a topic ACL stop a device from publishing on another device's
topic at the broker; a signature over the batch also protects against a broker (or
anyone with broker credentials) writing as a device. Keys are 32 random bytes written
as 64 hex digits (`openssl rand -hex 32`).

The hub's file has one device per line, `<device id> <hex key>`; blank lines and
`#` comments are skipped. A device's file holds just its key. A file that cannot be
read or holds a malformed line raises `KeyFileError` naming the file and line, never
the key itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

MIN_KEY_BYTES: Final = 16
_HEX: Final = re.compile(r"[0-9A-Fa-f]+")


class KeyFileError(ValueError):
    """A key file that cannot be used; the message says where, never what the key is."""


def load_device_key(path: str | Path) -> bytes:
    """The one key in a device's key file."""
    lines = [(n, line) for n, line in _lines(path) if line]
    if len(lines) != 1:
        raise KeyFileError(f"{path}: expected one hex key, found {len(lines)} lines")
    number, text = lines[0]
    return _key(text, path, number)


def load_device_keys(path: str | Path) -> dict[str, bytes]:
    """Every device's key in the hub's key file."""
    keys: dict[str, bytes] = {}
    for number, line in _lines(path):
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise KeyFileError(f"{path}:{number}: expected `<device id> <hex key>`")
        device, text = parts
        if device in keys:
            raise KeyFileError(f"{path}:{number}: device {device!r} is listed twice")
        keys[device] = _key(text, path, number)
    return keys


def _lines(path: str | Path) -> list[tuple[int, str]]:
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from exc
    return [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(text.splitlines(), 1)]


def _key(text: str, path: str | Path, number: int) -> bytes:
    if not _HEX.fullmatch(text) or len(text) % 2:
        raise KeyFileError(f"{path}:{number}: the key is not an even number of hex digits")
    key = bytes.fromhex(text)
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(
            f"{path}:{number}: the key has {len(key)} bytes, at least {MIN_KEY_BYTES} are needed"
        )
    return key


def load_dictionary(path: str | Path) -> bytes:
    """A trained wire dictionary's bytes (device and hub read the same file)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the wire dictionary {path}: {exc}") from exc
