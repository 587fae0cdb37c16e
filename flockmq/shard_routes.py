"""Where this process sends a cluster shard's envelopes (issue 14): each
SHARD_AT it receives goes through its shard directory
(flockmq/shard_directory.py), and a shard that moved gets its pipe
repointed to the worker's inboxes on the new node (flockmq/bus.py
`Bus.repoint`), whose endpoints the Config derives as for any process
(flockmq/config.py, flockmq/placement.py: a process has one port offset,
on whichever node runs it).

Used by the routers and the acceptors of a cluster (Config.placement set);
`repoint(shard, config)` is the process's own: it gets the Config with the
shard's new node in its placement, and calls Bus.repoint with that
Config's endpoints of the shard's worker (an acceptor: the work inbox,
with the core inbox for credit; a router: the core inbox).

A malformed SHARD_AT (another node's bug, or a version skew) is counted
(`malformed`) and logged, and changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from flockmq.config import Config
from flockmq.envelopes import Wire, check_shard_at
from flockmq.shard_directory import ShardDirectory

log = logging.getLogger("flockmq.cluster")


class ShardRoutes:
    def __init__(self, config: Config, repoint: Callable[[int, Config], None]) -> None:
        placement = config.placement
        if placement is None:
            raise ValueError("shard routes are a cluster's (Config.placement)")
        self.config = config
        self.repoint = repoint
        self.nodes = len(placement.names)
        self.directory = ShardDirectory(dict(enumerate(placement.worker_nodes)))
        self.malformed = 0

    def on_shard_at(self, e: Wire) -> None:
        try:
            at = check_shard_at(e, self.nodes, self.config.workers)
        except (ValueError, TypeError) as exc:
            self.malformed += 1
            log.warning("dropping a malformed SHARD_AT: %s", exc)
            return
        moved = self.directory.announce(at.shard, at.node, at.epoch)
        if moved is None:
            return
        placement = self.config.placement
        assert placement is not None
        nodes = list(placement.worker_nodes)
        nodes[at.shard] = moved
        self.config = dataclasses.replace(
            self.config, placement=dataclasses.replace(placement, worker_nodes=tuple(nodes))
        )
        log.warning(
            "shard %d is served by node %s now (epoch %d): its pipe repointed",
            at.shard,
            placement.names[moved],
            at.epoch,
        )
        self.repoint(at.shard, self.config)
