"""The shard write fence (store/shard_fence.py) against the tests' own
PostgreSQL (tests/postgres.py; skipped, saying why, where it cannot run):
a commit of an owner whose shard was claimed since is refused whole and
reported; a claim waits for a fenced commit in flight, so the new owner's
load sees it; epochs are per namespace and shard."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pytest

from flockmq.sharding import shard_of
from flockmq.store import Committer, PutMessage, PutSession, open_store
from flockmq.store.postgres import PostgresStore
from flockmq.store.shard_fence import (
    NotOwner,
    OtherWorkerCount,
    ShardFence,
    check_fence,
    claim_shard,
)

TIMEOUT = 20.0
NS = 7
WORKERS = 4  # the count every claim of these tests is made for


def message(seq: int) -> PutMessage:
    return PutMessage("c1", seq, "t", b"m%d" % seq, 1, False, None)


@pytest.fixture
def store(postgres_dsn: str) -> Iterator[PostgresStore]:
    s = open_store("postgres", "", "process", dsn=postgres_dsn)
    assert isinstance(s, PostgresStore)
    s.apply([PutSession("c1", 3600, 5, None, None)])
    yield s
    s.close()


def claim(dsn: str, shard: int = 0, namespace: int = NS) -> ShardFence:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return claim_shard(conn, namespace, shard, "test", WORKERS)


def seqs(store: PostgresStore) -> list[int]:
    (record,) = store.load_sessions(lambda _cid: True)
    return [m.seq for m in record.messages]


def test_epochs_count_up_per_namespace_and_shard(store: PostgresStore, postgres_dsn: str) -> None:
    assert claim(postgres_dsn) == ShardFence(NS, 0, 1)
    assert claim(postgres_dsn) == ShardFence(NS, 0, 2)
    assert claim(postgres_dsn, shard=1) == ShardFence(NS, 1, 1)
    assert claim(postgres_dsn, namespace=NS + 1) == ShardFence(NS + 1, 0, 1)


def test_a_commit_after_another_claim_is_refused_whole(
    store: PostgresStore, postgres_dsn: str
) -> None:
    refused: list[NotOwner] = []
    store.on_not_owner = refused.append
    store.fence = claim(postgres_dsn)
    store.apply([message(1)])
    claim(postgres_dsn)  # another owner
    with pytest.raises(NotOwner, match="shard 0 was claimed by another owner"):
        store.apply([message(2), message(3)])
    assert len(refused) == 1
    assert seqs(store) == [1]


def test_the_committer_reports_the_refusal_and_carries_on(
    store: PostgresStore, postgres_dsn: str
) -> None:
    refused: list[NotOwner] = []
    store.on_not_owner = refused.append
    store.fence = claim(postgres_dsn)
    committer = Committer(store)
    committer.submit([message(1)])
    assert committer.flush_sync(TIMEOUT)
    claim(postgres_dsn)
    committer.submit([message(2)])
    assert committer.flush_sync(TIMEOUT)
    committer.close(TIMEOUT)
    assert [type(e) for e in refused] == [NotOwner]
    assert seqs(store) == [1]


def test_a_claim_waits_for_the_commit_in_flight_and_the_new_owner_sees_it(
    store: PostgresStore, postgres_dsn: str
) -> None:
    """The old owner's transaction passed the fence check before the claim:
    the claim waits for it to end, so a load after the claim sees its rows."""
    fence = claim(postgres_dsn)
    old = psycopg.connect(postgres_dsn, autocommit=True)
    new = psycopg.connect(postgres_dsn, autocommit=True)
    try:
        tx = old.transaction()
        tx.__enter__()
        with old.cursor() as cur:
            check_fence(cur, fence)
            cur.execute(
                "INSERT INTO flockmq.messages (client_id, seq, topic, payload, qos, retain,"
                " props, packet_id, state) VALUES ('c1', 9, 't', 'x', 1, false, NULL, 0, 0)"
            )
        claimer_pid = new.info.backend_pid
        with ThreadPoolExecutor(1) as pool:
            claimed: Future[ShardFence] = pool.submit(claim_shard, new, NS, 0, "successor", WORKERS)
            wait_until_blocked(postgres_dsn, claimer_pid)
            assert not claimed.done()
            tx.__exit__(None, None, None)  # the old owner commits
            assert claimed.result(TIMEOUT).epoch == fence.epoch + 1
        assert seqs(store) == [9], "the new owner's load does not see the commit"
    finally:
        old.close()
        new.close()


def wait_until_blocked(dsn: str, pid: int) -> None:
    """Until the server says backend `pid` waits for a lock."""
    deadline = time.monotonic() + TIMEOUT
    with psycopg.connect(dsn, autocommit=True) as admin:
        while True:
            row = admin.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if row is not None and row[0] == "Lock":
                return
            assert time.monotonic() < deadline, "the claim never waited for the commit"
            threading.Event().wait(0.02)


def test_fence_holds_when_two_brokers_have_different_worker_counts(postgres_dsn: str) -> None:
    """Broker A (--workers 2, the default follows the host's cores) served
    client X on shard 1; broker B (--workers 3) would serve X on shard 2,
    whose claim does not fence A's shard-1 writer. So B's claim is refused
    (the namespace is recorded for 2 workers), B loads nothing, and A's
    commit is safe: nobody else has X's session."""
    client = next(
        c for c in (f"c{i}" for i in range(1000)) if shard_of(c, 2) == 1 and shard_of(c, 3) == 2
    )
    ns = 11
    store_a = open_store("postgres", "", "process", dsn=postgres_dsn)
    assert isinstance(store_a, PostgresStore)
    try:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            store_a.fence = claim_shard(conn, ns, 1, "A worker 1", 2)
            store_a.apply([PutSession(client, 3600, 5, None, None)])
            # A loses its locks (e.g. PostgreSQL restarted); B takes shard 2 first
            with pytest.raises(OtherWorkerCount, match=r"sharded for 2 workers.* runs 3") as got:
                claim_shard(conn, ns, 2, "B worker 2", 3)
            assert (got.value.recorded, got.value.workers) == (2, 3)
            # nothing of B's claim was written: no epoch for shard 2
            row = conn.execute(
                "SELECT count(*) FROM flockmq.shard_owners WHERE namespace = %s AND shard = 2",
                (ns,),
            ).fetchone()
            assert row == (0,)
            # A (2 workers) claims again: the same count is fine
            store_a.fence = claim_shard(conn, ns, 1, "A worker 1 again", 2)
        store_a.apply([PutMessage(client, 1, "t", b"acked", 1, False, None)])
        (record,) = store_a.load_sessions(lambda c: c == client)
        assert [m.payload for m in record.messages] == [b"acked"]
    finally:
        store_a.close()


def test_a_new_namespace_takes_the_count_of_its_first_claim(
    postgres_dsn: str, store: PostgresStore
) -> None:
    """Two claims racing in a new namespace: the first one's count is kept."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        claim_shard(conn, 12, 0, "B worker 0", 3)
        with pytest.raises(OtherWorkerCount):
            claim_shard(conn, 12, 0, "A worker 0", 2)
        claim_shard(conn, 13, 0, "A worker 0", 2)  # another namespace: its own count
