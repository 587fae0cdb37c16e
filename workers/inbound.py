"""Inbound flows of a shard: PUBLISH and PUBREL from clients (sans-IO).

Acceptors route QoS 0 and 1 publishes themselves; QoS 2 comes here, where
its packet id is held from PUBLISH to PUBREL [MQTT-4.3.3-2] (method B:
routed on first receipt, a retransmission is acknowledged and not routed
again) with a token that names the message at its destinations, so that a
resend on a new connection, or after a crash, is taken once.

Invariants: a QoS 2 publish of a persistent session is routed only after
its packet id (with its token) is committed; a packet id is released only
by PUBREL.
"""

from __future__ import annotations

from typing import Final, cast

from flockmq import envelopes as env
from flockmq.envelopes import Kind, Wire
from flockmq.mqtt.packet_types import PacketType
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.store import DeleteInboundQos2, PutInboundQos2
from flockmq.workers.session import CONFIRMED
from flockmq.workers.shard_state import ShardState

_ROUTE: Final = Kind.ROUTE
_SEND_ACK: Final = Kind.SEND_ACK


class InboundFlows(ShardState):
    def _on_publish(self, e: Wire, now: float) -> None:
        # Unpacked, not built: see flockmq/envelopes.py (the per-message path).
        (_, conn, client_id, packet_id, topic, payload, qos, retain, props, attempt, retry, uid) = (
            cast(env.Publish, e)
        )
        session = self._current(client_id, conn)
        if session is None:
            return
        known = session.inbound_qos2.get(packet_id)
        # The message's key for de-duplication at the destinations: the same
        # from first receipt to PUBREL, whichever connection resends it, even
        # after a crash (the token is stored with the packet id, and a
        # persistent destination stores the keys it took: `durable`).
        token = self._next_token() if known is None else known[1]
        key = env.Qos2Key(client_id, packet_id, token, session.persistent)
        route = env.Route(
            _ROUTE,
            client_id,
            topic,
            payload,
            qos,
            retain,
            props,
            env.Reply(conn, packet_id, attempt, uid, key),
        )
        if qos < 2:  # acceptors route QoS 0/1 themselves; kept for completeness
            self._to_router(route)
            return
        if known is not None:
            if retry or known[0] not in (CONFIRMED, conn):
                # Never confirmed, so its first routing may have died: with the
                # router or a worker (the acceptor's retry), or with the
                # connection it came on (resent on a new one, maybe after the
                # whole broker restarted). Route it again rather than lose it:
                # destinations that already took it drop it by its key.
                self.counters["qos2_rerouted"] += 1
                known[0] = conn
                self._to_router(route)
                return
            # Confirmed, or still being confirmed on this connection: a
            # retransmission before PUBREL is acknowledged, not delivered
            # again [MQTT-4.3.3-2] (method B: deliver on first receipt).
            self.counters["qos2_duplicates_suppressed"] += 1
            self._send(conn, env.Routed(Kind.ROUTED, conn, packet_id, -1, attempt))
            return
        session.inbound_qos2[packet_id] = [conn, token]
        if session.persistent:
            self.ops.append(PutInboundQos2(client_id, packet_id, token))
        # Routed once the packet id is stored; the acceptor sends PUBREC when
        # every destination confirmed the message durable.
        self._to_router_after_commit(route)

    def _on_qos2_confirmed(self, e: Wire, now: float) -> None:
        _, _conn, client_id, packet_id = env.Qos2Confirmed._make(e)
        session = self.sessions.get(client_id)
        known = session.inbound_qos2.get(packet_id) if session is not None else None
        if known is not None:
            known[0] = CONFIRMED

    def _on_pubrel(self, e: Wire, now: float) -> None:
        _, conn, client_id, packet_id = cast(env.PubrelIn, e)
        session = self._current(client_id, conn)
        if session is None:
            return
        rc = 0
        if packet_id in session.inbound_qos2:
            del session.inbound_qos2[packet_id]
            if session.persisted:  # also releases the destinations' seen rows
                self.ops.append(DeleteInboundQos2(client_id, packet_id))
        else:
            rc = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
        self._send(conn, env.SendAck(_SEND_ACK, conn, PacketType.PUBCOMP, packet_id, rc))
