"""Where reading of a followed file stands, by the file's identity, not its path.

A path can come to name another file at any time (rotation, a deleted file replaced),
so the stored position names the file by (device, inode) and by a fingerprint of its
first bytes: a restart or a rotation resumes the very file last read, and a new file
that got the inode of a deleted one is not resumed in its middle. Kept apart from the
follower because it is also the stored state the `file` source commits with its events.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Final

import orjson

log = logging.getLogger(__name__)

FINGERPRINT_BYTES: Final = 256

Identity = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading stands: the file's identity and the offset after the last line taken.

    `header` is the csv header line of that file; `skipping` says the offset is inside
    an over-long line already dead-lettered, whose rest up to its newline is dropped.
    `path` is the configured path it was taken for (None: stored before paths were);
    `fingerprint` is the digest of the file's first `fingerprint_size` bytes, so a new
    file that got the inode of a deleted one is not resumed in the middle.
    """

    dev: int
    ino: int
    offset: int
    header: str | None = None
    skipping: bool = False
    path: str | None = None
    fingerprint: str = ""
    fingerprint_size: int = 0

    @property
    def identity(self) -> Identity:
        return self.dev, self.ino

    def encode(self) -> bytes:
        """The bytes stored in the queue's state table."""
        return orjson.dumps(
            {"dev": self.dev, "ino": self.ino, "offset": self.offset,
             "header": self.header, "skipping": self.skipping, "path": self.path,
             "fingerprint": self.fingerprint, "fingerprint_size": self.fingerprint_size}
        )  # fmt: skip

    @classmethod
    def decode(cls, raw: bytes) -> Position | None:
        """The stored position, or None (logged) when it cannot be read back."""
        try:
            data: Any = orjson.loads(raw)
            path = data.get("path")
            return cls(
                int(data["dev"]), int(data["ino"]), int(data["offset"]),
                data.get("header"), bool(data.get("skipping", False)),
                None if path is None else str(path), str(data.get("fingerprint", "")),
                int(data.get("fingerprint_size", 0)),
            )  # fmt: skip
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("Stored file position %r is unreadable (%s); starting afresh", raw, exc)
            return None


def fingerprint(head: bytes) -> str:
    return hashlib.blake2b(head, digest_size=16).hexdigest()


def same_start(fd: int, position: Position) -> bool:
    """Whether the open file still begins with the bytes the position's fingerprint saw."""
    size = position.fingerprint_size
    if size == 0:
        return True
    head = os.pread(fd, size, 0)
    return len(head) == size and fingerprint(head) == position.fingerprint
