"""The router process: `Router` as a runtime core (flockmq/runtime.py) in a
`CoreProcess` (flockmq/runtime_process.py).

`RouterCore` is the runtime's contract over `Router`: its outboxes
(`to_workers`, `to_acceptors`, and `to_routers` with several routers) sent
per destination, the retained store's expiry as its timer, and what an
envelope held for a retained write becomes when that write failed
(`failed_envelope`). `start` is what a (re)started router sends; the process
and the in-memory simulation (tests/unit/simulation/) both use it.

With several routers (Config.routers) router `index` binds its own inboxes
(Config.router_endpoint(index)), is connected to every other router (the
RETAINED envelopes, and its ROUTER_UP), and only router 0 publishes the
broker-wide Mosquitto $SYS topics and serves the metrics port.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import cast

from flockmq import envelopes as env
from flockmq import routers_live, runtime
from flockmq.auth import auth_key, auth_process_count
from flockmq.bus import Bus
from flockmq.config import Config
from flockmq.envelopes import Envelope, Kind, Wire
from flockmq.isolation import EnvelopeGuard
from flockmq.persistence import open_configured_store
from flockmq.routers_live import LiveNodes
from flockmq.runtime import Held, Sink
from flockmq.runtime_process import CoreProcess, Role
from flockmq.shard_routes import ShardRoutes
from flockmq.store import Op, RetainedRecord
from flockmq.sysstats import SysStats

from .retained_reload import RetainedReload
from .router import Destination, Router

log = logging.getLogger("flockmq.router")

SYNC_TIMEOUT = 10.0  # seconds to wait for every worker to re-send its subscriptions
TICK_INTERVAL = 1.0


def failed_envelope(dest: Destination, e: Envelope) -> tuple[Destination, Envelope]:
    """What to send instead of a ROUTED held for a retained write that
    failed: the retained message was not kept, so the publish must not be
    acknowledged (STORED ok=False)."""
    _, conn, packet_id, _shards, attempt = cast(env.RoutedTuple, e)
    return dest, env.Stored(Kind.STORED, conn, packet_id, False, attempt)


class RouterCore:
    """`Router` under the runtime's contract (flockmq.runtime.Core)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.counters: Counter[str] = router.counters
        self.guard: EnvelopeGuard = router.guard
        self.handle = router.handle  # bound once: the per-envelope path is the router's own

    @classmethod
    def create(cls, config: Config, retained: list[RetainedRecord], index: int = 0) -> RouterCore:
        router = Router(
            config.max_retained_messages,
            config.max_retained_bytes,
            index,
            config.routers,
            config.acceptor_routers(),
        )
        router.load_retained(retained)
        if retained:
            log.info("router %d: restored %d retained messages", index, len(retained))
        return cls(router)

    def start(
        self, sink: Sink, incarnation: int, workers: int, acceptors: int, auth_processes: int = 0
    ) -> None:
        """Wait for every shard to re-send its subscriptions, and say so:
        workers re-send them, acceptors send again what is unconfirmed. Every
        process, auth processes too, sends its $SYS counters again when it
        hears from a new router (flockmq/runtime_process.py); until then the
        Mosquitto load figures take the values they are sent as where they
        stand, not as traffic (router/sys_topics.py, `resumed`)."""
        router = self.router
        router.mosquitto_sys.resumed = incarnation > 0
        router.expect_sync(workers)
        up = env.RouterUp(Kind.ROUTER_UP, incarnation, router.index)
        for peer in router.peers:  # they send their recent retained updates
            sink.send(runtime.router(peer), up)
        for shard in range(workers):
            sink.send(runtime.worker(shard), up)
        for index in range(acceptors):
            sink.send(runtime.acceptor(index), up)
        for index in range(auth_processes):
            sink.send(auth_key(index), up)

    @property
    def synced(self) -> bool:
        """Every shard has re-sent its subscriptions: acceptors' publishes may
        be read (until then they wait in their pipes)."""
        return not self.router.unsynced

    def stop_waiting_for_sync(self) -> None:
        self.router.stop_waiting_for_sync()

    def next_timer(self) -> float | None:
        """The first retained deadline (maybe of a message replaced since:
        handle_timer skips those)."""
        expiring = self.router.expiring
        return expiring[0][0] if expiring else None

    def handle_timer(self, now: float) -> None:
        self.router.expire_retained(now)

    def flush_outputs(self, sink: runtime.Sink) -> None:
        for shard, out in self.router.to_workers.items():
            if out:
                sink.extend(runtime.worker(shard), out)
                out.clear()
        for index, out in self.router.to_acceptors.items():
            if out:
                sink.extend(runtime.acceptor(index), out)
                out.clear()
        for index, out in self.router.to_routers.items():
            if out:
                sink.extend(runtime.router(index), out)
                out.clear()

    def take_durable(self) -> tuple[list[Op], Held]:
        ops, later = self.router.take_durable()
        return ops, later

    def hold_for_commit(self, later: Held) -> object:
        return None

    def commit_done(self, hold: object) -> None:
        pass

    def failed_envelope(self, dest: Destination, e: Envelope) -> tuple[Destination, Envelope]:
        return failed_envelope(dest, e)

    def destination(self, dest: Destination) -> runtime.Dest:
        return runtime.acceptor(dest)


def follow_shards(config: Config, bus: Bus, router: Router) -> None:
    """A cluster's shards move: the router's pipe to a shard's worker
    follows it (flockmq/shard_routes.py). Nothing outside a cluster."""
    if config.placement is None:
        return
    routes = ShardRoutes(
        config,
        lambda shard, now: bus.repoint(runtime.worker(shard), now.worker_endpoint(shard)),
    )
    router.add_handler(Kind.SHARD_AT, routes.on_shard_at)
    # an old owner's resync is ignored (router/resync.py)
    router.resyncs.known = routes.directory.epoch


def follow_nodes(config: Config, bus: Bus, router: Router) -> None:
    """A cluster's node dies: nothing more to its router and acceptors, and
    the recent retained updates to its router when it is live again without
    a restart (flockmq/routers_live.py; a restart brings ROUTER_UP). Nothing
    outside a cluster."""
    if config.placement is None:
        return
    nodes = LiveNodes(config.routers)

    def on_routers_live(e: Wire) -> None:
        went_down, came_up = nodes.update(e)
        routers_live.mark(bus, config, went_down, came_up)
        for peer in sorted(came_up):
            router.handle(cast(Wire, env.RouterUp(Kind.ROUTER_UP, 0, peer)))

    router.add_handler(Kind.ROUTERS_LIVE, on_routers_live)


def run_router(config: Config, incarnation: int, index: int = 0) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        store = open_configured_store(config)
        core = RouterCore.create(config, store.load_retained(), index)
        # PostgreSQL: another broker may serve while this one stands by
        reload = RetainedReload(loop, core.router, store) if config.store == "postgres" else None

        def resume_when_synced() -> None:
            if core.synced:
                process.bus.resume_reading("sync")
            if reload is not None:
                reload.poll()

        role = Role(
            "router" if config.routers == 1 else f"router {index}",
            core,
            bus_id=config.router_id(index),
            incarnation=incarnation,
            stats=SysStats(
                "router",
                index,
                core.counters,
                gauges=core.router.gauges,
                # the broker-wide Mosquitto topics: router 0's (every router
                # sees every process's counters, but one publishes them)
                extra=core.router.mosquitto_sys.topics if index == 0 else None,
                process_metrics=bool(config.metrics_port),
            ),
            send_stats=lambda routes, now: process.runner.feed(routes, now),  # routed here
            tick_interval=TICK_INTERVAL,
            logger=log,
            after_pass=resume_when_synced,
        )
        process = CoreProcess(loop, config, store, role)
        bus = process.bus
        bus.bind(config.router_endpoint(index), pausable=False)  # from workers, routers
        bus.bind(config.router_work_endpoint(index), pausable=True)  # from acceptors
        for peer in core.router.peers:
            bus.connect(runtime.router(peer), config.router_endpoint(peer), config.router_id(peer))
        for shard in range(config.workers):
            bus.connect(
                runtime.worker(shard), config.worker_endpoint(shard), config.worker_id(shard)
            )
        for acceptor in range(config.acceptors):
            bus.connect(
                runtime.acceptor(acceptor),
                config.acceptor_endpoint(acceptor),
                config.acceptor_id(acceptor),
            )
        follow_shards(config, bus, core.router)
        follow_nodes(config, bus, core.router)
        # auth processes send their counters (flockmq/auth/process.py): this
        # is where the credit for them goes
        for auth in range(auth_process_count(config)):
            bus.connect(auth_key(auth), config.auth_endpoint(auth), config.auth_id(auth))
        # Until every shard has re-sent its subscriptions, acceptors'
        # publishes wait in their pipes, not in this process.
        bus.pause_reading("sync")
        bus.start()
        core.start(bus, incarnation, config.workers, config.acceptors, auth_process_count(config))

        def sync_timeout() -> None:
            core.stop_waiting_for_sync()
            process.flush()  # send what the held publishes produced

        loop.call_later(SYNC_TIMEOUT, sync_timeout)
        if config.metrics_port and index == 0:
            # prometheus_client and http.server: 5 MiB, only for a metrics port
            from .metrics import serve_metrics

            serve_metrics(
                config.host, config.metrics_port, core.router.mosquitto_sys, config.runtime_dir
            )
        log.info("router %d up (incarnation %d)", index, incarnation)
        try:
            await process.serve()
        finally:
            if reload is not None:
                reload.close()

    uvloop.run(main())
