"""Values placed into MQTT topic names: wildcards and NUL can never leak into a topic.

`+`, `#` and NUL in a value become `_`; a value meant as one level also has its `/`
replaced, so a key like `line/3` cannot add levels a subscriber did not expect.
"""

from __future__ import annotations

_UNSAFE = str.maketrans({"+": "_", "#": "_", "\0": "_"})


def topic_safe(text: str) -> str:
    """`text` with the wildcards and NUL replaced; `/` kept (a whole topic)."""
    return text.translate(_UNSAFE)


def topic_level(text: str) -> str:
    """`text` as exactly one topic level (`_` when empty)."""
    return topic_safe(text).replace("/", "_") or "_"
