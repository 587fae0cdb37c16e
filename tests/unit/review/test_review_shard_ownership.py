"""Review of issue 14 (shard ownership): failing tests for the findings.

Each test states the property the README / docstrings promise and fails on
main at 11ffcd0."""

from __future__ import annotations

import psycopg
import pytest

from flockmq.sharding import shard_of
from flockmq.store import PutMessage, PutSession, open_store
from flockmq.store.postgres import PostgresStore
from flockmq.store.shard_fence import NotOwner, claim_shard
from flockmq.store.shard_locks import ShardLocks
from flockmq.workers.serving_broker import broker_id, lock_node, may_take, must_yield
from tests.postgres import PostgresServer


# --- finding 1: ShardLocks.holders() sees the advisory locks of EVERY database -------------
def test_holders_of_another_database_do_not_count(postgres_server: PostgresServer) -> None:
    """Advisory locks are per database (shard_locks.py docstring: only two
    clusters sharing ONE database need different namespaces). Two unrelated
    brokers, each on its own database of one server, default namespace:
    the second must not stay a standby because of the first."""
    db_a, db_b = postgres_server.create_database(), postgres_server.create_database()
    a = ShardLocks(postgres_server.dsn(db_a), lock_node("hostA:1111", 0))
    a1 = ShardLocks(postgres_server.dsn(db_a), lock_node("hostA:1111", 1))
    b = ShardLocks(postgres_server.dsn(db_b), lock_node("hostB:2222", 0))
    try:
        assert a.acquire(0) and a1.acquire(1)  # broker A serves its 2 shards
        assert b.acquire(0)  # per database: B gets "the same" lock
        # Each broker sees the other database's holders as its rivals (pg_locks
        # is cluster-wide; the query has no `database =` filter). For shard 0
        # json_object_agg keeps ONE of the two holders:
        seen_by_b, seen_by_a = b.holders(), a.holders()
        assert seen_by_b == {0: "flockmq shards hostB:2222 worker 0"}, (
            f"B sees {seen_by_b}: may_take={may_take('hostB:2222', seen_by_b)}"
        )
        assert not must_yield("hostA:1111", seen_by_a), f"A sees {seen_by_a}: A gives way"
    finally:
        a.close()
        a1.close()
        b.close()
        postgres_server.drop_database(db_a)
        postgres_server.drop_database(db_b)


# --- finding 2: broker ids collide ---------------------------------------------------------
@pytest.mark.parametrize(
    "host_a, host_b",
    [
        ("mqtt-node-production-01", "mqtt-node-production-02"),  # equal in their first 20
        ("raspberrypi", "raspberrypi"),  # cloned images, same data_dir default
    ],
)
def test_two_hosts_have_two_broker_ids(host_a: str, host_b: str) -> None:
    """Two brokers with the same id count each other's shards as their own:
    may_take is always true, must_yield never fires, the shards split
    between the brokers (the split serving_broker.py exists to prevent)."""
    a = broker_id("/var/lib/flockmq", host=host_a)
    b = broker_id("/var/lib/flockmq", host=host_b)
    assert a != b
    holders = {0: "flockmq shards " + lock_node(a, 0)}
    assert not may_take(b, holders), "broker B takes shard 1 while broker A serves shard 0"


# --- finding 3: the fence is per shard INDEX; a session moves when `workers` differs --------
def test_fence_holds_when_two_brokers_have_different_worker_counts(postgres_dsn: str) -> None:
    """Broker A (--workers 2, the default follows the host's cores) served
    client X on shard 1; broker B (--workers 3) serves X on shard 2. B's
    claim of shard 2 does not fence A's shard-1 writer: A's commit for X
    after B's load succeeds (A acknowledges it) and B never sees it."""
    client = next(
        c for c in (f"c{i}" for i in range(1000)) if shard_of(c, 2) == 1 and shard_of(c, 3) == 2
    )
    ns = 11
    store_a = open_store("postgres", "", "process", dsn=postgres_dsn)
    store_b = open_store("postgres", "", "process", dsn=postgres_dsn)
    assert isinstance(store_a, PostgresStore) and isinstance(store_b, PostgresStore)
    try:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            store_a.fence = claim_shard(conn, ns, 1, "A worker 1")
            store_a.apply([PutSession(client, 3600, 5, None, None)])
            # A loses its locks (e.g. PostgreSQL restarted); B takes shard 2 first
            store_b.fence = claim_shard(conn, ns, 2, "B worker 2")
        loaded = store_b.load_sessions(lambda c: shard_of(c, 3) == 2)
        assert [r.client_id for r in loaded] == [client]
        # A's worker 1 (not yet noticed, < 1 s) commits X's queued QoS 1 message:
        try:
            store_a.apply([PutMessage(client, 1, "t", b"acked", 1, False, None)])
        except NotOwner:
            return  # fenced: fine
        pytest.fail(
            "A's commit for a session B already loaded was accepted: acked, never delivered"
        )
    finally:
        store_a.close()
        store_b.close()


# --- finding 4: a standby broker's router deletes the serving broker's retained message -----
def test_standby_routers_stale_expiry_does_not_delete_a_newer_retained(postgres_dsn: str) -> None:
    """Broker B (standby) started while topic T held m1 with a message expiry.
    Then a client of broker A (serving) replaced T with m2, no expiry: PUBACKed
    after its commit. When B's router's stale copy of m1 expires, it deletes
    T by topic from the shared store: m2 is gone from PostgreSQL (and B's
    router never saw m2 anyway: it loads retained messages only at start)."""
    import time

    from flockmq.message_expiry import pack_stored_props
    from flockmq.router.router import Router
    from flockmq.store import PutRetained

    store = open_store("postgres", "", "process", dsn=postgres_dsn)
    try:
        deadline = time.time() + 60
        store.apply([PutRetained("T", b"m1", 1, pack_stored_props(None, deadline))])
        router_b = Router()  # B's router at its start
        router_b.load_retained(store.load_retained())
        store.apply([PutRetained("T", b"m2", 1, None)])  # A's router: m2 acknowledged
        router_b.expire_retained(deadline + 1)  # B's tick, a minute later
        ops, _later = router_b.take_durable()
        if ops:
            store.apply(ops)  # B's committer (routers commit unfenced)
        assert [(r.topic, r.payload) for r in store.load_retained()] == [("T", b"m2")]
    finally:
        store.close()
