"""The auth process: `AuthCore` (flockmq/auth/core.py) in a `CoreProcess`
(flockmq/runtime_process.py), with no store, its hook module loaded once at
start and run by `HookRunner`.

Wiring: one inbox (AUTHENTICATE/AUTHORIZE from every acceptor, always read:
what an acceptor may send is bounded there; credit and, when it restarts,
ROUTER_UP from the router, after which every counter goes to it again), a PUSH
to every acceptor for the replies, and one to the router for this process's
counters (flockmq/auth/counting.py): retained `$SYS/broker/auth/<index>/...`
ROUTEs every `sys_interval`, as a worker sends its own, which the router
also serves to Prometheus. The acceptors count what they decide of each call
on their side (calls, cache hits, denials, timeouts as they see them).
"""

from __future__ import annotations

import asyncio
import logging

from flockmq import runtime
from flockmq.config import Config
from flockmq.envelopes import Route
from flockmq.hooks import load_hook
from flockmq.runtime_process import CoreProcess, Role
from flockmq.sysstats import SysStats

from .core import AuthCore, Call
from .runner import HookRunner

log = logging.getLogger("flockmq.auth")

TICK_INTERVAL = 0.5


def run_auth(config: Config, index: int, incarnation: int) -> None:
    import uvloop

    assert config.auth_hook is not None  # the supervisor starts none without one

    async def main() -> None:
        loop = asyncio.get_running_loop()
        hook = load_hook(config.auth_hook or "")
        process: CoreProcess | None = None

        def start(call: Call) -> None:
            runner.start(call)

        def after_answer() -> None:
            if process is not None:
                process.flush()

        core = AuthCore(index, start)
        runner = HookRunner(
            loop,
            hook,
            config.auth_hook_timeout,
            config.auth_hook_threads,
            core.answer,
            after_answer,
        )

        def gauges() -> dict[str, int]:
            return {**core.gauges(), "hook_threads_busy": runner.busy}

        def send_stats(routes: list[Route], now: float) -> None:
            bus.extend(runtime.router(index % config.routers), routes)

        role = Role(
            f"auth {index}",
            core,
            bus_id=config.auth_id(index),
            incarnation=incarnation,
            stats=SysStats(
                "auth",
                index,
                core.counters,
                gauges=gauges,
                process_metrics=bool(config.metrics_port),
            ),
            send_stats=send_stats,
            tick_interval=TICK_INTERVAL,
            logger=log,
        )
        process = CoreProcess(loop, config, None, role)
        bus = process.bus
        bus.bind(config.auth_endpoint(index), pausable=False)
        for acceptor in range(config.acceptors):
            bus.connect(
                runtime.acceptor(acceptor),
                config.acceptor_endpoint(acceptor),
                config.acceptor_id(acceptor),
            )
        for router in range(config.routers):
            bus.connect(
                runtime.router(router), config.router_endpoint(router), config.router_id(router)
            )
        bus.start()
        log.info("auth %d up (incarnation %d): hook %s", index, incarnation, hook.name)
        try:
            await process.serve()
        finally:
            runner.close()

    uvloop.run(main())
