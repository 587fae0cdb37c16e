"""When the supervisor starts an exited child again, and what it says about
it (sans-IO: the times are passed in; flockmq/app/supervisor.py `watch`
does the rest).

Backoff: a child that lived more than STABLE_SECONDS is started again after
0.1 s; one that exits sooner waits twice as long as the last time, up to
`restart_backoff_max` (Config).

Crash loop: LOOP_EXITS quick exits in a row (each before STABLE_SECONDS)
make a crash loop, such as a cluster node's workers while its link to
PostgreSQL is cut (they cannot open their store). The supervisor says so
once (a warning), not once per restart: the first exits are logged as
errors, the one that makes the loop as that warning, the later ones at
debug level only (the child's own log line still says why it exits), and
one line again when a start has lived STABLE_SECONDS (out of the loop).
The restarts themselves go on, with the backoff.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

STABLE_SECONDS: Final = 30.0  # a child that lived this long restarts without backoff
LOOP_EXITS: Final = 3  # quick exits in a row that make a crash loop
FIRST_BACKOFF: Final = 0.1  # seconds


@dataclass(slots=True)
class Restarts:
    """One child's restarts."""

    backoff: float = 0.0
    quick_exits: int = 0  # in a row, each before STABLE_SECONDS
    looping: bool = False

    def exited(self, lived: float, backoff_max: float) -> tuple[float, int]:
        """The child exited after `lived` seconds: how long to wait before
        starting it again, and the logging level of the line saying so
        (logging.WARNING: it is a crash loop from now on)."""
        if lived > STABLE_SECONDS:
            self.backoff, self.quick_exits, self.looping = FIRST_BACKOFF, 0, False
        else:
            self.backoff = min(max(self.backoff * 2, FIRST_BACKOFF), backoff_max)
            self.quick_exits += 1
        if self.looping:
            return self.backoff, logging.DEBUG
        if self.quick_exits >= LOOP_EXITS:
            self.looping = True
            return self.backoff, logging.WARNING
        return self.backoff, logging.ERROR

    def running(self, running_for: float) -> bool:
        """The child started `running_for` seconds ago and runs: True once,
        when a child in a crash loop has lived STABLE_SECONDS (say so)."""
        if self.looping and running_for > STABLE_SECONDS:
            self.looping, self.quick_exits = False, 0
            return True
        return False
