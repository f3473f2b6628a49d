"""Reading a JetStream stream back in tests: every message, in stream order."""

from __future__ import annotations

from dataclasses import dataclass

import nats
from nats.js.api import DeliverPolicy


@dataclass(frozen=True)
class Stored:
    """One message as the stream holds it."""

    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes


async def read_stream(url: str, stream: str, subject: str = ">") -> list[Stored]:
    """Every message of `stream` in stream order, through an ordered push consumer."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        total = (await js.stream_info(stream, subjects_filter=subject)).state.messages
        if subject != ">":
            info = await js.stream_info(stream, subjects_filter=subject)
            total = sum((info.state.subjects or {}).values())
        sub = await js.subscribe(subject, stream=stream, ordered_consumer=True,
                                 deliver_policy=DeliverPolicy.ALL)  # fmt: skip
        out: list[Stored] = []
        while len(out) < total:
            msg = await sub.next_msg(timeout=10)
            out.append(Stored(msg.metadata.sequence.stream, msg.subject,
                              dict(msg.headers or {}), msg.data))  # fmt: skip
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()
