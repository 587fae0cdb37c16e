"""store/shard_evict.py against the tests' own PostgreSQL (tests/postgres.py;
skipped, saying why, where it cannot run): evicting a dead broker ends its
lock connections and only them (another broker's, one whose id merely
begins alike, and the evictor's own are left), so a survivor takes the
shards at once and the dead holder learns it lost them; evicting an address
also ends a writer session that holds a shard's fence row, which would
otherwise hold up the successor's claim. (Between hosts with addresses of
their own: tests/cluster/test_evict_netns.py.)"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from flockmq.store import StoreError, open_store
from flockmq.store.shard_evict import Eviction, evict_node
from flockmq.store.shard_fence import ShardFence, check_fence, claim_shard
from flockmq.store.shard_locks import LocksLost, ShardLocks
from flockmq.workers.serving_broker import lock_node
from tests.postgres import PostgresServer

DEAD, OTHER, SURVIVOR = "hostx:0a0a0a0a0a0a", "hosty:0b0b0b0b0b0b", "hostz:0c0c0c0c0c0c"
NS = 11
TIMEOUT = 20.0


@pytest.fixture
def holders(postgres_dsn: str) -> Iterator[Callable[[str, int], ShardLocks]]:
    opened: list[ShardLocks] = []

    def make(broker: str, worker: int) -> ShardLocks:
        locks = ShardLocks(postgres_dsn, lock_node(broker, worker), namespace=NS)
        opened.append(locks)
        return locks

    yield make
    for locks in opened:
        locks.close()


def test_evicting_a_broker_frees_its_shards_and_only_its_sessions(
    postgres_dsn: str, holders: Callable[[str, int], ShardLocks]
) -> None:
    dead0, dead1 = holders(DEAD, 0), holders(DEAD, 1)
    alike = holders(DEAD + "x", 2)  # an id that merely begins as the dead one's
    other = holders(OTHER, 3)
    survivor = holders(SURVIVOR, 0)
    assert dead0.acquire(0) and dead1.acquire(1) and alike.acquire(2) and other.acquire(3)
    assert survivor.acquire_all(range(4)) == set()

    done = evict_node(postgres_dsn, broker=DEAD)

    assert set(done.ended) == {dead0.backend_pid, dead1.backend_pid}
    assert done.failed == ()
    # pg_terminate_backend waited for the sessions to end: their locks are free now
    assert survivor.acquire_all(range(4)) == {0, 1}
    for dead in (dead0, dead1):
        with pytest.raises(LocksLost):
            dead.check()
    assert alike.check() == {2} and other.check() == {3} and survivor.check() == {0, 1}
    assert evict_node(postgres_dsn, broker="nobody:000000000000") == Eviction((), ())
    # a session younger than the node's silence is not the dead node's: left alone
    again = holders(DEAD, 4)
    assert again.acquire(4)
    assert evict_node(postgres_dsn, broker=DEAD, silent_for=60.0) == Eviction((), ())
    assert again.check() == {4}
    assert evict_node(postgres_dsn) == Eviction((), ())


def test_evicting_an_address_ends_a_writer_that_holds_up_the_successors_claim(
    postgres_dsn: str, postgres_server: PostgresServer
) -> None:
    """The dead owner's writer was inside a fenced commit (its fence row held
    FOR SHARE, store/shard_fence.py) when its host died: the successor's
    claim waits for that session. Ending the sessions of the dead host's
    address (here 127.0.0.1; the successor comes through the server's Unix
    socket, which has no address) lets it go."""
    params = conninfo_to_dict(postgres_dsn)
    local = make_conninfo(postgres_dsn, host=postgres_server.base)
    open_store("postgres", "", "process", dsn=postgres_dsn).close()  # the schema
    with psycopg.connect(postgres_dsn, autocommit=True) as setup:
        assert claim_shard(setup, NS, 0, "dead", 4) == ShardFence(NS, 0, 1)
    writer = psycopg.connect(postgres_dsn)  # not autocommit: the transaction stays open
    claimant = psycopg.connect(local, autocommit=True)
    assert params["host"] == "127.0.0.1"
    try:
        with writer.cursor() as cur:
            check_fence(cur, ShardFence(NS, 0, 1))  # holds the row, as a commit in flight
        started = threading.Event()

        def claim() -> ShardFence:
            started.set()
            return claim_shard(claimant, NS, 0, "successor", 4)

        with ThreadPoolExecutor(1) as pool:
            claimed = pool.submit(claim)
            started.wait(TIMEOUT)
            with pytest.raises(TimeoutError):
                claimed.result(0.5)  # waits for the dead writer's transaction
            done = evict_node(postgres_dsn, address="127.0.0.1")
            assert claimed.result(TIMEOUT) == ShardFence(NS, 0, 2)
        assert writer.info.backend_pid in done.ended and done.failed == ()
        assert claimant.info.backend_pid not in done.ended
        assert _is_dead(writer) and not _is_dead(claimant)
    finally:
        writer.close()
        claimant.close()


def _is_dead(conn: psycopg.Connection[Any]) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    conn.rollback()
    return False


def test_an_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot evict"):
        evict_node("host=127.0.0.1 port=1 dbname=x connect_timeout=2", broker=DEAD)
