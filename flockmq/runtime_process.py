"""A core in a process: the event loop, the bus, the group committer, the
tick and the signals, written once for the router and the workers.

`CoreProcess` owns what `CoreRunner` (flockmq/runtime.py) is given: its
`Bus` (frames in: `CoreRunner.feed` with the wall-clock time of the frame),
its `Committer` (store writes off the loop), and a tick every
`tick_interval` seconds (the core's timers and this process's $SYS
counters). `serve()` runs until SIGTERM or SIGINT, then closes the
committer (what was submitted is committed), the bus and the store.

The role supplies the core, the bus wiring and what it sends at start; the
rest is here, so that every core is driven the same way.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Sequence

from flockmq.bus import Bus
from flockmq.config import Config
from flockmq.envelopes import Route, Wire
from flockmq.runtime import Core, CoreRunner
from flockmq.store import Committer, Store
from flockmq.sysstats import SysStats


class CoreProcess:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        config: Config,
        name: str,
        core: Core,
        store: Store,
        *,
        bus_id: int,
        incarnation: int,
        stats: SysStats,
        send_stats: Callable[[list[Route], float], None],
        tick_interval: float,
        logger: logging.Logger,
        after_pass: Callable[[], None] | None = None,
    ) -> None:
        """`send_stats(routes, now)`: where this process's $SYS ROUTEs go
        (the router routes its own; a worker sends them to the router).
        `after_pass`: called at the end of every pass (the router resumes
        reading acceptors once it is synced)."""
        self.loop = loop
        self.config = config
        self.store = store
        self.stats = stats
        self.send_stats = send_stats
        self.tick_interval = tick_interval
        self.after_pass = after_pass
        self.bus = Bus(
            loop, bus_id, incarnation, self.on_envelopes, pipe_bytes=config.max_pipe_bytes
        )
        self.committer = Committer(store, loop)
        self.runner = CoreRunner(name, core, self.bus, self.committer, logger)

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
        self.committer.close()
        self.bus.close()
        self.store.close()
