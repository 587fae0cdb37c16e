"""Where each shard of a cluster lives now (issue 14), sans-IO: SHARD_AT
announcements in (flockmq/envelopes.py `ShardAt`), the moves to make out.

Every router and acceptor of a cluster keeps one `ShardDirectory`
(flockmq/shard_routes.py) and repoints its pipe to a shard's worker at the
new node for each move it returns (flockmq/bus.py `Bus.repoint`); each
worker keeps one `ShardAnnouncer` (workers/announce.py) and sends what it
returns to every router and acceptor of the cluster.

Rules:

- At start a shard is where the static placement puts it (`home`: every
  node computes the same, flockmq/shard_plan.py `assign_shards` over every
  node), at epoch 0.
- An announcement names the shard's write epoch (store/shard_fence.py),
  which grows with every claim of the shard by any node: the highest epoch
  names the current owner. An announcement with a lower epoch than the one
  known is stale (a late frame, or a re-send of an owner that has since
  lost the shard) and is ignored; the same epoch again is a re-send and
  changes nothing. Counted (`stale`).
- A node index or shard outside the cluster is refused by the envelope's
  check (`check_shard_at`) before it gets here.

`ShardAnnouncer`: a worker announces its shard once it holds the lock and
has claimed its epoch, then again every ANNOUNCE_INTERVAL seconds, so a
process that starts later (or missed a frame while a link was down) learns
where the shard is within that interval.
"""

from __future__ import annotations

from collections.abc import Mapping

from flockmq.envelopes import Kind, ShardAt

ANNOUNCE_INTERVAL = 2.0  # seconds between two re-sends of a worker's SHARD_AT


class ShardDirectory:
    def __init__(self, home: Mapping[int, int]) -> None:
        """`home`: shard -> node index of the static placement, every shard
        of the cluster (0..shards-1)."""
        if sorted(home) != list(range(len(home))):
            raise ValueError("home: every shard 0..shards-1, once")
        self.node: dict[int, int] = dict(home)
        self.epoch: dict[int, int] = {shard: 0 for shard in home}
        self.stale = 0
        self.moves = 0

    def announce(self, shard: int, node: int, epoch: int) -> int | None:
        """A SHARD_AT: the shard's new node when it moved (repoint to it),
        None when nothing changed."""
        known = self.epoch.get(shard)
        if known is None:
            raise ValueError(f"shard {shard} is not one of {len(self.epoch)}")
        if epoch <= known:
            if epoch < known:
                self.stale += 1
            return None
        self.epoch[shard] = epoch
        if self.node[shard] == node:
            return None  # the same node claimed it again (a restarted worker)
        self.node[shard] = node
        self.moves += 1
        return node

    def node_of(self, shard: int) -> int:
        return self.node[shard]


class ShardAnnouncer:
    def __init__(self, shard: int, node: int, interval: float = ANNOUNCE_INTERVAL) -> None:
        self.shard = shard
        self.node = node
        self.interval = interval
        self.epoch = 0  # 0: not claimed yet, nothing to announce
        self.next_at = 0.0

    def claimed(self, epoch: int, now: float) -> ShardAt:
        """The worker claimed its shard at `epoch`: announce it now."""
        self.epoch = epoch
        self.next_at = now + self.interval
        return ShardAt(Kind.SHARD_AT, self.shard, self.node, epoch)

    def tick(self, now: float) -> ShardAt | None:
        """The periodic re-send, when due (never before a claim)."""
        if not self.epoch or now < self.next_at:
            return None
        self.next_at += self.interval
        if self.next_at <= now:  # the loop stalled: one now, the next an interval on
            self.next_at = now + self.interval
        return ShardAt(Kind.SHARD_AT, self.shard, self.node, self.epoch)
