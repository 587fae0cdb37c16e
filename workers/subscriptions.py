"""Subscription flows of a shard: SUBSCRIBE, UNSUBSCRIBE, and re-registering
with a restarted router (sans-IO).

Owns the subscriptions of record of each session and their retain handling
[MQTT-3.3.1-9..11]; the router holds a copy for matching.

Invariants: SUBACK goes out after every router has the subscription (a
publish any client sends after SUBACK is matched against it, whichever router
matches it) and, for a persistent session, after it is committed; UNSUBACK
after every router dropped the filters. Both are given even if a router
restarts before it answers. With several routers (Config.routers) what is
sent to the connection meanwhile (the retained messages, which one router
sends after its SUBSCRIBED) waits behind the SUBACK (Outbox.hold_for_answers).

A cluster's router on a dead node (ROUTERS_LIVE from this node's supervisor,
`on_routers_live`) is not waited for: a SUBACK waits for the live routers
only (what was sent to the dead one is dropped by the bus), and one waiting
for it when it is declared dead is answered without it. When it comes back
it gets every subscription of the shard (its ROUTER_UP, `on_router_up`; a
router declared live again without a restart, after a cut link, the same),
as the shard's whole set: it drops what it holds of the shard and is not
re-sent, the UNSUBSCRIBEs and session ends it missed (router/resync.py).
A router whose ROUTER_UP comes before this node's supervisor has heard its
node again is not declared down again meanwhile (`ROUTER_UP_GRACE`).

`Subscriptions` takes the shard's state and outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from flockmq import envelopes as env
from flockmq.envelopes import Kind, Wire
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.store import DeleteSubscription, PutSubscription
from flockmq.workers.outbox import Outbox
from flockmq.workers.session import Session, Subscription
from flockmq.workers.shard_state import ShardState

# A router declared down that sends its ROUTER_UP (its node restarted) is
# live for this long whatever ROUTERS_LIVE says: this node's supervisor
# hears that node's heartbeat up to a heartbeat (or a reconnect) after the
# router is up, and its ROUTERS_LIVE meanwhile (repeated every second)
# would declare it down again, which drops the resync just sent to it
# (Bus.peer_down) and answers the SUBACKs without it. Past this, a router
# that died again is declared down by the next ROUTERS_LIVE.
ROUTER_UP_GRACE: Final = 5.0  # seconds


class Subscriptions:
    __slots__ = ("on_down", "out", "state")

    def __init__(self, state: ShardState, out: Outbox) -> None:
        self.state = state
        self.out = out
        # the process's: routers (went down, came up), for its bus (Bus.peer_down)
        self.on_down: Callable[[frozenset[int], frozenset[int]], None] | None = None

    def on_subscribe(self, e: Wire, now: float) -> None:
        _, conn, client_id, packet_id, entries = env.Subscribe._make(e)
        session = self.state.current(client_id, conn)
        if session is None:
            return
        route_entries: list[env.RouteEntry] = []
        codes: list[int] = []
        for entry in entries:
            code, route_entry = self._subscribe(session, env.SubEntry._make(entry))
            codes.append(code)
            if route_entry is not None:
                route_entries.append(route_entry)
        if route_entries:
            if not session.announced:  # its first: the router learns where it is
                self.out.send_router(env.Online(Kind.ONLINE, client_id, conn))
                session.announced = True
            # SUBACK waits for the router's SUBSCRIBED so a publish the client
            # sends after SUBACK is matched against the new subscription.
            self.out.send_router(
                env.Sub(
                    Kind.SUB, self.state.index, client_id, conn, packet_id, route_entries, codes
                )
            )
            self._await_routers(client_id, env.SendSuback(Kind.SEND_SUBACK, conn, packet_id, codes))
        else:
            self.out.send(conn, env.SendSuback(Kind.SEND_SUBACK, conn, packet_id, codes))

    def _subscribe(
        self, session: Session, entry: env.SubEntry
    ) -> tuple[int, env.RouteEntry | None]:
        """One filter of a SUBSCRIBE: its SUBACK code, and what the router is
        told (None: refused)."""
        topic_filter, qos, no_local, rap, retain_handling, sub_id = entry
        if qos >= 0x80:
            return qos, None
        limits = self.state.limits
        existed = topic_filter in session.subscriptions
        if not existed:
            if (
                len(session.subscriptions) >= limits.max_subscriptions
                or session.filter_bytes + len(topic_filter) > limits.max_subscription_bytes
            ):
                self.state.counters["subscription_quota_refusals"] += 1
                if session.protocol_level >= 5:
                    return ReasonCode.QUOTA_EXCEEDED, None
                return ReasonCode.UNSPECIFIED_ERROR, None
            session.filter_bytes += len(topic_filter)
        session.own_subscriptions()[topic_filter] = Subscription(
            qos, bool(no_local), bool(rap), retain_handling, sub_id
        )
        if session.persistent:
            self.out.ops.append(
                PutSubscription(
                    session.client_id,
                    topic_filter,
                    qos,
                    bool(no_local),
                    bool(rap),
                    retain_handling,
                    sub_id,
                )
            )
        # Retain handling [MQTT-3.3.1-9..11]: 0 always, 1 only if new, 2 never.
        send_retained = retain_handling == 0 or (retain_handling == 1 and not existed)
        return qos, env.RouteEntry(
            topic_filter, qos, bool(no_local), bool(rap), send_retained, sub_id, session.persistent
        )

    def _await_routers(self, client_id: str, ack: env.SendSuback | env.SendUnsuback) -> None:
        routers = self.state.limits.routers
        waiting = set(range(routers))
        if self.state.routers_down:
            waiting -= self.state.routers_down
        conn = ack.conn
        self.state.awaiting_router[conn, ack.packet_id] = (client_id, ack, waiting)
        if routers > 1:
            self.out.hold_for_answers(conn)

    def _answered(self, conn: int, packet_id: int, router: int) -> bool:
        """Router `router` answered the SUB/UNSUB (conn, packet_id): whether
        it was the last one to."""
        awaiting = self.state.awaiting_router.get((conn, packet_id))
        if awaiting is None or router not in awaiting[2]:
            # Answered already: a ROUTER_UP came between the SUB and this
            # (the router's start racing the first clients, or a restart).
            self.state.counters["late_router_answers"] += 1
            return False
        awaiting[2].discard(router)
        if awaiting[2]:
            return False
        del self.state.awaiting_router[conn, packet_id]
        return True

    def _with_routers_up(self, live: frozenset[int], now: float) -> frozenset[int]:
        """`live` and the routers that sent their ROUTER_UP less than
        ROUTER_UP_GRACE ago while declared down (until a ROUTERS_LIVE says
        they are live: from then on it is right again)."""
        up_at = self.state.routers_up_at
        for router, at in list(up_at.items()):
            if router in live or now - at >= ROUTER_UP_GRACE:
                del up_at[router]
            else:
                live = live | {router}
        return live

    def _send_ack(self, client_id: str, ack: env.SendSuback | env.SendUnsuback) -> None:
        """The SUBACK/UNSUBACK every router has answered for, or answered
        without one that cannot (declared down, or restarted and resynced): a
        SUBACK of a persistent session once it is committed either way (it
        promises the subscription is kept); nothing if the connection is gone."""
        conn = ack.conn
        session = self.state.sessions.get(client_id)
        if session is None or session.conn != conn:
            self.out.answered(conn, None, False)
        else:
            durable = ack.kind == Kind.SEND_SUBACK and session.persistent
            self.out.answered(conn, ack, durable)

    def on_subscribed(self, e: Wire, now: float) -> None:
        _, client_id, conn, packet_id, codes, router = env.Subscribed._make(e)
        if self._answered(conn, packet_id, router):
            self._send_ack(client_id, env.SendSuback(Kind.SEND_SUBACK, conn, packet_id, codes))

    def on_unsubscribe(self, e: Wire, now: float) -> None:
        _, conn, client_id, packet_id, filters = env.Unsubscribe._make(e)
        session = self.state.current(client_id, conn)
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
                    self.out.ops.append(DeleteSubscription(client_id, topic_filter))
                codes.append(ReasonCode.SUCCESS)
        unsuback = env.SendUnsuback(Kind.SEND_UNSUBACK, conn, packet_id, codes)
        if removed:
            # UNSUBACK waits for the router's UNSUBSCRIBED, so a publish the
            # client sends after UNSUBSCRIBE is matched without the filters.
            self.out.send_router(
                env.Unsub(Kind.UNSUB, client_id, removed, self.state.index, conn, packet_id, codes)
            )
            self._await_routers(client_id, unsuback)
        else:
            self.out.send(conn, unsuback)

    def on_unsubscribed(self, e: Wire, now: float) -> None:
        _, client_id, conn, packet_id, codes, router = env.Unsubscribed._make(e)
        if self._answered(conn, packet_id, router):
            self._send_ack(client_id, env.SendUnsuback(Kind.SEND_UNSUBACK, conn, packet_id, codes))

    def on_router_up(self, e: Wire, now: float) -> None:
        """A (re)started router has an empty topic tree, one cut off a stale
        one: register every subscription of this shard again (no SUBACK, no
        retained messages), as the shard's whole set (RESYNC ... RESYNC end).
        With several routers the others get the same snapshot (it is what
        they hold already: re-taking it changes nothing), which keeps one
        order on every router's pipe."""
        state, out = self.state, self.out
        router = env.RouterUp._make(e).router
        if router in state.routers_down:  # it is back (a restart on a returning node)
            state.routers_down = state.routers_down - {router}
            state.routers_up_at[router] = now
            if self.on_down is not None:  # the bus sends to its node again
                self.on_down(frozenset(), frozenset({router}))
        # The whole set, between RESYNC and its end: a router cut off drops
        # what it holds of this shard and is not re-sent (router/resync.py).
        out.send_router(env.Resync(Kind.RESYNC, state.index, state.epoch, False))
        for session in state.sessions.values():
            conn = session.conn
            session.announced = conn is not None and bool(session.subscriptions)
            if conn is not None and session.announced:
                out.send_router(env.Online(Kind.ONLINE, session.client_id, conn))
            elif conn is None and session.subscriptions:
                # a router cut off may still name the connection it went with
                out.send_router(env.Online(Kind.ONLINE, session.client_id, 0))
            entries = [
                env.RouteEntry(
                    f, s.qos, s.no_local, s.retain_as_published, False, s.sub_id, session.persistent
                )
                for f, s in session.subscriptions.items()
            ]
            if entries:
                out.send_router(
                    env.Sub(Kind.SUB, state.index, session.client_id, 0, 0, entries, [])
                )
        out.send_router(env.Resync(Kind.RESYNC, state.index, state.epoch, True))
        out.send_router(env.Synced(Kind.SYNCED, state.index))
        # The answers to SUB/UNSUB the old router had not given: the new one
        # took them with the resync above, ahead of any publish it routes.
        for (conn, packet_id), (client_id, ack, _routers) in list(state.awaiting_router.items()):
            if self._answered(conn, packet_id, router):
                self._send_ack(client_id, ack)

    def on_routers_live(self, e: Wire, now: float) -> None:
        """This node's supervisor says which routers are live (a cluster,
        flockmq/app/routers_live.py). A router gone down answers for every
        SUB/UNSUB waiting for it (it cannot: it is gone, and it re-takes the
        subscriptions when it is back); one back up without a restart (a cut
        link) re-takes them now, as a restarted one does. One that said
        ROUTER_UP lately stays live (`ROUTER_UP_GRACE`)."""
        for router in sorted(self.follow_routers_live(e, now)):
            self.on_router_up(env.RouterUp(Kind.ROUTER_UP, 0, router), now)

    def follow_routers_live(self, e: Wire, now: float) -> frozenset[int]:
        """`on_routers_live` without the resync, which a standby (workers/
        standby.py) must not send: it serves nothing, and a resync of
        nothing would make every router drop the shard's subscriptions that
        its owner elsewhere serves. The routers that came up."""
        state = self.state
        routers = state.limits.routers
        live = env.check_routers_live(e, routers)
        if state.routers_up_at:
            live = self._with_routers_up(live, now)
        down = frozenset(range(routers)) - live
        if down == state.routers_down:
            return frozenset()
        went_down, came_up = down - state.routers_down, state.routers_down - down
        state.routers_down = down
        if self.on_down is not None:
            self.on_down(went_down, came_up)
        for router in sorted(went_down):
            state.counters["routers_declared_down"] += 1
            for (conn, packet_id), (client_id, ack, waiting) in list(state.awaiting_router.items()):
                if router in waiting and self._answered(conn, packet_id, router):
                    self._send_ack(client_id, ack)
        return came_up
