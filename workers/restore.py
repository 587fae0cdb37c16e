"""Reloading a shard's sessions from the store after a restart (sans-IO).

Each stored session comes back offline, with its subscriptions, its queued
and in-flight messages, its inbound QoS 2 packet ids and the QoS 2 keys it
took. One that was online when its worker died lost its connection then: its
will goes out unless its acceptor attaches it again within `REATTACH_GRACE`.
Then every subscription is registered with the router again.

The store boundary: records come in the store's format (flockmq/store) and
become the shard's records here (`Will.from_fields` for a stored will,
`InboundQos2` for a stored packet id). A damaged record costs only its own
session; a stored filter that is not valid today only itself.

`Restore` takes the shard's state and outbox, `Outbound` (the QoS 2 keys)
and `Subscriptions` (the router's resync).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flockmq import envelopes as env
from flockmq.message_expiry import unpack_stored_props
from flockmq.mqtt.errors import ProtocolError
from flockmq.mqtt.topics import parse_topic_filter
from flockmq.persistence import unpack_blob
from flockmq.sizes import message_size
from flockmq.store import DeleteSubscription, MessageRecord, PruneSeenQos2, SessionRecord
from flockmq.workers.outbound import Outbound
from flockmq.workers.outbox import Outbox
from flockmq.workers.session import (
    InboundQos2,
    OutMessage,
    PendingWill,
    Session,
    Subscription,
    Will,
)
from flockmq.workers.shard_state import ShardState
from flockmq.workers.subscriptions import Subscriptions

log = logging.getLogger("flockmq.worker")

REATTACH_GRACE = 10.0  # seconds a reloaded session's connection has to come back


class Restore:
    __slots__ = ("out", "outbound", "state", "subscriptions")

    def __init__(
        self, state: ShardState, out: Outbox, outbound: Outbound, subscriptions: Subscriptions
    ) -> None:
        self.state = state
        self.out = out
        self.outbound = outbound
        self.subscriptions = subscriptions

    def load(self, records: Iterable[SessionRecord], now: float) -> None:
        """Sessions of this shard from the store (a restart). Each is offline;
        one that was online when its worker died lost its connection now, so its
        will goes out. Their subscriptions are registered with the router."""
        state = self.state
        state.now = now
        for rec in records:
            try:
                self._load_session(rec, now)
            except Exception:
                # A damaged record costs only its own session, never the shard.
                state.counters["sessions_not_loaded"] += 1
                log.exception(
                    "worker %d: session %r cannot be loaded: skipped", state.index, rec.client_id
                )
        # Seen rows of publishes released (or publishers gone) while their row
        # was being written elsewhere; they can never match again.
        self.out.ops.append(PruneSeenQos2())
        self.subscriptions.on_router_up(env.RouterUp(env.Kind.ROUTER_UP, 0), now)

    def _load_session(self, rec: SessionRecord, now: float) -> None:
        state = self.state
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
            session.own_subscriptions()[sub.topic_filter] = Subscription(
                sub.qos,
                sub.no_local,
                sub.retain_as_published,
                sub.retain_handling,
                sub.sub_id,
            )
        _load_messages(session, rec.messages)
        for q in rec.inbound_qos2:
            session.own_inbound_qos2()[q.packet_id] = InboundQos2(0, q.token)
        for seen in rec.seen_qos2:
            self.outbound.seen_before((seen.origin, seen.packet_id, seen.token, True))
        state.sessions[rec.client_id] = session
        state.offline.add(rec.client_id)
        state.watch_expiry(session)
        will = _stored_will(rec.will)
        if rec.disconnected_at is None and will is not None:
            # It was online when its worker died. Its acceptor may still hold
            # the connection and attach it again (which cancels this); if
            # not, the connection is gone and the will goes out.
            state.delay_will(rec.client_id, PendingWill(now + REATTACH_GRACE, will))
        self.out.put_session(session)
        state.counters["sessions_loaded"] += 1

    def _loadable(self, client_id: str, topic_filter: str) -> bool:
        """A stored filter that is not valid today (a 3.1.1 `$share/g` kept by
        an older flockmq) is dropped with a log line; it must never stop the
        session, or the router's resync, from loading."""
        try:
            parse_topic_filter(topic_filter)
        except ProtocolError as exc:
            self.state.counters["invalid_stored_subscriptions"] += 1
            self.state.guard.limited.warning(
                "client %s: dropping stored subscription %r: %s", client_id, topic_filter, exc
            )
            self.out.ops.append(DeleteSubscription(client_id, topic_filter))
            return False
        return True


def _load_messages(session: Session, messages: Iterable[MessageRecord]) -> None:
    """A session's stored messages: in flight (with a packet id) or queued."""
    for m in messages:
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
            session.own_inflight()[m.packet_id] = msg
        else:
            msg.size = message_size(m.topic, m.payload, props)
            session.enqueue(msg)
            session.queued_bytes += msg.size
        session.next_seq = m.seq + 1
    if session.inflight:
        session.next_packet_id = max(session.inflight) % 65535 + 1


def _stored_will(blob: bytes | None) -> Will | None:
    """A stored will (the msgpack array of `Will.stored()`), or None: none,
    or a damaged blob (not an array of six fields)."""
    fields = unpack_blob(blob)
    if not isinstance(fields, list) or len(fields) != len(env.Will._fields):
        return None
    return Will.from_fields(fields)
