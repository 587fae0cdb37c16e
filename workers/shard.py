"""A shard of session actors (sans-IO): envelopes in, envelopes out.

`Shard` is the facade the worker process drives: `handle(envelope, now)`,
`handle_timer(now)` / `next_timer()`, `load(records, now)` after a restart,
and the pass's outputs (`to_router`, `to_acceptors`, `take_durable`,
`hold_for_commit`, `commit_done`). It owns no logic of its own: it builds
one object per concern over the state they share, and dispatches each
envelope kind to one of them.

    ShardState     sessions and the indices over them (workers/shard_state.py)
    Outbox         the pass's outputs and the order they leave in (outbox.py)
    Connections    CONNECT, takeover, close, wills, session end (connections.py)
    Outbound       delivery and the outbound QoS state machines (outbound.py)
    Inbound        QoS 2 publishes from clients, PUBREL (inbound.py)
    Subscriptions  SUBSCRIBE, UNSUBSCRIBE, the router's resync (subscriptions.py)
    Restore        reloading from the store (restore.py)

Each takes the state, the outbox and the other objects it calls, explicitly;
`Outbound` and `Connections` need each other (a wrong acknowledgement lets go
of the connection, a resumed session resends), so `Outbound.connections` is
set here once both exist. Nothing here touches a socket or a clock.

Decided in those objects: client takeover, session present, clean-session
discard, QoS downgrade (min of published and granted QoS), one copy per
subscriber, the outbound in-flight window and its ordered queue, redelivery
with DUP on resume [MQTT-4.4.0-1], inbound QoS 2 exactly-once (packet ids held
until PUBREL [MQTT-4.3.3-2]), wills (published on any close but a clean
DISCONNECT), and session expiry.

Durability: for sessions that outlive their connection (`Session.persistent`)
every change is also recorded as a store op in the outbox's `ops`. Envelopes
that promise durability (STORED confirmations to the publisher's acceptor, a
QoS 2 publish whose packet id must be stored before it is routed) go to
`after_commit`: the process sends them only once this pass's ops are
committed. QoS 0 messages and clean sessions never produce ops.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from flockmq import envelopes as env
from flockmq.envelopes import Envelope, Kind, Wire
from flockmq.store import Op, SessionRecord
from flockmq.workers.connections import Connections
from flockmq.workers.inbound import Inbound
from flockmq.workers.outbound import Outbound
from flockmq.workers.outbox import Destination, Outbox
from flockmq.workers.restore import Restore
from flockmq.workers.session import Session
from flockmq.workers.shard_state import ShardLimits, ShardState
from flockmq.workers.subscriptions import Subscriptions

__all__ = ["Shard", "ShardLimits", "ShardState"]


class Shard:
    def __init__(self, index: int, limits: ShardLimits, nonce: int = 0) -> None:
        """`nonce`: a random number per process start (31 bits), so that the
        QoS 2 tokens of this incarnation differ from every earlier one's."""
        self.index = index
        self.state = state = ShardState(index, limits, token_base=(nonce & 0x7FFFFFFF) << 32)
        self.out = out = Outbox(
            routers=limits.routers, shard=index, acceptor_routers=limits.acceptor_routers
        )
        self.outbound = outbound = Outbound(state, out)
        self.inbound = inbound = Inbound(state, out)
        self.subscriptions = subscriptions = Subscriptions(state, out)
        self.connections = connections = Connections(state, out, outbound, replay=self.handle)
        outbound.connections = connections
        self.restore = Restore(state, out, outbound, subscriptions)
        self._takeovers = state.takeovers  # never replaced
        # What the process and the tests read; never replaced (see ShardState, Outbox).
        self.sessions: dict[str, Session] = state.sessions
        self.counters: Counter[str] = state.counters
        self.to_router: list[Envelope] = out.to_router
        self.to_acceptors: dict[int, list[Envelope]] = out.to_acceptors
        self._handlers: dict[int, Callable[[Wire, float], None]] = {
            Kind.CONNECT: connections.on_connect,
            Kind.PUBLISH: inbound.on_publish,
            Kind.PUBREL_IN: inbound.on_pubrel,
            Kind.QOS2_CONFIRMED: inbound.on_qos2_confirmed,
            Kind.PUBACK_IN: outbound.on_puback,
            Kind.PUBACKS_IN: outbound.on_pubacks,
            Kind.PUBREC_IN: outbound.on_pubrec,
            Kind.PUBCOMP_IN: outbound.on_pubcomp,
            Kind.DISCARDED: outbound.on_discarded,
            Kind.SUBSCRIBE: subscriptions.on_subscribe,
            Kind.UNSUBSCRIBE: subscriptions.on_unsubscribe,
            Kind.CLOSED: connections.on_closed,
            Kind.ACCEPTOR_UP: connections.on_acceptor_up,
            Kind.DELIVER: outbound.on_deliver,
            Kind.SUBSCRIBED: subscriptions.on_subscribed,
            Kind.UNSUBSCRIBED: subscriptions.on_unsubscribed,
            Kind.ROUTER_UP: subscriptions.on_router_up,
            Kind.ROUTERS_LIVE: subscriptions.on_routers_live,
        }

    def handle(self, envelope: Wire, now: float) -> None:
        """One envelope. It may raise: the runtime isolates each envelope
        (flockmq/isolation.py)."""
        self.state.now = now
        if self._takeovers.pending and self._takeovers.hold(envelope):
            return  # from a connection waiting to take over its session
        handler = self._handlers.get(envelope[0])
        if handler is None:
            self.counters["unknown_envelopes"] += 1
            self.state.guard.limited.warning(
                "shard %d: unknown envelope kind %r", self.index, envelope[0]
            )
            return
        handler(envelope, now)

    def handle_timer(self, now: float) -> None:
        """Finish takeovers whose old connection's acceptor never answered,
        publish delayed wills that are due, and end expired sessions."""
        self.state.now = now
        connections = self.connections
        connections.take_over_overdue(now)
        connections.publish_due_wills(now)
        connections.end_expired(now)

    def next_timer(self) -> float | None:
        """When handle_timer next has work, or None."""
        state = self.state
        times = [state.next_will(), state.next_expiry(), state.takeovers.next_due()]
        return min((t for t in times if t is not None), default=None)

    def gauges(self) -> dict[str, int]:
        """What this shard holds now, for $SYS (flockmq/sysstats.py): once per
        interval, a walk over its sessions."""
        sessions = self.state.sessions.values()
        return {
            "sessions": len(self.state.sessions),
            "sessions_offline": len(self.state.offline),
            "subscriptions": sum(len(s.subscriptions) for s in sessions),
            "messages_stored": sum(len(s.queue) + len(s.inflight) for s in sessions),
        }

    def load(self, records: Iterable[SessionRecord], now: float) -> None:
        """Sessions of this shard from the store (see workers/restore.py)."""
        self.restore.load(records, now)

    def startup_envelopes(self, incarnation: int, after_standby: bool = False) -> None:
        """Announce this shard (a restarted worker): the router forgets the
        shard's stale subscriptions and acceptors drop its stale connections
        (`after_standby`: env.WorkerUp)."""
        up = env.WorkerUp(Kind.WORKER_UP, self.index, incarnation, after_standby)
        self.to_router.append(up)

    def take_durable(self) -> tuple[list[Op], list[tuple[Destination, Envelope]]]:
        """This pass's store ops and the envelopes that wait for them (see
        Outbox.take_durable)."""
        return self.out.take_durable()

    def hold_for_commit(self, later: list[tuple[Destination, Envelope]]) -> tuple[bool, list[int]]:
        """See Outbox.hold_for_commit."""
        return self.out.hold_for_commit(later)

    def commit_done(self, hold: tuple[bool, list[int]]) -> None:
        self.out.commit_done(hold)
