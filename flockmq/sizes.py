"""What a message costs in memory, as every bound in bytes counts it: one
function for the session queues (`max_queued_bytes`), the publishes an
acceptor holds until they are confirmed, and those a router holds while it
resyncs. An estimate, but one no field of the message can get around: the
topic, the payload, every property (user properties can be far larger than
the payload) and a fixed overhead, so that a flood of empty messages is
bounded too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# What one message costs beyond its fields (the objects around it, the
# containers' references).
MESSAGE_OVERHEAD = 128


def message_size(topic: str, payload: bytes, props: Mapping[str, Any] | None) -> int:
    size = MESSAGE_OVERHEAD + len(payload) + _size(topic)
    if props:
        for value in props.values():
            size += 16 + _size(value)
    return size


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode())
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(16 + _size(item) for item in value)
    return 8
