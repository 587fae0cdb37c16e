"""What a session worker answers while it is a standby (sans-IO): its shard's
advisory lock is held by another process (issue 14, workers/ownership.py),
so it has loaded nothing and owns no session.

It claims nothing: no session, no store op, no subscription. A first
incarnation says nothing at all; a restarted one (a worker whose lock was
taken by another broker meanwhile) sends WORKER_UP once it knows it is a
standby (workers/process.py `take_shard`): the router drops what the
previous incarnation had subscribed, and the acceptors re-attach its
connections, which the standby refuses (CONNACK 0x88 to a connected
session closes it: frontend/connect.py `handle_connack`). Every envelope
gets the answer a client can act on at once, never silence that leaves it
waiting for its own timeout:

- CONNECT: CONNACK 0x88 Server unavailable (the acceptor writes it as the
  3.1.1 return code 3 and closes: frontend/connect.py `handle_connack`);
  the client reconnects, to this host once it owns the shard, or to another.
- Anything from a connection attached to this shard earlier (the worker
  restarted as a standby under its acceptors' open connections): CLOSE with
  0x9C Use another server (0x88 is a CONNACK code only, [MQTT-3.14.2.1]),
  so that client reconnects too.
- DELIVER that must be confirmed: STORED ok=False to the publisher's
  acceptor, so the publish is not acknowledged (the client sends it again).
- ROUTER_UP: SYNCED at once (there is nothing of this shard to re-send), so
  a restarted router does not hold publishes waiting for this shard.
- The rest (CLOSED, ACCEPTOR_UP, the router's SUBSCRIBED...): nothing to do.

Each answer is counted (`standby_*`); refused CONNECTs are logged, rate
limited.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Final

from flockmq import envelopes as env
from flockmq.envelopes import Kind, Wire
from flockmq.isolation import EnvelopeGuard
from flockmq.mqtt.reason_codes import ReasonCode

from .outbox import Outbox

SERVER_UNAVAILABLE: Final = int(ReasonCode.SERVER_UNAVAILABLE)
USE_ANOTHER_SERVER: Final = int(ReasonCode.USE_ANOTHER_SERVER)

# The kinds whose field 1 is the connection they came from.
_FROM_A_CONNECTION: Final = frozenset(
    {
        Kind.PUBLISH,
        Kind.PUBREL_IN,
        Kind.PUBACK_IN,
        Kind.PUBACKS_IN,
        Kind.PUBREC_IN,
        Kind.PUBCOMP_IN,
        Kind.SUBSCRIBE,
        Kind.UNSUBSCRIBE,
        Kind.QOS2_CONFIRMED,
        Kind.DISCARDED,
    }
)


class Standby:
    """Answers in `out` (the shard's outbox, flushed by the process as the
    shard's own outputs are), counts in `counters`."""

    def __init__(
        self,
        index: int,
        out: Outbox,
        counters: Counter[str],
        guard: EnvelopeGuard,
        routers_live: Callable[[Wire, float], object] | None = None,
    ):
        """`routers_live`: the shard's handler of ROUTERS_LIVE without its
        resync (Subscriptions.follow_routers_live: which routers are live is
        remembered for when it serves)."""
        self.index = index
        self.out = out
        self.counters = counters
        self.guard = guard
        self.routers_live = routers_live

    def handle(self, envelope: Wire, now: float) -> None:
        kind = envelope[0]
        counters = self.counters
        if kind == Kind.CONNECT:
            connect = env.Connect._make(envelope)
            counters["standby_connects_refused"] += 1
            self.guard.limited.warning(
                "worker %d: standby (shard lock held elsewhere): CONNECT of %r refused"
                " with 0x88 Server unavailable",
                self.index,
                connect.client_id,
            )
            refusal = env.Connack(Kind.CONNACK, connect.conn, False, SERVER_UNAVAILABLE, None)
            self.out.send(connect.conn, refusal)
        elif kind in _FROM_A_CONNECTION:
            conn = envelope[1]
            counters["standby_connections_closed"] += 1
            self.out.send(conn, env.Close(Kind.CLOSE, conn, USE_ANOTHER_SERVER))
        elif kind == Kind.DELIVER:
            reply = env.Deliver._make(envelope).reply
            if reply is not None and env.DeliverReply._make(reply).confirm:
                counters["standby_deliveries_refused"] += 1
                stored = env.Stored(Kind.STORED, reply[0], reply[1], False, reply[2])
                self.out.send(reply[0], stored)
        elif kind == Kind.ROUTERS_LIVE and self.routers_live is not None:
            self.routers_live(envelope, now)  # remembered for when it serves
        elif kind == Kind.ROUTER_UP:
            self.out.to_router.append(env.Synced(Kind.SYNCED, self.index))
        else:
            counters["standby_envelopes_ignored"] += 1
