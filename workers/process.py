"""The session-worker process: `Shard` as a runtime core (flockmq/runtime.py)
in a `CoreProcess` (flockmq/runtime_process.py).

`ShardCore` is the runtime's contract over the shard's public methods: its
outboxes (`to_router`, `to_acceptors`), its timers, the commit bracket
(`hold_for_commit`/`commit_done`: what follows a held envelope waits for it),
and `failed_envelope` (workers/outbox.py), what each envelope it held back
for a commit becomes when the store could not write. `start` is what a (re)started worker does;
the process and the in-memory simulation (tests/unit/simulation/) both use it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from flockmq import envelopes as env
from flockmq import routers_live, runtime
from flockmq.config import Config
from flockmq.envelopes import Envelope, Kind, Route
from flockmq.isolation import EnvelopeGuard
from flockmq.persistence import open_configured_store
from flockmq.runtime import Held, Sink
from flockmq.runtime_process import CoreProcess, Role
from flockmq.sharding import shard_of
from flockmq.store import Op, SessionRecord, Store, StoreError
from flockmq.store.postgres import PostgresStore
from flockmq.sysstats import SysStats

from .outbox import failed_envelope
from .shard import Shard, ShardLimits

if TYPE_CHECKING:
    from .ownership import ShardOwnership

log = logging.getLogger("flockmq.worker")

TICK_INTERVAL = 0.25


def limits_from(config: Config) -> ShardLimits:
    return ShardLimits(
        max_inflight=config.max_inflight,
        max_queued_messages=config.max_queued_messages,
        max_queued_bytes=config.max_queued_bytes,
        max_subscriptions=config.max_subscriptions,
        max_subscription_bytes=config.max_subscription_bytes,
        queue_qos0=config.queue_qos0,
        max_session_expiry=config.max_session_expiry,
        routers=config.routers,
        acceptor_routers=config.acceptor_routers(),
    )


class ShardCore:
    """`Shard` under the runtime's contract (flockmq.runtime.Core)."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.counters: Counter[str] = shard.counters
        self.guard: EnvelopeGuard = shard.state.guard
        # Bound once: the per-envelope path is the shard's own.
        self.handle = shard.handle
        self.next_timer = shard.next_timer
        self.handle_timer = shard.handle_timer
        self.hold_for_commit = shard.hold_for_commit

    def start(
        self,
        sink: Sink,
        incarnation: int,
        acceptors: int,
        records: Iterable[SessionRecord],
        now: float,
        after_standby: bool = False,
    ) -> None:
        """Announce this shard to the router and every acceptor, and load its
        sessions from the store (re-sending their subscriptions)."""
        self.announce(sink, incarnation, acceptors, after_standby)
        self.shard.load(records, now)

    def announce(
        self, sink: Sink, incarnation: int, acceptors: int, after_standby: bool = False
    ) -> None:
        """WORKER_UP to the router and every acceptor: forget what the
        previous incarnation had (subscriptions, connections to re-attach).
        `after_standby`: serving after a standby spell (env.WorkerUp)."""
        shard = self.shard
        shard.startup_envelopes(incarnation, after_standby)
        up = env.WorkerUp(Kind.WORKER_UP, shard.index, incarnation, after_standby)
        for index in range(acceptors):
            sink.send(runtime.acceptor(index), up)

    def send_stats(self, routes: list[Route], now: float) -> None:
        """This process's $SYS counters: to the router (this shard's, see
        Outbox.router_of)."""
        self.shard.to_router.extend(routes)

    def flush_outputs(self, sink: Sink) -> None:
        shard = self.shard
        if shard.to_router:
            if shard.out.routers == 1:
                sink.extend(runtime.ROUTER, shard.to_router)
                shard.to_router.clear()
            else:
                for index, out in enumerate(shard.out.split_to_router()):
                    sink.extend(runtime.router(index), out)
        for index, out in shard.to_acceptors.items():
            if out:
                sink.extend(runtime.acceptor(index), out)
                out.clear()

    def take_durable(self) -> tuple[list[Op], Held]:
        return self.shard.take_durable()

    def commit_done(self, hold: object) -> None:
        self.shard.commit_done(hold)  # type: ignore[arg-type]

    def failed_envelope(
        self, dest: str | int | tuple[str, int], e: Envelope
    ) -> tuple[str | int | tuple[str, int], Envelope] | None:
        return failed_envelope(dest, e)

    def destination(self, dest: str | int | tuple[str, int]) -> runtime.Dest:
        """The shard names router i ("router", i) (Outbox.per_router) and an
        acceptor by its index."""
        if isinstance(dest, tuple):
            return runtime.router(dest[1])
        if isinstance(dest, str):
            return runtime.ROUTER
        return runtime.acceptor(dest)


def run_worker(config: Config, index: int, incarnation: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        core = ShardCore(Shard(index, limits_from(config), nonce=secrets.randbits(31)))
        store = open_configured_store(config)
        ownership = None
        if config.store == "postgres":
            from .ownership import ShardOwnership
            from .standby import Standby

            ownership = ShardOwnership(config, index, core.counters)
            # Until the shard's lock is held, the standby answers (see
            # workers/ownership.py); the runner looks `handle` up per frame.
            core.handle = Standby(
                index,
                core.shard.out,
                core.counters,
                core.guard,
                core.shard.subscriptions.follow_routers_live,
            ).handle
            records: list[SessionRecord] = []
        else:
            records = load_shard(store, config, index)
        role = Role(
            f"worker {index}",
            core,
            bus_id=config.worker_id(index),
            incarnation=incarnation,
            stats=SysStats(
                "worker",
                index,
                core.counters,
                gauges=core.shard.gauges if ownership is None else _with(ownership, core.shard),
                process_metrics=bool(config.metrics_port),
            ),
            send_stats=core.send_stats,
            tick_interval=TICK_INTERVAL,
            logger=log,
        )
        process = CoreProcess(loop, config, store, role)
        bus = process.bus
        bus.bind(config.worker_endpoint(index), pausable=False)  # from the router
        bus.bind(config.worker_work_endpoint(index), pausable=True)  # from acceptors
        for router in range(config.routers):
            bus.connect(
                runtime.router(router), config.router_endpoint(router), config.router_id(router)
            )
        for acceptor in range(config.acceptors):
            bus.connect(
                runtime.acceptor(acceptor),
                config.acceptor_endpoint(acceptor),
                config.acceptor_id(acceptor),
            )
        # a cluster: nothing to the router and acceptors of a dead node
        core.shard.subscriptions.on_down = lambda down, up: routers_live.mark(bus, config, down, up)
        bus.start()
        if ownership is None:
            serve_shard(core, process, config, incarnation, records)
        else:
            taking = loop.create_task(take_shard(core, process, ownership, incarnation))
            taking.add_done_callback(ownership.taken)
        try:
            await process.serve()
        finally:
            if ownership is not None:
                taking.cancel()
                ownership.close()

    uvloop.run(main())


def load_shard(store: Store, config: Config, index: int) -> list[SessionRecord]:
    workers = config.workers
    return store.load_sessions(lambda client_id: shard_of(client_id, workers) == index)


def serve_shard(
    core: ShardCore,
    process: CoreProcess,
    config: Config,
    incarnation: int,
    records: list[SessionRecord],
    after_standby: bool = False,
) -> None:
    """Announce the shard, restore its sessions, and handle its envelopes."""
    index = core.shard.index
    core.handle = core.shard.handle
    now = time.time()
    core.start(process.bus, incarnation, config.acceptors, records, now, after_standby)
    if records:
        log.info("worker %d: restored %d persistent sessions", index, len(records))
    process.flush()
    log.info("worker %d up (incarnation %d)", index, incarnation)


async def take_shard(
    core: ShardCore, process: CoreProcess, ownership: ShardOwnership, incarnation: int
) -> None:
    """PostgreSQL: standby until the shard's lock and epoch are this process's,
    then load and serve, fenced and watched (workers/ownership.py)."""
    store = process.store
    assert isinstance(store, PostgresStore)

    def standby() -> None:
        """A restarted worker that did not get its lock back: the router
        drops the shard's subscriptions, and the acceptors the connections
        the previous incarnation served (clean sessions are closed; the
        persistent ones are re-attached and the standby refuses them, so
        every client reconnects to the broker that serves the shard). Not
        in a cluster: the shard may be served by another node right now
        (it moved), and every router would drop that owner's subscriptions;
        the owner's SHARD_AT and WORKER_UP tell who serves it."""
        if incarnation > 0 and process.config.placement is None:
            core.announce(process.bus, incarnation, process.config.acceptors)
            process.flush()

    fence = await ownership.acquire(standby)
    store.fence = fence  # before the first commit: the writer reads it at each
    core.shard.state.epoch = fence.epoch  # its resyncs carry it (router/resync.py)
    store.on_not_owner = ownership.not_owner
    loop = asyncio.get_running_loop()
    try:
        records = await loop.run_in_executor(None, load_shard, store, process.config, fence.shard)
    except StoreError as e:
        ownership.lose(f"its sessions could not be loaded: {e}")
    ownership.watch()
    config = process.config
    if config.placement is not None:
        from .announce import announce_claim

        # a cluster: where the shard is served now, before the WORKER_UP
        # below, so every router and acceptor repoints first (workers/announce.py)
        announce_claim(process.bus, config, fence.shard, fence.epoch)
    serve_shard(core, process, config, incarnation, records, ownership.after_standby)


def _with(ownership: ShardOwnership, shard: Shard) -> Callable[[], dict[str, int]]:
    def gauges() -> dict[str, int]:
        return {**shard.gauges(), **ownership.gauges()}

    return gauges
