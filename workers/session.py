"""One MQTT session's state, as a worker shard keeps it (sans-IO).

Owns: subscriptions of record, packet-id allocation, outbound in-flight QoS 1/2
messages (in send order), the queue of messages waiting for the in-flight window
or for the client to come back, inbound QoS 2 packet ids awaiting PUBREL, and
the will. Invariants: `inflight` holds at most `window` messages; a message is
either in `inflight` or in `queue`, never both; `queued_bytes` is the total of `queue`'s
`message_size`s (flockmq/sizes.py: topic, payload and properties, not the payload alone: user
properties can be far larger than a payload).

The records here are slotted dataclasses read by name. A will is stored as
the msgpack array of its fields in `Will.stored()`'s order (the on-disk
format, unchanged): convert at the store boundary only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flockmq.envelopes import Props, Wire

NEVER_EXPIRES = 0xFFFFFFFF

CONFIRMED = -1  # InboundQos2.conn: the publish was confirmed (PUBREC sent)

# OutMessage.state
AWAIT_ACK = 0  # QoS 1 sent, awaiting PUBACK; QoS 2 sent, awaiting PUBREC
AWAIT_COMP = 1  # QoS 2: PUBREL sent, awaiting PUBCOMP


@dataclass(slots=True)
class OutMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: dict[str, Any] | None
    packet_id: int = 0
    state: int = AWAIT_ACK
    seq: int = 0  # position in the session's stored message order (persistent sessions)
    # its PutMessage is still to be made from it (Outbox.take_durable), so
    # changes until then need no op of their own
    unsaved: bool = False
    # MQTT 5 message expiry: when an unsent copy is dropped (NEVER: it is not);
    # see flockmq/message_expiry.py
    deadline: float = 0.0
    size: int = 0  # message_size(), set when it is queued


@dataclass(slots=True)
class Will:
    """A connection's will, kept with its session until it closes."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: Props
    delay_interval: int

    @classmethod
    def from_fields(cls, fields: Wire) -> Will:
        """From a CONNECT's will (env.Will, a list from the wire) or a stored
        one (`stored()`'s list); ValueError/TypeError: not six fields."""
        topic, payload, qos, retain, props, delay_interval = fields
        return cls(topic, payload, qos, retain, props, delay_interval)

    def stored(self) -> list[Any]:
        """As the store keeps it: env.Will's fields in order (the on-disk
        format of every flockmq so far; `from_fields` reads it back)."""
        return [self.topic, self.payload, self.qos, self.retain, self.props, self.delay_interval]


@dataclass(slots=True)
class PendingWill:
    """A will waiting for its delay [MQTT-3.1.3-9] (or for a reloaded
    session's connection to come back)."""

    due: float
    will: Will


@dataclass(slots=True)
class InboundQos2:
    """A QoS 2 packet id held from PUBLISH to PUBREL [MQTT-4.3.3-2]. `conn`
    is the connection it last arrived on while unconfirmed, CONFIRMED once its
    PUBREC went out, or 0 when unknown (reloaded from the store); `token`
    (stored with the packet id) names the message at its destinations from
    first receipt to PUBREL, whichever connection or broker incarnation
    resends it."""

    conn: int
    token: int


@dataclass(slots=True)
class Subscription:
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    sub_id: int | None = None


class _EmptyQueue(deque["OutMessage"]):
    """The one empty queue every session without queued messages points at
    (an empty deque is 600 bytes, per session): never appended to; see
    Session.enqueue."""

    __slots__ = ()

    def append(self, item: OutMessage) -> None:
        raise AssertionError("a session appended to the shared empty queue")


EMPTY_QUEUE: deque[OutMessage] = _EmptyQueue()


def _empty_queue() -> deque[OutMessage]:
    return EMPTY_QUEUE


class _EmptyTable(dict[Any, Any]):
    """The one empty dict every session without subscriptions, without
    messages in flight or without inbound QoS 2 state points at (an empty
    dict is 64 bytes; three per session, and most sessions of an idle
    connection have none of them): never written to; see Session.own_*."""

    __slots__ = ()

    def __setitem__(self, key: Any, value: Any) -> None:
        raise AssertionError("a session wrote to the shared empty table")

    def setdefault(self, key: Any, default: Any = None) -> Any:
        raise AssertionError("a session wrote to the shared empty table")

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a session wrote to the shared empty table")


EMPTY_TABLE: dict[Any, Any] = _EmptyTable()


def _no_subscriptions() -> dict[str, Subscription]:
    return EMPTY_TABLE


def _nothing_inflight() -> dict[int, OutMessage]:
    return EMPTY_TABLE


def _no_inbound_qos2() -> dict[int, InboundQos2]:
    return EMPTY_TABLE


@dataclass(slots=True)
class Session:
    client_id: str
    conn: int | None = None  # the connection currently attached, None when offline
    protocol_level: int = 4
    session_expiry: int = 0  # seconds after disconnect; 0: ends with the connection
    receive_maximum: int = 65535
    # shared and empty until the first entry (own_subscriptions)
    subscriptions: dict[str, Subscription] = field(default_factory=_no_subscriptions)
    filter_bytes: int = 0  # the length of every filter in `subscriptions`
    inflight: dict[int, OutMessage] = field(default_factory=_nothing_inflight)  # own_inflight
    queue: deque[OutMessage] = field(default_factory=_empty_queue)  # see enqueue
    queued_bytes: int = 0
    # by packet id; own_inbound_qos2 to add one
    inbound_qos2: dict[int, InboundQos2] = field(default_factory=_no_inbound_qos2)
    will: Will | None = None
    disconnected_at: float | None = None
    next_packet_id: int = 1
    dropped: int = 0  # messages this session could not hold (queue limits)
    next_seq: int = 1
    persisted: bool = False  # has rows in the store that must go when it ends
    # The router was told `conn` (ONLINE): only a session with subscriptions
    # needs it to (the router sends QoS 0 straight to a subscriber's
    # acceptor), so a client that only publishes costs the router nothing.
    announced: bool = False

    def enqueue(self, msg: OutMessage) -> None:
        """Queue `msg` (a queue of its own from the first message on: a
        session that never gets one, as an idle one, costs none; one that
        did keeps it, so a busy session does not allocate one per message)."""
        if self.queue is EMPTY_QUEUE:
            self.queue = deque()
        self.queue.append(msg)

    def own_subscriptions(self) -> dict[str, Subscription]:
        """`subscriptions`, made a dict of this session's own if it was the
        shared empty one: the only way to add to it."""
        if self.subscriptions is EMPTY_TABLE:
            self.subscriptions = {}
        return self.subscriptions

    def own_inflight(self) -> dict[int, OutMessage]:
        """`inflight`, as own_subscriptions."""
        if self.inflight is EMPTY_TABLE:
            self.inflight = {}
        return self.inflight

    def own_inbound_qos2(self) -> dict[int, InboundQos2]:
        """`inbound_qos2`, as own_subscriptions."""
        if self.inbound_qos2 is EMPTY_TABLE:
            self.inbound_qos2 = {}
        return self.inbound_qos2

    @property
    def persistent(self) -> bool:
        """Outlives its connection, so its state goes to the store."""
        return self.session_expiry > 0

    def allocate_packet_id(self) -> int:
        """The next packet id not in flight [MQTT-2.3.1-2]; the window is far
        below 65535, so the loop ends."""
        pid = self.next_packet_id
        while pid in self.inflight:
            pid = pid % 65535 + 1
        self.next_packet_id = pid % 65535 + 1
        return pid

    def expires_at(self) -> float | None:
        if self.conn is not None or self.disconnected_at is None:
            return None
        if self.session_expiry >= NEVER_EXPIRES:
            return None
        return self.disconnected_at + self.session_expiry
