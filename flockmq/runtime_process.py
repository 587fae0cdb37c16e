"""A core in a process: the event loop, the bus, the group committer, the
tick and the signals, written once for the router, the workers and the
acceptors.

`CoreProcess` owns what `CoreRunner` (flockmq/runtime.py) is given: its
`Bus` (frames in: `CoreRunner.feed` with the role's clock's time of the
frame), its `Committer` (store writes off the loop; an acceptor has no store
and gets `NoCommits`), and a tick every `tick_interval` seconds (the core's
timers and this process's $SYS counters; when a frame comes from a new
incarnation of the router, which kept none of them, all of them are sent
again at the next tick). `serve()` runs until SIGTERM or
SIGINT, then runs the role's `stopping` (an acceptor closes its servers and
connections), then closes the committer (what was submitted is committed),
the bus and the store.

The role supplies its core and options (`Role`), the bus wiring and what it
sends at start; the rest is here, so that every core is driven the same way.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass

from flockmq import runtime
from flockmq.bus import Bus
from flockmq.config import Config
from flockmq.control import ControlServer
from flockmq.envelopes import Route, Wire
from flockmq.runtime import Core, CoreRunner, NoCommits
from flockmq.store import Committer, Store
from flockmq.sysstats import SysStats


@dataclass(frozen=True, slots=True)
class Role:
    """What a role brings to its process: its core and how to announce it.

    `name` starts the core's log lines ("router", "worker 3"); `bus_id` is
    the process's id on the bus (Config.process_id); `send_stats(routes,
    now)`: where this process's $SYS ROUTEs go (the router routes its own; a
    worker sends them to the router); `after_pass`: called at the end of
    every pass (the router resumes reading acceptors once it is synced);
    `clock`: the time given to the core (wall-clock time, which the store
    keeps, for the router and workers; the loop's monotonic time for an
    acceptor, whose timers are all relative); `on_decongested`: the bus has
    no backlog any more (an acceptor reads its clients again); `stopping`:
    awaited after the stop signal, before the bus closes."""

    name: str
    core: Core
    bus_id: int
    incarnation: int
    stats: SysStats
    send_stats: Callable[[list[Route], float], None]
    tick_interval: float
    logger: logging.Logger
    after_pass: Callable[[], None] | None = None
    clock: Callable[[], float] = time.time
    on_decongested: Callable[[], None] | None = None
    stopping: Callable[[], Awaitable[None]] | None = None


class CoreProcess:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, config: Config, store: Store | None, role: Role
    ) -> None:
        """`store` None: the core never commits (an acceptor, an auth process)."""
        self.loop = loop
        self.config = config
        self.store = store
        self.stats = role.stats
        self.send_stats = role.send_stats
        self.tick_interval = role.tick_interval
        self.after_pass = role.after_pass
        self.clock = role.clock
        self.stopping = role.stopping
        self.bus = Bus(
            loop,
            role.bus_id,
            role.incarnation,
            self.on_envelopes,
            on_decongested=role.on_decongested,
            pipe_bytes=config.max_pipe_bytes,
            on_peer_restarted=self.on_peer_restarted,
            curve=config.curve,
        )
        self.committer: Committer | NoCommits = (
            NoCommits() if store is None else Committer(store, loop)
        )
        self.runner = CoreRunner(role.name, role.core, self.bus, self.committer, role.logger)

    def on_peer_restarted(self, key: Hashable) -> None:
        """A restarted router starts with no $SYS value (they are not stored)
        and is sent only what changes: send it every counter again (to this
        process's router, whichever restarted: the routers share them). Every
        role hears of it: the router's first frame to workers, acceptors and
        auth processes is its ROUTER_UP (router/process.py)."""
        if runtime.is_router(key):
            self.stats.resend_all()

    def on_envelopes(self, envelopes: Sequence[Wire]) -> None:
        self.runner.feed(envelopes, self.clock())
        if self.after_pass is not None:
            self.after_pass()

    def flush(self) -> None:
        """End a pass made outside a frame or a tick (a start, a timeout)."""
        self.runner.flush()
        if self.after_pass is not None:
            self.after_pass()

    def tick(self) -> None:
        now = self.clock()
        self.runner.run_timers(now)
        routes: list[Route] = []
        self.stats.maybe_publish(self.loop.time(), self.config.sys_interval, routes.append)
        if routes:
            self.send_stats(routes, now)
        self.flush()
        self.loop.call_later(self.tick_interval, self.tick)

    async def serve(self) -> None:
        """Tick, and run until SIGTERM or SIGINT; then close everything."""
        self.tick()
        # answers `flockmq status` and the dashboard (flockmq/control.py)
        control = ControlServer.for_process(
            self.loop, self.config.runtime_dir, self.stats, self.bus, self.bus.incarnation
        )
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        if control is not None:
            control.close()
        if self.stopping is not None:
            await self.stopping()
        self.committer.close()
        self.bus.close()
        if self.store is not None:
            self.store.close()
