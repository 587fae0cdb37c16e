"""The whole fan-in QoS 1 path of one message in one process, without
sockets: a publisher's PUBLISHes read by the real Acceptor, their ROUTEs
through the Router, ROUTED back to the acceptor (PUBACKs written), the
DELIVERs through a Shard, its deliveries written by the acceptor to a
subscriber, and the subscriber's PUBACKs back to the shard. Every envelope
crosses a msgpack frame round trip, as on the bus; ZeroMQ and the event
loop are left out.

    .venv/bin/python scripts/bench_path.py [--reads 600] [--batch 64]

A benchmark, not a test: it asserts nothing. Prints nanoseconds per message
(best of 5). Whole-broker runs on a shared machine vary by several
microseconds per message from run to run; this resolves changes of a few
hundred nanoseconds. To compare two commits, run each tree's copy alone on
sys.path (from that tree's directory: PYTHONPATH=. and its own checkout).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from typing import Any

import msgpack
from bench_handlers import FakeTransport  # scripts/: the directory of this script

from flockmq import envelopes as env
from flockmq.config import Config
from flockmq.frontend.acceptor import acceptor_process
from flockmq.frontend.codec import encode
from flockmq.frontend.codec.packets import Connect, Puback, Publish
from flockmq.frontend.connection import ClientConnection
from flockmq.frontend.servers import endpoint_for
from flockmq.listeners import Listener
from flockmq.router.router import Router
from flockmq.workers.shard import Shard, ShardLimits

TOPIC = "bench/fanin/1"
PACKER = msgpack.Packer(use_bin_type=True)


def over_the_bus(envelopes: list[Any]) -> list[Any]:
    """What the receiver of a frame of `envelopes` gets."""
    frame: list[Any] = msgpack.unpackb(
        PACKER.pack([env.FRAME_VERSION, 1, 0, 0, envelopes]), raw=False, strict_map_key=False
    )
    return frame[4]  # type: ignore[no-any-return]


def taken(out: list[Any]) -> list[Any]:
    got = out[:]
    out.clear()
    return got


class PathBench:
    """An acceptor with a publisher and a subscriber, a router and a shard."""

    def __init__(self, tmp: str, batch: int) -> None:
        self.loop = asyncio.new_event_loop()
        config = Config(acceptors=1, workers=2, runtime_dir=tmp, data_dir=tmp)
        self.acceptor, self.process = acceptor_process(config, 0, 1, self.loop)
        clients = []
        for client_id in ("pub", "sub"):
            client = ClientConnection(self.acceptor, endpoint_for(Listener()))
            client.connection_made(FakeTransport())  # type: ignore[arg-type]
            client.data_received(encode(Connect(client_id, 4, True, 60), 4))
            self.acceptor.handle_envelope([env.Kind.CONNACK, client.conn_id, False, 0, None])
            clients.append(client)
        self.publisher, self.subscriber = clients
        self.now = now = 1000.0
        self.router, self.shard = Router(), Shard(0, ShardLimits())
        sub = self.subscriber.conn_id
        connect = env.Connect(env.Kind.CONNECT, sub, "sub", True, 0, 4, 60, None, None, 0, False)
        entry = env.SubEntry("bench/fanin/+", 1, False, False, 0, None)
        subscribe = env.Subscribe(env.Kind.SUBSCRIBE, sub, "sub", 1, [entry])
        for e in over_the_bus([connect, subscribe]):
            self.shard.handle(e, now)
        for e in over_the_bus(taken(self.shard.to_router)):
            self.router.handle(e, now)
        self.shard.handle([env.Kind.SUBSCRIBED, "sub", sub, 1, [1]], now)
        self.router.handle([env.Kind.ONLINE, "sub", sub], now)
        for out in (
            *self.process.bus.outboxes.values(),
            *self.shard.to_acceptors.values(),
            *self.router.to_acceptors.values(),
            *self.router.to_workers.values(),
        ):
            out.clear()
        self.session = self.shard.sessions["sub"]
        # What the clients send, encoded beforehand (each read's publishes
        # are acknowledged before the next, so their packet ids come again)
        self.publishes = b"".join(
            encode(Publish(TOPIC, b"x" * 64, 1, False, False, i), 4) for i in range(1, batch + 1)
        )
        self.pubacks = {i: encode(Puback(i), 4) for i in range(1, 65536)}

    def one_read(self) -> None:
        """A read of publishes, each through every hop, and the PUBACKs back."""
        now, router, shard = self.now, self.router, self.shard
        outboxes = self.process.bus.outboxes
        runner = self.process.runner
        self.publisher.data_received(self.publishes)
        for e in over_the_bus(taken(outboxes["router"])):
            router.handle(e, now)
        routed = over_the_bus(taken(router.to_acceptors.get(0, [])))
        delivers = over_the_bus(taken(router.to_workers.get(0, [])))
        runner.guard.handle_each(runner.core.handle, routed, now)
        for e in delivers:
            shard.handle(e, now)
        sends = over_the_bus(taken(shard.to_acceptors.get(0, [])))
        runner.guard.handle_each(runner.core.handle, sends, now)
        self.acceptor.flush_writes()
        pubacks = self.pubacks
        self.subscriber.data_received(b"".join([pubacks[p] for p in self.session.inflight]))
        acks = [e for key, out in outboxes.items() if key != "router" for e in taken(out)]
        for e in over_the_bus(acks):
            shard.handle(e, now)
        shard.take_durable()

    def close(self) -> None:
        self.process.bus.close()
        self.loop.close()


def bench(reads: int, batch: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = PathBench(tmp, batch)
        for _ in range(50):
            path.one_read()
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(reads):
                path.one_read()
            best = min(best, (time.perf_counter() - start) / reads / batch * 1e9)
        path.close()
        return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=600)
    parser.add_argument("--batch", type=int, default=64, help="publishes per read (<= 64)")
    args = parser.parse_args()
    print(f"fan-in QoS 1 path {bench(args.reads, args.batch):8.0f} ns/message")


if __name__ == "__main__":
    main()
