"""The router process: a thin adapter between ZeroMQ and `Router`."""

from __future__ import annotations

import asyncio
import logging
import signal

from flockmq import envelopes as env
from flockmq.bus import Bus
from flockmq.config import Config
from flockmq.envelopes import Envelope
from flockmq.sysstats import SysStats

from .router import Router

log = logging.getLogger("flockmq.router")


def run_router(config: Config, incarnation: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        router = Router()
        stats = SysStats("router", 0, router.counters)

        def on_envelopes(envelopes: list[Envelope]) -> None:
            handle = router.handle
            for e in envelopes:
                handle(e)
            for shard, out in router.to_workers.items():
                if out:
                    bus.extend(shard, out)
                    out.clear()
            for acceptor, out in router.to_acceptors.items():
                if out:
                    bus.extend(("acceptor", acceptor), out)
                    out.clear()

        bus = Bus(
            loop,
            config.router_endpoint(),
            on_envelopes,
            pause_for=lambda key: isinstance(key, tuple),  # ("acceptor", i)
        )
        for shard in range(config.workers):
            bus.connect(shard, config.worker_endpoint(shard))
        for acceptor in range(config.acceptors):
            bus.connect(("acceptor", acceptor), config.acceptor_endpoint(acceptor))
        bus.start()
        for shard in range(config.workers):
            bus.send(shard, [env.ROUTER_UP, incarnation])

        def tick() -> None:
            sys_envelopes: list[Envelope] = []
            stats.maybe_publish(loop.time(), config.sys_interval, sys_envelopes.append)
            if sys_envelopes:
                on_envelopes(sys_envelopes)
            loop.call_later(1.0, tick)

        tick()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("router up (incarnation %d)", incarnation)
        await stop.wait()
        bus.close()

    uvloop.run(main())
