"""Failure isolation between envelopes, and log lines a client cannot flood.

Every role handles the envelopes of a frame one by one. One that raises (a
bug met by a rare path, or input no check foresaw) must cost only itself:
`EnvelopeGuard.failed` is called from the role's `except` around each
envelope, counts it, and logs its traceback, rate limited, so that the
others of the frame are still handled and a stream of bad envelopes cannot
fill the disk.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from flockmq.envelopes import kind_name


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
