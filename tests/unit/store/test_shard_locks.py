"""store/shard_locks.py against the tests' own PostgreSQL (tests/postgres.py;
skipped, saying why, where it cannot run): two holders on their own
connections never own one shard; a holder whose connection is closed,
terminated (pg_terminate_backend) or whose process is killed frees its
shards for the other, and learns it lost them; keys in their own namespace;
with the planner (flockmq/shard_plan.py), survivors take a dead node's shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from flockmq.shard_plan import plan_shards
from flockmq.store.postgres import SERVER_KEEPALIVES
from flockmq.store.shard_locks import NAMESPACE, LocksLost, ShardLocks
from flockmq.workers.serving_broker import lock_node, may_take, must_yield
from tests.postgres import PostgresServer

TIMEOUT = 20.0


def wait_until(done: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll `done` (an event on the server: a backend gone, a lock free)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def holders(postgres_dsn: str) -> Iterator[Callable[[str], ShardLocks]]:
    opened: list[ShardLocks] = []

    def make(node: str) -> ShardLocks:
        locks = ShardLocks(postgres_dsn, node)
        opened.append(locks)
        return locks

    yield make
    for locks in opened:
        locks.close()


def terminate(dsn: str, pid: int) -> None:
    """End a backend as PostgreSQL does when a node's connection dies,
    waiting (up to 10 s, on the server) until it is gone."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        row = admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone()
        assert row == (True,)


def test_two_holders_never_own_the_same_shard(holders: Callable[[str], ShardLocks]) -> None:
    a, b = holders("a"), holders("b")
    assert a.acquire_all(range(3)) == {0, 1, 2}
    assert b.acquire_all(range(6)) == {3, 4, 5}
    assert not a.acquire(3) and not a.acquire(5)
    assert a.acquire(1)  # already held: no second lock stacked on the session
    assert a.check() == {0, 1, 2} and b.check() == {3, 4, 5}
    assert a.backend_pid != b.backend_pid


def test_a_released_shard_is_taken_by_the_other(holders: Callable[[str], ShardLocks]) -> None:
    a, b = holders("a"), holders("b")
    a.acquire_all([0, 1])
    assert a.release(1)
    assert not a.release(1)  # not held any more
    assert b.acquire(1) and not b.acquire(0)
    assert a.check() == {0}


def test_closing_a_holder_frees_its_shards(holders: Callable[[str], ShardLocks]) -> None:
    a, b = holders("a"), holders("b")
    a.acquire_all(range(4))
    assert b.acquire_all(range(4)) == set()
    a.close()
    # the server ends the session's locks with the session: wait for that
    wait_until(lambda: b.acquire_all(range(4)) == {0, 1, 2, 3}, "a's locks to end")


def test_a_terminated_connection_frees_the_shards_and_its_holder_knows(
    holders: Callable[[str], ShardLocks], postgres_dsn: str
) -> None:
    a, b = holders("a"), holders("b")
    a.acquire_all([0, 1, 2])
    pid = a.backend_pid
    assert pid is not None
    terminate(postgres_dsn, pid)
    wait_until(lambda: b.acquire_all([0, 1, 2]) == {0, 1, 2}, "b to take a's shards")
    with pytest.raises(LocksLost) as lost:
        a.check()
    assert lost.value.shards == {0, 1, 2}
    assert a.held == set() and a.backend_pid is None
    # a connects again, and finds its shards taken
    assert a.acquire_all([0, 1, 2, 3]) == {3}
    assert a.backend_pid not in (None, pid)


def test_a_lost_connection_is_seen_by_the_next_acquire(
    holders: Callable[[str], ShardLocks], postgres_dsn: str
) -> None:
    a = holders("a")
    a.acquire(7)
    pid = a.backend_pid
    assert pid is not None
    terminate(postgres_dsn, pid)
    with pytest.raises(LocksLost) as lost:
        a.acquire(8)
    assert lost.value.shards == {7}
    assert a.acquire(8)  # connected again


def test_a_killed_node_process_frees_its_shards(
    holders: Callable[[str], ShardLocks], postgres_dsn: str
) -> None:
    """A node that dies (kill -9) says nothing: its connection drops, and the
    server releases its locks."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from flockmq.store.shard_locks import ShardLocks
        locks = ShardLocks({postgres_dsn!r}, "doomed")
        print(sorted(locks.acquire_all(range(4))), flush=True)
        sys.stdin.read()  # until killed
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "[0, 1, 2, 3]"  # it holds them
        b = holders("b")
        assert b.acquire_all(range(4)) == set()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        wait_until(lambda: b.acquire_all(range(4)) == {0, 1, 2, 3}, "the dead node's locks")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=TIMEOUT)


def test_locks_are_in_their_own_namespace(
    holders: Callable[[str], ShardLocks], postgres_dsn: str
) -> None:
    """Another application's advisory locks on the same numbers (one bigint
    key, or another first key) do not stand in a holder's way, nor do two
    namespaces (two clusters in one database) stand in each other's."""
    with psycopg.connect(postgres_dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(5)")
        other.execute("SELECT pg_advisory_lock(%s::int, 5)", (NAMESPACE + 1,))
        other.execute("SELECT pg_advisory_lock(5, %s::int)", (NAMESPACE,))
        assert holders("a").acquire(5)
        second = ShardLocks(postgres_dsn, "other cluster", namespace=NAMESPACE + 2)
        try:
            assert second.acquire(5) and second.check() == {5}
        finally:
            second.close()


def test_survivors_take_a_dead_nodes_shards(
    holders: Callable[[str], ShardLocks], postgres_dsn: str
) -> None:
    """The planner and the locks together, as a node's loop would run them."""
    shards = 16
    nodes = {name: holders(name) for name in ("alpha", "bravo", "charlie")}

    def run_round(live: tuple[str, ...]) -> None:
        for name in live:
            locks = nodes[name]
            plan = plan_shards(name, live, shards, locks.held)
            for shard in plan.release:
                locks.release(shard)
            locks.acquire_all(plan.acquire)

    everyone = tuple(nodes)
    run_round(everyone)
    owned = [nodes[name].check() for name in everyone]
    assert sorted(s for got in owned for s in got) == list(range(shards))
    before = {name: set(nodes[name].held) for name in everyone}

    pid = nodes["bravo"].backend_pid
    assert pid is not None
    terminate(postgres_dsn, pid)
    survivors = ("alpha", "charlie")

    def settled() -> bool:
        run_round(survivors)
        return set(nodes["alpha"].held) | set(nodes["charlie"].held) == set(range(shards))

    wait_until(settled, "the survivors to own every shard")
    assert not nodes["alpha"].held & nodes["charlie"].held
    assert nodes["alpha"].check() | nodes["charlie"].check() == set(range(shards))
    # each survivor took some of bravo's shards
    for name in survivors:
        assert nodes[name].held & before["bravo"]


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
        # pg_locks is server-wide: without `l.database =` each broker saw the
        # other database's holders as its rivals (and for shard 0,
        # json_object_agg kept ONE of the two holders):
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


def test_the_server_ends_a_silent_lock_session_within_seconds(
    postgres_server: PostgresServer,
) -> None:
    """The server's own TCP keepalives on the lock connection (its default
    is the kernel's two hours): set per session, by a role that is not a
    superuser, and a -c of the DSN's own options still wins."""
    db = postgres_server.create_database()
    dsn = postgres_server.dsn(db)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("CREATE ROLE flockmq_plain LOGIN NOSUPERUSER")
    plain = dsn.replace("user=postgres", "user=flockmq_plain")
    holder = ShardLocks(plain, "keepalives")
    theirs = ShardLocks(plain + " options='-c tcp_keepalives_count=7'", "keepalives")
    try:
        assert holder.acquire(0)
        assert holder.conn is not None
        shown = {
            name: holder.conn.execute(f"SHOW {name}").fetchone()
            for name in [*SERVER_KEEPALIVES, "is_superuser"]
        }
        assert shown == {
            "tcp_keepalives_idle": ("4",),  # seconds (SHOW prints no unit for these)
            "tcp_keepalives_interval": ("2",),
            "tcp_keepalives_count": ("3",),
            "tcp_user_timeout": ("10000",),  # ms
            "is_superuser": ("off",),
        }
        assert theirs.acquire(1) and theirs.conn is not None
        assert theirs.conn.execute("SHOW tcp_keepalives_count").fetchone() == ("7",)
        assert theirs.conn.execute("SHOW tcp_keepalives_idle").fetchone() == ("4",)
    finally:
        holder.close()
        theirs.close()
        postgres_server.drop_database(db)
        with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
            admin.execute("DROP ROLE flockmq_plain")
