"""The router process: a thin adapter between ZeroMQ, the store and `Router`."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Sequence

from flockmq import envelopes as env
from flockmq.bus import Bus
from flockmq.config import Config
from flockmq.envelopes import Envelope, Kind, Wire
from flockmq.persistence import open_configured_store
from flockmq.store import Committer, StoreError
from flockmq.sysstats import SysStats

from .router import Router

log = logging.getLogger("flockmq.router")

SYNC_TIMEOUT = 10.0  # seconds to wait for every worker to re-send its subscriptions


def run_router(config: Config, incarnation: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        router = Router(config.max_retained_messages, config.max_retained_bytes)
        stats = SysStats("router", 0, router.counters)
        store = open_configured_store(config)
        retained = store.load_retained()
        router.load_retained(retained)
        if retained:
            log.info("router: restored %d retained messages", len(retained))
        committer = Committer(store, loop)

        def send_later(later: list[tuple[int, env.RoutedTuple]], error: StoreError | None) -> None:
            if error is not None:
                router.counters["store_failures"] += 1
                log.error("router: store write failed: %s", error)
            for acceptor, routed in later:
                e: Envelope = routed
                if error is not None:
                    # The retained message was not kept: do not acknowledge.
                    _, conn, packet_id, _shards, attempt = routed
                    e = env.Stored(Kind.STORED, conn, packet_id, False, attempt)
                bus.send(("acceptor", acceptor), e)

        def on_envelopes(envelopes: Sequence[Wire]) -> None:
            router.now = time.time()
            handle = router.handle
            for e in envelopes:
                handle(e)
            ops, later = router.take_durable()
            if ops or later:
                committer.release(ops, lambda error: send_later(later, error))
            for shard, out in router.to_workers.items():
                if out:
                    bus.extend(shard, out)
                    out.clear()
            for acceptor, out in router.to_acceptors.items():
                if out:
                    bus.extend(("acceptor", acceptor), out)
                    out.clear()
            if not router.unsynced:
                bus.resume_reading("sync")

        bus = Bus(
            loop, config.ROUTER_ID, incarnation, on_envelopes, pipe_bytes=config.max_pipe_bytes
        )
        bus.bind(config.router_endpoint(), pausable=False)  # from workers
        bus.bind(config.router_work_endpoint(), pausable=True)  # from acceptors
        for shard in range(config.workers):
            bus.connect(shard, config.worker_endpoint(shard), config.worker_id(shard))
        for acceptor in range(config.acceptors):
            bus.connect(
                ("acceptor", acceptor),
                config.acceptor_endpoint(acceptor),
                config.acceptor_id(acceptor),
            )
        # Until every shard has re-sent its subscriptions, acceptors'
        # publishes wait in their pipes, not in this process.
        bus.pause_reading("sync")
        bus.start()
        router.expect_sync(config.workers)
        for shard in range(config.workers):
            bus.send(shard, env.RouterUp(Kind.ROUTER_UP, incarnation))
        for acceptor in range(config.acceptors):
            bus.send(("acceptor", acceptor), env.RouterUp(Kind.ROUTER_UP, incarnation))

        def sync_timeout() -> None:
            router.stop_waiting_for_sync()
            on_envelopes([])  # send what the held publishes produced

        loop.call_later(SYNC_TIMEOUT, sync_timeout)

        def tick() -> None:
            sys_envelopes: list[env.Route] = []
            stats.maybe_publish(loop.time(), config.sys_interval, sys_envelopes.append)
            router.expire_retained(time.time())
            on_envelopes(sys_envelopes)
            loop.call_later(1.0, tick)

        tick()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("router up (incarnation %d)", incarnation)
        await stop.wait()
        committer.close()
        bus.close()
        store.close()

    uvloop.run(main())
