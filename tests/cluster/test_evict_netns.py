"""Evicting a dead host from PostgreSQL (store/shard_evict.py) between
network namespaces: a host holds a shard's lock and, as a commit in flight
would, its fence row; its link goes down (PostgreSQL sees nothing: the
sessions just go silent); a survivor that evicts the host's address takes
the lock and claims the shard at once, instead of after the server's
keepalives (lock connection, ~10 s) or never (the writer's session, which
has no keepalives of its own). The time from the cut to the claim is
printed, not asserted."""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg

from flockmq.store import open_store
from flockmq.store.shard_evict import evict_node
from flockmq.store.shard_fence import ShardFence, claim_shard
from flockmq.store.shard_locks import ShardLocks

from .conftest import MakeHosts
from .lines import ChildLines

NS = 12
HOLDER = """
import sys, psycopg
from flockmq.store.shard_fence import ShardFence, check_fence, claim_shard
from flockmq.store.shard_locks import ShardLocks
dsn, ns = sys.argv[1], int(sys.argv[2])
locks = ShardLocks(dsn, "deadhost:000000000000 worker 0", namespace=ns)
assert locks.acquire(0)
fence = claim_shard(locks.conn, ns, 0, "dead", 4)
writer = psycopg.connect(dsn)
check_fence(writer.cursor(), fence)  # the fence row held, as by a commit in flight
print("holding", fence.epoch, flush=True)
sys.stdin.read()
"""


def test_a_survivor_evicting_a_cut_off_host_claims_its_shard_at_once(
    netns_hosts: MakeHosts, netns_postgres_dsn: str
) -> None:
    (dead,) = netns_hosts("x")
    open_store("postgres", "", "process", dsn=netns_postgres_dsn).close()  # the schema
    holder = ChildLines(
        dead.popen(
            [sys.executable, "-c", HOLDER, netns_postgres_dsn, str(NS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
    )
    survivor = ShardLocks(netns_postgres_dsn, "survivor:000000000000 worker 0", namespace=NS)
    try:
        assert holder.expect("holding", 60) == "holding 1"
        assert not survivor.acquire(0)
        dead.link_down()
        cut = time.monotonic()
        done = evict_node(netns_postgres_dsn, address=dead.address)
        assert len(done.ended) == 2 and done.failed == ()  # the lock's session and the writer's
        assert survivor.acquire(0)
        assert survivor.conn is not None
        with psycopg.connect(netns_postgres_dsn, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '5s'")  # a claim held up by the dead writer fails
            assert claim_shard(conn, NS, 0, "survivor", 4) == ShardFence(NS, 0, 2)
        print(f"\nlink down -> evicted, locked and claimed in {time.monotonic() - cut:.2f} s")
    finally:
        survivor.close()
        holder.stop()
