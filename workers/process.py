"""The session-worker process: a thin adapter between ZeroMQ, the clock, the
store and `Shard`.

Each event-loop pass: feed envelopes to the shard, send what it produced, and
submit its store ops to the group committer; envelopes that promise durability
(`after_commit`) leave only when that commit is done.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import time

from flockmq import envelopes as env
from flockmq.bus import Bus
from flockmq.config import Config
from flockmq.envelopes import Envelope, Kind, Wire
from flockmq.persistence import open_configured_store
from flockmq.sharding import shard_of
from flockmq.store import Committer, StoreError
from flockmq.sysstats import SysStats

from .outbox import failed_envelope
from .shard import Shard, ShardLimits

log = logging.getLogger("flockmq.worker")


def limits_from(config: Config) -> ShardLimits:
    return ShardLimits(
        max_inflight=config.max_inflight,
        max_queued_messages=config.max_queued_messages,
        max_queued_bytes=config.max_queued_bytes,
        max_subscriptions=config.max_subscriptions,
        max_subscription_bytes=config.max_subscription_bytes,
        queue_qos0=config.queue_qos0,
        max_session_expiry=config.max_session_expiry,
    )


def run_worker(config: Config, index: int, incarnation: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        shard = Shard(index, limits_from(config), nonce=secrets.randbits(31))
        stats = SysStats("worker", index, shard.counters)
        store = open_configured_store(config)
        workers = config.workers
        records = store.load_sessions(lambda client_id: shard_of(client_id, workers) == index)
        committer = Committer(store, loop)

        def send_later(
            later: list[tuple[str | int, Envelope]],
            error: StoreError | None,
            hold: tuple[bool, list[int]],
        ) -> None:
            if error is not None:
                shard.counters["store_failures"] += 1
                log.error("worker %d: store write failed: %s", index, error)
            for dest, e in later:
                if error is not None:
                    dest, e = failed_envelope(dest, e)
                bus.send(dest, e)
            shard.commit_done(hold)

        def drain() -> None:
            ops, later = shard.take_durable()
            if ops or later:
                # What follows these to the router, or to a connection whose
                # SUBACK is among them, waits for them (commits complete in order).
                hold = shard.hold_for_commit(later)
                committer.release(ops, lambda error: send_later(later, error, hold))
            if shard.to_router:
                bus.extend("router", shard.to_router)
                shard.to_router.clear()
            for acceptor, out in shard.to_acceptors.items():
                if out:
                    bus.extend(acceptor, out)
                    out.clear()

        def on_envelopes(envelopes: list[Wire]) -> None:
            now = time.time()
            handle = shard.handle
            for e in envelopes:
                handle(e, now)
            drain()

        bus = Bus(
            loop,
            config.worker_id(index),
            incarnation,
            on_envelopes,
            pipe_bytes=config.max_pipe_bytes,
        )
        bus.bind(config.worker_endpoint(index), pausable=False)  # from the router
        bus.bind(config.worker_work_endpoint(index), pausable=True)  # from acceptors
        bus.connect("router", config.router_endpoint(), config.ROUTER_ID)
        for acceptor in range(config.acceptors):
            bus.connect(acceptor, config.acceptor_endpoint(acceptor), config.acceptor_id(acceptor))
        bus.start()
        shard.startup_envelopes(incarnation)
        for acceptor in range(config.acceptors):
            bus.send(acceptor, env.WorkerUp(Kind.WORKER_UP, index, incarnation))
        shard.load(records, time.time())
        if records:
            log.info("worker %d: restored %d persistent sessions", index, len(records))
        drain()

        def tick() -> None:
            now = time.time()
            due = shard.next_timer()
            if due is not None and due <= now:
                shard.handle_timer(now)
            stats.maybe_publish(loop.time(), config.sys_interval, shard.to_router.append)
            drain()
            loop.call_later(0.25, tick)

        tick()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("worker %d up (incarnation %d)", index, incarnation)
        await stop.wait()
        committer.close()
        bus.close()
        store.close()

    uvloop.run(main())
