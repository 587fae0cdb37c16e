"""The per-message envelope handlers without processes or sockets: what the
router spends on one ROUTE (matched to one shard and one acceptor) and a
shard on one DELIVER (one QoS 0 target online, one QoS 1 target), fed the
wire form (lists, as msgpack unpacks them).

    .venv/bin/python scripts/bench_handlers.py [--count 200000]

A benchmark, not a test: it asserts nothing. Prints nanoseconds per envelope.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import msgpack

from flockmq import envelopes as env
from flockmq.envelopes import make_conn_id
from router.router import Router
from workers.shard import Shard, ShardLimits


def per_envelope(
    handle: Callable[[list[Any]], None], make: Callable[[], list[Any]], count: int
) -> float:
    envelopes = [make() for _ in range(count)]
    start = time.perf_counter()
    for e in envelopes:
        handle(e)
    return (time.perf_counter() - start) / count * 1e9


def wire(e: Any) -> list[Any]:
    """What the receiver gets: msgpack's list."""
    return msgpack.unpackb(msgpack.packb(e), raw=False)  # type: ignore[no-any-return]


def bench_router(count: int) -> float:
    router = Router()
    conn = make_conn_id(0, 1, 1)
    router.handle(wire(env.Online(env.Kind.ONLINE, "online", conn)))
    entry = env.RouteEntry("a/+", 0, False, False, False, None, False)
    router.handle(wire(env.Sub(env.Kind.SUB, 0, "online", 0, 0, [entry], [])))
    entry = env.RouteEntry("a/#", 1, False, False, False, None, True)
    router.handle(wire(env.Sub(env.Kind.SUB, 1, "queued", 0, 0, [entry], [])))
    route = wire(
        env.Route(
            env.Kind.ROUTE, "pub", "a/b", b"x" * 16, 1, False, None, env.Reply(conn, 1, 0, 1, None)
        )
    )

    def handle(e: list[Any]) -> None:
        router.handle(e)
        router.to_workers.clear()
        router.to_acceptors.clear()

    return per_envelope(handle, lambda: list(route), count)


def bench_shard(count: int) -> float:
    shard = Shard(0, ShardLimits())
    now = 1000.0
    conn_a, conn_b = make_conn_id(0, 1, 1), make_conn_id(0, 1, 2)
    for conn, client_id in ((conn_a, "a"), (conn_b, "b")):
        shard.handle(
            wire(
                env.Connect(env.Kind.CONNECT, conn, client_id, True, 0, 4, 60, None, None, 0, False)
            ),
            now,
        )
        sub = env.SubEntry("t/#", 1 if client_id == "b" else 0, False, False, 0, None)
        shard.handle(wire(env.Subscribe(env.Kind.SUBSCRIBE, conn, client_id, 1, [sub])), now)
    deliver = wire(
        env.Deliver(
            env.Kind.DELIVER,
            "t/x",
            b"x" * 16,
            1,
            False,
            None,
            [env.Target("a", 0, False, [], "t/#"), env.Target("b", 1, False, [], "t/#")],
            None,
        )
    )

    def handle(e: list[Any]) -> None:
        shard.handle(e, now)
        session = shard.sessions["b"]
        session.inflight.clear()
        session.queue.clear()
        session.queued_bytes = 0
        shard.to_acceptors.clear()
        shard.to_router.clear()
        shard.ops.clear()

    return per_envelope(handle, lambda: list(deliver), count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for name, bench in (("router ROUTE", bench_router), ("shard DELIVER", bench_shard)):
        best = min(bench(args.count) for _ in range(args.repeat))
        print(f"{name:14s} {best:8.0f} ns/envelope")


if __name__ == "__main__":
    main()
