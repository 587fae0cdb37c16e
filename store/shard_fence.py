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
CHECK_SQL = "SELECT epoch FROM flockmq.shard_owners WHERE namespace = %s AND shard = %s FOR SHARE"


class NotOwner(StoreError):
    """A commit was refused: another owner claimed the shard since."""


@dataclass(frozen=True, slots=True)
class ShardFence:
    """The epoch this process claimed for (namespace, shard)."""

    namespace: int
    shard: int
    epoch: int


def claim_shard(
    conn: psycopg.Connection[Any], namespace: int, shard: int, owner: str
) -> ShardFence:
    """A new epoch for the shard (autocommit `conn`: committed when this
    returns). Only the holder of the shard's advisory lock may call it."""
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
