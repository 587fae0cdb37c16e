"""Subscription flows of a shard: SUBSCRIBE, UNSUBSCRIBE, and re-registering
with a restarted router (sans-IO).

Owns the subscriptions of record of each session and their retain handling
[MQTT-3.3.1-9..11]; the router holds a copy for matching.

Invariants: SUBACK goes out after the router has the subscription (a publish
the client sends after SUBACK is matched against it) and, for a persistent
session, after it is committed; UNSUBACK after the router dropped the filters.
Both are given even if the router restarts before it answers.
"""

from __future__ import annotations

from flockmq import envelopes as env
from flockmq.envelopes import Kind, Wire
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.store import DeleteSubscription, PutSubscription
from flockmq.workers.session import Subscription
from flockmq.workers.shard_state import ShardState


class SubscriptionFlows(ShardState):
    def _on_subscribe(self, e: Wire, now: float) -> None:
        _, conn, client_id, packet_id, entries = env.Subscribe._make(e)
        session = self._current(client_id, conn)
        if session is None:
            return
        route_entries: list[env.RouteEntry] = []
        codes: list[int] = []
        for topic_filter, qos, no_local, rap, retain_handling, sub_id in entries:
            if qos >= 0x80:
                codes.append(qos)
                continue
            existed = topic_filter in session.subscriptions
            if not existed:
                if (
                    len(session.subscriptions) >= self.limits.max_subscriptions
                    or session.filter_bytes + len(topic_filter) > self.limits.max_subscription_bytes
                ):
                    self.counters["subscription_quota_refusals"] += 1
                    codes.append(
                        ReasonCode.QUOTA_EXCEEDED
                        if session.protocol_level >= 5
                        else ReasonCode.UNSPECIFIED_ERROR
                    )
                    continue
                session.filter_bytes += len(topic_filter)
            session.subscriptions[topic_filter] = Subscription(
                qos, bool(no_local), bool(rap), retain_handling, sub_id
            )
            # Retain handling [MQTT-3.3.1-9..11]: 0 always, 1 only if new, 2 never.
            send_retained = retain_handling == 0 or (retain_handling == 1 and not existed)
            route_entries.append(
                env.RouteEntry(
                    topic_filter,
                    qos,
                    bool(no_local),
                    bool(rap),
                    send_retained,
                    sub_id,
                    session.persistent,
                )
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
            self._to_router(
                env.Sub(Kind.SUB, self.index, client_id, conn, packet_id, route_entries, codes)
            )
            self.awaiting_router[conn, packet_id] = env.SendSuback(
                Kind.SEND_SUBACK, conn, packet_id, codes
            )
        else:
            self._send(conn, env.SendSuback(Kind.SEND_SUBACK, conn, packet_id, codes))

    def _on_subscribed(self, e: Wire, now: float) -> None:
        _, client_id, conn, packet_id, codes = env.Subscribed._make(e)
        if self.awaiting_router.pop((conn, packet_id), None) is None:
            # Answered already: a ROUTER_UP came between the SUB and this
            # (the router's start racing the first clients, or a restart).
            self.counters["late_router_answers"] += 1
            return
        session = self.sessions.get(client_id)
        if session is not None and session.conn == conn:
            suback = env.SendSuback(Kind.SEND_SUBACK, conn, packet_id, codes)
            if session.persistent:  # a SUBACK promises the subscription is kept
                self._send_suback_after_commit(conn, suback)
            else:
                self._send(conn, suback)

    def _on_unsubscribe(self, e: Wire, now: float) -> None:
        _, conn, client_id, packet_id, filters = env.Unsubscribe._make(e)
        session = self._current(client_id, conn)
        if session is None:
            return
        codes: list[int] = []
        removed: list[str] = []
        for topic_filter in filters:
            if session.subscriptions.pop(topic_filter, None) is None:
                codes.append(ReasonCode.NO_SUBSCRIPTION_EXISTED)
            else:
                session.filter_bytes -= len(topic_filter)
                removed.append(topic_filter)
                if session.persistent:
                    self.ops.append(DeleteSubscription(client_id, topic_filter))
                codes.append(ReasonCode.SUCCESS)
        unsuback = env.SendUnsuback(Kind.SEND_UNSUBACK, conn, packet_id, codes)
        if removed:
            # UNSUBACK waits for the router's UNSUBSCRIBED, so a publish the
            # client sends after UNSUBSCRIBE is matched without the filters.
            self._to_router(
                env.Unsub(Kind.UNSUB, client_id, removed, self.index, conn, packet_id, codes)
            )
            self.awaiting_router[conn, packet_id] = unsuback
        else:
            self._send(conn, unsuback)

    def _on_unsubscribed(self, e: Wire, now: float) -> None:
        _, client_id, conn, packet_id, codes = env.Unsubscribed._make(e)
        if self.awaiting_router.pop((conn, packet_id), None) is None:
            self.counters["late_router_answers"] += 1  # answered already, as above
            return
        session = self.sessions.get(client_id)
        if session is not None and session.conn == conn:
            self._send(conn, env.SendUnsuback(Kind.SEND_UNSUBACK, conn, packet_id, codes))

    def _on_router_up(self, e: Wire, now: float) -> None:
        """A (re)started router has an empty topic tree: register every
        subscription of this shard again (no SUBACK, no retained messages)."""
        for session in self.sessions.values():
            if session.conn is not None:
                self._to_router(env.Online(Kind.ONLINE, session.client_id, session.conn))
            entries = [
                env.RouteEntry(
                    f, s.qos, s.no_local, s.retain_as_published, False, s.sub_id, session.persistent
                )
                for f, s in session.subscriptions.items()
            ]
            if entries:
                self._to_router(env.Sub(Kind.SUB, self.index, session.client_id, 0, 0, entries, []))
        self._to_router(env.Synced(Kind.SYNCED, self.index))
        # The answers to SUB/UNSUB the old router had not given: the new one
        # took them with the resync above, ahead of any publish it routes.
        awaiting, self.awaiting_router = self.awaiting_router, {}
        for (conn, _packet_id), ack in awaiting.items():
            self._send(conn, ack)
