"""A shard of session actors (sans-IO): envelopes in, envelopes out.

`Shard` puts together the flows, one module per concern, over the state they
share (`shard_state.py`): connections and takeover (`connections.py`),
inbound QoS 2 (`inbound.py`), delivery and the outbound QoS state machines
(`outbound.py`), subscriptions (`subscriptions.py`); here are the entry
points, the timers and reloading from the store.

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

import heapq
import logging
from collections.abc import Iterable

from flockmq import envelopes as env
from flockmq.message_expiry import unpack_stored_props
from flockmq.mqtt.errors import ProtocolError
from flockmq.mqtt.topics import parse_topic_filter
from flockmq.persistence import unpack_blob
from flockmq.sizes import message_size
from flockmq.store import DeleteSubscription, PruneSeenQos2, SessionRecord
from flockmq.workers.connections import ConnectionFlows
from flockmq.workers.inbound import InboundFlows
from flockmq.workers.session import OutMessage, Session, Subscription
from flockmq.workers.shard_state import ShardLimits, ShardState
from flockmq.workers.subscriptions import SubscriptionFlows
from flockmq.workers.takeover import TAKEOVER_WAIT

__all__ = ["Shard", "ShardLimits", "ShardState"]

log = logging.getLogger("flockmq.worker")

REATTACH_GRACE = 10.0  # seconds a reloaded session's connection has to come back


class Shard(ConnectionFlows, InboundFlows, SubscriptionFlows):
    def __init__(self, index: int, limits: ShardLimits, nonce: int = 0) -> None:
        """`nonce`: a random number per process start (31 bits), so that the
        QoS 2 tokens of this incarnation differ from every earlier one's."""
        super().__init__(index, limits, nonce)
        self._handlers = {
            env.Kind.CONNECT: self._on_connect,
            env.Kind.PUBLISH: self._on_publish,
            env.Kind.PUBREL_IN: self._on_pubrel,
            env.Kind.QOS2_CONFIRMED: self._on_qos2_confirmed,
            env.Kind.PUBACK_IN: self._on_puback,
            env.Kind.PUBREC_IN: self._on_pubrec,
            env.Kind.PUBCOMP_IN: self._on_pubcomp,
            env.Kind.DISCARDED: self._on_discarded,
            env.Kind.SUBSCRIBE: self._on_subscribe,
            env.Kind.UNSUBSCRIBE: self._on_unsubscribe,
            env.Kind.CLOSED: self._on_closed,
            env.Kind.ACCEPTOR_UP: self._on_acceptor_up,
            env.Kind.DELIVER: self._on_deliver,
            env.Kind.SUBSCRIBED: self._on_subscribed,
            env.Kind.UNSUBSCRIBED: self._on_unsubscribed,
            env.Kind.ROUTER_UP: self._on_router_up,
        }

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
        while (due := self._next_will()) is not None and due <= now:
            _, client_id = heapq.heappop(self.will_times)
            _, will = self.pending_wills.pop(client_id)
            self._route_will(client_id, will)
        while (at := self._next_expiry()) is not None and at <= now:
            _, client_id = heapq.heappop(self.expiries)
            self.counters["sessions_expired"] += 1
            self._end_session(self.sessions[client_id])

    def next_timer(self) -> float | None:
        """When handle_timer next has work, or None."""
        times = [self._next_will(), self._next_expiry(), self.takeovers.next_due()]
        return min((t for t in times if t is not None), default=None)

    def _next_will(self) -> float | None:
        """When the first pending delayed will is due; stale entries at the
        top of the heap (wills cancelled or replaced) are dropped."""
        will_times = self.will_times
        while will_times:
            due, client_id = will_times[0]
            pending = self.pending_wills.get(client_id)
            if pending is not None and pending[0] == due:
                return due
            heapq.heappop(will_times)
        return None

    def _next_expiry(self) -> float | None:
        """When the first offline session expires; stale entries at the top
        (sessions back online or ended) are dropped, and a session given a
        new time since is pushed again with it."""
        expiries = self.expiries
        while expiries:
            at, client_id = expiries[0]
            session = self.sessions.get(client_id)
            if session is None or client_id not in self.offline:
                expires = None
            else:
                expires = session.expires_at()
            if expires == at:
                return at
            heapq.heappop(expiries)
            if expires is not None:
                heapq.heappush(expiries, (expires, client_id))
        return None

    def _loadable(self, client_id: str, topic_filter: str) -> bool:
        """A stored filter that is not valid today (a 3.1.1 `$share/g` kept by
        an older flockmq) is dropped with a log line; it must never stop the
        session, or the router's resync, from loading."""
        try:
            parse_topic_filter(topic_filter)
        except ProtocolError as exc:
            self.counters["invalid_stored_subscriptions"] += 1
            self.guard.limited.warning(
                "client %s: dropping stored subscription %r: %s", client_id, topic_filter, exc
            )
            self.ops.append(DeleteSubscription(client_id, topic_filter))
            return False
        return True

    def load(self, records: Iterable[SessionRecord], now: float) -> None:
        """Sessions of this shard from the store (a restart). Each is offline;
        one that was online when its worker died lost its connection now, so its
        will goes out. Their subscriptions are registered with the router."""
        self.now = now
        for rec in records:
            try:
                self._load_session(rec, now)
            except Exception:
                # A damaged record costs only its own session, never the shard.
                self.counters["sessions_not_loaded"] += 1
                log.exception(
                    "worker %d: session %r cannot be loaded: skipped", self.index, rec.client_id
                )
        # Seen rows of publishes released (or publishers gone) while their row
        # was being written elsewhere; they can never match again.
        self.ops.append(PruneSeenQos2())
        self._on_router_up(env.RouterUp(env.Kind.ROUTER_UP, 0), now)

    def _load_session(self, rec: SessionRecord, now: float) -> None:
        session = Session(
            rec.client_id,
            protocol_level=rec.protocol_level,
            session_expiry=rec.expiry,
            persisted=True,
        )
        session.disconnected_at = rec.disconnected_at if rec.disconnected_at else now
        for sub in rec.subscriptions:
            if not self._loadable(rec.client_id, sub.topic_filter):
                continue
            session.filter_bytes += len(sub.topic_filter)
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
                msg.size = message_size(m.topic, m.payload, props)
                session.queue.append(msg)
                session.queued_bytes += msg.size
            session.next_seq = m.seq + 1
        if session.inflight:
            session.next_packet_id = max(session.inflight) % 65535 + 1
        for q in rec.inbound_qos2:
            session.inbound_qos2[q.packet_id] = [0, q.token]
        for seen in rec.seen_qos2:
            self._seen_before((seen.origin, seen.packet_id, seen.token, True))
        self.sessions[rec.client_id] = session
        self.offline.add(rec.client_id)
        self._watch_expiry(session)
        will = unpack_blob(rec.will)
        if (
            rec.disconnected_at is None
            and isinstance(will, list)
            and len(will) == len(env.Will._fields)  # not a damaged blob
        ):
            # It was online when its worker died. Its acceptor may still hold
            # the connection and attach it again (which cancels this); if
            # not, the connection is gone and the will goes out.
            self.pending_wills[rec.client_id] = (now + REATTACH_GRACE, env.Will._make(will))
            self._watch_will(rec.client_id, now + REATTACH_GRACE)
        self._persist_session(session)
        self.counters["sessions_loaded"] += 1
