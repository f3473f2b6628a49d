"""Why the hub refused a batch, as one of a few fixed classes: a metric label.

The hub tells a device the full reason of a refusal (it names devices, sizes, byte
offsets), and the store keeps the last one per device. A metric label must not be
that open: every distinct value is a new time series. So each reason is sorted into
one of `CLASSES`, by the wording the hub and the wire decoder use (sync/hub/service.py
`_verify` and `_commit`, sync/wire*.py). The only other reasons the hub produces are
the wire decoder's, so whatever matches no marker is `format`.
tests/hub/test_fleet_page.py produces each class through the real code paths, so a
reworded message that falls out of its class fails a test.
"""

from __future__ import annotations

from typing import Final

CLASSES: Final = (
    "format",
    "too_large",
    "signature",
    "identity",
    "dictionary",
    "store",
    "internal",
)
"""What each class means, for the operator:
format: not a valid batch (checksum, version, truncated, malformed fields);
too_large: over `max_batch_bytes` or a decoder limit;
signature: missing or wrong HMAC with `device_keys_file` set;
identity: the batch's device does not match its topic, is not allowed, or has no key;
dictionary: compressed with a dictionary this hub was not given;
store: the central store can never hold its content;
internal: a decoder bug (logged with its traceback)."""

_MARKERS: Final = (
    ("internal", ("undecodable batch:",)),
    ("store", ("central store refused the batch",)),
    ("signature", ("bad signature:",)),
    ("identity", ("arrived on the topic of", "not in allowed_devices", "no key in device_keys")),
    ("dictionary", ("unknown dictionary id",)),
    ("too_large", ("-byte limit", "past the limit of")),
)


def rejection_class(reason: str) -> str:
    """The class of a refusal reason: one of `CLASSES`."""
    for name, markers in _MARKERS:
        if any(marker in reason for marker in markers):
            return name
    return "format"
