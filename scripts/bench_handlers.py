"""The per-message envelope handlers without processes or sockets: what the
router spends on one ROUTE (matched to one shard and one acceptor) and a
shard on one DELIVER (one QoS 0 target online, one QoS 1 target), fed the
wire form (lists, as msgpack unpacks them).

    .venv/bin/python scripts/bench_handlers.py [--count 200000]

A benchmark, not a test: it asserts nothing. Prints nanoseconds per envelope.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from typing import Any

import msgpack

from flockmq import envelopes as env
from flockmq.envelopes import make_conn_id
from flockmq.router.router import Router
from flockmq.workers.shard import Shard, ShardLimits


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
        shard.out.ops.clear()

    return per_envelope(handle, lambda: list(deliver), count)


class FakeTransport:
    """Enough of an asyncio transport for a ClientConnection; writes dropped."""

    def get_extra_info(self, name: str) -> Any:
        return None

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def bench_acceptor(count: int) -> dict[str, float]:
    """A client's QoS 0 and QoS 1 PUBLISH in (QoS 1: with the router's ROUTED
    back, so the PUBACK goes out), its PUBACK in, and a SEND_PUBLISH out to it.
    Envelopes from other processes are fed as msgpack gives them (lists)."""
    from flockmq.config import Config
    from flockmq.frontend.acceptor import acceptor_process
    from flockmq.frontend.codec import encode
    from flockmq.frontend.codec.packets import Connect, Puback, Publish
    from flockmq.frontend.connection import ClientConnection
    from flockmq.frontend.servers import endpoint_for
    from flockmq.listeners import Listener

    with tempfile.TemporaryDirectory() as tmp:
        loop = asyncio.new_event_loop()
        config = Config(acceptors=1, workers=2, runtime_dir=tmp, data_dir=tmp)
        acceptor, process = acceptor_process(config, 0, 1, loop)
        conn = ClientConnection(acceptor, endpoint_for(Listener()))
        conn.connection_made(FakeTransport())  # type: ignore[arg-type]
        conn.data_received(encode(Connect("c", 4, True, 60), 4))
        acceptor.handle_envelope([20, conn.conn_id, False, 0, None])  # CONNACK
        outboxes = process.bus.outboxes

        def clear() -> None:
            for out in outboxes.values():
                out.clear()

        q0 = encode(Publish("a/b", b"x" * 16, 0, False, False, None), 4)
        q1 = [encode(Publish("a/b", b"x" * 16, 1, False, False, i), 4) for i in range(1, 101)]
        pubacks = [encode(Puback(i), 4) for i in range(1, 101)]
        results: dict[str, float] = {}

        def publish_q0(_: Any) -> None:
            conn.data_received(q0)
            clear()

        results["acceptor PUBLISH q0"] = per_envelope(publish_q0, lambda: [], count)
        packet_ids = iter(range(count * 2))

        def publish_q1(_: Any) -> None:
            i = next(packet_ids) % 100
            conn.data_received(q1[i])
            acceptor.handle_envelope([27, conn.conn_id, i + 1, 0, 0])  # ROUTED, none to wait for
            clear()

        results["acceptor PUBLISH q1+ROUTED"] = per_envelope(publish_q1, lambda: [], count)
        acks = iter(range(count * 2))

        def puback(_: Any) -> None:
            conn.data_received(pubacks[next(acks) % 100])
            clear()

        results["acceptor PUBACK in"] = per_envelope(puback, lambda: [], count)
        send_publish = [21, conn.conn_id, 1, "a/b", b"x" * 16, 1, False, False, None]

        def deliver(e: list[Any]) -> None:
            acceptor.handle_envelope(e)

        results["acceptor SEND_PUBLISH"] = per_envelope(deliver, lambda: list(send_publish), count)
        process.bus.close()
        loop.close()
        return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for name, bench in (("router ROUTE", bench_router), ("shard DELIVER", bench_shard)):
        best = min(bench(args.count) for _ in range(args.repeat))
        print(f"{name:26s} {best:8.0f} ns/envelope")
    runs = [bench_acceptor(args.count) for _ in range(args.repeat)]
    for name in runs[0]:
        print(f"{name:26s} {min(r[name] for r in runs):8.0f} ns/envelope")


if __name__ == "__main__":
    main()
