"""Which session shards a node of a cluster should own (issue 14), sans-IO:
the live nodes, the shard count and what this node holds in, a plan out.

Wired statically (issue 14, phase 1): a cluster places worker s on the node
`assign_shards(every node of the cluster file, shards)` names
(flockmq/cluster.py `Cluster.placement`), every node taken as live; that
worker holds the shard with the lock holder beside this module
(store/shard_locks.py, through workers/ownership.py). When the live set
changes, the shard manager (flockmq/shard_manager.py) computes
`assign_shards` over the live nodes and starts and stops workers
accordingly; `plan_shards` is its per-lock form, not used by the broker.

The target is one function of (live nodes, shard count) that every node
computes alike, with no message between them (`assign_shards`):

- fair: each node's quota is `shards // n` or one more (the first
  `shards % n` nodes in name order get the extra one), and every shard has
  exactly one target owner;
- stable: the same inputs give the same target, so a node that holds its
  target gets an empty plan; and each shard prefers its nodes in a
  rendezvous (highest random weight) order of its own;
- sticky (given `every`, the cluster's nodes): a live node keeps the
  shards the full placement (every node live) gives it, up to its quota
  among the live nodes, which is never less than its share of the full
  placement in practice (fewer nodes, larger quotas). So a node that dies
  moves its own shards only, never one between two survivors (a moved
  shard disconnects its clients), and a node that comes back gets exactly
  its own shards back;
- orphans taken: a dead node is not in the live set, so its shards go to the
  survivors, each to the first of its rendezvous order with room in its quota.

`plan_shards` compares the target with what the node holds: try to acquire
what it lacks, release what is now another's. Ownership itself is decided by
PostgreSQL's advisory locks, never by this plan: while two nodes' live sets
differ, both may want a shard, and only one gets its lock. The other keeps
trying at every round and gets it once the holder releases it (or dies).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass

MAX_SHARDS = 4096  # a cluster has tens of shards; these bound the work of a plan
MAX_NODES = 256
MAX_NODE_NAME_BYTES = 255


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """`target`: the shards this node should own; `acquire`: those it should
    try to lock (target, not held), lowest first; `release`: those it holds
    and should unlock (held, now another node's target; or out of range)."""

    target: frozenset[int]
    acquire: tuple[int, ...]
    release: tuple[int, ...]

    @property
    def settled(self) -> bool:
        return not self.acquire and not self.release


def _weight(node: str, shard: int) -> int:
    """The rendezvous weight of `node` for `shard`: stable across processes,
    hosts and Python versions (hash() is salted per process)."""
    digest = hashlib.blake2b(f"{shard}\0{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _check(nodes: Collection[str], shards: int) -> None:
    if not 0 < shards <= MAX_SHARDS:
        raise ValueError(f"shard count {shards}: must be 1..{MAX_SHARDS}")
    if len(nodes) > MAX_NODES:
        raise ValueError(f"{len(nodes)} nodes: at most {MAX_NODES}")
    for node in nodes:
        if not node or len(node.encode()) > MAX_NODE_NAME_BYTES:
            raise ValueError(f"node name {node[:40]!r}: 1..{MAX_NODE_NAME_BYTES} bytes")


def quotas(nodes: Iterable[str], shards: int) -> dict[str, int]:
    """How many shards each node owns: `shards // n`, one more for the first
    `shards % n` nodes in name order."""
    ordered = sorted(set(nodes))
    base, extra = divmod(shards, len(ordered))
    return {node: base + (1 if rank < extra else 0) for rank, node in enumerate(ordered)}


def assign_shards(
    nodes: Collection[str], shards: int, every: Collection[str] | None = None
) -> dict[str, frozenset[int]]:
    """Every live node's target shards (every node computes the same).

    `every`: all the cluster's nodes (None: `nodes`, the full placement).
    Each live node keeps its shards of the full placement, up to its quota
    (the ones it prefers most, if it has more); each other shard, in order,
    goes to the first live node of its own rendezvous order that is under
    its quota. O(shards * nodes * log nodes)."""
    _check(nodes, shards)
    if not nodes:
        return {}
    left = quotas(nodes, shards)
    ordered = sorted(left)
    owned: dict[str, set[int]] = {node: set() for node in ordered}
    placed: set[int] = set()
    if every is not None and set(every) != set(left):
        full = assign_shards(set(every) | set(left), shards)
        for node in ordered:
            mine = sorted(full[node], key=lambda s: _weight(node, s), reverse=True)
            keep = mine[: left[node]]
            owned[node].update(keep)
            placed.update(keep)
            left[node] -= len(keep)
    for shard in range(shards):
        if shard in placed:
            continue
        for node in sorted(ordered, key=lambda n: _weight(n, shard), reverse=True):
            if left[node]:
                left[node] -= 1
                owned[node].add(shard)
                break
    return {node: frozenset(got) for node, got in owned.items()}


def plan_shards(
    me: str,
    live: Collection[str],
    shards: int,
    held: Collection[int],
    every: Collection[str] | None = None,
) -> ShardPlan:
    """What node `me` should do, holding `held`, with `live` the nodes it
    believes alive (`me` counts as live whether or not it is listed: it is
    the one asking); `every`: as for assign_shards."""
    nodes = set(live) | {me}
    target = assign_shards(nodes, shards, every)[me]
    have = set(held)
    return ShardPlan(
        target=target,
        acquire=tuple(sorted(target - have)),
        release=tuple(sorted(have - target)),
    )
