"""The shard workers a cluster node's supervisor runs as shards move
(issue 14): ClusterMoves (flockmq/app/cluster_moves.py: heartbeats,
membership, the shard manager, evictions) decides; this starts and stops
the supervisor's worker children accordingly.

- Start: a worker child for the shard (worker s serves shard s), unless one
  runs already; a child that was being stopped is kept instead (it exits,
  and the supervisor restarts it as any child). The new worker waits as a
  standby until it holds the shard's lock (workers/ownership.py), then
  announces the shard (workers/announce.py).
- Stop: SIGTERM (the worker releases the lock on its way out), and the
  child is `retiring`: the supervisor does not restart it, and forgets it
  once it has exited.
- Before either, the configuration file the children read at start is
  written again with this node's current placement (Config.placement
  `worker_nodes`: every shard on the node this node's plan puts it): a
  worker started for a shard that moved here binds its inboxes on this
  node's address, and a child (re)started later knows where each shard is
  now (it learns later moves from SHARD_AT, flockmq/shard_routes.py).
- On every poll: which routers are live, to this node's workers and router
  (flockmq/app/routers_live.py: on a change, and every second).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

import zmq

from flockmq.app.cluster_moves import ClusterMoves
from flockmq.app.routers_live import RoutersLiveSender
from flockmq.cluster import Cluster
from flockmq.config import ConfigError

if TYPE_CHECKING:
    from flockmq.app.supervisor import Child, Supervisor

log = logging.getLogger("flockmq.app.supervisor")


class ShardWorkers:
    def __init__(self, supervisor: Supervisor, cluster: Cluster) -> None:
        placement = supervisor.config.placement
        assert placement is not None, "a cluster node's supervisor only"
        self.supervisor = supervisor
        self.me = placement.names[placement.node]
        # a new incarnation at each start of the supervisor: its start, in µs
        try:
            self.moves = ClusterMoves(
                cluster,
                self.me,
                time.time_ns() // 1000,
                supervisor.config.broker_id,
                curve=supervisor.config.curve,
            )
        except zmq.ZMQError as exc:  # before any child is spawned: exit 2, saying why
            endpoint = cluster.node(self.me).heartbeat_endpoint()
            raise ConfigError(f"cluster: cannot bind the heartbeat port {endpoint}: {exc}") from exc
        self.routers_live = RoutersLiveSender()

    def poll(self) -> None:
        actions = self.moves.poll()
        # after the placement is written: to the workers this node runs now
        if actions:
            self._write_placement()
        self.routers_live.poll(self.supervisor.config, self.moves.membership.live)
        if not actions:
            return
        for shard in actions.stop:
            self._stop(shard)
        for shard in actions.start:
            self._start(shard)

    def _worker(self, shard: int) -> Child | None:
        for child in self.supervisor.children:
            if child.role == "worker" and child.index == shard:
                return child
        return None

    def _start(self, shard: int) -> None:
        from flockmq.app.supervisor import Child

        child = self._worker(shard)
        if child is not None:
            child.retiring = False  # kept: restarted by the supervisor if it exits
            return
        child = Child("worker", shard)
        self.supervisor.children.append(child)
        self.supervisor.spawn(child)
        log.warning("cluster: started worker %d (its shard moved to this node)", shard)

    def _stop(self, shard: int) -> None:
        child = self._worker(shard)
        if child is None:
            return
        child.retiring = True
        if child.proc is None:
            self.supervisor.children.remove(child)
            return
        with contextlib.suppress(ProcessLookupError):
            child.proc.send_signal(signal.SIGTERM)
        log.warning("cluster: stopping worker %d (its shard moves to another node)", shard)

    def _write_placement(self) -> None:
        config = self.supervisor.config
        placement = config.placement
        assert placement is not None
        assignment = self.moves.manager.assignment()
        nodes = tuple(placement.names.index(assignment[s]) for s in range(config.workers))
        config.placement = dataclasses.replace(placement, worker_nodes=nodes)
        path = self.supervisor.config_path
        with open(f"{path}.new", "w", encoding="utf-8") as fh:
            fh.write(config.to_json())
        os.replace(f"{path}.new", path)  # a child starting now reads one whole file

    def close(self) -> None:
        self.routers_live.close()
        self.moves.close()
