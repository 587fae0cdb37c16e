"""Inbound flows of a shard: PUBLISH and PUBREL from clients (sans-IO).

Acceptors route QoS 0 and 1 publishes themselves; QoS 2 comes here, where
its packet id is held from PUBLISH to PUBREL [MQTT-4.3.3-2] (method B:
routed on first receipt, a retransmission is acknowledged and not routed
again) with a token that names the message at its destinations, so that a
resend on a new connection, or after a crash, is taken once.

Invariants: a QoS 2 publish of a persistent session is routed only after
its packet id (with its token) is committed; a packet id is released only
by PUBREL.

`Inbound` takes the shard's state and outbox.
"""

from __future__ import annotations

from typing import Final, cast

from flockmq import envelopes as env
from flockmq.envelopes import Kind, Wire
from flockmq.mqtt.packet_types import PacketType
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.store import DeleteInboundQos2, PutInboundQos2
from flockmq.workers.outbox import Outbox
from flockmq.workers.session import CONFIRMED, InboundQos2
from flockmq.workers.shard_state import ShardState

# The per-message kinds, bound once, built as plain tuples (env.RouteTuple,
# env.RoutedTuple, env.SendAckTuple: see flockmq/envelopes.py).
_ROUTE: Final = Kind.ROUTE
_ROUTED: Final = Kind.ROUTED
_SEND_ACK: Final = Kind.SEND_ACK
_PUBCOMP: Final = PacketType.PUBCOMP


class Inbound:
    __slots__ = ("out", "state")

    def __init__(self, state: ShardState, out: Outbox) -> None:
        self.state = state
        self.out = out

    def on_publish(self, e: Wire, now: float) -> None:
        # Unpacked, not built: see flockmq/envelopes.py (the per-message path).
        (_, conn, client_id, packet_id, topic, payload, qos, retain, props, attempt, retry, uid) = (
            cast(env.Publish, e)
        )
        state = self.state
        session = state.current(client_id, conn)
        if session is None:
            return
        known = session.inbound_qos2.get(packet_id)
        # The message's key for de-duplication at the destinations: the same
        # from first receipt to PUBREL, whichever connection resends it, even
        # after a crash (the token is stored with the packet id, and a
        # persistent destination stores the keys it took: `durable`).
        token = state.next_token() if known is None else known.token
        key: env.Qos2KeyTuple = (client_id, packet_id, token, session.persistent)
        reply: env.Qos2ReplyTuple = (conn, packet_id, attempt, uid, key)
        route: env.RouteTuple = (_ROUTE, client_id, topic, payload, qos, retain, props, reply)
        if qos < 2:  # acceptors route QoS 0/1 themselves; kept for completeness
            self.out.send_router(route)
        elif known is not None:
            self._publish_again(known, conn, packet_id, attempt, retry, route)
        else:
            session.own_inbound_qos2()[packet_id] = InboundQos2(conn, token)
            if session.persistent:
                self.out.ops.append(PutInboundQos2(client_id, packet_id, token))
            # Routed once the packet id is stored; the acceptor sends PUBREC when
            # every destination confirmed the message durable.
            self.out.send_router_after_commit(route)

    def _publish_again(
        self,
        known: InboundQos2,
        conn: int,
        packet_id: int,
        attempt: int,
        retry: bool,
        route: env.RouteTuple,
    ) -> None:
        """A QoS 2 packet id that is held already: a retransmission, or a
        resend whose first routing may have been lost."""
        if retry or known.conn not in (CONFIRMED, conn):
            # Never confirmed, so its first routing may have died: with the
            # router or a worker (the acceptor's retry), or with the
            # connection it came on (resent on a new one, maybe after the
            # whole broker restarted). Route it again rather than lose it:
            # destinations that already took it drop it by its key.
            self.state.counters["qos2_rerouted"] += 1
            known.conn = conn
            self.out.send_router(route)
            return
        # Confirmed, or still being confirmed on this connection: a
        # retransmission before PUBREL is acknowledged, not delivered
        # again [MQTT-4.3.3-2] (method B: deliver on first receipt).
        self.state.counters["qos2_duplicates_suppressed"] += 1
        routed: env.RoutedTuple = (_ROUTED, conn, packet_id, -1, attempt)
        self.out.send(conn, routed)

    def on_qos2_confirmed(self, e: Wire, now: float) -> None:
        _, _conn, client_id, packet_id = cast(env.Qos2Confirmed, e)
        session = self.state.sessions.get(client_id)
        known = session.inbound_qos2.get(packet_id) if session is not None else None
        if known is not None:
            known.conn = CONFIRMED

    def on_pubrel(self, e: Wire, now: float) -> None:
        _, conn, client_id, packet_id = cast(env.PubrelIn, e)
        session = self.state.current(client_id, conn)
        if session is None:
            return
        rc = 0
        if packet_id in session.inbound_qos2:
            del session.inbound_qos2[packet_id]
            if session.persisted:  # also releases the destinations' seen rows
                self.out.ops.append(DeleteInboundQos2(client_id, packet_id))
        else:
            rc = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
        pubcomp: env.SendAckTuple = (_SEND_ACK, conn, _PUBCOMP, packet_id, rc)
        self.out.send(conn, pubcomp)
