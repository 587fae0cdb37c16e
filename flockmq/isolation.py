"""Failure isolation between envelopes, and log lines a client cannot flood.

Every core handles the envelopes of a frame one by one. One that raises (a
bug met by a rare path, or input no check foresaw) must cost only itself:
`EnvelopeGuard.handle_each` is the one loop that hands envelopes to a core's
`handle` and catches what one raises: it is counted (`envelope_errors`) and
its traceback logged, rate limited, so that the others of the frame are still
handled and a stream of bad envelopes cannot fill the disk. The runtime
(flockmq/runtime.py) feeds every frame through it, and a core that replays
envelopes it held (a router resyncing, a shard completing a takeover) does
too. A core's `handle` itself may raise.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from flockmq.envelopes import Wire, kind_name


class RateLimitedLog:
    """At most `burst` lines per `interval` seconds through `logger`; the
    number suppressed meanwhile is told with the next line that gets out."""

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 10,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self.window_start = -interval
        self.sent = 0
        self.suppressed = 0

    def log(self, level: int, msg: str, *args: Any, exc_info: bool = False) -> bool:
        """Log unless over the rate; True when the line went out."""
        now = self.clock()
        if now - self.window_start >= self.interval:
            self.window_start = now
            self.sent = 0
        if self.sent >= self.burst:
            self.suppressed += 1
            return False
        self.sent += 1
        if self.suppressed:
            msg = f"{msg} ({self.suppressed} similar lines suppressed)"
            self.suppressed = 0
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def warning(self, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, msg, *args)


class EnvelopeGuard:
    """What a role does with an envelope whose handler raised."""

    def __init__(self, role: str, counters: Counter[str], logger: logging.Logger) -> None:
        self.role = role
        self.counters = counters
        self.limited = RateLimitedLog(logger)

    def handle_each(
        self, handle: Callable[[Wire, float], None], envelopes: Iterable[Wire], now: float
    ) -> None:
        """`handle(e, now)` for each envelope; one that raises costs only itself."""
        for e in envelopes:
            try:
                handle(e, now)
            except Exception:
                self.failed(e)

    def failed(self, envelope: object) -> None:
        """Call from inside the `except` block (the traceback is logged)."""
        self.counters["envelope_errors"] += 1
        kind = envelope[0] if isinstance(envelope, list | tuple) and envelope else None
        name = kind_name(kind)
        self.limited.log(
            logging.ERROR,
            "%s: error while handling a %s envelope; the rest of its frame goes on",
            self.role,
            name,
            exc_info=True,
        )
