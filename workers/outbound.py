"""Outbound flows of a shard: delivering to sessions (sans-IO).

Owns: one copy per subscriber at min(published, granted) QoS, QoS 0 copies
to online sessions grouped per acceptor (encoded once there), the ordered
queue and the in-flight window per session, packet-id allocation on sending,
redelivery with DUP on resume [MQTT-4.4.0-1], the PUBACK / PUBREC / PUBREL /
PUBCOMP state machine of messages sent to clients, QoS 2 copies taken once
(by their key), queue limits (what they drop is counted) and MQTT 5 message
expiry of queued copies [MQTT-3.3.2-5].

Invariants: a message is in a session's `queue` or its `inflight`, never
both; `inflight` never holds more than the window; a persistent session's
message leaves the store only when acknowledged (or expired unsent); after
PUBREL is sent the PUBLISH never is again [MQTT-4.3.3-3] (its new state is
committed first).

`Outbound` takes the shard's state and outbox, and `Connections` (a wrong
acknowledgement lets go of the connection), set by `Shard` once both exist.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, cast

from flockmq import envelopes as env
from flockmq.bus import MAX_FRAME_BYTES
from flockmq.envelopes import Kind, Wire, acceptor_of
from flockmq.message_expiry import deadline_of, has_expired, props_to_send
from flockmq.mqtt.packet_types import PacketType
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.sizes import message_size
from flockmq.store import DeleteMessage, PutSeenQos2, UpdateMessage
from flockmq.workers.outbox import Outbox
from flockmq.workers.session import AWAIT_ACK, AWAIT_COMP, OutMessage, Session
from flockmq.workers.shard_state import ShardState

if TYPE_CHECKING:
    from flockmq.workers.connections import Connections

log = logging.getLogger("flockmq.worker")

SEEN_QOS2_MAX = 200_000  # QoS 2 publishes remembered to drop their retries

# The per-message kinds, bound once: an IntEnum member costs ~50 ns to look up.
# They are built as plain tuples, typed by env.SendPublishTuple,
# env.SendPublishManyTuple, env.StoredTuple and env.SendAckTuple (see
# flockmq/envelopes.py).
_STORED: Final = Kind.STORED
_SEND_PUBLISH: Final = Kind.SEND_PUBLISH
_SEND_PUBLISH_MANY: Final = Kind.SEND_PUBLISH_MANY
_SEND_PUBLISHES: Final = Kind.SEND_PUBLISHES
_SEND_ACK: Final = Kind.SEND_ACK
_PUBREL: Final = PacketType.PUBREL


class Outbound:
    __slots__ = (
        "behind_answers",
        "behind_commit",
        "connections",
        "out",
        "send",
        "sessions",
        "state",
        "to_acceptors",
    )

    connections: Connections  # set by Shard (the two need each other)

    def __init__(self, state: ShardState, out: Outbox) -> None:
        self.state = state
        self.out = out
        # Bound once for the per-message path: these are never replaced
        # (see ShardState and Outbox).
        self.sessions = state.sessions
        self.behind_commit = out.behind_commit
        self.behind_answers = out.behind_answers
        self.to_acceptors = out.to_acceptors
        self.send = out.send

    def on_deliver(self, e: Wire, now: float) -> None:  # noqa: C901, PLR0912
        """One publish for this shard's targets: a copy per subscriber at
        min(published, granted) QoS. One function, over the complexity bound,
        on purpose: it is the per-message path (scripts/bench_handlers.py),
        where a call per target costs more than the work of a QoS 0 copy."""
        # Unpacked, not built: see flockmq/envelopes.py (the per-message path).
        _, topic, payload, qos, retain, props, targets, reply = cast(env.DeliverTuple, e)
        if reply is not None and not self._take_reply(reply, qos, targets):
            return
        sessions, behind = self.sessions, self.behind_commit
        waiting = self.behind_answers  # several routers: a SUBACK waits for them
        deadline = deadline_of(props, now)  # MQTT 5 message expiry
        # QoS 0 copies for online sessions go out grouped per acceptor, encoded once.
        fast: dict[tuple[int, bool], list[int]] = {}
        for client_id, granted, rap, sub_ids, topic_filter in targets:
            session = sessions.get(client_id)
            if session is None:
                self.state.counters["deliveries_without_session"] += 1
                continue
            if topic_filter not in session.subscriptions:
                # Routed before the router learnt the subscription was dropped
                # (unsubscribe, or the session recreated by a clean start).
                self.state.counters["deliveries_for_dropped_subscriptions"] += 1
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
                    if (
                        msg_props is props
                        and not (behind and conn in behind)
                        and not (waiting and conn in waiting)
                    ):
                        fast.setdefault((acceptor_of(conn), out_retain), []).append(conn)
                    else:
                        send_publish: env.SendPublishTuple = (
                            _SEND_PUBLISH,
                            conn,
                            None,
                            topic,
                            payload,
                            0,
                            out_retain,
                            False,
                            msg_props,
                        )
                        self.send(conn, send_publish)
                elif self.state.limits.queue_qos0 and session.session_expiry > 0:
                    self.enqueue(
                        session,
                        OutMessage(topic, payload, 0, out_retain, msg_props, deadline=deadline),
                    )
                continue
            self.enqueue(
                session,
                OutMessage(topic, payload, out_qos, out_retain, msg_props, deadline=deadline),
            )
            if conn is not None:
                self.pump(session)
        to_acceptors = self.to_acceptors
        for (acceptor, out_retain), conns in fast.items():
            many = to_acceptors.get(acceptor)
            if many is None:
                many = to_acceptors[acceptor] = []
            send_many: env.SendPublishManyTuple = (
                _SEND_PUBLISH_MANY,
                conns,
                topic,
                payload,
                out_retain,
                props,
            )
            many.append(send_many)

    def _take_reply(self, reply: env.DeliverReplyTuple, qos: int, targets: list[Any]) -> bool:
        """A QoS 1/2 publish's confirmation and QoS 2 de-duplication; False:
        this shard took the message already (it is not delivered again)."""
        conn_of_publisher, packet_id, attempt, uid, key, confirm = reply
        if confirm:
            # The publisher's acceptor acknowledges once every shard
            # confirmed: ours goes out after this pass's commit.
            stored: env.StoredTuple = (_STORED, conn_of_publisher, packet_id, True, attempt)
            self.out.after_commit.append((acceptor_of(conn_of_publisher), stored))
        if qos == 2:
            if self.seen_before(tuple(key) if key else (conn_of_publisher, uid)):
                # A retry or resend of a QoS 2 message this shard already
                # took (a process died before its publisher heard): once.
                self.state.counters["qos2_retries_deduplicated"] += 1
                return False
            if key is not None:
                origin, key_packet_id, token, durable = key  # a list from the wire
                if durable:
                    self._record_seen(origin, key_packet_id, token, targets)
        return True

    def _record_seen(
        self, origin: str, packet_id: int, token: int, targets: list[env.Target]
    ) -> None:
        """A QoS 2 message from a persistent publisher reaches persistent
        sessions here: they store its key in the same commit as their copies,
        so a resend after this worker restarted is still recognised. (The
        publisher's PUBREL deletes these rows: it never resends after that.)"""
        sessions, ops = self.state.sessions, self.out.ops
        for client_id, _granted, _rap, _sub_ids, _topic_filter in targets:
            session = sessions.get(client_id)
            if session is not None and session.persistent:
                session.persisted = True
                ops.append(PutSeenQos2(client_id, origin, packet_id, token))

    def seen_before(self, key: tuple[Any, ...]) -> bool:
        """Remember the QoS 2 publishes this shard took, by their key: (origin
        client id, packet id, token, durable), where the token is unique per
        message (a packet id reused after PUBREL gets a new one); or (publisher's
        connection, uid) for a publish without a key. Bounded: resends come
        within seconds or minutes of the original, and the store keeps the keys
        of persistent sessions across restarts (reloaded by workers/restore.py)."""
        seen = self.state.seen_qos2
        if key in seen:
            return True
        seen[key] = None
        if len(seen) > SEEN_QOS2_MAX:
            del seen[next(iter(seen))]
        return False

    def enqueue(self, session: Session, msg: OutMessage) -> None:
        limits = self.state.limits
        size = msg.size = message_size(msg.topic, msg.payload, msg.props)
        if (
            len(session.queue) >= limits.max_queued_messages
            or session.queued_bytes + size > limits.max_queued_bytes
        ):
            session.dropped += 1
            self.state.counters["queue_full_drops"] += 1
            if session.dropped == 1 or session.dropped % 1000 == 0:
                log.warning(
                    "client %s: queue full (%d messages, %d bytes): dropped %d message(s) so far",
                    session.client_id,
                    len(session.queue),
                    session.queued_bytes,
                    session.dropped,
                )
            return
        session.enqueue(msg)
        session.queued_bytes += size
        if msg.qos and session.persistent:
            msg.seq = session.next_seq
            session.next_seq += 1
            session.persisted = True
            self.out.put_message_later(session.client_id, msg)

    def pump(self, session: Session) -> None:
        """Move queued messages into flight while the window allows, in order:
        one SEND_PUBLISH, or one SEND_PUBLISHES for several."""
        conn = session.conn
        if conn is None:
            return
        # The window: the client's Receive Maximum within the broker's limit.
        limit = self.state.limits.max_inflight
        window = session.receive_maximum if session.receive_maximum < limit else limit
        queue = session.queue
        if not queue or len(session.inflight) >= window:
            return
        batch: list[Any] = []
        batch_bytes = 0
        # A QoS 2 message of a persistent session gets its packet id here,
        # stored by this pass's commit: its batch waits for that commit
        # (Outbox.send_held).
        hold = False
        while queue and len(session.inflight) < window:
            msg = queue.popleft()
            session.queued_bytes -= msg.size
            if batch_bytes >= MAX_FRAME_BYTES:
                # one envelope stays about a frame's size: the bus's credit
                # bounds the pipe, and the acceptor's handler one write
                self._send_batch(conn, batch, hold)
                batch = []
                batch_bytes = 0
                hold = False
            batch_bytes += msg.size
            if msg.deadline and has_expired(msg.deadline, self.state.now):
                # Not sent before it expired: deleted for this subscriber [MQTT-3.3.2-5].
                self.state.counters["messages_expired"] += 1
                self.forget(session, msg)
                continue
            if msg.qos:
                msg.packet_id = session.allocate_packet_id()
                msg.state = AWAIT_ACK
                session.own_inflight()[msg.packet_id] = msg
                if msg.seq:
                    if msg.qos == 2:
                        hold = True
                    if not msg.unsaved:
                        self.out.ops.append(
                            UpdateMessage(session.client_id, msg.seq, msg.packet_id, AWAIT_ACK)
                        )
            props = msg.props
            if msg.deadline:
                props = props_to_send(props, msg.deadline, self.state.now)
            batch += (
                msg.packet_id if msg.qos else None,
                msg.topic,
                msg.payload,
                msg.qos,
                msg.retain,
                False,
                props,
            )
        self._send_batch(conn, batch, hold)

    def _send_batch(self, conn: int, batch: list[Any], hold: bool) -> None:
        """SEND_PUBLISH's fields of some messages, seven each: one
        SEND_PUBLISH, or one SEND_PUBLISHES for several; after this pass's
        commit if `hold`."""
        send = self.out.send_held if hold else self.send
        if len(batch) == 7:
            one: env.SendPublishTuple = (_SEND_PUBLISH, conn, *batch)
            send(conn, one)
        elif batch:
            many: env.SendPublishesTuple = (_SEND_PUBLISHES, conn, batch)
            send(conn, many)

    def _send_message(self, conn: int, msg: OutMessage, *, dup: bool) -> None:
        packet_id = msg.packet_id if msg.qos else None
        props = msg.props
        if msg.deadline:
            props = props_to_send(props, msg.deadline, self.state.now)
        send_publish: env.SendPublishTuple = (
            _SEND_PUBLISH,
            conn,
            packet_id,
            msg.topic,
            msg.payload,
            msg.qos,
            msg.retain,
            dup,
            props,
        )
        self.send(conn, send_publish)

    def resend_inflight(self, session: Session) -> None:
        """On resume, unacknowledged messages go again, in their original order:
        PUBLISH with DUP=1, or PUBREL for QoS 2 past PUBREC [MQTT-4.4.0-1]."""
        conn = session.conn
        assert conn is not None
        for msg in session.inflight.values():
            self.state.counters["redeliveries"] += 1
            if msg.state == AWAIT_COMP:
                pubrel: env.SendAckTuple = (_SEND_ACK, conn, _PUBREL, msg.packet_id, 0)
                self.send(conn, pubrel)
            else:
                self._send_message(conn, msg, dup=True)

    def on_puback(self, e: Wire, now: float) -> None:
        _, conn, client_id, packet_id, _rc = cast(env.PubackIn, e)
        session = self.state.current(client_id, conn)
        if session is None:
            return
        msg = session.inflight.get(packet_id)
        if msg is None:
            # Not in flight: a late duplicate (e.g. after a resume), not a violation.
            self.state.counters["unexpected_acks"] += 1
        elif msg.qos != 1:
            self._wrong_ack(session, conn, "PUBACK", msg)
        else:
            del session.inflight[packet_id]
            self.forget(session, msg)
            self.pump(session)

    def on_pubacks(self, e: Wire, now: float) -> None:
        """PUBACKs of one read, in order: as one PUBACK_IN each, but the
        window refilled once, after the last. After a wrong acknowledgement
        the session has let go of the connection: the rest are not acted on."""
        _, conn, client_id, packet_ids = cast(env.PubacksIn, e)
        session = self.state.current(client_id, conn)
        if session is None:
            return
        inflight = session.inflight
        acked = False
        try:
            for packet_id in packet_ids:
                msg = inflight.get(packet_id)
                if msg is None:
                    self.state.counters["unexpected_acks"] += 1
                elif msg.qos != 1:
                    self._wrong_ack(session, conn, "PUBACK", msg)
                    return
                else:
                    del inflight[packet_id]
                    self.forget(session, msg)
                    acked = True
        finally:
            # what was acknowledged refills the window, even if a later
            # entry failed (as one PUBACK_IN each would have)
            if acked and session.conn == conn:
                self.pump(session)

    def on_pubrec(self, e: Wire, now: float) -> None:
        _, conn, client_id, packet_id, rc = cast(env.PubrecIn, e)
        session = self.state.current(client_id, conn)
        if session is None:
            return
        msg = session.inflight.get(packet_id)
        if msg is None:
            self.state.counters["unexpected_acks"] += 1
            if rc >= 0x80:
                return  # a failed PUBREC ends the flow: nothing to release (5.0 section 4.3.3)
            not_found = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
            refused: env.SendAckTuple = (_SEND_ACK, conn, _PUBREL, packet_id, not_found)
            self.send(conn, refused)
            return
        if msg.qos != 2:
            self._wrong_ack(session, conn, "PUBREC", msg)
            return
        if rc >= 0x80:  # v5: the receiver refused it; the flow ends here
            del session.inflight[packet_id]
            self.forget(session, msg)
            self.pump(session)
            return
        msg.state = AWAIT_COMP
        pubrel: env.SendAckTuple = (_SEND_ACK, conn, _PUBREL, packet_id, 0)
        if session.persisted and msg.seq:
            # After PUBREL the PUBLISH must never be sent again [MQTT-4.3.3-3]:
            # the new state is committed before PUBREL goes out.
            if not msg.unsaved:
                self.out.ops.append(UpdateMessage(client_id, msg.seq, packet_id, AWAIT_COMP))
            self.out.send_after_commit(conn, pubrel)
        else:
            self.send(conn, pubrel)

    def on_pubcomp(self, e: Wire, now: float) -> None:
        _, conn, client_id, packet_id = cast(env.PubcompIn, e)
        session = self.state.current(client_id, conn)
        if session is None:
            return
        msg = session.inflight.get(packet_id)
        if msg is None:
            self.state.counters["unexpected_acks"] += 1
        elif msg.state != AWAIT_COMP:
            # A QoS 1 message, or a QoS 2 one that was never released.
            self._wrong_ack(session, conn, "PUBCOMP", msg)
        else:
            del session.inflight[packet_id]
            self.forget(session, msg)
            self.pump(session)

    def _wrong_ack(self, session: Session, conn: int, ack: str, msg: OutMessage) -> None:
        """An acknowledgement of the wrong type for a message in flight is a
        protocol violation: the connection is closed [MQTT-4.8.0-1] (MQTT 5:
        DISCONNECT 0x82 first; the acceptor answers it as any protocol error,
        will included). The session lets go of the connection now, so nothing
        it sent after the violation is acted on here; the message stays in
        flight for a resume."""
        step = "after PUBREL" if msg.state == AWAIT_COMP else "before PUBREL"
        self.state.counters["wrong_acks"] += 1
        log.warning(
            "client %s: %s for QoS %d message %d (%s): protocol violation, closing",
            session.client_id,
            ack,
            msg.qos,
            msg.packet_id,
            step if msg.qos == 2 else "awaiting PUBACK",
        )
        self.send(conn, env.Close(Kind.CLOSE, conn, ReasonCode.PROTOCOL_ERROR))
        self.connections.detach(session, publish_will=True, now=self.state.now)

    def on_discarded(self, e: Wire, now: float) -> None:
        """Too large for the client [MQTT-3.1.2-25]: the flow ends as if completed."""
        _, conn, client_id, packet_id = env.Discarded._make(e)
        session = self.state.current(client_id, conn)
        if session is None:
            return
        msg = session.inflight.pop(packet_id, None)
        if msg is not None:
            self.state.counters["discarded_over_client_maximum_packet_size"] += 1
            self.forget(session, msg)
            self.pump(session)

    def forget(self, session: Session, msg: OutMessage) -> None:
        """An acknowledged message leaves the store."""
        if session.persisted and msg.seq:
            if msg.unsaved:  # never written: its placeholder resolves to nothing
                msg.unsaved = False
                msg.seq = 0
            else:
                self.out.ops.append(DeleteMessage(session.client_id, msg.seq))
