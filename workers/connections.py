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
"""

from __future__ import annotations

import logging
from typing import Any

from flockmq import envelopes as env
from flockmq.envelopes import Kind, Wire, acceptor_of, incarnation_of
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.store import DeleteSession
from flockmq.workers.outbound import OutboundFlows
from flockmq.workers.session import Session
from flockmq.workers.takeover import Takeover

log = logging.getLogger("flockmq.worker")


class ConnectionFlows(OutboundFlows):
    def _on_connect(self, e: Wire, now: float) -> None:
        connect = env.Connect._make(e)
        conn, client_id = connect.conn, connect.client_id
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

    def _begin_takeover(self, e: Wire, now: float) -> None:
        """Takeover [MQTT-3.1.4-2]: close the attached connection and attach
        this one when its CLOSED comes (see workers/takeover.py); its will goes
        out as for any close without DISCONNECT."""
        client_id = env.Connect._make(e).client_id
        session = self.sessions.get(client_id)
        if session is None or session.conn is None:  # nothing attached any more
            self._close_taken_over(self.takeovers.pending.pop(client_id).conn)
            self._attach(e, now)
            return
        replaced = self.takeovers.begin(client_id, session.conn, e, now)
        # A connection still waiting is taken over before it was attached.
        self.counters["takeovers"] += 1
        log.info("client %s taken over: closing its previous connection", client_id)
        self._close_taken_over(session.conn if replaced is None else replaced.conn)

    def _close_taken_over(self, conn: int) -> None:
        self._send(conn, env.Close(Kind.CLOSE, conn, ReasonCode.SESSION_TAKEN_OVER))

    def _complete_takeover(self, waiting: Takeover, now: float) -> None:
        self._attach(waiting.connect, now)
        self.guard.handle_each(self.handle, waiting.held, now)

    def _attach(self, e: Wire, now: float) -> None:
        connect = env.Connect._make(e)
        conn, client_id, level = connect.conn, connect.client_id, connect.level
        expiry = connect.session_expiry
        asked, expiry = expiry, min(expiry, self.limits.max_session_expiry)
        session = self.sessions.get(client_id)
        present = False
        # A new connection for the client id within the will delay cancels the
        # delayed will, whether it resumes the session or starts a clean one:
        # "If a new Network Connection to this Session is made before the Will
        # Delay Interval has passed, the Server MUST NOT send the Will Message"
        # [MQTT-3.1.3-9], and the will is published "unless ... a new Network
        # Connection for the ClientID is opened before the Will Delay Interval
        # has elapsed" [MQTT-3.1.2-8]. The will was for a connection loss that
        # turned out to be temporary: the client is back (Mosquitto does the
        # same). So it is dropped before a Clean Start ends the old session,
        # or _end_session would publish it.
        self.pending_wills.pop(client_id, None)
        if session is not None and connect.clean_start:
            self._end_session(session)
            session = None
        if session is None:
            session = self.sessions[client_id] = Session(client_id)
            self.counters["sessions_created"] += 1
        else:
            present = True
        session.conn = conn
        self._to_router(env.Online(Kind.ONLINE, client_id, conn))
        session.protocol_level = level
        session.session_expiry = expiry
        session.receive_maximum = connect.receive_maximum or 65535
        session.will = None if connect.will is None else env.Will._make(connect.will)
        session.disconnected_at = None
        self.offline.discard(client_id)
        self._persist_session(session)
        props: dict[str, Any] | None = None
        if connect.assigned_id:
            props = {"assigned_client_identifier": client_id}
        if expiry != asked and level >= 5:
            # The broker's limit applies: say so (MQTT 5 section 3.2.2.3.2).
            props = {**(props or {}), "session_expiry_interval": expiry}
        self._send(conn, env.Connack(Kind.CONNACK, conn, present, ReasonCode.SUCCESS, props))
        if present:
            self._resend_inflight(session)
            self._pump(session)

    def _on_closed(self, e: Wire, now: float) -> None:
        _, conn, client_id, publish_will, new_expiry = env.Closed._make(e)
        if self.takeovers.pending and self.takeovers.abandon(client_id, conn):
            return  # it closed while waiting to take over: never attached
        session = self.sessions.get(client_id)
        if session is None or session.conn != conn:
            return  # already taken over or ended
        if new_expiry is not None:
            session.session_expiry = min(new_expiry, self.limits.max_session_expiry)
        self._detach(session, publish_will=publish_will, now=now)

    def _on_acceptor_up(self, e: Wire, now: float) -> None:
        """A (re)started acceptor: connections of its previous incarnation are gone."""
        _, acceptor, incarnation = env.AcceptorUp._make(e)
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
        self._to_router(env.Online(Kind.ONLINE, session.client_id, 0))
        session.disconnected_at = now
        self.offline.add(session.client_id)
        self._watch_expiry(session)
        will, session.will = session.will, None
        if will is not None and publish_will:
            delay = min(will.delay_interval or 0, session.session_expiry)
            if delay > 0:
                self.pending_wills[session.client_id] = (now + delay, will)
                self._watch_will(session.client_id, now + delay)
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

    def _route_will(self, client_id: str, will: env.Will) -> None:
        topic, payload, qos, retain, props, _delay = will
        self.counters["wills_published"] += 1
        self._to_router(env.Route(Kind.ROUTE, client_id, topic, payload, qos, retain, props, None))

    def _end_session(self, session: Session) -> None:
        self.sessions.pop(session.client_id, None)
        self.offline.discard(session.client_id)
        pending = self.pending_wills.pop(session.client_id, None)
        if pending is not None:
            # The session ends (it expired) before the will delay: the will
            # goes out now [MQTT-3.1.3-9]. A new connection never gets here
            # with a will pending: _attach cancels it first.
            self._route_will(session.client_id, pending[1])
        if session.subscriptions:
            self._to_router(env.UnsubAll(Kind.UNSUB_ALL, session.client_id))
        if session.persisted:
            self.ops.append(DeleteSession(session.client_id))
        self.counters["sessions_ended"] += 1
