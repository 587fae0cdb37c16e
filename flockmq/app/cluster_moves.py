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
  uses the same address). Only with a quorum (more than half of the
  cluster's nodes live here): a node cut off alone would otherwise evict
  the healthy majority. Every survivor with a quorum evicts (it is
  idempotent): no election needed.

Evictions are blocking round trips to PostgreSQL: they run on a thread of
their own, one at a time, so `poll` never waits for the database. Their
outcome is logged and counted (`evictions`, `eviction_errors`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from flockmq.app.heartbeats import Heartbeats
from flockmq.cluster import Cluster
from flockmq.curve import CurveKeys
from flockmq.membership import Change, ChangeKind
from flockmq.shard_manager import ShardManager, WorkerActions
from flockmq.store import StoreError
from flockmq.store.shard_evict import Eviction, evict_node

log = logging.getLogger("flockmq.cluster")

Evict = Callable[..., Eviction]  # evict_node's signature: (dsn, *, address, broker, silent_for)


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
    ) -> None:
        """`incarnation`: grows with each start of this node's supervisor
        (its start time in microseconds will do); `broker`: the id naming
        its workers' lock connections (Config.broker_id); `curve`: the
        node's keys (Config.curve) for its heartbeats."""
        self.cluster = cluster
        self.clock = clock
        self.evict = evict
        self.heartbeats = Heartbeats.for_node(cluster, me, incarnation, broker, clock, curve)
        self.membership = self.heartbeats.membership
        self.manager = ShardManager(
            me, cluster.node_names, cluster.shards, cluster.heartbeat_timeout, clock()
        )
        self._evictor = ThreadPoolExecutor(1, thread_name_prefix="flockmq-evict")
        self._first = True
        self.evictions = 0
        self.eviction_errors = 0

    def poll(self) -> WorkerActions:
        """Heartbeats out and in; the shard workers to start and stop now."""
        changes = self.heartbeats.poll()
        now = self.clock()
        for change in changes:
            self._evict_if_dead(change)
        timer = self.manager.next_timer()
        if not (changes or self._first or (timer is not None and now >= timer)):
            return WorkerActions((), ())
        self._first = False
        was_without = self.manager.without_quorum
        actions = self.manager.update(self.membership.live, now)
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

    def _log_quorum(self) -> None:
        """One line when the node loses its quorum, one when it has it again
        (flockmq/shard_manager.py: without one it starts no worker)."""
        live = sorted(self.membership.live)
        if self.manager.without_quorum:
            log.warning(
                "cluster: only %s of %d nodes are live here (no quorum): starting no shard"
                " worker until a majority is",
                live,
                len(self.cluster.node_names),
            )
        else:
            log.warning(
                "cluster: %s of %d nodes live here: a quorum again",
                live,
                len(self.cluster.node_names),
            )

    def _evict_if_dead(self, change: Change) -> None:
        if change.kind == ChangeKind.JOINED:
            return
        if not self.membership.has_quorum():
            log.warning(
                "cluster: node %s %s, but only %s are live here (no quorum):"
                " its PostgreSQL sessions are left to the server's keepalives",
                change.node,
                change.kind.value,
                sorted(self.membership.live),
            )
            return
        # RESTARTED: the old incarnation's lock connections only
        left = change.kind == ChangeKind.LEFT
        address = self.cluster.node(change.node).address if left else ""
        future = self._evictor.submit(
            self.evict,
            self.cluster.postgres_dsn,
            address=address,
            broker=change.broker,
            silent_for=0.0,
        )
        future.add_done_callback(lambda f: self._evicted(change, f))

    def _evicted(self, change: Change, future: Future[Eviction]) -> None:
        try:
            done = future.result()
        except StoreError as e:
            self.eviction_errors += 1
            log.warning("cluster: evicting node %s failed: %s", change.node, e)
            return
        self.evictions += 1
        log.info(
            "cluster: node %s (incarnation %d) evicted: %d sessions ended",
            change.node,
            change.incarnation,
            len(done.ended),
        )

    def close(self) -> None:
        self._evictor.shutdown(wait=False, cancel_futures=True)
        self.heartbeats.close()
