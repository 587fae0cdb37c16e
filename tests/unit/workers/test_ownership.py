"""ShardOwnership against the tests' own PostgreSQL (tests/postgres.py;
skipped, saying why, where it cannot run): `close` (the loop's thread, at
a clean stop) never closes the lock connection under a claim in flight on
the executor's thread, and no claim starts after it."""

from __future__ import annotations

import threading
from collections import Counter

import psycopg

from flockmq.config import Config
from flockmq.store import open_store
from flockmq.store.shard_fence import ShardFence, claim_shard
from flockmq.workers.ownership import ShardOwnership
from tests.unit.store.test_shard_fence import TIMEOUT, wait_until_blocked

NS = 21


def test_close_waits_for_a_claim_in_flight_and_then_releases_the_lock(postgres_dsn: str) -> None:
    open_store("postgres", "", "process", dsn=postgres_dsn).close()  # the schema
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        claim_shard(conn, NS, 0, "an earlier owner", 2)  # the row the claim updates
    config = Config(
        workers=2, postgres_dsn=postgres_dsn, shard_namespace=NS, broker_id="host:0123456789ab"
    )
    ownership = ShardOwnership(config, 0, Counter())
    claimed: list[ShardFence | None] = []
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            claimed.append(ownership._try_claim())
        except BaseException as e:  # the test reports it
            errors.append(e)

    blocker = psycopg.connect(postgres_dsn)  # an earlier owner's commit in flight
    try:
        blocker.execute(
            "SELECT epoch FROM flockmq.shard_owners WHERE namespace = %s AND shard = 0 FOR SHARE",
            (NS,),
        )
        claimer = threading.Thread(target=claim)
        claimer.start()
        wait_until_blocked(postgres_dsn, _backend_when_connected(ownership))
        closer = threading.Thread(target=ownership.close)
        closer.start()
        closer.join(0.5)
        assert closer.is_alive(), "close did not wait for the claim in flight"
        assert ownership.locks.conn is not None and not ownership.locks.conn.closed
        blocker.rollback()  # the earlier owner's commit ends: the claim goes on
        claimer.join(TIMEOUT)
        closer.join(TIMEOUT)
        assert not claimer.is_alive() and not closer.is_alive()
    finally:
        blocker.close()
    assert errors == [] and len(claimed) == 1 and claimed[0] is not None
    assert ownership.locks.conn is None  # closed, after the claim
    with psycopg.connect(postgres_dsn, autocommit=True) as other:  # the lock is free again
        got = other.execute("SELECT pg_try_advisory_lock(%s, 0)", (NS,)).fetchone()
        assert got == (True,)
    assert ownership._try_claim() is None and ownership.locks.conn is None  # never again


def _backend_when_connected(ownership: ShardOwnership) -> int:
    """The lock connection's server process, once the claim has opened it."""
    done = threading.Event()
    for _ in range(int(TIMEOUT / 0.02)):
        pid = ownership.locks.backend_pid
        if pid is not None:
            return pid
        done.wait(0.02)
    raise AssertionError("the claim never connected")
