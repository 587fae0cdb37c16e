"""The state every part of a shard works on, and what they share (sans-IO).

`ShardState` owns the sessions, the outputs of a pass (`to_router`,
`to_acceptors`, store `ops`, and `after_commit`: envelopes sent only once
this pass's ops are committed), the QoS 2 de-duplication keys, and the
helpers every flow uses: sending to a connection, finding the session a
connection is attached to, recording a session in the store. The flows are
in `outbound.py`, `connections.py`, `inbound.py` and `subscriptions.py`;
`shard.py` puts them together.

Invariants: `ops` holds store ops in the order they were made, and
(client id, OutMessage) placeholders for messages queued in this pass
(`take_durable` resolves them to their PutMessage); `_unsaved` counts the
placeholders. Nothing here touches a socket or a clock: time comes in with
each envelope (`now`).
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flockmq import envelopes as env
from flockmq.envelopes import Envelope, Kind, Wire, acceptor_of
from flockmq.isolation import EnvelopeGuard
from flockmq.message_expiry import pack_stored_props
from flockmq.persistence import pack_blob
from flockmq.store import Op, PutMessage, PutSeenQos2, PutSession
from flockmq.workers.session import OutMessage, Session
from flockmq.workers.takeover import Takeovers

log = logging.getLogger("flockmq.worker")

SEEN_QOS2_MAX = 200_000  # QoS 2 publishes remembered to drop their retries


@dataclass(frozen=True, slots=True)
class ShardLimits:
    max_inflight: int = 64
    max_queued_messages: int = 100_000
    max_queued_bytes: int = 64 * 1024 * 1024
    max_subscriptions: int = 10_000
    max_subscription_bytes: int = 1024 * 1024
    queue_qos0: bool = False
    max_session_expiry: int = 0xFFFFFFFF


class ShardState:
    def __init__(self, index: int, limits: ShardLimits, nonce: int = 0) -> None:
        """`nonce`: a random number per process start (31 bits), so that the
        QoS 2 tokens of this incarnation differ from every earlier one's."""
        self.index = index
        self.limits = limits
        self.now = 0.0  # the time of the envelope or timer being handled
        self._token_base = (nonce & 0x7FFFFFFF) << 32
        self._tokens = 0
        self.sessions: dict[str, Session] = {}
        self.pending_wills: dict[str, tuple[float, env.Will]] = {}
        self.takeovers = Takeovers()
        self.offline: set[str] = set()  # sessions kept without a connection
        # When offline sessions expire and delayed wills are due, as heaps of
        # (time, client id): the timer looks at what is due, never scans every
        # offline session. An entry whose session reattached, ended or was
        # given a new time is stale and skipped when popped (see Shard).
        self.expiries: list[tuple[float, str]] = []
        self.will_times: list[tuple[float, str]] = []
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
        # What goes to the router leaves in the order it was made: once one
        # envelope for it waits for a commit (this pass: _router_waits, or
        # earlier passes not yet committed: set by the process), the ones
        # after it wait too (see _to_router).
        self.router_commits_pending = 0
        self._router_waits = False
        # Connections whose SUBACK waits for a commit (a persistent session),
        # with how many: what is sent to them meanwhile (the retained
        # messages) waits too, so SUBACK comes first.
        self.behind_suback: dict[int, int] = {}
        # SUBACK/UNSUBACK waiting for the router's answer, by (conn, packet
        # id): sent anyway when a restarted router has re-taken the
        # subscriptions (the answer died with the old one)
        self.awaiting_router: dict[tuple[int, int], env.SendSuback | env.SendUnsuback] = {}
        self.counters: Counter[str] = Counter()
        self.guard = EnvelopeGuard(f"shard {index}", self.counters, log)
        # envelope kind -> handler, filled in by `Shard`
        self._handlers: dict[int, Callable[[Wire, float], None]] = {}

    def handle(self, envelope: Wire, now: float) -> None:
        """One envelope. It may raise: the runtime isolates each envelope
        (flockmq/isolation.py)."""
        self.now = now
        if self.takeovers.pending and self.takeovers.hold(envelope):
            return  # from a connection waiting to take over its session
        handler = self._handlers.get(envelope[0])
        if handler is None:
            self.counters["unknown_envelopes"] += 1
            self.guard.limited.warning(
                "shard %d: unknown envelope kind %r", self.index, envelope[0]
            )
            return
        handler(envelope, now)

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
        self._router_waits = False
        if self._unsaved:
            self._unsaved = 0
            ops = [op for op in map(_resolve, ops) if op is not None]
        return ops, later  # type: ignore[return-value]

    def _to_router(self, envelope: Envelope) -> None:
        """To the router, after everything sent there before: a QoS 2 publish
        waiting for its commit must not be overtaken by a SUB, UNSUB, will or
        session end made after it (one connection's order, item 22)."""
        if self._router_waits or self.router_commits_pending:
            self.after_commit.append(("router", envelope))
        else:
            self.to_router.append(envelope)

    def hold_for_commit(self, later: list[tuple[str | int, Envelope]]) -> tuple[bool, list[int]]:
        """The process commits a pass's ops; `later` waits for it: until
        `commit_done`, what follows it to the router or to a connection whose
        SUBACK is in it waits too."""
        to_router = any(dest == "router" for dest, _ in later)
        if to_router:
            self.router_commits_pending += 1
        return to_router, [e.conn for _, e in later if isinstance(e, env.SendSuback)]

    def commit_done(self, hold: tuple[bool, list[int]]) -> None:
        to_router, subacks = hold
        if to_router:
            self.router_commits_pending -= 1
        behind = self.behind_suback
        for conn in subacks:
            left = behind.get(conn, 0) - 1
            if left > 0:
                behind[conn] = left
            else:
                behind.pop(conn, None)

    def _send_suback_after_commit(self, conn: int, suback: env.SendSuback) -> None:
        self.after_commit.append((acceptor_of(conn), suback))
        self.behind_suback[conn] = self.behind_suback.get(conn, 0) + 1

    def _to_router_after_commit(self, envelope: env.Route) -> None:
        self.after_commit.append(("router", envelope))
        self._router_waits = True

    def startup_envelopes(self, incarnation: int) -> None:
        """Announce this shard (a restarted worker): the router forgets the
        shard's stale subscriptions and acceptors drop its stale connections."""
        self.to_router.append(env.WorkerUp(Kind.WORKER_UP, self.index, incarnation))

    def _watch_expiry(self, session: Session) -> None:
        """`session` went offline: wake the timer when it expires."""
        expires = session.expires_at()
        if expires is None:
            return
        heap = self.expiries
        heapq.heappush(heap, (expires, session.client_id))
        if len(heap) > 1024 + 2 * len(self.offline):
            # Mostly stale entries (sessions that came back): keep the live ones.
            live = [
                (at, client_id)
                for client_id in self.offline
                if (kept := self.sessions.get(client_id)) is not None
                and (at := kept.expires_at()) is not None
            ]
            heapq.heapify(live)
            self.expiries = live

    def _watch_will(self, client_id: str, due: float) -> None:
        """A delayed will is pending: wake the timer when it is due."""
        heapq.heappush(self.will_times, (due, client_id))
        if len(self.will_times) > 1024 + 2 * len(self.pending_wills):
            live = [(at, cid) for cid, (at, _will) in self.pending_wills.items()]
            heapq.heapify(live)
            self.will_times = live

    def _send(self, conn: int, envelope: Envelope) -> None:
        acceptor = acceptor_of(conn)
        if self.behind_suback and conn in self.behind_suback:
            self.after_commit.append((acceptor, envelope))  # after its SUBACK
            return
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

    def _next_token(self) -> int:
        self._tokens += 1
        return self._token_base | (self._tokens & 0xFFFFFFFF)

    def _record_seen(self, key: env.Qos2Key, targets: list[env.Target]) -> None:
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
