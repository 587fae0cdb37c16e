"""A shard of session actors (sans-IO): envelopes in, envelopes out.

The worker process feeds every envelope for its shard to `Shard.handle` and
`Shard.handle_timer(now)`, then sends what accumulated in `to_router` and
`to_acceptors`. Nothing here touches a socket or a clock.

Decided here: client takeover, session present, clean-session discard, QoS
downgrade (min of published and granted QoS), one copy per subscriber,
the outbound in-flight window and its ordered queue, redelivery with DUP on
resume [MQTT-4.4.0-1], inbound QoS 2 exactly-once (packet ids held until
PUBREL [MQTT-4.3.3-2]), wills (published on any close but a clean DISCONNECT),
and session expiry.

Durability: for sessions that outlive their connection (`Session.persistent`)
every change is also recorded as a store op in `ops`. Envelopes that promise
durability (STORED confirmations to the publisher's acceptor, a QoS 2 publish
whose packet id must be stored before it is routed) go to `after_commit`: the
process sends them only once this pass's ops are committed. QoS 0 messages and
clean sessions never produce ops.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flockmq import envelopes as env
from flockmq.envelopes import Envelope, acceptor_of, incarnation_of
from flockmq.message_expiry import (
    deadline_of,
    has_expired,
    pack_stored_props,
    props_to_send,
    unpack_stored_props,
)
from flockmq.persistence import pack_blob, unpack_blob
from frontend.codec.packets import PacketType
from frontend.codec.reason_codes import ReasonCode
from store import (
    DeleteInboundQos2,
    DeleteMessage,
    DeleteSession,
    DeleteSubscription,
    Op,
    PruneSeenQos2,
    PutInboundQos2,
    PutMessage,
    PutSeenQos2,
    PutSession,
    PutSubscription,
    SessionRecord,
    UpdateMessage,
)

from .session import AWAIT_ACK, AWAIT_COMP, CONFIRMED, OutMessage, Session, Subscription
from .takeover import TAKEOVER_WAIT, Takeover, Takeovers

log = logging.getLogger("flockmq.worker")

REATTACH_GRACE = 10.0  # seconds a reloaded session's connection has to come back
SEEN_QOS2_MAX = 200_000  # QoS 2 publishes remembered to drop their retries


@dataclass(frozen=True, slots=True)
class ShardLimits:
    max_inflight: int = 64
    max_queued_messages: int = 100_000
    max_queued_bytes: int = 64 * 1024 * 1024
    queue_qos0: bool = False
    max_session_expiry: int = 0xFFFFFFFF


class Shard:
    def __init__(self, index: int, limits: ShardLimits, nonce: int = 0) -> None:
        """`nonce`: a random number per process start (31 bits), so that the
        QoS 2 tokens of this incarnation differ from every earlier one's."""
        self.index = index
        self.limits = limits
        self.now = 0.0  # the time of the envelope or timer being handled
        self._token_base = (nonce & 0x7FFFFFFF) << 32
        self._tokens = 0
        self.sessions: dict[str, Session] = {}
        self.pending_wills: dict[str, tuple[float, list[Any]]] = {}
        self.takeovers = Takeovers()
        self.offline: set[str] = set()  # sessions kept without a connection
        # QoS 2 messages this shard took, by key (see _seen_before);
        # insertion-ordered, bounded
        self.seen_qos2: dict[tuple[Any, ...], None] = {}
        self.to_router: list[Envelope] = []
        self.to_acceptors: dict[int, list[Envelope]] = {}
        # store writes of this pass; (client id, OutMessage) stands for the
        # PutMessage of a message queued in it (see take_durable)
        self.ops: list[Op | tuple[str, OutMessage]] = []
        self._unsaved = 0  # such placeholders in ops
        # (destination, envelope): sent once `ops` are committed; destination is
        # "router" or an acceptor index
        self.after_commit: list[tuple[str | int, Envelope]] = []
        self.counters: Counter[str] = Counter()
        self._handlers = {
            env.CONNECT: self._on_connect,
            env.PUBLISH: self._on_publish,
            env.PUBREL_IN: self._on_pubrel,
            env.QOS2_CONFIRMED: self._on_qos2_confirmed,
            env.PUBACK_IN: self._on_puback,
            env.PUBREC_IN: self._on_pubrec,
            env.PUBCOMP_IN: self._on_pubcomp,
            env.SUBSCRIBE: self._on_subscribe,
            env.UNSUBSCRIBE: self._on_unsubscribe,
            env.CLOSED: self._on_closed,
            env.ACCEPTOR_UP: self._on_acceptor_up,
            env.DELIVER: self._on_deliver,
            env.SUBSCRIBED: self._on_subscribed,
            env.ROUTER_UP: self._on_router_up,
        }

    # --- entry points ---------------------------------------------------------
    def handle(self, envelope: Envelope, now: float) -> None:
        self.now = now
        if self.takeovers.pending and self.takeovers.hold(envelope):
            return  # from a connection waiting to take over its session
        handler = self._handlers.get(envelope[0])
        if handler is None:
            self.counters["unknown_envelopes"] += 1
            log.warning("shard %d: unknown envelope kind %r", self.index, envelope[0])
            return
        handler(envelope, now)

    def handle_timer(self, now: float) -> None:
        """Publish delayed wills that are due, end expired sessions, and
        finish takeovers whose old connection's acceptor never answered."""
        self.now = now
        for client_id, waiting in self.takeovers.overdue(now):
            self.counters["takeovers_unconfirmed"] += 1
            log.warning(
                "client %s: its previous connection was not reported closed in %.0fs: "
                "taking over anyway",
                client_id,
                TAKEOVER_WAIT,
            )
            session = self.sessions.get(client_id)
            if session is not None and session.conn == waiting.old:
                self._detach(session, publish_will=True, now=now)
            self._complete_takeover(waiting, now)
        for client_id, (due, will) in list(self.pending_wills.items()):
            if due <= now:
                del self.pending_wills[client_id]
                self._route_will(client_id, will)
        for client_id in list(self.offline):
            session = self.sessions.get(client_id)
            expires = session.expires_at() if session is not None else None
            if session is not None and expires is not None and expires <= now:
                self.counters["sessions_expired"] += 1
                self._end_session(session)

    def next_timer(self) -> float | None:
        """When handle_timer next has work, or None. Only offline sessions can
        expire, so only they are looked at (not every idle connection)."""
        times = [due for due, _ in self.pending_wills.values()]
        takeover = self.takeovers.next_due()
        if takeover is not None:
            times.append(takeover)
        for client_id in self.offline:
            session = self.sessions.get(client_id)
            expires = session.expires_at() if session is not None else None
            if expires is not None:
                times.append(expires)
        return min(times, default=None)

    def load(self, records: Iterable[SessionRecord], now: float) -> None:
        """Sessions of this shard from the store (a restart). Each is offline;
        one that was online when its worker died lost its connection now, so its
        will goes out. Their subscriptions are registered with the router."""
        self.now = now
        for rec in records:
            session = Session(
                rec.client_id,
                protocol_level=rec.protocol_level,
                session_expiry=rec.expiry,
                persisted=True,
            )
            session.disconnected_at = rec.disconnected_at if rec.disconnected_at else now
            for sub in rec.subscriptions:
                session.subscriptions[sub.topic_filter] = Subscription(
                    sub.qos,
                    sub.no_local,
                    sub.retain_as_published,
                    sub.retain_handling,
                    sub.sub_id,
                )
            for m in rec.messages:
                props, deadline = unpack_stored_props(m.props)
                msg = OutMessage(
                    m.topic,
                    m.payload,
                    m.qos,
                    m.retain,
                    props,
                    m.packet_id,
                    m.state,
                    m.seq,
                    deadline=deadline,
                )
                if m.packet_id:
                    session.inflight[m.packet_id] = msg
                else:
                    session.queue.append(msg)
                    session.queued_bytes += len(m.payload)
                session.next_seq = m.seq + 1
            if session.inflight:
                session.next_packet_id = max(session.inflight) % 65535 + 1
            for q in rec.inbound_qos2:
                session.inbound_qos2[q.packet_id] = [0, q.token]
            for seen in rec.seen_qos2:
                self._seen_before((seen.origin, seen.packet_id, seen.token, True))
            self.sessions[rec.client_id] = session
            self.offline.add(rec.client_id)
            will = unpack_blob(rec.will)
            if rec.disconnected_at is None and isinstance(will, list):
                # It was online when its worker died. Its acceptor may still hold
                # the connection and attach it again (which cancels this); if
                # not, the connection is gone and the will goes out.
                self.pending_wills[rec.client_id] = (now + REATTACH_GRACE, will)
            self._persist_session(session)
            self.counters["sessions_loaded"] += 1
        # Seen rows of publishes released (or publishers gone) while their row
        # was being written elsewhere; they can never match again.
        self.ops.append(PruneSeenQos2())
        self._on_router_up([env.ROUTER_UP, 0], now)

    def _persist_session(self, session: Session) -> None:
        if session.persistent:
            session.persisted = True
            self.ops.append(
                PutSession(
                    session.client_id,
                    session.session_expiry,
                    session.protocol_level,
                    pack_blob(session.will),
                    session.disconnected_at,
                )
            )

    def take_durable(self) -> tuple[list[Op], list[tuple[str | int, Envelope]]]:
        """This pass's store ops and the envelopes that must wait for them. A
        message queued in this pass becomes its PutMessage only now, in its
        place, with the packet id and state it has now (most go in flight in
        the pass that queued them: one row written instead of a put and an
        update); one acknowledged in the same pass is not written at all."""
        ops, later = self.ops, self.after_commit
        self.ops, self.after_commit = [], []
        if self._unsaved:
            self._unsaved = 0
            ops = [op for op in map(_resolve, ops) if op is not None]
        return ops, later  # type: ignore[return-value]

    def startup_envelopes(self, incarnation: int) -> None:
        """Announce this shard (a restarted worker): the router forgets the
        shard's stale subscriptions and acceptors drop its stale connections."""
        self.to_router.append([env.WORKER_UP, self.index, incarnation])

    # --- output helpers ---------------------------------------------------------
    def _send(self, conn: int, envelope: Envelope) -> None:
        acceptor = acceptor_of(conn)
        out = self.to_acceptors.get(acceptor)
        if out is None:
            out = self.to_acceptors[acceptor] = []
        out.append(envelope)

    def _current(self, client_id: str, conn: int) -> Session | None:
        """The session if `conn` is its attached connection; packets from a
        connection that was taken over are ignored."""
        session = self.sessions.get(client_id)
        if session is None or session.conn != conn:
            self.counters["stale_connection_packets"] += 1
            return None
        return session

    # --- connect, close, takeover --------------------------------------------------
    def _on_connect(self, e: Envelope, now: float) -> None:
        conn, client_id = e[1], e[2]
        session = self.sessions.get(client_id)
        waiting = self.takeovers.pending.get(client_id)
        if waiting is not None and waiting.conn == conn:
            return  # sent again (a re-attach) while it waits: it is attached once
        if waiting is not None or (
            session is not None and session.conn is not None and session.conn != conn
        ):
            self._begin_takeover(e, now)
        else:
            self._attach(e, now)

    def _begin_takeover(self, e: Envelope, now: float) -> None:
        """Takeover [MQTT-3.1.4-2]: close the attached connection and attach
        this one when its CLOSED comes (see workers/takeover.py); its will goes
        out as for any close without DISCONNECT."""
        client_id = e[2]
        session = self.sessions.get(client_id)
        if session is None or session.conn is None:  # nothing attached any more
            stale = self.takeovers.pending.pop(client_id)
            self._send(stale.conn, [env.CLOSE, stale.conn, ReasonCode.SESSION_TAKEN_OVER])
            self._attach(e, now)
            return
        replaced = self.takeovers.begin(client_id, session.conn, e, now)
        # A connection still waiting is taken over before it was attached.
        closing = session.conn if replaced is None else replaced.conn
        self.counters["takeovers"] += 1
        log.info("client %s taken over: closing its previous connection", client_id)
        self._send(closing, [env.CLOSE, closing, ReasonCode.SESSION_TAKEN_OVER])

    def _complete_takeover(self, waiting: Takeover, now: float) -> None:
        self._attach(waiting.connect, now)
        for envelope in waiting.held:
            self.handle(envelope, now)

    def _attach(self, e: Envelope, now: float) -> None:
        (
            _,
            conn,
            client_id,
            clean_start,
            expiry,
            level,
            _keepalive,
            _username,
            will,
            receive_maximum,
            assigned,
        ) = e
        expiry = min(expiry, self.limits.max_session_expiry)
        session = self.sessions.get(client_id)
        self.pending_wills.pop(client_id, None)  # a returning client cancels a delayed will
        present = False
        if session is not None and clean_start:
            self._end_session(session)
            session = None
        if session is None:
            session = self.sessions[client_id] = Session(client_id)
            self.counters["sessions_created"] += 1
        else:
            present = True
        session.conn = conn
        self.to_router.append([env.ONLINE, client_id, conn])
        session.protocol_level = level
        session.session_expiry = expiry
        session.receive_maximum = receive_maximum or 65535
        session.will = will
        session.disconnected_at = None
        self.offline.discard(client_id)
        self._persist_session(session)
        props = {"assigned_client_identifier": client_id} if assigned else None
        self._send(conn, [env.CONNACK, conn, present, ReasonCode.SUCCESS, props])
        if present:
            self._resend_inflight(session)
            self._pump(session)

    def _on_closed(self, e: Envelope, now: float) -> None:
        _, conn, client_id, publish_will, new_expiry = e
        if self.takeovers.pending and self.takeovers.abandon(client_id, conn):
            return  # it closed while waiting to take over: never attached
        session = self.sessions.get(client_id)
        if session is None or session.conn != conn:
            return  # already taken over or ended
        if new_expiry is not None:
            session.session_expiry = min(new_expiry, self.limits.max_session_expiry)
        self._detach(session, publish_will=publish_will, now=now)

    def _on_acceptor_up(self, e: Envelope, now: float) -> None:
        """A (re)started acceptor: connections of its previous incarnation are gone."""
        _, acceptor, incarnation = e
        for session in list(self.sessions.values()):
            conn = session.conn
            if (
                conn is not None
                and acceptor_of(conn) == acceptor
                and incarnation_of(conn) != incarnation & 0xFFFF
            ):
                self.counters["connections_lost_with_acceptor"] += 1
                self._detach(session, publish_will=True, now=now)
        for client_id, waiting in list(self.takeovers.pending.items()):
            if (
                acceptor_of(waiting.conn) == acceptor
                and incarnation_of(waiting.conn) != incarnation & 0xFFFF
            ):
                self.takeovers.abandon(client_id, waiting.conn)

    def _detach(self, session: Session, *, publish_will: bool, now: float) -> None:
        old, session.conn = session.conn, None
        self.to_router.append([env.ONLINE, session.client_id, 0])
        session.disconnected_at = now
        self.offline.add(session.client_id)
        will, session.will = session.will, None
        if will is not None and publish_will:
            delay = min(will[5] or 0, session.session_expiry)
            if delay > 0:
                self.pending_wills[session.client_id] = (now + delay, will)
            else:
                self._route_will(session.client_id, will)
        if session.session_expiry == 0:
            self._end_session(session)
        else:
            self._persist_session(session)
        if self.takeovers.pending and old is not None:
            waiting = self.takeovers.waiting_for(session.client_id, old)
            if waiting is not None:
                self._complete_takeover(waiting, now)

    def _route_will(self, client_id: str, will: list[Any]) -> None:
        topic, payload, qos, retain, props, _delay = will
        self.counters["wills_published"] += 1
        self.to_router.append([env.ROUTE, client_id, topic, payload, qos, retain, props, None])

    def _end_session(self, session: Session) -> None:
        self.sessions.pop(session.client_id, None)
        self.offline.discard(session.client_id)
        pending = self.pending_wills.pop(session.client_id, None)
        if pending is not None:  # the session ends before the will delay [MQTT-3.1.3-9]
            self._route_will(session.client_id, pending[1])
        if session.subscriptions:
            self.to_router.append([env.UNSUB_ALL, session.client_id])
        if session.persisted:
            self.ops.append(DeleteSession(session.client_id))
        self.counters["sessions_ended"] += 1

    # --- inbound publish flows ------------------------------------------------
    def _on_publish(self, e: Envelope, now: float) -> None:
        _, conn, client_id, packet_id, topic, payload, qos, retain, props, attempt, retry, uid = e
        session = self._current(client_id, conn)
        if session is None:
            return
        known = session.inbound_qos2.get(packet_id)
        # The message's key for de-duplication at the destinations: the same
        # from first receipt to PUBREL, whichever connection resends it, even
        # after a crash (the token is stored with the packet id, and a
        # persistent destination stores the keys it took: `durable`).
        token = self._next_token() if known is None else known[1]
        route = [
            env.ROUTE,
            client_id,
            topic,
            payload,
            qos,
            retain,
            props,
            [conn, packet_id, attempt, uid, [client_id, packet_id, token, session.persistent]],
        ]
        if qos < 2:  # acceptors route QoS 0/1 themselves; kept for completeness
            self.to_router.append(route)
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
                self.to_router.append(route)
                return
            # Confirmed, or still being confirmed on this connection: a
            # retransmission before PUBREL is acknowledged, not delivered
            # again [MQTT-4.3.3-2] (method B: deliver on first receipt).
            self.counters["qos2_duplicates_suppressed"] += 1
            self._send(conn, [env.ROUTED, conn, packet_id, -1, attempt])
            return
        session.inbound_qos2[packet_id] = [conn, token]
        if session.persistent:
            self.ops.append(PutInboundQos2(client_id, packet_id, token))
        # Routed once the packet id is stored; the acceptor sends PUBREC when
        # every destination confirmed the message durable.
        self.after_commit.append(("router", route))

    def _on_qos2_confirmed(self, e: Envelope, now: float) -> None:
        _, _conn, client_id, packet_id = e
        session = self.sessions.get(client_id)
        known = session.inbound_qos2.get(packet_id) if session is not None else None
        if known is not None:
            known[0] = CONFIRMED

    def _on_pubrel(self, e: Envelope, now: float) -> None:
        _, conn, client_id, packet_id = e
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
        self._send(conn, [env.SEND_ACK, conn, PacketType.PUBCOMP, packet_id, rc])

    # --- outbound acknowledgements ----------------------------------------------
    def _on_puback(self, e: Envelope, now: float) -> None:
        _, conn, client_id, packet_id, _rc = e
        session = self._current(client_id, conn)
        if session is None:
            return
        msg = session.inflight.get(packet_id)
        if msg is not None and msg.qos == 1:
            del session.inflight[packet_id]
            self._forget(session, msg)
            self._pump(session)
        else:
            self.counters["unexpected_acks"] += 1

    def _on_pubrec(self, e: Envelope, now: float) -> None:
        _, conn, client_id, packet_id, rc = e
        session = self._current(client_id, conn)
        if session is None:
            return
        msg = session.inflight.get(packet_id)
        if msg is None or msg.qos != 2:
            self.counters["unexpected_acks"] += 1
            self._send(
                conn,
                [
                    env.SEND_ACK,
                    conn,
                    PacketType.PUBREL,
                    packet_id,
                    ReasonCode.PACKET_IDENTIFIER_NOT_FOUND,
                ],
            )
            return
        if rc >= 0x80:  # v5: the receiver refused it; the flow ends here
            del session.inflight[packet_id]
            self._forget(session, msg)
            self._pump(session)
            return
        msg.state = AWAIT_COMP
        pubrel = [env.SEND_ACK, conn, PacketType.PUBREL, packet_id, 0]
        if session.persisted and msg.seq:
            # After PUBREL the PUBLISH must never be sent again [MQTT-4.3.3-3]:
            # the new state is committed before PUBREL goes out.
            if not msg.unsaved:
                self.ops.append(UpdateMessage(client_id, msg.seq, packet_id, AWAIT_COMP))
            self.after_commit.append((acceptor_of(conn), pubrel))
        else:
            self._send(conn, pubrel)

    def _on_pubcomp(self, e: Envelope, now: float) -> None:
        _, conn, client_id, packet_id = e
        session = self._current(client_id, conn)
        if session is None:
            return
        msg = session.inflight.get(packet_id)
        if msg is not None and msg.state == AWAIT_COMP:
            del session.inflight[packet_id]
            self._forget(session, msg)
            self._pump(session)
        else:
            self.counters["unexpected_acks"] += 1

    def _forget(self, session: Session, msg: OutMessage) -> None:
        """An acknowledged message leaves the store."""
        if session.persisted and msg.seq:
            if msg.unsaved:  # never written: its placeholder resolves to nothing
                msg.unsaved = False
                msg.seq = 0
            else:
                self.ops.append(DeleteMessage(session.client_id, msg.seq))

    # --- subscriptions ------------------------------------------------------------
    def _on_subscribe(self, e: Envelope, now: float) -> None:
        _, conn, client_id, packet_id, entries = e
        session = self._current(client_id, conn)
        if session is None:
            return
        route_entries: list[list[Any]] = []
        codes: list[int] = []
        for topic_filter, qos, no_local, rap, retain_handling, sub_id in entries:
            if qos >= 0x80:
                codes.append(qos)
                continue
            existed = topic_filter in session.subscriptions
            session.subscriptions[topic_filter] = Subscription(
                qos, bool(no_local), bool(rap), retain_handling, sub_id
            )
            # Retain handling [MQTT-3.3.1-9..11]: 0 always, 1 only if new, 2 never.
            send_retained = retain_handling == 0 or (retain_handling == 1 and not existed)
            route_entries.append(
                [
                    topic_filter,
                    qos,
                    bool(no_local),
                    bool(rap),
                    send_retained,
                    sub_id,
                    session.persistent,
                ]
            )
            if session.persistent:
                self.ops.append(
                    PutSubscription(
                        client_id,
                        topic_filter,
                        qos,
                        bool(no_local),
                        bool(rap),
                        retain_handling,
                        sub_id,
                    )
                )
            codes.append(qos)
        if route_entries:
            # SUBACK waits for the router's SUBSCRIBED so a publish the client
            # sends after SUBACK is matched against the new subscription.
            self.to_router.append(
                [env.SUB, self.index, client_id, conn, packet_id, route_entries, codes]
            )
        else:
            self._send(conn, [env.SEND_SUBACK, conn, packet_id, codes])

    def _on_subscribed(self, e: Envelope, now: float) -> None:
        _, client_id, conn, packet_id, codes = e
        session = self.sessions.get(client_id)
        if session is not None and session.conn == conn:
            suback = [env.SEND_SUBACK, conn, packet_id, codes]
            if session.persistent:  # a SUBACK promises the subscription is kept
                self.after_commit.append((acceptor_of(conn), suback))
            else:
                self._send(conn, suback)

    def _on_unsubscribe(self, e: Envelope, now: float) -> None:
        _, conn, client_id, packet_id, filters = e
        session = self._current(client_id, conn)
        if session is None:
            return
        codes = []
        removed = []
        for topic_filter in filters:
            if session.subscriptions.pop(topic_filter, None) is None:
                codes.append(ReasonCode.NO_SUBSCRIPTION_EXISTED)
            else:
                removed.append(topic_filter)
                if session.persistent:
                    self.ops.append(DeleteSubscription(client_id, topic_filter))
                codes.append(ReasonCode.SUCCESS)
        if removed:
            self.to_router.append([env.UNSUB, client_id, removed])
        self._send(conn, [env.SEND_UNSUBACK, conn, packet_id, codes])

    def _on_router_up(self, e: Envelope, now: float) -> None:
        """A (re)started router has an empty topic tree: register every
        subscription of this shard again (no SUBACK, no retained messages)."""
        for session in self.sessions.values():
            if session.conn is not None:
                self.to_router.append([env.ONLINE, session.client_id, session.conn])
            entries = [
                [f, s.qos, s.no_local, s.retain_as_published, False, s.sub_id, session.persistent]
                for f, s in session.subscriptions.items()
            ]
            if entries:
                self.to_router.append([env.SUB, self.index, session.client_id, 0, 0, entries, []])
        self.to_router.append([env.SYNCED, self.index])

    # --- delivery -----------------------------------------------------------------
    def _on_deliver(self, e: Envelope, now: float) -> None:
        _, topic, payload, qos, retain, props, targets, reply = e
        if reply is not None:
            conn_of_publisher, packet_id, attempt, uid, key, confirm = reply
            if confirm:
                # The publisher's acceptor acknowledges once every shard
                # confirmed: ours goes out after this pass's commit.
                self.after_commit.append(
                    (
                        acceptor_of(conn_of_publisher),
                        [env.STORED, conn_of_publisher, packet_id, True, attempt],
                    )
                )
            if qos == 2:
                if self._seen_before(tuple(key) if key else (conn_of_publisher, uid)):
                    # A retry or resend of a QoS 2 message this shard already
                    # took (a process died before its publisher heard): once.
                    self.counters["qos2_retries_deduplicated"] += 1
                    return
                if key and key[3]:
                    self._record_seen(key, targets)
        deadline = deadline_of(props, now)  # MQTT 5 message expiry
        # QoS 0 copies for online sessions go out grouped per acceptor, encoded once.
        fast: dict[tuple[int, bool], list[int]] = {}
        for client_id, granted, rap, sub_ids, topic_filter in targets:
            session = self.sessions.get(client_id)
            if session is None:
                self.counters["deliveries_without_session"] += 1
                continue
            if topic_filter not in session.subscriptions:
                # Routed before the router learnt the subscription was dropped
                # (unsubscribe, or the session recreated by a clean start).
                self.counters["deliveries_for_dropped_subscriptions"] += 1
                continue
            out_qos = qos if qos < granted else granted
            out_retain = retain and rap
            msg_props = props
            if sub_ids:
                msg_props = dict(props or {})
                msg_props["subscription_identifier"] = sub_ids
            conn = session.conn
            if out_qos == 0:
                if conn is not None:
                    if msg_props is props:
                        fast.setdefault((acceptor_of(conn), out_retain), []).append(conn)
                    else:
                        self._send(
                            conn,
                            [
                                env.SEND_PUBLISH,
                                conn,
                                None,
                                topic,
                                payload,
                                0,
                                out_retain,
                                False,
                                msg_props,
                            ],
                        )
                elif self.limits.queue_qos0 and session.session_expiry > 0:
                    self._enqueue(
                        session,
                        OutMessage(topic, payload, 0, out_retain, msg_props, deadline=deadline),
                    )
                continue
            self._enqueue(
                session,
                OutMessage(topic, payload, out_qos, out_retain, msg_props, deadline=deadline),
            )
            if conn is not None:
                self._pump(session)
        for (acceptor, out_retain), conns in fast.items():
            out = self.to_acceptors.get(acceptor)
            if out is None:
                out = self.to_acceptors[acceptor] = []
            out.append([env.SEND_PUBLISH_MANY, conns, topic, payload, out_retain, props])

    def _next_token(self) -> int:
        self._tokens += 1
        return self._token_base | (self._tokens & 0xFFFFFFFF)

    def _record_seen(self, key: list[Any], targets: list[list[Any]]) -> None:
        """A QoS 2 message from a persistent publisher reaches persistent
        sessions here: they store its key in the same commit as their copies,
        so a resend after this worker restarted is still recognised. (The
        publisher's PUBREL deletes these rows: it never resends after that.)"""
        origin, packet_id, token, _ = key
        sessions = self.sessions
        for client_id, *_ in targets:
            session = sessions.get(client_id)
            if session is not None and session.persistent:
                session.persisted = True
                self.ops.append(PutSeenQos2(client_id, origin, packet_id, token))

    def _seen_before(self, key: tuple[Any, ...]) -> bool:
        """Remember the QoS 2 publishes this shard took, by their key: (origin
        client id, packet id, token, durable), where the token is unique per
        message (a packet id reused after PUBREL gets a new one); or (publisher's
        connection, uid) for a publish without a key. Bounded: resends come
        within seconds or minutes of the original, and the store keeps the keys
        of persistent sessions across restarts (reloaded here by `load`)."""
        if key in self.seen_qos2:
            return True
        self.seen_qos2[key] = None
        if len(self.seen_qos2) > SEEN_QOS2_MAX:
            del self.seen_qos2[next(iter(self.seen_qos2))]
        return False

    def _enqueue(self, session: Session, msg: OutMessage) -> None:
        limits = self.limits
        size = len(msg.payload)
        if (
            len(session.queue) >= limits.max_queued_messages
            or session.queued_bytes + size > limits.max_queued_bytes
        ):
            session.dropped += 1
            self.counters["queue_full_drops"] += 1
            if session.dropped == 1 or session.dropped % 1000 == 0:
                log.warning(
                    "client %s: queue full (%d messages, %d bytes): dropped %d message(s) so far",
                    session.client_id,
                    len(session.queue),
                    session.queued_bytes,
                    session.dropped,
                )
            return
        session.queue.append(msg)
        session.queued_bytes += size
        if msg.qos and session.persistent:
            msg.seq = session.next_seq
            session.next_seq += 1
            session.persisted = True
            msg.unsaved = True
            self._unsaved += 1
            self.ops.append((session.client_id, msg))

    def _window(self, session: Session) -> int:
        limit = self.limits.max_inflight
        return session.receive_maximum if session.receive_maximum < limit else limit

    def _pump(self, session: Session) -> None:
        """Move queued messages into flight while the window allows, in order."""
        conn = session.conn
        if conn is None:
            return
        window = self._window(session)
        queue = session.queue
        while queue and len(session.inflight) < window:
            msg = queue.popleft()
            session.queued_bytes -= len(msg.payload)
            if msg.deadline and has_expired(msg.deadline, self.now):
                # Not sent before it expired: deleted for this subscriber [MQTT-3.3.2-5].
                self.counters["messages_expired"] += 1
                self._forget(session, msg)
                continue
            if msg.qos:
                msg.packet_id = session.allocate_packet_id()
                msg.state = AWAIT_ACK
                session.inflight[msg.packet_id] = msg
                if msg.seq and not msg.unsaved:
                    self.ops.append(
                        UpdateMessage(session.client_id, msg.seq, msg.packet_id, AWAIT_ACK)
                    )
            self._send_message(conn, msg, dup=False)

    def _send_message(self, conn: int, msg: OutMessage, *, dup: bool) -> None:
        packet_id = msg.packet_id if msg.qos else None
        self._send(
            conn,
            [
                env.SEND_PUBLISH,
                conn,
                packet_id,
                msg.topic,
                msg.payload,
                msg.qos,
                msg.retain,
                dup,
                msg.props if not msg.deadline else props_to_send(msg.props, msg.deadline, self.now),
            ],
        )

    def _resend_inflight(self, session: Session) -> None:
        """On resume, unacknowledged messages go again, in their original order:
        PUBLISH with DUP=1, or PUBREL for QoS 2 past PUBREC [MQTT-4.4.0-1]."""
        conn = session.conn
        assert conn is not None
        for msg in session.inflight.values():
            self.counters["redeliveries"] += 1
            if msg.state == AWAIT_COMP:
                self._send(conn, [env.SEND_ACK, conn, PacketType.PUBREL, msg.packet_id, 0])
            else:
                self._send_message(conn, msg, dup=True)


def _resolve(op: Op | tuple[str, OutMessage]) -> Op | None:
    """A placeholder of `Shard.ops` as its PutMessage (None: acknowledged
    before it was written); any other op as it is."""
    if type(op) is not tuple:
        return op  # type: ignore[return-value]
    client_id, msg = op
    if not msg.unsaved:
        return None
    msg.unsaved = False
    return PutMessage(
        client_id,
        msg.seq,
        msg.topic,
        msg.payload,
        msg.qos,
        msg.retain,
        pack_stored_props(msg.props, msg.deadline),
        msg.packet_id,
        msg.state,
    )
