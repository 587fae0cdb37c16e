"""The supervisor's side of shard moves in a cluster (issue 14): heartbeats
and membership (flockmq/app/heartbeats.py, flockmq/membership.py), the
shard manager (flockmq/shard_manager.py) and the eviction of a dead node's
PostgreSQL sessions (store/shard_evict.py), behind one `poll`.

A cluster node's supervisor makes one at start and calls `poll` on every
pass of its watch loop (~0.1 s); `poll` returns the shard workers to start
and to stop (worker s serves shard s), which the supervisor spawns or
stops (SIGTERM) like its other children (flockmq/app/shard_workers.py).

On a change of the live set:

- the shard manager is asked again (also when a rejoining node's delay is
  over: `ShardManager.next_timer`); without a quorum it starts nothing,
  which is logged once when the quorum is lost and once when it is back;
- a node declared dead (LEFT) is evicted from PostgreSQL, every session
  from its address or of its broker id: also those it opened while it was
  silent (a zombie cut off from the others but not from PostgreSQL: what
  it holds must go; measured in tests/cluster/test_cluster_failover.py, a
  guard on the sessions' age let the locks of a node cut off soon after
  its start wait for the server's keepalives, 10 s). A node that came back
  in the instant between its death and the eviction loses its sessions
  once, and its workers start again as standbys. A node that restarted
  (RESTARTED) is evicted by its old broker id alone (its new incarnation
  uses the same address). When is decided by flockmq/dead_nodes.py: at
  once with a quorum (more than half of the cluster's nodes live here),
  else once the node's liveness lease has expired by PostgreSQL's clock
  while this node's own renewal succeeds (a node cut off alone renews
  nothing, so it evicts nobody; two nodes that only lost each other both
  renew, so neither is evicted). Every survivor allowed to evicts (it is
  idempotent): no election needed.

This node's lease (store/node_leases.py) is renewed every
`heartbeat_interval`, and sooner while a dead node waits for its lease
without a quorum: at once when it dies, then as its lease expires by the
last round's reading (so the lease rule is asked without waiting an
interval).

Evictions and lease renewals are blocking round trips to PostgreSQL: each
kind runs on a thread of its own, one at a time, so `poll` never waits for
the database (and a renewal stuck in a cut link holds up no eviction).
Their outcome is logged and counted (`evictions`, `eviction_errors`,
`lease_rounds`, `lease_errors`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from flockmq.app.heartbeats import Heartbeats
from flockmq.cluster import Cluster
from flockmq.curve import CurveKeys
from flockmq.dead_nodes import DeadNodes, Lease, LeaseRound, Target
from flockmq.membership import Change, ChangeKind
from flockmq.shard_manager import ShardManager, WorkerActions
from flockmq.store import StoreError
from flockmq.store.node_leases import NodeLeases
from flockmq.store.shard_evict import Eviction, evict_node

log = logging.getLogger("flockmq.cluster")

Evict = Callable[..., Eviction]  # evict_node's signature: (dsn, *, address, broker, silent_for)


# after a lease's expiry (the round's age by the server's clock, counted
# from when the answer arrived here: never early), the round that sees it
LEASE_MARGIN = 0.02  # seconds


class Leases(Protocol):
    """store/node_leases.py's NodeLeases, as used here (called on one thread)."""

    def renew(self) -> tuple[bool, dict[str, Lease]]: ...

    def close(self) -> None: ...


class ClusterMoves:
    def __init__(
        self,
        cluster: Cluster,
        me: str,
        incarnation: int,
        broker: str,
        clock: Callable[[], float] = time.monotonic,
        evict: Evict = evict_node,
        curve: CurveKeys | None = None,
        leases: Leases | None = None,
    ) -> None:
        """`incarnation`: grows with each start of this node's supervisor
        (its start time in microseconds will do); `broker`: the id naming
        its workers' lock connections (Config.broker_id); `curve`: the
        node's keys (Config.curve) for its heartbeats; `leases`: this
        node's lease in PostgreSQL (unless given: store/node_leases.py's)."""
        self.cluster = cluster
        self.clock = clock
        self.evict = evict
        self.heartbeats = Heartbeats.for_node(cluster, me, incarnation, broker, clock, curve)
        self.membership = self.heartbeats.membership
        self.manager = ShardManager(
            me, cluster.node_names, cluster.shards, cluster.heartbeat_timeout, clock()
        )
        self.dead = DeadNodes(cluster.heartbeat_timeout)
        self.leases: Leases = leases or NodeLeases(
            cluster.postgres_dsn, cluster.lock_namespace, me, incarnation, broker
        )
        self._evictor = ThreadPoolExecutor(1, thread_name_prefix="flockmq-evict")
        self._leaser = ThreadPoolExecutor(1, thread_name_prefix="flockmq-lease")
        self._round: Future[tuple[bool, dict[str, Lease]]] | None = None
        self._round_started = 0.0
        self._next_round = clock()  # the first one at once
        self._lease_state = ""  # the last one logged: "", "renewed", "superseded", the error
        self._first = True
        # when this node's latest fresh lease renewal was sent (None: none
        # yet): it reaches PostgreSQL while that is within heartbeat_timeout
        self._renewed_at: float | None = None
        self._reached_store = False  # what the shard manager was last told
        self.evictions = 0
        self.eviction_errors = 0
        self.lease_rounds = 0
        self.lease_errors = 0

    def poll(self) -> WorkerActions:
        """Heartbeats out and in; the shard workers to start and stop now."""
        changes = self.heartbeats.poll()
        now = self.clock()
        self._evict_dead(changes, now)
        timer = self.manager.next_timer()
        reaches = self.reaches_store(now)
        flipped = reaches != self._reached_store
        if not (changes or flipped or self._first or (timer is not None and now >= timer)):
            return WorkerActions((), ())
        self._first = False
        self._reached_store = reaches
        was_without = self.manager.without_quorum
        actions = self.manager.update(self.membership.live, now, reaches)
        if self.manager.without_quorum != was_without:
            self._log_quorum()
        if actions:
            log.warning(
                "cluster: live nodes %s; starting shard workers %s, stopping %s",
                sorted(self.membership.live),
                list(actions.start),
                list(actions.stop),
            )
        return actions

    def reaches_store(self, now: float) -> bool:
        """This node renewed its lease lately (a round sent within half the
        heartbeat_timeout succeeded): it reaches PostgreSQL, so its workers
        can serve shards even without a quorum. Half, as for the quorum
        (Membership.has_quorum): a node cut off from everything declares
        the others dead a timeout after it last heard them, and its last
        renewal was sent at most an interval after that, so by then this
        says False and it starts no worker it could not serve."""
        renewed = self._renewed_at
        return renewed is not None and now - renewed < self.cluster.heartbeat_timeout / 2

    def _log_quorum(self) -> None:
        """One line when the node loses its quorum, one when it has it again
        (flockmq/shard_manager.py: without one it starts no worker)."""
        live = sorted(self.membership.live)
        if self.manager.without_quorum:
            log.warning(
                "cluster: only %s of %d nodes are live here (no quorum) and PostgreSQL is out of"
                " reach: starting no shard worker until a majority is, or it is reached",
                live,
                len(self.cluster.node_names),
            )
        else:
            log.warning(
                "cluster: %s of %d nodes live here%s: planning shard workers again",
                live,
                len(self.cluster.node_names),
                "" if self.membership.has_quorum(self.clock()) else " and PostgreSQL reached",
            )

    def _evict_dead(self, changes: list[Change], now: float) -> None:
        for change in changes:
            self.dead.changed(change)
        quorum = self.membership.has_quorum(now)
        round_ = self._lease_round(now)
        if round_ is not None and round_.renewed:
            self._renewed_at = round_.started
        for target in self.dead.due(quorum, round_, now):
            self._evict(target)
        if round_ is not None and round_.renewed and not quorum:
            expiring = self.dead.expiring_in(round_)
            if expiring is not None:  # ask again as the lease expires, not an interval on
                self._next_round = min(self._next_round, now + expiring + LEASE_MARGIN)
        if not quorum and self.dead.pending and any(c.kind != ChangeKind.JOINED for c in changes):
            self._next_round = min(self._next_round, now)  # ask the lease rule now
            log.warning(
                "cluster: only %s are live here (no quorum): %s evicted once their"
                " PostgreSQL leases expire (heartbeat_timeout %.1f s, by the server's clock)",
                sorted(self.membership.live),
                self.dead.waiting(),
                self.cluster.heartbeat_timeout,
            )
        if self._round is None and now >= self._next_round:
            self._round = self._leaser.submit(self.leases.renew)
            self._round_started = now
            self._next_round = now + self.cluster.heartbeat_interval

    def _lease_round(self, now: float) -> LeaseRound | None:
        """The lease round that completed since the last poll, if any."""
        future = self._round
        if future is None or not future.done():
            return None
        self._round = None
        self.lease_rounds += 1
        try:
            renewed, leases = future.result()
        except StoreError as e:
            self.lease_errors += 1
            self._log_lease(str(e), logging.WARNING, "cluster: lease not renewed: %s", e)
            return LeaseRound(self._round_started, False, {})
        if renewed:
            self._log_lease("renewed", logging.INFO, "cluster: lease renewed")
        else:
            self._log_lease(
                "superseded",
                logging.WARNING,
                "cluster: lease held by a newer incarnation of this node: not renewed",
            )
        return LeaseRound(self._round_started, renewed, leases)

    def _log_lease(self, state: str, level: int, message: str, *args: object) -> None:
        if state != self._lease_state:  # every change of state once, not every round
            self._lease_state = state
            log.log(level, message, *args)

    def _evict(self, target: Target) -> None:
        address = self.cluster.node(target.node).address if target.by_address else ""
        log.warning(
            "cluster: evicting node %s (incarnation %d, %s): %s",
            target.node,
            target.incarnation,
            target.why,
            f"address {address}, broker {target.broker}" if address else f"broker {target.broker}",
        )
        future = self._evictor.submit(
            self.evict,
            self.cluster.postgres_dsn,
            address=address,
            broker=target.broker,
            silent_for=0.0,
        )
        future.add_done_callback(lambda f: self._evicted(target, f))

    def _evicted(self, target: Target, future: Future[Eviction]) -> None:
        try:
            done = future.result()
        except StoreError as e:
            self.eviction_errors += 1
            log.warning("cluster: evicting node %s failed: %s", target.node, e)
            return
        self.evictions += 1
        log.info(
            "cluster: node %s (incarnation %d) evicted: %d sessions ended",
            target.node,
            target.incarnation,
            len(done.ended),
        )

    def close(self) -> None:
        self._evictor.shutdown(wait=False, cancel_futures=True)
        self._leaser.submit(self.leases.close)  # on the thread that uses its connection
        self._leaser.shutdown(wait=False)
        self.heartbeats.close()
