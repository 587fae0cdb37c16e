"""The acceptor under the runtime's contract (flockmq/runtime.py `Core`), so
that its envelopes and timers are driven by the same `CoreRunner` as the
router's and the workers': each envelope of a frame isolated by
`EnvelopeGuard.handle_each`, timers through `next_timer`/`handle_timer`.

What differs is what an acceptor is: it writes to its clients' sockets as it
handles an envelope (the connections' writes are coalesced per loop pass,
frontend/connection.py), it sends to the router and the workers on the bus as
it goes (the bus batches per pass), and it holds nothing for a commit (it has
no store, and its process's committer is `flockmq.runtime.NoCommits`):
`take_durable` is always empty.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from flockmq.envelopes import Wire, kind_name
from flockmq.isolation import EnvelopeGuard, RateLimitedLog
from flockmq.runtime import Sink, StoreLess

if TYPE_CHECKING:
    from .acceptor import Acceptor

TIMER_INTERVAL = 0.5  # the sessions' timers, the ordering holds, $SYS


class AcceptorCore(StoreLess):
    def __init__(self, acceptor: Acceptor, unknown_log: RateLimitedLog) -> None:
        self.acceptor = acceptor
        self.counters: Counter[str] = acceptor.counters
        self.guard: EnvelopeGuard = acceptor.guard
        self.handlers = acceptor.handlers
        self.unknown_log = unknown_log
        self.due = 0.0  # the next tick

    def handle(self, envelope: Wire, now: float) -> None:
        """One envelope; may raise (the runner isolates it)."""
        self.acceptor.now = now
        handler = self.handlers.get(envelope[0])
        if handler is None:
            self.counters["unknown_envelopes"] += 1
            self.unknown_log.warning("acceptor: unknown envelope kind %s", kind_name(envelope[0]))
            return
        handler(envelope)

    def next_timer(self) -> float | None:
        return self.due

    def handle_timer(self, now: float) -> None:
        # The process ticks every TIMER_INTERVAL: due half-way to the next
        # tick, so a tick that fires a little early still runs the timers.
        self.due = now + TIMER_INTERVAL / 2
        self.acceptor.now = now
        self.acceptor.run_timers(now)

    def flush_outputs(self, sink: Sink) -> None:
        """Nothing waits here: envelopes went on the bus as they were made."""
