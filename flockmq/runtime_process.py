"""A core in a process: the event loop, the bus, the group committer, the
tick and the signals, written once for the router and the workers.

`CoreProcess` owns what `CoreRunner` (flockmq/runtime.py) is given: its
`Bus` (frames in: `CoreRunner.feed` with the wall-clock time of the frame),
its `Committer` (store writes off the loop), and a tick every
`tick_interval` seconds (the core's timers and this process's $SYS
counters). `serve()` runs until SIGTERM or SIGINT, then closes the
committer (what was submitted is committed), the bus and the store.

The role supplies its core and options (`Role`), the bus wiring and what it
sends at start; the rest is here, so that every core is driven the same way.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flockmq.bus import Bus
from flockmq.config import Config
from flockmq.envelopes import Route, Wire
from flockmq.runtime import Core, CoreRunner, Releaser
from flockmq.store import Committer, Store
from flockmq.sysstats import SysStats


@dataclass(frozen=True, slots=True)
class Role:
    """What a role brings to its process: its core and how to announce it.

    `name` starts the core's log lines ("router", "worker 3"); `bus_id` is
    the process's id on the bus (Config.process_id); `send_stats(routes,
    now)`: where this process's $SYS ROUTEs go (the router routes its own; a
    worker sends them to the router); `after_pass`: called at the end of
    every pass (the router resumes reading acceptors once it is synced)."""

    name: str
    core: Core
    bus_id: int
    incarnation: int
    stats: SysStats
    send_stats: Callable[[list[Route], float], None]
    tick_interval: float
    logger: logging.Logger
    after_pass: Callable[[], None] | None = None


class NoStore:
    """The `Releaser` of a core with no store (an auth process): its cores
    hold nothing for a commit, so nothing is ever released."""

    def release(self, ops: object, on_done: object) -> None:
        raise AssertionError("this process has no store")


class CoreProcess:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, config: Config, store: Store | None, role: Role
    ) -> None:
        """`store` None: a role with no durable state (its core's
        `take_durable` is always empty)."""
        self.loop = loop
        self.config = config
        self.store = store
        self.stats = role.stats
        self.send_stats = role.send_stats
        self.tick_interval = role.tick_interval
        self.after_pass = role.after_pass
        self.bus = Bus(
            loop,
            role.bus_id,
            role.incarnation,
            self.on_envelopes,
            pipe_bytes=config.max_pipe_bytes,
        )
        self.committer = Committer(store, loop) if store is not None else None
        releaser: Releaser = self.committer if self.committer is not None else NoStore()
        self.runner = CoreRunner(role.name, role.core, self.bus, releaser, role.logger)

    def on_envelopes(self, envelopes: Sequence[Wire]) -> None:
        self.runner.feed(envelopes, time.time())
        if self.after_pass is not None:
            self.after_pass()

    def flush(self) -> None:
        """End a pass made outside a frame or a tick (a start, a timeout)."""
        self.runner.flush()
        if self.after_pass is not None:
            self.after_pass()

    def tick(self) -> None:
        now = time.time()
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
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        if self.committer is not None:
            self.committer.close()
        self.bus.close()
        if self.store is not None:
            self.store.close()
