"""Client takeovers waiting for the old connection to close (sans-IO).

A CONNECT for a session whose connection is still attached takes it over
[MQTT-3.1.4-2]. The old connection may live on another acceptor, and what its
client sent last (a PUBACK, a PUBCOMP, a DISCONNECT) travels on that
acceptor's pipe, which the new connection's CONNECT can overtake. So the
shard does not attach the new connection at once: it asks the old one's
acceptor to close it, and attaches the new one when that acceptor's CLOSED
arrives, after everything the old connection sent (one pipe, in order). What
the new connection sends meanwhile is held here and handled after its
CONNACK, in order. An acceptor that never answers (frozen or dead) is not
waited for longer than `TAKEOVER_WAIT`.

Invariants: at most one takeover per client id; `conn` is never attached to
the session while it waits; `old` is the connection that was attached when
the takeover began.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flockmq import envelopes as env
from flockmq.envelopes import Wire

TAKEOVER_WAIT = 3.0  # seconds the old connection's acceptor has to report it closed

# Envelopes (kind, conn, client_id, ...) a connection sends about its session.
HELD_KINDS = frozenset(
    {
        env.Kind.PUBLISH,
        env.Kind.PUBREL_IN,
        env.Kind.PUBACK_IN,
        env.Kind.PUBACKS_IN,
        env.Kind.PUBREC_IN,
        env.Kind.PUBCOMP_IN,
        env.Kind.DISCARDED,
        env.Kind.SUBSCRIBE,
        env.Kind.UNSUBSCRIBE,
        env.Kind.QOS2_CONFIRMED,
    }
)


@dataclass(slots=True)
class Takeover:
    old: int  # the connection being closed
    conn: int  # the connection waiting to be attached
    connect: Wire  # its CONNECT
    due: float  # attach it by then even if the old one's CLOSED never came
    held: list[Wire] = field(default_factory=list)


class Takeovers:
    def __init__(self) -> None:
        self.pending: dict[str, Takeover] = {}

    def begin(self, client_id: str, old: int, connect: Wire, now: float) -> Takeover | None:
        """Start waiting for `old` to close; returns the takeover this one
        replaces (a third connection came before the second was attached)."""
        replaced = self.pending.get(client_id)
        if replaced is not None:
            old = replaced.old
        conn = env.Connect._make(connect).conn
        self.pending[client_id] = Takeover(old, conn, connect, now + TAKEOVER_WAIT)
        return replaced

    def hold(self, envelope: Wire) -> bool:
        """Keep what a waiting connection sent until it is attached."""
        if not self.pending or envelope[0] not in HELD_KINDS:
            return False
        # Every held kind starts with (kind, conn, client_id): env.Publish, env.PubackIn...
        _, conn, client_id, *_ = envelope
        waiting = self.pending.get(client_id)
        if waiting is None or waiting.conn != conn:
            return False
        waiting.held.append(envelope)
        return True

    def waiting_for(self, client_id: str, old: int) -> Takeover | None:
        """The takeover that waits for `old` to close, taken out."""
        waiting = self.pending.get(client_id)
        if waiting is None or waiting.old != old:
            return None
        return self.pending.pop(client_id)

    def abandon(self, client_id: str, conn: int) -> bool:
        """The waiting connection closed before it was attached."""
        waiting = self.pending.get(client_id)
        if waiting is None or waiting.conn != conn:
            return False
        del self.pending[client_id]
        return True

    def overdue(self, now: float) -> list[tuple[str, Takeover]]:
        late = [(cid, t) for cid, t in self.pending.items() if t.due <= now]
        for client_id, _ in late:
            del self.pending[client_id]
        return late

    def next_due(self) -> float | None:
        return min((t.due for t in self.pending.values()), default=None)
