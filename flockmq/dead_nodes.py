"""Which dead nodes a cluster survivor may evict from PostgreSQL, and when
(issue 14), sans-IO: membership's changes, this node's quorum and its
latest liveness-lease round in; the evictions to run out. Time is passed
in (`now`, seconds of a monotonic clock). The I/O is elsewhere: the leases'
SQL in store/node_leases.py, the rounds and the evictions on threads of
flockmq/app/cluster_moves.py, the eviction itself store/shard_evict.py.

A node declared dead (LEFT) or restarted (RESTARTED) by membership
(flockmq/membership.py) is pending here until it is evicted, or until it
is heard again with the same incarnation (JOINED: it was only out of
reach; what it holds is its own). Evicting it ends its PostgreSQL
sessions, so its shard locks are free within a second instead of after
the server's keepalives (about 10 s). A pending node is evicted when:

- this node has a quorum (more than half the cluster's nodes live here
  and heard lately, `Membership.has_quorum(now)`) when membership reports
  the change: a node cut off alone never has one. Only then: a quorum regained later (a node cut
  off alone hears one of the others again) says nothing of the nodes it
  has not heard yet since: they are likely alive, only not heard again
  yet (measured: such a node evicted a healthy one in the cluster tests'
  cut links, ending its shard locks); or
- its liveness lease expired: every node's supervisor renews a row of
  `flockmq.node_leases` every heartbeat interval (renewed_at = the
  server's now()), and this node's latest round (its own renewal, then
  every row's age by the server's clock) says the dead node's row is older
  than heartbeat_timeout, AND that round renewed this node's own lease
  (it reaches PostgreSQL now), AND the round is fresh (its round trip took
  less than heartbeat_timeout: an answer that waited in a cut link is
  stale).

The lease is what lets 2 nodes fail over (neither has a quorum once the
other is gone) and a survivor of several deaths at once: PostgreSQL, which
decides shard ownership anyway, is the tie-breaker, judged by its clock
alone (no clock of the nodes is compared). Why it is safe:

- a node cut off from PostgreSQL cannot renew, so it never evicts anyone
  (and its own lease expires: the others evict it);
- two nodes that lose each other but both reach PostgreSQL keep both
  leases fresh: nobody is evicted, each keeps the locks it holds (the
  other's shards wait, as they would without the lease);
- a node that is alive but whose supervisor stalled past the timeout (its
  lease expired) is evicted as a dead one would be: its workers lose their
  locks and its writes are refused by the shard's epoch fence
  (store/shard_fence.py): availability is lost, never an acknowledgement.

A row of a NEWER incarnation than the one that died, still fresh, means
the node restarted and renews again (heard by PostgreSQL, not by us): only
the old incarnation's lock connections go (by its broker id, as for
RESTARTED), never the node's address, which its new sessions share. The
same when a dead node is heard again with a newer incarnation (JOINED
after a restart): its old broker id stays pending. A dead node with no row
(it never renewed: it died at once, or runs a version without leases) is
left to the quorum rule and the server's keepalives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from flockmq.membership import Change, ChangeKind


@dataclass(frozen=True, slots=True)
class Lease:
    """A node's row of flockmq.node_leases, as one round read it."""

    incarnation: int
    broker: str
    age: float  # seconds since it was renewed, by the database server's clock


@dataclass(frozen=True, slots=True)
class LeaseRound:
    """One renewal of this node's lease and the read of every row after it."""

    started: float  # when this node sent it (its own monotonic clock)
    renewed: bool  # this node's own row was renewed (False: no database, or superseded)
    leases: Mapping[str, Lease]  # every node's row, by name (none: never renewed)


@dataclass(frozen=True, slots=True)
class Target:
    """An eviction to run: every session of `broker`'s lock connections,
    and from the node's address too when `by_address`."""

    node: str
    incarnation: int
    broker: str
    by_address: bool
    why: str  # "quorum", "lease expired", "restarted" (for the log)


class DeadNodes:
    def __init__(self, heartbeat_timeout: float) -> None:
        self.timeout = heartbeat_timeout
        # (node, incarnation) -> what to evict of it once allowed
        self.pending: dict[tuple[str, int], Target] = {}
        self._changed: set[tuple[str, int]] = set()  # since the last `due`: a quorum counts

    def changed(self, change: Change) -> None:
        """A change of membership (flockmq/membership.py)."""
        if change.kind == ChangeKind.JOINED:
            for key, target in list(self.pending.items()):
                if key[0] != change.node:
                    continue
                if change.incarnation > target.incarnation:  # restarted while dead
                    self.pending[key] = replace(target, by_address=False)
                    self._changed.add(key)
                else:  # the same node, only out of reach: its sessions are its own
                    del self.pending[key]
            return
        left = change.kind == ChangeKind.LEFT  # RESTARTED: the old broker id only
        key = (change.node, change.incarnation)
        self.pending[key] = Target(change.node, change.incarnation, change.broker, left, "")
        self._changed.add(key)

    def due(self, quorum: bool, round: LeaseRound | None, now: float) -> list[Target]:
        """The evictions allowed now (and no longer pending). `quorum`: this
        node's now, which counts for the changes since the last call only;
        `round`: the lease round that completed since the last call, if
        any (each round is used once, as it completes)."""
        fresh = round is not None and round.renewed and now - round.started < self.timeout
        allowed = []
        changed, self._changed = self._changed, set()
        for key, target in list(self.pending.items()):
            why = "quorum" if quorum and key in changed else ""
            if not why and fresh:
                assert round is not None
                why = self._by_lease(target, round.leases.get(target.node))
            if why:
                del self.pending[key]
                by_address = target.by_address and why != "restarted"
                allowed.append(replace(target, by_address=by_address, why=why))
        return allowed

    def _by_lease(self, target: Target, lease: Lease | None) -> str:
        if lease is None:
            return ""
        if lease.age > self.timeout:
            return "lease expired"
        if lease.incarnation > target.incarnation:
            return "restarted"
        return ""  # renewed lately by the incarnation we lost: it reaches PostgreSQL

    def expiring_in(self, round: LeaseRound) -> float | None:
        """Seconds from `round` until the first lease of a pending node,
        fresh in it, expires (by the server's clock): when asking again
        may evict, rather than at the next interval."""
        waits = [
            self.timeout - lease.age
            for node, _ in self.pending
            if (lease := round.leases.get(node)) is not None and lease.age <= self.timeout
        ]
        return min(waits, default=None)

    def waiting(self) -> list[str]:
        """The nodes pending, for the log."""
        return sorted({node for node, _ in self.pending})
