"""MQTT 5 Message Expiry Interval (section 3.3.2.3.3), shared by the router
(retained messages) and the session workers (queued messages). Sans-IO: the
caller passes the time (wall-clock seconds, so that a deadline stored before
a restart still means the same moment after it).

- A message with the property expires `interval` seconds after it arrived; a
  copy whose onward delivery has not started by then is deleted for that
  subscriber [MQTT-3.3.2-5], and a retained one is no longer sent.
- A copy sent later carries the interval minus the time it waited in the
  broker [MQTT-3.3.2-6], rounded up so that it never reads 0 ("expired")
  while it has not.
- In the store, the deadline travels inside the message's property blob
  under `DEADLINE`, a key that is not an MQTT property and never goes on the
  wire.
"""

from __future__ import annotations

import math
from typing import Any

from flockmq.persistence import pack_blob, unpack_blob

INTERVAL = "message_expiry_interval"
DEADLINE = "$expires_at"
NEVER = 0.0

Props = dict[str, Any] | None


def deadline_of(props: Props, now: float) -> float:
    """When a message that arrives now with `props` expires (NEVER: not)."""
    if not props:
        return NEVER
    interval = props.get(INTERVAL)
    if interval is None:
        return NEVER
    return now + float(interval)


def has_expired(deadline: float, now: float) -> bool:
    return deadline != NEVER and deadline <= now


def props_to_send(props: Props, deadline: float, now: float) -> Props:
    """The properties of a copy sent now: the interval counted down."""
    if deadline == NEVER or props is None:
        return props
    out = dict(props)
    out[INTERVAL] = max(1, math.ceil(deadline - now))
    return out


def pack_stored_props(props: Props, deadline: float) -> bytes | None:
    """The property blob of a stored message, its deadline included."""
    if deadline == NEVER:
        return pack_blob(props)
    return pack_blob({**(props or {}), DEADLINE: deadline})


def unpack_stored_props(blob: bytes | None) -> tuple[Props, float]:
    """(properties, deadline) of a stored message."""
    props = unpack_blob(blob)
    if not isinstance(props, dict):
        return None, NEVER
    deadline = props.pop(DEADLINE, NEVER)
    if not isinstance(deadline, (int, float)):
        deadline = NEVER  # damaged: the message is kept, without an expiry
    return (props or None), float(deadline)
