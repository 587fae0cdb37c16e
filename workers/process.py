"""The session-worker process: a thin adapter between ZeroMQ, the clock and `Shard`."""

from __future__ import annotations

import asyncio
import logging
import signal

from flockmq import envelopes as env
from flockmq.bus import Bus
from flockmq.config import Config
from flockmq.envelopes import Envelope
from flockmq.sysstats import SysStats

from .shard import Shard, ShardLimits

log = logging.getLogger("flockmq.worker")


def limits_from(config: Config) -> ShardLimits:
    return ShardLimits(
        max_inflight=config.max_inflight,
        max_queued_messages=config.max_queued_messages,
        max_queued_bytes=config.max_queued_bytes,
        queue_qos0=config.queue_qos0,
        max_session_expiry=config.max_session_expiry,
    )


def run_worker(config: Config, index: int, incarnation: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        shard = Shard(index, limits_from(config))
        stats = SysStats("worker", index, shard.counters)

        def drain() -> None:
            if shard.to_router:
                bus.extend("router", shard.to_router)
                shard.to_router.clear()
            for acceptor, out in shard.to_acceptors.items():
                if out:
                    bus.extend(acceptor, out)
                    out.clear()

        def on_envelopes(envelopes: list[Envelope]) -> None:
            now = loop.time()
            handle = shard.handle
            for e in envelopes:
                handle(e, now)
            drain()

        bus = Bus(
            loop,
            config.worker_endpoint(index),
            on_envelopes,
            pause_for=lambda key: key != "router",
        )
        bus.connect("router", config.router_endpoint())
        for acceptor in range(config.acceptors):
            bus.connect(acceptor, config.acceptor_endpoint(acceptor))
        bus.start()
        shard.startup_envelopes(incarnation)
        for acceptor in range(config.acceptors):
            bus.send(acceptor, [env.WORKER_UP, index, incarnation])
        drain()

        def tick() -> None:
            now = loop.time()
            due = shard.next_timer()
            if due is not None and due <= now:
                shard.handle_timer(now)
            stats.maybe_publish(now, config.sys_interval, shard.to_router.append)
            drain()
            loop.call_later(0.25, tick)

        tick()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("worker %d up (incarnation %d)", index, incarnation)
        await stop.wait()
        bus.close()

    uvloop.run(main())
