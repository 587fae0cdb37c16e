"""What shard ownership costs on the PostgreSQL store (workers/ownership.py):

- the owner's lock check (`ShardLocks.check`, once a second per worker): its
  round trip, median and 99th percentile;
- the write fence (store/shard_fence.py): the check's own time inside a
  transaction (median, p99); and commits per second of one
  PutMessage per transaction (the worst case: a QoS 1 publish waiting for
  its own commit) and of 100 per transaction, without and with the fence
  check in the transaction, in alternating rounds (the machine is shared:
  the medians of the rounds are reported).

    .venv/bin/python scripts/bench_shard_fence.py [--dsn "host=... dbname=..."]
        [--rounds 5] [--seconds 1] [--no-fsync]

Without --dsn it starts a throwaway server as the tests do (tests/postgres.py:
initdb into a temporary directory, Debian's postgresql). A benchmark, not a
test: it reports figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import psycopg

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from flockmq.store import DeleteSession, PutMessage, PutSession, open_store
from flockmq.store.postgres import PostgresStore
from flockmq.store.shard_fence import ShardFence, check_fence, claim_shard
from flockmq.store.shard_locks import ShardLocks

PAYLOAD = os.urandom(100)
SHARD = 0


def bench_check(dsn: str, calls: int) -> tuple[float, float]:
    """Median and p99 of `ShardLocks.check`, in microseconds."""
    locks = ShardLocks(dsn, "bench")
    try:
        assert locks.acquire(SHARD)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            locks.check()
            times.append(time.perf_counter() - start)
    finally:
        locks.close()
    times.sort()
    return statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6


def bench_fence_statement(dsn: str, fence: ShardFence, calls: int) -> tuple[float, float]:
    """Median and p99 of `check_fence` inside a transaction, in microseconds:
    what the fence adds to each commit (one round trip, one row locked)."""
    times = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(calls):
            with conn.transaction(), conn.cursor() as cur:
                start = time.perf_counter()
                check_fence(cur, fence)
                times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6


def commits_per_second(store: PostgresStore, per_commit: int, seconds: float) -> float:
    seq = int(time.time() * 1000) * 1000
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        store.apply(
            [
                PutMessage("bench", seq + i, "bench/topic", PAYLOAD, 1, False, None)
                for i in range(per_commit)
            ]
        )
        seq += per_commit
        n += 1
    return n / elapsed


def bench_fence(
    dsn: str, rounds: int, seconds: float
) -> tuple[tuple[float, float], dict[tuple[int, bool], float]]:
    store = open_store("postgres", "", "process", dsn=dsn)
    assert isinstance(store, PostgresStore)
    locks = ShardLocks(dsn, "bench")
    results: dict[tuple[int, bool], list[float]] = {}
    try:
        store.apply([DeleteSession("bench"), PutSession("bench", 0, 5, None, None)])
        assert locks.acquire(SHARD) and locks.conn is not None
        fence = claim_shard(locks.conn, locks.namespace, SHARD, "bench", SHARD + 1)
        statement = bench_fence_statement(dsn, fence, 2000)
        for _ in range(rounds):
            for per_commit in (1, 100):
                for fenced in (False, True):
                    store.fence = fence if fenced else None
                    rate = commits_per_second(store, per_commit, seconds)
                    results.setdefault((per_commit, fenced), []).append(rate)
        store.fence = None
        store.apply([DeleteSession("bench")])
    finally:
        locks.close()
        store.close()
    return statement, {key: statistics.median(rates) for key, rates in results.items()}


def with_server(run: Callable[[str], None], fsync: bool) -> None:
    from tests.postgres import start_server

    server = start_server()
    try:
        dsn = server.dsn(server.create_database())
        if not fsync:  # what the fence costs, without the disk's noise
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET fsync = off")
                conn.execute("SELECT pg_reload_conf()")
        run(dsn)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="the throwaway server runs with fsync = off (isolates the fence's own cost)",
    )
    args = parser.parse_args()

    def run(dsn: str) -> None:
        median, p99 = bench_check(dsn, args.checks)
        print(f"lock check (ShardLocks.check): median {median:.0f} us, p99 {p99:.0f} us")
        (median, p99), rates = bench_fence(dsn, args.rounds, args.seconds)
        print(
            f"fence check in a transaction (check_fence): median {median:.0f} us, p99 {p99:.0f} us"
        )
        for per_commit in (1, 100):
            plain, fenced = rates[per_commit, False], rates[per_commit, True]
            cost = (1 / fenced - 1 / plain) * 1e6
            print(
                f"{per_commit:>3} PutMessage per commit: {plain:,.0f} commits/s without the"
                f" fence, {fenced:,.0f} with it ({cost:+.0f} us per commit;"
                f" medians of {args.rounds} rounds of {args.seconds:g} s)"
            )

    if args.dsn:
        run(args.dsn)
    else:
        with_server(run, fsync=not args.no_fsync)


if __name__ == "__main__":
    main()
