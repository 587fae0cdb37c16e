"""The state every part of a shard works on (sans-IO).

`ShardState` owns the sessions and the indices over them: which are offline,
the delayed wills, the timer heaps of session expiry and will delay, the
takeovers waiting for an old connection, the QoS 2 de-duplication keys, the
SUB/UNSUB answers waiting for the router, and the counters. The per-concern
objects (`Connections`, `Outbound`, `Inbound`, `Subscriptions`, `Restore`)
each take it explicitly, with the `Outbox` (workers/outbox.py) they write
their outputs to; `Shard` (workers/shard.py) puts them together.

Invariants: `sessions`, `offline`, `pending_wills`, `seen_qos2` and
`counters` are never replaced, only changed (the objects and `Shard` keep
references to them); a session is in `offline` exactly while it is kept
without a connection. The heaps hold (time, client id): an entry whose
session reattached, ended or was given a new time is stale and skipped when
popped (`next_expiry`, `next_will`), so nothing scans every offline session.
Nothing here touches a socket or a clock: time comes in with each envelope
(`now`).
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from flockmq import envelopes as env
from flockmq.isolation import EnvelopeGuard
from flockmq.workers.session import PendingWill, Session
from flockmq.workers.takeover import Takeovers

log = logging.getLogger("flockmq.worker")


@dataclass(frozen=True, slots=True)
class ShardLimits:
    max_inflight: int = 64
    max_queued_messages: int = 100_000
    max_queued_bytes: int = 64 * 1024 * 1024
    max_subscriptions: int = 10_000
    max_subscription_bytes: int = 1024 * 1024
    queue_qos0: bool = False
    max_session_expiry: int = 0xFFFFFFFF
    routers: int = 1  # Config.routers: each gets every subscription change
    # each acceptor's router in a cluster (Config.acceptor_routers); (): acceptor % routers
    acceptor_routers: tuple[int, ...] = ()


@dataclass(slots=True, eq=False)
class ShardState:
    index: int
    limits: ShardLimits
    # a random number per process start (31 bits), shifted: the QoS 2 tokens
    # of this incarnation differ from every earlier one's (see next_token)
    token_base: int = 0
    tokens: int = 0
    now: float = 0.0  # the time of the envelope or timer being handled
    sessions: dict[str, Session] = field(default_factory=dict)
    offline: set[str] = field(default_factory=set)  # sessions kept without a connection
    pending_wills: dict[str, PendingWill] = field(default_factory=dict)
    # When offline sessions expire and delayed wills are due (see the module doc)
    expiries: list[tuple[float, str]] = field(default_factory=list)
    will_times: list[tuple[float, str]] = field(default_factory=list)
    takeovers: Takeovers = field(default_factory=Takeovers)
    # QoS 2 messages this shard took, by key (see Outbound.seen_before);
    # insertion-ordered, bounded
    seen_qos2: dict[tuple[Any, ...], None] = field(default_factory=dict)
    # SUBACK/UNSUBACK waiting for the routers' answers, by (conn, packet
    # id), with its client id and the routers that have not answered yet:
    # sent once every router has, a restarted one counting as answered once
    # it has re-taken the subscriptions (the answer died with the old one)
    awaiting_router: dict[
        tuple[int, int], tuple[str, env.SendSuback | env.SendUnsuback, set[int]]
    ] = field(default_factory=dict)
    # Routers on a node declared dead (a cluster's ROUTERS_LIVE): no SUBACK
    # waits for them (workers/subscriptions.py `on_routers_live`)
    routers_down: frozenset[int] = frozenset()
    # The write epoch the shard was claimed with (PostgreSQL store:
    # workers/ownership.py; 0 without one): its resyncs carry it
    epoch: int = 0
    # Routers declared down that sent a ROUTER_UP since, by when: live,
    # whatever a ROUTERS_LIVE that has not caught up says, for a while
    # (workers/subscriptions.py `ROUTER_UP_GRACE`)
    routers_up_at: dict[int, float] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    guard: EnvelopeGuard = field(init=False)

    def __post_init__(self) -> None:
        self.guard = EnvelopeGuard(f"shard {self.index}", self.counters, log)

    def current(self, client_id: str, conn: int) -> Session | None:
        """The session if `conn` is its attached connection; packets from a
        connection that was taken over are ignored."""
        session = self.sessions.get(client_id)
        if session is None or session.conn != conn:
            self.counters["stale_connection_packets"] += 1
            return None
        return session

    def next_token(self) -> int:
        self.tokens += 1
        return self.token_base | (self.tokens & 0xFFFFFFFF)

    def watch_expiry(self, session: Session) -> None:
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

    def delay_will(self, client_id: str, pending: PendingWill) -> None:
        """A delayed will is pending: wake the timer when it is due."""
        self.pending_wills[client_id] = pending
        heapq.heappush(self.will_times, (pending.due, client_id))
        if len(self.will_times) > 1024 + 2 * len(self.pending_wills):
            live = [(p.due, cid) for cid, p in self.pending_wills.items()]
            heapq.heapify(live)
            self.will_times = live

    def next_will(self) -> float | None:
        """When the first pending delayed will is due; stale entries at the
        top of the heap (wills cancelled or replaced) are dropped."""
        will_times = self.will_times
        while will_times:
            due, client_id = will_times[0]
            pending = self.pending_wills.get(client_id)
            if pending is not None and pending.due == due:
                return due
            heapq.heappop(will_times)
        return None

    def next_expiry(self) -> float | None:
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
