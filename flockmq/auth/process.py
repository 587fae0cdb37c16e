"""The auth process: `AuthCore` (flockmq/auth/core.py) in a `CoreProcess`
(flockmq/runtime_process.py), with no store, its hook module loaded once at
start and run by `HookRunner`.

Wiring: one inbox (AUTHENTICATE/AUTHORIZE from every acceptor, always read:
what an acceptor may send is bounded there), and a PUSH to every acceptor
for the replies. Its counters are its own log's business; what the broker's
$SYS and Prometheus show about hooks is counted by the acceptors (calls,
denials, timeouts, errors), where each call's outcome is decided.
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


def _no_stats(routes: list[Route], now: float) -> None:
    """The router does not read auth processes (see the module docstring)."""


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
        role = Role(
            f"auth {index}",
            core,
            bus_id=config.auth_id(index),
            incarnation=incarnation,
            stats=SysStats("auth", index, core.counters, gauges=core.gauges, process_metrics=False),
            send_stats=_no_stats,
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
        bus.start()
        log.info("auth %d up (incarnation %d): hook %s", index, incarnation, hook.name)
        try:
            await process.serve()
        finally:
            runner.close()

    uvloop.run(main())
