"""Trained zstd dictionaries for wire version 2: small batches compress like big ones.

A batch of 10 events has too little data for zstd to learn its field names, patterns
and typical numbers; a dictionary trained on earlier batches of the same stream
supplies them. A message names its dictionary by an 8-byte id (a BLAKE2b digest of
the dictionary), so the hub can keep several (one per fleet, a new one after a
re-training) and pick the right one, and refuse a batch whose dictionary it lacks.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

import zstandard

from sync.wire_columnar import encode_events
from sync.wire_header import encode_header
from sync.wire_types import Batch

DICTIONARY_SIZE = 16 * 1024
ID_SIZE = 8


def train_dictionary(samples: Sequence[Batch], size: int = DICTIONARY_SIZE) -> bytes:
    """A zstd dictionary of at most `size` bytes trained on version 2 bodies of `samples`.

    Train on batches like the ones that will be sent (same streams, same batch size),
    and on more of them than the dictionary has kilobytes; ValueError when zstd cannot.
    """
    bodies: list[bytes | bytearray | memoryview] = [
        b"".join([encode_header(b), *encode_events(b.events)]) for b in samples
    ]
    try:
        trained = zstandard.train_dictionary(size, bodies)
    except zstandard.ZstdError as exc:
        raise ValueError(f"cannot train a dictionary on {len(bodies)} batches: {exc}") from exc
    return trained.as_bytes()


@functools.lru_cache(maxsize=16)
def dictionary_id(dictionary: bytes) -> bytes:
    """The 8 bytes a message carries to name its dictionary (cached: hashing 16 KiB
    costs ~12 µs, more than encoding a small batch's columns)."""
    return hashlib.blake2b(dictionary, digest_size=ID_SIZE).digest()


@functools.lru_cache(maxsize=16)
def compression_dict(dictionary: bytes, level: int) -> zstandard.ZstdCompressionDict:
    """The dictionary loaded and prepared once per level (loading costs ~100 µs)."""
    loaded = zstandard.ZstdCompressionDict(dictionary)
    loaded.precompute_compress(level=level)
    return loaded


@functools.lru_cache(maxsize=16)
def decompression_dict(dictionary: bytes) -> zstandard.ZstdCompressionDict:
    """The dictionary loaded once for decompression."""
    return zstandard.ZstdCompressionDict(dictionary)
