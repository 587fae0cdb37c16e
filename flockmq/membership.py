"""Which nodes of a cluster are alive (issue 14), sans-IO: heartbeats in,
the live set and its changes out. Time is passed in (`now`, seconds of a
monotonic clock), so every rule here is tested without sleeping; the
sockets are flockmq/app/heartbeats.py's.

Run by a cluster node's supervisor (flockmq/app/cluster_moves.py, through
flockmq/app/heartbeats.py) beside the shard manager
(flockmq/shard_manager.py); its changes feed that and the eviction of a
dead node's locks (store/shard_evict.py).

Every node sends a heartbeat (its name, its incarnation and the id naming
its shard lock connections, envelopes.py `Heartbeat`) every
`heartbeat_interval`; this module decides from what it heard:

- A node is live while its last heartbeat is less than `heartbeat_timeout`
  old. One missed heartbeat is not a death (the cluster file makes the
  timeout at least two intervals): the node stays live, and nothing changes,
  until it has been silent for the whole timeout. That is the flapping rule
  every consumer relies on: a link that drops for less than the timeout
  moves nothing.
- At start every node of the cluster file is presumed live, as if heard at
  `now`: a node that starts does not take the shards of nodes it has not
  heard from yet, and a node that never comes is dead after one timeout.
- A node's incarnation grows with each start of its supervisor. A heartbeat
  of an older incarnation than the newest heard is stale (a frame that
  waited in a queue) and ignored; a newer one while the node is live is a
  restart (RESTARTED: whatever the node's processes held is gone, and so
  are its lock connections of the old incarnation); from a dead node it is
  a rejoin (JOINED), as is the same incarnation heard again after a cut
  link (the node never died, it was only out of reach).
- This node itself is always live (it is the one asking) and never appears
  in a change.
- Heartbeats from a name outside the cluster file are ignored and counted
  (`unknown`): a misconfigured node is not a member.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass


class ChangeKind(enum.Enum):
    JOINED = "joined"  # not live before, live now (first heard after a death, or a rejoin)
    LEFT = "left"  # silent for heartbeat_timeout: declared dead
    RESTARTED = "restarted"  # live, and heard with a newer incarnation


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    node: str
    # the incarnation the change is about, and the id naming its lock
    # connections: JOINED the one just heard; LEFT and RESTARTED the one
    # that is gone (whose locks a survivor may evict)
    incarnation: int
    broker: str


@dataclass(slots=True)
class _Peer:
    last_heard: float
    incarnation: int = -1  # -1: never heard
    broker: str = ""
    live: bool = True


class Membership:
    def __init__(
        self,
        me: str,
        nodes: Collection[str],
        heartbeat_interval: float,
        heartbeat_timeout: float,
        now: float,
    ) -> None:
        if me not in nodes:
            raise ValueError(f"node {me!r} is not one of the cluster's nodes")
        if not 0 < heartbeat_interval < heartbeat_timeout:
            raise ValueError("heartbeat_timeout must be longer than heartbeat_interval > 0")
        self.me = me
        self.interval = heartbeat_interval
        self.timeout = heartbeat_timeout
        # presumed live, as if heard now: see the module's docstring
        self.peers = {node: _Peer(last_heard=now) for node in nodes if node != me}
        self.next_heartbeat = now  # the first one goes at once
        self.unknown = 0  # heartbeats from names not in the cluster file
        self.stale = 0  # heartbeats of an older incarnation than the newest heard

    @property
    def live(self) -> frozenset[str]:
        """The live nodes, this one included."""
        return frozenset([self.me, *(n for n, p in self.peers.items() if p.live)])

    @property
    def nodes(self) -> frozenset[str]:
        return frozenset([self.me, *self.peers])

    def incarnation(self, node: str) -> int:
        """The newest incarnation heard from `node` (-1: never heard)."""
        return self.peers[node].incarnation

    def broker(self, node: str) -> str:
        """The lock connections' id of `node`'s newest incarnation ("": never heard)."""
        return self.peers[node].broker

    def silent_for(self, node: str, now: float) -> float:
        """Seconds since `node` was last heard (or since the start, for a
        node never heard)."""
        return now - self.peers[node].last_heard

    def heartbeat_due(self, now: float) -> bool:
        """Whether this node should send its heartbeat now; if so, the next
        one is due an interval later (never a burst after a stall)."""
        if now < self.next_heartbeat:
            return False
        self.next_heartbeat += self.interval
        if self.next_heartbeat <= now:  # the loop stalled: one now, the next an interval on
            self.next_heartbeat = now + self.interval
        return True

    def heard(self, node: str, incarnation: int, broker: str, now: float) -> list[Change]:
        """A heartbeat from `node` arrived at `now`."""
        peer = self.peers.get(node)
        if peer is None:
            if node != self.me:
                self.unknown += 1
            return []
        if incarnation < peer.incarnation:
            self.stale += 1
            return []
        changes: list[Change] = []
        if not peer.live:
            changes.append(Change(ChangeKind.JOINED, node, incarnation, broker))
        elif peer.incarnation >= 0 and incarnation > peer.incarnation:
            changes.append(Change(ChangeKind.RESTARTED, node, peer.incarnation, peer.broker))
        peer.live = True
        peer.last_heard = now
        peer.incarnation = incarnation
        peer.broker = broker
        return changes

    def tick(self, now: float) -> list[Change]:
        """Declare dead every node silent for heartbeat_timeout."""
        changes = []
        for node, peer in sorted(self.peers.items()):
            if peer.live and now - peer.last_heard >= self.timeout:
                peer.live = False
                changes.append(Change(ChangeKind.LEFT, node, peer.incarnation, peer.broker))
        return changes

    def next_timer(self) -> float:
        """When `tick` or `heartbeat_due` may next have something to do."""
        deadlines = [p.last_heard + self.timeout for p in self.peers.values() if p.live]
        return min([self.next_heartbeat, *deadlines])

    def has_quorum(self, now: float | None = None) -> bool:
        """More than half the cluster's nodes are live in this node's view:
        then it may act against a node it believes dead (evict its locks,
        store/shard_evict.py) at once; a node cut off alone never has one.
        Without one, only a dead node's expired PostgreSQL lease allows it
        (flockmq/dead_nodes.py).

        With `now`, a peer counts only if heard within the last half
        timeout. A node cut off from all the others declares them dead one
        by one, each a timeout after its last heartbeat: when the first is
        declared, the others are still live in its view, though as silent
        (measured: the cut-off node of the cluster tests judged the first
        death with a "quorum" and evicted a healthy node; it failed only
        because it could not reach PostgreSQL either). A peer that is live
        in fact was heard within about an interval (the timeout is at least
        two)."""
        if now is None:
            return is_majority(len(self.live), len(self.peers) + 1)
        fresh = self.timeout / 2
        heard = [p for p in self.peers.values() if p.live and now - p.last_heard < fresh]
        return is_majority(1 + len(heard), len(self.peers) + 1)


def is_majority(live: int, nodes: int) -> bool:
    """`live` nodes of `nodes` are a quorum: more than half."""
    return 2 * live > nodes
