"""Measure what durability costs: commits/s and batched ops/s per setting.

    .venv/bin/python -m store.bench_store [--seconds 2] [--dir /path/on/the/real/disk]

For each durability ("process", "power") it reports:

- commits/s: one PutMessage per transaction, back to back (the worst case: a
  QoS 1 publish acknowledged only after its own commit);
- batched ops/s: 1000 PutMessage ops per transaction;
- committer ops/s: N concurrent submitters on an event loop, each awaiting its
  on_done before submitting again, so group commit decides the batch size.

A benchmark, not a test: it reports figures and asserts nothing. Use a data
dir on the disk the broker will use (tmpfs hides the fsync cost).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

from . import DURABILITIES, Committer, Op, PutMessage, PutSession, StoreError, open_store

PAYLOAD = os.urandom(100)


def _message(seq: int) -> PutMessage:
    return PutMessage("bench", seq, "bench/topic", PAYLOAD, 1, False, None)


def bench_commits(data_dir: str, durability: str, seconds: float) -> float:
    with open_store("sqlite", data_dir, durability) as store:
        store.apply([PutSession("bench", 0, 5, None, None)])
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            store.apply([_message(n)])
            n += 1
    return n / elapsed


def bench_batched(data_dir: str, durability: str, seconds: float, batch: int = 1000) -> float:
    with open_store("sqlite", data_dir, durability) as store:
        n, start = 10_000_000, time.perf_counter()
        first = n
        while (elapsed := time.perf_counter() - start) < seconds:
            store.apply([_message(n + i) for i in range(batch)])
            n += batch
    return (n - first) / elapsed


def bench_committer(
    data_dir: str, durability: str, seconds: float, submitters: int = 200
) -> tuple[float, float]:
    """ops/s and the mean batch (submissions per commit)."""
    with open_store("sqlite", data_dir, durability) as store:
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
    args = parser.parse_args()
    base = args.dir or tempfile.gettempdir()
    print(f"sqlite store in {base}, {len(PAYLOAD)}-byte payloads, {args.seconds:g} s per figure")
    for durability in DURABILITIES:
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            commits = bench_commits(os.path.join(tmp, "a"), durability, args.seconds)
            batched = bench_batched(os.path.join(tmp, "b"), durability, args.seconds)
            grouped, per_batch = bench_committer(os.path.join(tmp, "c"), durability, args.seconds)
        print(
            f"{durability:>8}: {commits:9,.0f} commits/s (1 op each)"
            f" | {batched:10,.0f} ops/s (1000 per commit)"
            f" | {grouped:9,.0f} ops/s via Committer ({per_batch:.0f} per commit)"
        )


if __name__ == "__main__":
    main()
