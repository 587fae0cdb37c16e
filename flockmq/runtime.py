"""One runtime for every core: how a process drives its sans-IO logic.

A *core* is a role's logic as a plain object (the router's `Router`, a
worker's `Shard`): envelopes and time in, envelopes and store ops out; it
never touches a socket, a clock or the disk. Every core offers the same
contract, `Core` below, and `CoreRunner` drives it the same way in every
process and in the in-memory simulation (tests/unit/simulation/):

- `feed(envelopes, now)`: a frame. Each envelope goes to `core.handle(e,
  now)`; one that raises is counted and logged alone (`EnvelopeGuard`), the
  rest of the frame is still handled. Then the pass ends (`flush`).
- `tick(now)`: `core.handle_timer(now)` when `core.next_timer()` is due, then
  the pass ends.
- `flush()`, the end of every pass: the core's store ops go to the committer
  with the envelopes that promise they are durable (`take_durable`), then
  everything else the core made goes to the sink, one list per destination
  (batch every hop).
- `committed(...)`, the one place that decides what a durable envelope
  becomes: sent as it is once its commit is done, or, when the store could not
  write, replaced by the core's `failed_envelope` (a STORED ok=False instead of
  an acknowledgement, a refused SUBACK...), counted as `store_failures`.

Destinations are the bus keys every process uses: `router(i)`, `worker(i)`,
`acceptor(i)`. The sink (`flockmq.bus.Bus`, or the simulation's in-memory
bus) and the committer (`flockmq.store.Committer`, or the simulation's) are
passed in: this module does no I/O. `runtime_process.py` puts a runner in a
process (event loop, ZeroMQ, signals).

Invariants: a pass's durable envelopes are released before its other outputs
are sent, and commits complete in the order they were released (so held
envelopes leave in the order they were made); the per-envelope path adds
nothing to a core's `handle` but the loop and its `try`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from flockmq.envelopes import Envelope, Wire
from flockmq.isolation import EnvelopeGuard

if TYPE_CHECKING:
    from collections import Counter

    from flockmq.store import Op, StoreError

# The bus keys of the three roles, the same in every process. Router 0 is
# ROUTER (the one router of a default configuration); router i > 0 is
# ("router", i) (see `router`).
ROUTER: Final = "router"


def router(index: int) -> Hashable:
    return ROUTER if index == 0 else ("router", index)


def is_router(key: Hashable) -> bool:
    return key == ROUTER or (isinstance(key, tuple) and key[0] == "router")


def worker(shard: int) -> tuple[str, int]:
    return ("worker", shard)


def acceptor(index: int) -> tuple[str, int]:
    return ("acceptor", index)


Dest = Hashable
# (destination as the core names it, envelope): held until a commit is done
Held = list[tuple[Any, Envelope]]


class Sink(Protocol):
    """Where a pass's envelopes go: flockmq.bus.Bus, or an in-memory bus."""

    def send(self, key: Dest, envelope: Envelope) -> None: ...

    def extend(self, key: Dest, envelopes: Sequence[Envelope]) -> None: ...


class Releaser(Protocol):
    """store.Committer's `release`: `on_done(error)` once `ops` are committed
    and every callback released before has run."""

    def release(self, ops: Sequence[Op], on_done: Callable[[StoreError | None], None]) -> None: ...


class NoCommits:
    """The `Releaser` of a core with no store (an acceptor): it never has
    anything to commit, so nothing is ever released."""

    def release(self, ops: Sequence[Op], on_done: Callable[[StoreError | None], None]) -> None:
        raise AssertionError("this core has no store")

    def close(self) -> None:
        pass


class StoreLess:
    """The durable half of the `Core` contract for a core with no store (an
    acceptor, an auth process): nothing is ever held for a commit."""

    _NOTHING: Final[tuple[list[Op], Held]] = ([], [])  # never filled: read once per pass

    def take_durable(self) -> tuple[list[Op], Held]:
        return self._NOTHING

    def hold_for_commit(self, later: Held) -> object:
        return None

    def commit_done(self, hold: object) -> None:
        pass

    def failed_envelope(self, dest: Any, envelope: Envelope) -> tuple[Any, Envelope] | None:
        raise AssertionError(f"{type(self).__name__} holds nothing for a commit")

    def destination(self, dest: Any) -> Dest:
        return dest  # type: ignore[no-any-return]


class Core(Protocol):
    """What a role's logic offers the runtime (see the module docstring)."""

    counters: Counter[str]
    guard: EnvelopeGuard  # counts and logs what `handle` raised

    def handle(self, envelope: Wire, now: float) -> None:
        """One envelope; may raise (the runtime isolates it)."""

    def next_timer(self) -> float | None:
        """When handle_timer next has work, or None."""

    def handle_timer(self, now: float) -> None: ...

    def flush_outputs(self, sink: Sink) -> None:
        """Send what this pass made to `sink`, one list per destination, and
        empty the core's outboxes."""

    def take_durable(self) -> tuple[list[Op], Held]:
        """This pass's store ops, and what may only leave once they are committed."""

    def hold_for_commit(self, later: Held) -> object:
        """Called as `later` goes to the committer; what it returns is given
        back to `commit_done` once the commit is settled."""

    def commit_done(self, hold: object) -> None: ...

    def failed_envelope(self, dest: Any, envelope: Envelope) -> tuple[Any, Envelope] | None:
        """What to send instead of a held envelope whose commit failed (None:
        nothing, counted as `withheld_after_store_failure`)."""

    def destination(self, dest: Any) -> Dest:
        """The bus key of a destination as the core names it in `take_durable`."""


class CoreRunner:
    """Drives one core: frames, timers, and the end of each pass."""

    def __init__(
        self,
        name: str,
        core: Core,
        sink: Sink,
        committer: Releaser,
        logger: logging.Logger,
    ) -> None:
        """`name` starts the core's log lines ("router", "worker 3")."""
        self.name = name
        self.core = core
        self.sink = sink
        self.committer = committer
        self.log = logger
        self.guard = core.guard

    def feed(self, envelopes: Sequence[Wire], now: float) -> None:
        """One frame, each envelope isolated, then the end of the pass."""
        self.guard.handle_each(self.core.handle, envelopes, now)
        self.flush()

    def tick(self, now: float) -> None:
        """The core's timers if due, then the end of the pass."""
        self.run_timers(now)
        self.flush()

    def run_timers(self, now: float) -> None:
        """`core.handle_timer(now)` if due. A timer that raises is logged and
        counted (`timer_errors`); the next tick runs."""
        core = self.core
        due = core.next_timer()
        if due is not None and due <= now:
            try:
                core.handle_timer(now)
            except Exception:
                core.counters["timer_errors"] += 1
                self.guard.limited.log(
                    logging.ERROR, "%s: error in a timer", self.name, exc_info=True
                )

    def flush(self) -> None:
        """The end of a pass: durable outputs to the committer, then the rest
        to the sink."""
        core = self.core
        ops, later = core.take_durable()
        if ops or later:
            hold = core.hold_for_commit(later)
            self.committer.release(ops, lambda error: self.committed(later, error, hold))
        core.flush_outputs(self.sink)

    def committed(self, later: Held, error: StoreError | None, hold: object) -> None:
        """A pass's commit is settled: its held envelopes leave, each replaced
        by the core's `failed_envelope` if the store could not write. One that
        cannot be sent (a bug in that replacement) costs only itself."""
        core = self.core
        if error is not None:
            core.counters["store_failures"] += 1
            self.log.error("%s: store write failed: %s", self.name, error)
        send = self.sink.send
        for dest, e in later:
            try:
                if error is None:
                    send(core.destination(dest), e)
                else:
                    instead = core.failed_envelope(dest, e)
                    if instead is None:
                        core.counters["withheld_after_store_failure"] += 1
                        continue
                    send(core.destination(instead[0]), instead[1])
            except Exception:
                self.guard.failed(e)
        core.commit_done(hold)
