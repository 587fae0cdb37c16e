"""Which shard worker processes a cluster node runs (issue 14), sans-IO:
the live set (flockmq/membership.py) and the time in, the workers to start
and to stop out.

A cluster node's supervisor makes one at start (flockmq/app/cluster_moves.py),
calls `update` on every change of the live set and at `next_timer`, and
spawns a worker process for each shard in `start` (worker s serves shard s:
it waits as a standby until it holds the shard's lock, workers/ownership.py)
and stops (SIGTERM: it releases the lock on its way out) each in `stop`
(flockmq/app/shard_workers.py).

The target is shard_plan.py's `assign_shards` (sticky: survivors keep their
shards, only a dead node's move) over the nodes "in the
plan", the same function on every node. Who is in the plan:

- At start, every node of the cluster file (membership presumes them all
  live for one timeout): the placement is the static one until a node is
  declared dead, so nodes starting one after the other do not take each
  other's shards.
- A node declared dead (silent for heartbeat_timeout: membership decides
  that, and only after the whole timeout) leaves the plan at once: its
  shards are started on the survivors.
- A node that comes back (JOINED) enters the plan only once it has been
  live for `rejoin_delay` without a break: a flapping link (up for less
  than the delay, then dead again) moves nothing back, and each node's
  shards move at most once per death. Meanwhile the returning node plans
  with everyone it hears and starts workers for its shards, which wait as
  standbys until the survivors stop theirs.

- A node that sees no quorum (fewer than a majority of the cluster's
  nodes live, itself included: flockmq/membership.py `is_majority`) in a
  cluster of 3 nodes or more, and whose latest PostgreSQL lease renewal
  did not succeed lately (`reaches_store`: flockmq/app/cluster_moves.py),
  changes nothing: it is cut off from the others and from PostgreSQL, so
  its workers could not serve any shard (they would crash at start, again
  and again), and the survivors with a quorum take its shards (and evict
  its locks: the same rule). It keeps the workers it runs. A node without
  a quorum that does reach PostgreSQL (the majority is dead, or only the
  links between the nodes are cut) plans as usual: its workers for the
  dead nodes' shards take them once their locks are free (the dead nodes'
  leases expired: flockmq/dead_nodes.py), or wait as standbys while a
  live owner holds them. With 2 nodes no node alone has a quorum: there
  the survivor always plans as usual (the locks decide).

This node is always in its own plan. Ownership itself is decided by the
shards' PostgreSQL advisory locks, never by this plan: while two nodes'
views differ (a death seen a heartbeat earlier by one, a rejoin delay not
over yet on another), both may run a worker for a shard, and only the one
holding the lock serves it; the other waits as a standby.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from flockmq.membership import is_majority
from flockmq.shard_plan import assign_shards

# From this many nodes, a node without a quorum takes no shards (see above).
QUORUM_FROM_NODES = 3


@dataclass(frozen=True, slots=True)
class WorkerActions:
    """Shards whose worker to start, and whose worker to stop, lowest first."""

    start: tuple[int, ...]
    stop: tuple[int, ...]

    def __bool__(self) -> bool:
        return bool(self.start or self.stop)


class ShardManager:
    def __init__(
        self, me: str, nodes: Collection[str], shards: int, rejoin_delay: float, now: float
    ) -> None:
        if me not in nodes:
            raise ValueError(f"node {me!r} is not one of the cluster's nodes")
        if rejoin_delay < 0:
            raise ValueError("rejoin_delay must be >= 0")
        self.me = me
        self.nodes = frozenset(nodes)
        self.shards = shards
        self.rejoin_delay = rejoin_delay
        self.in_plan: set[str] = set(self.nodes)  # presumed live at start
        self.joining: dict[str, float] = {}  # live again since, not yet in the plan
        self.running: frozenset[int] = frozenset()
        self.without_quorum = False  # the last update saw no quorum: it changed nothing
        assign_shards(self.nodes, shards)  # checks the names and the count now

    @property
    def target(self) -> frozenset[int]:
        """The shards this node should run a worker for, by its current plan."""
        return assign_shards(self.in_plan | {self.me}, self.shards, self.nodes)[self.me]

    def assignment(self) -> dict[int, str]:
        """Every shard's node by this node's current plan (shard -> name)."""
        plan = assign_shards(self.in_plan | {self.me}, self.shards, self.nodes)
        return {shard: node for node, owned in plan.items() for shard in owned}

    def update(
        self, live: Collection[str], now: float, reaches_store: bool = False
    ) -> WorkerActions:
        """The live set as membership has it now: what to start and stop
        (also what `running` becomes, as if done). `reaches_store`: this
        node renewed its PostgreSQL lease lately (see the module docstring)."""
        live_set = (set(live) & self.nodes) | {self.me}
        for node in list(self.joining):
            if node not in live_set:
                del self.joining[node]  # dead again before its delay was over
        nodes = len(self.nodes)
        self.without_quorum = (
            nodes >= QUORUM_FROM_NODES
            and not is_majority(len(live_set), nodes)
            and not reaches_store
        )
        if self.without_quorum:
            return WorkerActions((), ())  # the plan stays as it was: see the module docstring
        for node in self.in_plan - live_set:
            self.in_plan.discard(node)  # dead: its shards move now
        for node in live_set - self.in_plan:
            since = self.joining.setdefault(node, now)
            if now - since >= self.rejoin_delay:
                del self.joining[node]
                self.in_plan.add(node)
        target = self.target
        actions = WorkerActions(
            start=tuple(sorted(target - self.running)),
            stop=tuple(sorted(self.running - target)),
        )
        self.running = target
        return actions

    def next_timer(self) -> float | None:
        """When a joining node enters the plan (call `update` then), if any."""
        if not self.joining:
            return None
        return min(self.joining.values()) + self.rejoin_delay
