"""Connection flows of a shard: CONNECT, takeover, close (sans-IO).

Owns: session present and clean-start discard, takeover of a session whose
connection is still attached (it waits for the old connection's CLOSED, see
`takeover.py`) [MQTT-3.1.4-2], detaching on close or when an acceptor
restarted, wills (published on any close but a clean DISCONNECT, after their
delay unless a new connection for the client id comes first) and the end of a
session (its expiry, or clean session).

Invariants: a session has at most one attached connection (`Session.conn`);
a connection waiting to take over is never attached until the old one is
detached; a session that ends leaves the router (UNSUB_ALL) and the store.

`Connections` takes the shard's state and outbox, `Outbound` (a resumed
session's messages go again) and `replay`: the shard's envelope entry point,
which what a connection sent while it waited to take over goes through once
it is attached. The timer's work on sessions (delayed wills, expiry, overdue
takeovers) is here too.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from typing import Any

from flockmq import envelopes as env
from flockmq.envelopes import Kind, Wire, acceptor_of, incarnation_of
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.store import DeleteSession
from flockmq.workers.outbound import Outbound
from flockmq.workers.outbox import Outbox
from flockmq.workers.session import PendingWill, Session, Will
from flockmq.workers.shard_state import ShardState
from flockmq.workers.takeover import TAKEOVER_WAIT, Takeover

log = logging.getLogger("flockmq.worker")


class Connections:
    __slots__ = ("out", "outbound", "replay", "state")

    def __init__(
        self,
        state: ShardState,
        out: Outbox,
        outbound: Outbound,
        replay: Callable[[Wire, float], None],
    ) -> None:
        self.state = state
        self.out = out
        self.outbound = outbound
        self.replay = replay

    def on_connect(self, e: Wire, now: float) -> None:
        connect = env.Connect._make(e)
        conn, client_id = connect.conn, connect.client_id
        session = self.state.sessions.get(client_id)
        waiting = self.state.takeovers.pending.get(client_id)
        if waiting is not None and waiting.conn == conn:
            return  # sent again (a re-attach) while it waits: it is attached once
        if waiting is not None or (
            session is not None and session.conn is not None and session.conn != conn
        ):
            self._begin_takeover(e, now)
        else:
            self._attach(connect, now)

    def _begin_takeover(self, e: Wire, now: float) -> None:
        """Takeover [MQTT-3.1.4-2]: close the attached connection and attach
        this one when its CLOSED comes (see workers/takeover.py); its will goes
        out as for any close without DISCONNECT."""
        state = self.state
        client_id = env.Connect._make(e).client_id
        session = state.sessions.get(client_id)
        if session is None or session.conn is None:  # nothing attached any more
            self._close_taken_over(state.takeovers.pending.pop(client_id).conn)
            self._attach(env.Connect._make(e), now)
            return
        replaced = state.takeovers.begin(client_id, session.conn, e, now)
        # A connection still waiting is taken over before it was attached.
        state.counters["takeovers"] += 1
        log.info("client %s taken over: closing its previous connection", client_id)
        self._close_taken_over(session.conn if replaced is None else replaced.conn)

    def _close_taken_over(self, conn: int) -> None:
        self.out.send(conn, env.Close(Kind.CLOSE, conn, ReasonCode.SESSION_TAKEN_OVER))

    def _complete_takeover(self, waiting: Takeover, now: float) -> None:
        self._attach(env.Connect._make(waiting.connect), now)
        self.state.guard.handle_each(self.replay, waiting.held, now)

    def take_over_overdue(self, now: float) -> None:
        """Finish takeovers whose old connection's acceptor never answered."""
        state = self.state
        for client_id, waiting in state.takeovers.overdue(now):
            state.counters["takeovers_unconfirmed"] += 1
            log.warning(
                "client %s: its previous connection was not reported closed in %.0fs: "
                "taking over anyway",
                client_id,
                TAKEOVER_WAIT,
            )
            session = state.sessions.get(client_id)
            if session is not None and session.conn == waiting.old:
                self.detach(session, publish_will=True, now=now)
            self._complete_takeover(waiting, now)

    def _attach(self, connect: env.Connect, now: float) -> None:
        conn, client_id, level = connect.conn, connect.client_id, connect.level
        state = self.state
        asked = connect.session_expiry
        expiry = min(asked, state.limits.max_session_expiry)
        session, present = self._session_for(client_id, clean_start=connect.clean_start)
        session.conn = conn
        if session.subscriptions:  # else at its first SUBSCRIBE (Subscriptions)
            self.out.send_router(env.Online(Kind.ONLINE, client_id, conn))
            session.announced = True
        session.protocol_level = level
        session.session_expiry = expiry
        session.receive_maximum = connect.receive_maximum or 65535
        session.will = None if connect.will is None else Will.from_fields(connect.will)
        session.disconnected_at = None
        state.offline.discard(client_id)
        self.out.put_session(session)
        props: dict[str, Any] | None = None
        if connect.assigned_id:
            props = {"assigned_client_identifier": client_id}
        if expiry != asked and level >= 5:
            # The broker's limit applies: say so (MQTT 5 section 3.2.2.3.2).
            props = {**(props or {}), "session_expiry_interval": expiry}
        self.out.send(conn, env.Connack(Kind.CONNACK, conn, present, ReasonCode.SUCCESS, props))
        if present:
            self.outbound.resend_inflight(session)
            self.outbound.pump(session)

    def _session_for(self, client_id: str, *, clean_start: bool) -> tuple[Session, bool]:
        """The session a new connection for `client_id` attaches to, and
        whether it was there already (session present)."""
        state = self.state
        # A new connection for the client id within the will delay cancels the
        # delayed will, whether it resumes the session or starts a clean one:
        # "If a new Network Connection to this Session is made before the Will
        # Delay Interval has passed, the Server MUST NOT send the Will Message"
        # [MQTT-3.1.3-9], and the will is published "unless ... a new Network
        # Connection for the ClientID is opened before the Will Delay Interval
        # has elapsed" [MQTT-3.1.2-8]. The will was for a connection loss that
        # turned out to be temporary: the client is back (Mosquitto does the
        # same). So it is dropped before a Clean Start ends the old session,
        # or end_session would publish it.
        state.pending_wills.pop(client_id, None)
        session = state.sessions.get(client_id)
        if session is not None and clean_start:
            self.end_session(session)
            session = None
        if session is None:
            session = state.sessions[client_id] = Session(client_id)
            state.counters["sessions_created"] += 1
            return session, False
        return session, True

    def on_closed(self, e: Wire, now: float) -> None:
        _, conn, client_id, publish_will, new_expiry = env.Closed._make(e)
        state = self.state
        if state.takeovers.pending and state.takeovers.abandon(client_id, conn):
            return  # it closed while waiting to take over: never attached
        session = state.sessions.get(client_id)
        if session is None or session.conn != conn:
            return  # already taken over or ended
        if new_expiry is not None:
            session.session_expiry = min(new_expiry, state.limits.max_session_expiry)
        self.detach(session, publish_will=publish_will, now=now)

    def on_acceptor_up(self, e: Wire, now: float) -> None:
        """A (re)started acceptor: connections of its previous incarnation are gone."""
        _, acceptor, incarnation = env.AcceptorUp._make(e)
        state = self.state
        for session in list(state.sessions.values()):
            conn = session.conn
            if (
                conn is not None
                and acceptor_of(conn) == acceptor
                and incarnation_of(conn) != incarnation & 0xFFFF
            ):
                state.counters["connections_lost_with_acceptor"] += 1
                self.detach(session, publish_will=True, now=now)
        for client_id, waiting in list(state.takeovers.pending.items()):
            if (
                acceptor_of(waiting.conn) == acceptor
                and incarnation_of(waiting.conn) != incarnation & 0xFFFF
            ):
                state.takeovers.abandon(client_id, waiting.conn)

    def detach(self, session: Session, *, publish_will: bool, now: float) -> None:
        """Let go of the session's connection: its will goes out (now or
        after its delay) if `publish_will`, and the session is kept offline
        or ends; a connection waiting to take it over is attached."""
        state = self.state
        old, session.conn = session.conn, None
        if session.announced:
            self.out.send_router(env.Online(Kind.ONLINE, session.client_id, 0))
            session.announced = False
        session.disconnected_at = now
        ends = session.session_expiry == 0
        if not ends:
            # Kept offline until it expires. A session that ends now is not
            # (a clean one, nearly every session of a connect storm): its
            # expiry would be pushed on the heap only to be found stale.
            state.offline.add(session.client_id)
            state.watch_expiry(session)
        will, session.will = session.will, None
        if will is not None and publish_will:
            delay = min(will.delay_interval or 0, session.session_expiry)
            if delay > 0:
                state.delay_will(session.client_id, PendingWill(now + delay, will))
            else:
                self.route_will(session.client_id, will, via=old)
        if ends:
            self.end_session(session)
        else:
            self.out.put_session(session)
        if state.takeovers.pending and old is not None:
            waiting = state.takeovers.waiting_for(session.client_id, old)
            if waiting is not None:
                self._complete_takeover(waiting, now)

    def route_will(self, client_id: str, will: Will, via: int | None = None) -> None:
        """Publish `will`; `via`: the connection it was the will of, whose
        router routes it (after what that connection published: the
        acceptor's fence made the CLOSED wait for them, see
        frontend/ordering.py). A delayed will goes through this shard's."""
        self.state.counters["wills_published"] += 1
        route: env.RouteTuple = (
            Kind.ROUTE,
            client_id,
            will.topic,
            will.payload,
            will.qos,
            will.retain,
            will.props,
            None,
        )
        self.out.send_router_via(route, via)

    def end_session(self, session: Session) -> None:
        state = self.state
        state.sessions.pop(session.client_id, None)
        state.offline.discard(session.client_id)
        pending = state.pending_wills.pop(session.client_id, None)
        if pending is not None:
            # The session ends (it expired) before the will delay: the will
            # goes out now [MQTT-3.1.3-9]. A new connection never gets here
            # with a will pending: _session_for cancels it first.
            self.route_will(session.client_id, pending.will)
        if session.subscriptions:
            self.out.send_router(env.UnsubAll(Kind.UNSUB_ALL, session.client_id))
        if session.persisted:
            self.out.ops.append(DeleteSession(session.client_id))
        state.counters["sessions_ended"] += 1

    def publish_due_wills(self, now: float) -> None:
        """Delayed wills whose time has come go out."""
        state = self.state
        while (due := state.next_will()) is not None and due <= now:
            _, client_id = heapq.heappop(state.will_times)
            self.route_will(client_id, state.pending_wills.pop(client_id).will)

    def end_expired(self, now: float) -> None:
        """Offline sessions whose expiry has come end."""
        state = self.state
        while (at := state.next_expiry()) is not None and at <= now:
            _, client_id = heapq.heappop(state.expiries)
            state.counters["sessions_expired"] += 1
            self.end_session(state.sessions[client_id])
