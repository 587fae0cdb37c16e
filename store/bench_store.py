"""Measure what durability costs: commits/s and batched ops/s per setting.

    .venv/bin/python -m store.bench_store [--seconds 2] [--dir /path/on/the/real/disk]
    .venv/bin/python -m store.bench_store --postgres-dsn "host=... dbname=..."

For each durability ("process", "power") it reports:

- commits/s: one PutMessage per transaction, back to back (the worst case: a
  QoS 1 publish acknowledged only after its own commit);
- batched ops/s: 1000 PutMessage ops per transaction;
- committer ops/s: N concurrent submitters on an event loop, each awaiting its
  on_done before submitting again, so group commit decides the batch size.

A benchmark, not a test: it reports figures and asserts nothing. Use a data
dir on the disk the broker will use (tmpfs hides the fsync cost). With
--postgres-dsn it measures the PostgreSQL store instead (one figure: its
commits meet both durabilities), in that database's flockmq schema: use a
scratch database, the benchmark leaves its rows behind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

from . import (
    DURABILITIES,
    Committer,
    DeleteSession,
    Op,
    PutMessage,
    PutSession,
    Store,
    StoreError,
    open_store,
)
from .postgres import describe_dsn

PAYLOAD = os.urandom(100)


def _message(seq: int) -> PutMessage:
    return PutMessage("bench", seq, "bench/topic", PAYLOAD, 1, False, None)


def _open(data_dir: str, durability: str, dsn: str) -> Store:
    return open_store("postgres" if dsn else "sqlite", data_dir, durability, dsn=dsn)


def bench_commits(data_dir: str, durability: str, seconds: float, dsn: str = "") -> float:
    with _open(data_dir, durability, dsn) as store:
        store.apply([DeleteSession("bench")])
        store.apply([PutSession("bench", 0, 5, None, None)])
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            store.apply([_message(n)])
            n += 1
    return n / elapsed


def bench_batched(
    data_dir: str, durability: str, seconds: float, batch: int = 1000, dsn: str = ""
) -> float:
    with _open(data_dir, durability, dsn) as store:
        n, start = 10_000_000, time.perf_counter()
        first = n
        while (elapsed := time.perf_counter() - start) < seconds:
            store.apply([_message(n + i) for i in range(batch)])
            n += batch
    return (n - first) / elapsed


def bench_committer(
    data_dir: str, durability: str, seconds: float, submitters: int = 200, dsn: str = ""
) -> tuple[float, float]:
    """ops/s and the mean batch (submissions per commit)."""
    with _open(data_dir, durability, dsn) as store:
        committer = Committer(store)
        done = 0
        seq = iter(range(20_000_000, 1 << 62))

        async def submitter(deadline: float) -> None:
            nonlocal done
            loop = asyncio.get_running_loop()
            while time.perf_counter() < deadline:
                fut: asyncio.Future[StoreError | None] = loop.create_future()
                ops: list[Op] = [_message(next(seq))]
                committer.submit(ops, fut.set_result)
                if (error := await fut) is not None:
                    raise error
                done += 1

        async def run() -> float:
            start = time.perf_counter()
            deadline = start + seconds
            await asyncio.gather(*(submitter(deadline) for _ in range(submitters)))
            return time.perf_counter() - start

        elapsed = asyncio.run(run())
        committer.close()
        return done / elapsed, done / max(committer.batches, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--dir", default=None, help="where to put the scratch stores")
    parser.add_argument("--postgres-dsn", default="", help="measure this PostgreSQL store")
    args = parser.parse_args()
    base = args.dir or tempfile.gettempdir()
    dsn: str = args.postgres_dsn
    where = f"postgres store {describe_dsn(dsn)}" if dsn else f"sqlite store in {base}"
    print(f"{where}, {len(PAYLOAD)}-byte payloads, {args.seconds:g} s per figure")
    for durability in DURABILITIES[:1] if dsn else DURABILITIES:
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            commits = bench_commits(os.path.join(tmp, "a"), durability, args.seconds, dsn)
            batched = bench_batched(os.path.join(tmp, "b"), durability, args.seconds, dsn=dsn)
            grouped, per_batch = bench_committer(
                os.path.join(tmp, "c"), durability, args.seconds, dsn=dsn
            )
        print(
            f"{durability:>8}: {commits:9,.0f} commits/s (1 op each)"
            f" | {batched:10,.0f} ops/s (1000 per commit)"
            f" | {grouped:9,.0f} ops/s via Committer ({per_batch:.0f} per commit)"
        )


if __name__ == "__main__":
    main()
