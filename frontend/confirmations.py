"""The durable acknowledgement of one connection's inbound QoS 1/2 publishes
(sans-IO): PUBACK/PUBREC go out only when the router said how many shards
hold copies (ROUTED) and each confirmed its copy durable (STORED).

Owns, per packet id, the publish waiting for confirmation, its attempt
number and what it still waits for. Invariants: `size` is the message_size
total of `pending`; a confirmation counts only for the attempt it names (one
given up and sent again starts from nothing); a publish is acknowledged at
most once, when it is removed. What to write and whom to tell is the
session's (frontend/session.py): the methods of Confirmations only say
which publish is done. The retries at the end act on the session: a
publish left unconfirmed is sent again as a new attempt, and after
MAX_ATTEMPTS its connection is closed so the client retransmits it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flockmq import envelopes as env
from flockmq.frontend.codec import ReasonCode

if TYPE_CHECKING:
    from .session import ClientSession

PUBACK, PUBREC = 4, 5  # packet types of the acknowledgements a publish waits for
MAX_ATTEMPTS = 3  # routings of one publish before its publisher is disconnected

log = logging.getLogger("flockmq.acceptor")


class PendingPublish:
    """An inbound QoS 1/2 publish waiting to be confirmed durable."""

    __slots__ = (
        "ack_kind",
        "attempt",
        "duplicates",
        "envelope",
        "expected",
        "since",
        "size",
        "stored",
    )

    def __init__(
        self, ack_kind: int, envelope: env.RouteTuple | env.Publish, now: float, size: int
    ) -> None:
        self.ack_kind = ack_kind  # PUBACK or PUBREC
        self.size = size  # message_size of the publish
        self.envelope = envelope  # what to send again (ROUTE, or PUBLISH to the shard)
        self.since = now
        self.attempt = 0
        self.expected = -1  # shards that will confirm; -1 until ROUTED says
        self.stored = 0
        self.duplicates = 0  # client retransmissions while this one is pending

    def retry(self, now: float) -> None:
        """Start a new attempt: confirmations of the old one no longer count."""
        self.attempt += 1
        self.since = now
        self.expected = -1
        self.stored = 0
        e = self.envelope
        if e[0] == env.Kind.ROUTE:  # a typed plain tuple (see frontend/inbound_publish.py)
            kind, origin, topic, payload, qos, retain, props, reply = e
            assert reply is not None  # a QoS 1 ROUTE always has one
            conn, packet_id, _attempt, uid, _key = reply
            new_reply: env.ReplyTuple = (conn, packet_id, self.attempt, uid, None)
            self.envelope = (kind, origin, topic, payload, qos, retain, props, new_reply)
        else:  # PUBLISH to the session's shard: route again despite the known packet id
            self.envelope = e._replace(attempt=self.attempt, retry=True)


class Confirmations:
    """The publishes of one connection waiting to be confirmed durable."""

    __slots__ = ("full", "pending", "size")

    def __init__(self) -> None:
        self.pending: dict[int, PendingPublish] = {}  # by packet id, in arrival order
        self.size = 0  # their message_size total: reading stops past a bound
        self.full = False  # not reading until confirmations bring it down

    def add(
        self,
        packet_id: int,
        ack_kind: int,
        envelope: env.RouteTuple | env.Publish,
        now: float,
        size: int,
    ) -> bool:
        """Wait for `packet_id`'s confirmation. False: a retransmission of a
        publish still being confirmed (nothing to send; counted, so that the
        shard's answer to it is not taken for the first one's)."""
        pending = self.pending.get(packet_id)
        if pending is not None:
            pending.duplicates += 1
            return False
        self.pending[packet_id] = PendingPublish(ack_kind, envelope, now, size)
        self.size += size
        return True

    # on_routed and on_stored are on the path of every QoS 1/2 publish: the
    # lookup and the removal are written out in each, not shared helpers.
    def on_routed(self, packet_id: int, shards: int, attempt: int) -> PendingPublish | None:
        """ROUTED: `shards` will confirm. shards < 0: the session's shard saw a
        QoS 2 retransmission of a packet id it already routed; acknowledged,
        unless an earlier transmission is still being confirmed (that one
        acknowledges). The publish now confirmed, removed, or None."""
        pending = self.pending.get(packet_id)
        if pending is None or attempt != pending.attempt:
            return None  # confirmation of an attempt that was given up
        if shards < 0:
            if pending.duplicates:
                pending.duplicates -= 1
                return None
            shards = 0
        pending.expected = shards
        if pending.stored >= shards:
            del self.pending[packet_id]
            self.size -= pending.size
            return pending
        return None

    def on_stored(self, packet_id: int, attempt: int) -> PendingPublish | None:
        """STORED (ok): one shard's copy is durable. The publish now
        confirmed, removed, or None."""
        pending = self.pending.get(packet_id)
        if pending is None or attempt != pending.attempt:
            return None
        pending.stored += 1
        if pending.expected >= 0 and pending.stored >= pending.expected:
            del self.pending[packet_id]
            self.size -= pending.size
            return pending
        return None

    def current(self, packet_id: int, attempt: int) -> PendingPublish | None:
        """The publish `packet_id` when `attempt` is the one it waits for."""
        pending = self.pending.get(packet_id)
        if pending is None or attempt != pending.attempt:
            return None
        return pending

    def overdue(self, now: float, timeout: float) -> list[tuple[int, PendingPublish]]:
        """The publishes unconfirmed for longer than `timeout`, in arrival order."""
        return [(pid, p) for pid, p in self.pending.items() if now - p.since > timeout]


class _NoConfirmations(Confirmations):
    """What a session that never published at QoS 1/2 points at, shared (an
    object and its dict per connection otherwise): never added to; see
    ClientSession.await_confirmation."""

    __slots__ = ()

    def add(
        self,
        packet_id: int,
        ack_kind: int,
        envelope: env.RouteTuple | env.Publish,
        now: float,
        size: int,
    ) -> bool:
        raise AssertionError("a session added to the shared empty confirmations")


NO_CONFIRMATIONS: Confirmations = _NoConfirmations()


class UnconfirmedTotals:
    """What all the sessions of one acceptor wait to have confirmed: a
    session stops reading past the acceptor-wide bound too. Shared by the
    acceptor (which retries and times out `sessions`) and its sessions
    (which keep it up to date), as Fences is (frontend/ordering.py).
    Invariant: `size` is the sum of the sessions' Confirmations.size."""

    __slots__ = ("sessions", "size")

    def __init__(self) -> None:
        self.sessions: set[ClientSession] = set()  # those with publishes pending
        self.size = 0


def check_confirmations(session: ClientSession, now: float, timeout: float) -> None:
    """A publish left unconfirmed (a router or worker died holding it) is
    sent again as a new attempt; after MAX_ATTEMPTS the connection is
    closed, so the client retransmits it itsession. Never acknowledged
    unconfirmed."""
    for packet_id, pending in session.confirmations.overdue(now, timeout):
        session.host.count("publish_confirm_timeouts")
        if pending.attempt + 1 >= MAX_ATTEMPTS:
            log.warning(
                "client %s: publish %d not confirmed durable after %d attempts: "
                "closing the connection so the client retransmits it",
                session.client_id,
                packet_id,
                MAX_ATTEMPTS,
            )
            session.close(ReasonCode.UNSPECIFIED_ERROR)
            return
        _retry(session, packet_id, pending, now, f"not confirmed in {timeout:.0f}s")


def retry_unconfirmed(session: ClientSession, now: float, why: str) -> None:
    """Send every unconfirmed publish again now, in arrival order."""
    for packet_id, pending in list(session.confirmations.pending.items()):
        _retry(session, packet_id, pending, now, why)


def _retry(
    session: ClientSession, packet_id: int, pending: PendingPublish, now: float, why: str
) -> None:
    pending.retry(now)
    session.host.count("publish_retries")
    log.info(
        "client %s: publish %d %s: attempt %d",
        session.client_id,
        packet_id,
        why,
        pending.attempt + 1,
    )
    e = pending.envelope
    if e[0] == env.Kind.ROUTE:
        session.route(e)
    else:
        session.forward(e)
