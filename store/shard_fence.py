"""The write fence of a session shard on the PostgreSQL store (issue 14): a
worker that lost its shard's advisory lock (store/shard_locks.py) can no
longer commit anything its successor does not see.

The lock alone does not fence writes: it lives on the holder's own
connection, and the worker's group commits go through another one (the
committer's, store/postgres.py `PostgresWriter`). A lock can be lost (its
backend terminated, PostgreSQL restarted, a network cut) while a commit is in
flight, or in the second before the worker's check notices; a successor that
took the lock and loaded the shard meanwhile would not see that commit, and
the old owner may already have acknowledged it.

So each shard has an epoch, a row of `flockmq.shard_owners` (namespace,
shard) -> epoch:

- `claim_shard`: once a worker holds the advisory lock, and before it loads
  anything, it adds one to the epoch (an UPDATE: it waits for every
  transaction that holds the row FOR SHARE, i.e. every commit of an earlier
  owner in flight) and keeps the new value.
- `check_fence`: every transaction of the owner's writer starts by reading
  the row FOR SHARE and rolls back (`NotOwner`) unless the epoch is still
  its own.

What this guarantees: every commit that succeeds is seen by every later
owner's load. A commit of the old owner either locked the row before the
successor's UPDATE (the UPDATE waits for it to end, and the successor's load
starts after that) or after it (it reads the new epoch, and rolls back). So
an acknowledgement the old owner gives after a successful commit is true:
the successor has the message. A commit that fails gives no acknowledgement
(the runtime sends its failed form, flockmq/runtime.py).

The fence is per shard INDEX, and a session's shard is crc32(client id)
modulo the worker count: two brokers of one namespace with different counts
would fence different shards for the same session (a claim of shard 2 of 3
does not fence the old owner of shard 1 of 2, which served the same client).
So the namespace's worker count is recorded (`flockmq.shard_namespaces`, by
the first claim ever made in it) and `claim_shard` refuses a claim with
another count (`OtherWorkerCount`): that broker stays a standby. To change
the count of a namespace: stop every broker of it, then
`UPDATE flockmq.shard_namespaces SET workers = N WHERE namespace = NS`
(or give the brokers with the new count a new `shard_namespace`).

The cost is one primary-key lookup that locks one row per transaction (a
round trip on the writer's connection): measured in the README.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from .base import StoreError

CLAIM_SQL = (
    "INSERT INTO flockmq.shard_owners AS o (namespace, shard, epoch, owner)"
    " VALUES (%s, %s, 1, %s) ON CONFLICT (namespace, shard)"
    " DO UPDATE SET epoch = o.epoch + 1, owner = excluded.owner RETURNING epoch"
)
RECORD_WORKERS_SQL = (
    "INSERT INTO flockmq.shard_namespaces (namespace, workers) VALUES (%s, %s)"
    " ON CONFLICT (namespace) DO NOTHING"
)
RECORDED_WORKERS_SQL = "SELECT workers FROM flockmq.shard_namespaces WHERE namespace = %s"
CHECK_SQL = "SELECT epoch FROM flockmq.shard_owners WHERE namespace = %s AND shard = %s FOR SHARE"


class NotOwner(StoreError):
    """A commit was refused: another owner claimed the shard since."""


class OtherWorkerCount(StoreError):
    """A claim was refused: the namespace's shards are `recorded` workers'
    shards, the claimant runs `workers`."""

    def __init__(self, namespace: int, recorded: int, workers: int) -> None:
        super().__init__(
            f"namespace {namespace} is sharded for {recorded} workers, this broker runs"
            f" {workers}: a session's shard (crc32 % workers) would differ between brokers"
            " and the write fence would not hold; run the same --workers, or another"
            " shard_namespace (changing it: store/shard_fence.py)"
        )
        self.namespace = namespace
        self.recorded = recorded
        self.workers = workers


@dataclass(frozen=True, slots=True)
class ShardFence:
    """The epoch this process claimed for (namespace, shard)."""

    namespace: int
    shard: int
    epoch: int


def claim_shard(
    conn: psycopg.Connection[Any], namespace: int, shard: int, owner: str, workers: int
) -> ShardFence:
    """A new epoch for the shard of a broker of `workers` workers (autocommit
    `conn`: committed when this returns); OtherWorkerCount, and nothing
    changed, when the namespace is another count's. Only the holder of the
    shard's advisory lock may call it."""
    with conn.transaction():
        conn.execute(RECORD_WORKERS_SQL, (namespace, workers))  # the first claim's count
        recorded = conn.execute(RECORDED_WORKERS_SQL, (namespace,)).fetchone()
        assert recorded is not None
        if int(recorded[0]) != workers:
            raise OtherWorkerCount(namespace, int(recorded[0]), workers)
        row = conn.execute(CLAIM_SQL, (namespace, shard, owner[:200])).fetchone()
    assert row is not None
    return ShardFence(namespace, shard, int(row[0]))


def check_fence(cur: psycopg.Cursor[Any], fence: ShardFence) -> None:
    """Inside the writer's transaction, first: NotOwner unless the epoch is
    still `fence`'s (the row stays share-locked until the transaction ends)."""
    cur.execute(CHECK_SQL, (fence.namespace, fence.shard))
    row = cur.fetchone()
    epoch = None if row is None else int(row[0])
    if epoch != fence.epoch:
        raise NotOwner(
            f"shard {fence.shard} was claimed by another owner"
            f" (epoch {epoch}, this process holds {fence.epoch}): commit refused"
        )
