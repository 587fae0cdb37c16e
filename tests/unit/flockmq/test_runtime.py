"""flockmq/runtime.py: the one runner every core is driven by. A frame's
envelopes are each isolated (also the ones a core replays: a router's held
publishes, a shard's takeover), a timer that raises does not stop the next
tick, and a durable envelope whose commit failed is replaced by the core's
`failed_envelope` (counted once per failed commit), the others still sent."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from flockmq import envelopes as env
from flockmq import runtime
from flockmq.envelopes import Envelope, Kind, Wire
from flockmq.isolation import EnvelopeGuard
from flockmq.router.process import RouterCore
from flockmq.router.router import Router
from flockmq.runtime import CoreRunner, Held, Sink
from flockmq.store import Op, StoreError
from tests.unit.simulation.harness import NEVER, Simulation
from tests.unit.wire import wire

log = logging.getLogger("test")


class ListSink:
    def __init__(self) -> None:
        self.sent: list[tuple[Hashable, Any]] = []

    def send(self, key: Hashable, envelope: Envelope) -> None:
        self.sent.append((key, wire(envelope)))

    def extend(self, key: Hashable, envelopes: Sequence[Envelope]) -> None:
        self.sent.extend((key, wire(e)) for e in envelopes)


class Committer:
    """Holds releases until `settle`."""

    def __init__(self) -> None:
        self.pending: list[Callable[[StoreError | None], None]] = []
        self.ops: list[Op] = []

    def release(self, ops: Sequence[Op], on_done: Callable[[StoreError | None], None]) -> None:
        self.ops.extend(ops)
        self.pending.append(on_done)

    def settle(self, error: StoreError | None = None) -> None:
        pending, self.pending = self.pending, []
        for on_done in pending:
            on_done(error)


def router_runner() -> tuple[Router, ListSink, Committer, CoreRunner]:
    router = Router()
    sink, committer = ListSink(), Committer()
    return router, sink, committer, CoreRunner("router", RouterCore(router), sink, committer, log)


def sub(shard: int, client_id: str, topic_filter: str) -> list[Any]:
    entry = env.RouteEntry(topic_filter, 1, False, False, True, None, False)
    e: list[Any] = wire(env.Sub(Kind.SUB, shard, client_id, 7, 1, [entry], [1]))
    return e


def test_a_frame_goes_on_after_an_envelope_that_raises_and_its_outputs_are_sent() -> None:
    router, sink, _, runner = router_runner()
    poisoned = [Kind.SUB, 0, "mallory", 8, 1, [["a/b"]], [1]]
    runner.feed([sub(0, "alice", "a/b"), poisoned, sub(1, "bob", "a/+")], 1000.0)
    assert router.counters["envelope_errors"] == 1
    assert sorted((key, e[1]) for key, e in sink.sent if e[0] == Kind.SUBSCRIBED) == [
        (runtime.worker(0), "alice"),
        (runtime.worker(1), "bob"),
    ]
    assert router.to_workers[0] == []  # the core's outbox is emptied by the pass


def test_a_held_envelope_that_raises_when_released_costs_only_itself() -> None:
    """A router resyncing holds publishes and fences; released, one that
    raises does not stop the ones after it."""
    router, sink, _, runner = router_runner()
    router.expect_sync(1)
    route = wire(env.Route(Kind.ROUTE, "p", "a/b", b"x", 0, False, None, None))
    runner.feed([sub(0, "alice", "a/b"), [Kind.FENCE, 0], route], 1000.0)  # FENCE: wrong arity
    assert router.counters["envelope_errors"] == 0  # held, not handled yet
    runner.feed([[Kind.SYNCED, 0]], 1001.0)
    assert router.counters["envelope_errors"] == 1
    assert [e[0] for key, e in sink.sent if key == runtime.worker(0)] == [
        Kind.SUBSCRIBED,
        Kind.DELIVER,
    ]


def test_a_takeover_replays_what_the_new_connection_sent_each_isolated() -> None:
    sim = Simulation(workers=1, acceptors=2)
    old = sim.client("c", acceptor=0)
    old.connect(clean=False, expiry=NEVER)
    sim.run()
    new = sim.client("c", acceptor=1)
    new.connect(clean=False, expiry=NEVER)
    # Held until the takeover completes: a PUBACK of the wrong arity, then a SUBSCRIBE.
    poisoned: Any = (Kind.PUBACK_IN, new.conn, "c")
    sim.post(new.sender, runtime.worker(0), [poisoned])
    new.subscribe("t", 1)
    sim.run()
    old.closed()
    sim.run()
    assert sim.shard(0).counters["envelope_errors"] == 1
    assert [e[2] for e in new.received.subacks] == [1]


def test_a_retained_write_that_failed_is_not_acknowledged() -> None:
    router, sink, committer, runner = router_runner()
    reply = env.Reply(env.make_conn_id(1, 1, 5), 9, 2, 1, None)
    route = env.Route(Kind.ROUTE, "p", "r", b"x", 1, True, None, reply)
    runner.feed([wire(route)], 1000.0)
    assert committer.ops  # the retained write
    assert [e for _, e in sink.sent if e[0] in (Kind.ROUTED, Kind.STORED)] == []
    committer.settle(StoreError("disk full"))
    assert sink.sent == [(runtime.acceptor(1), [Kind.STORED, reply.conn, 9, False, 2])]
    assert router.counters["store_failures"] == 1


def test_a_copy_whose_commit_failed_is_not_confirmed_to_the_publisher() -> None:
    sim = Simulation(workers=1, acceptors=1)
    sub_ = sim.client("sub")
    sub_.connect(clean=False, expiry=NEVER)
    sub_.subscribe("q", 1)
    pub = sim.client("pub")
    pub.connect(clean=True)
    sim.run()
    sim.auto_commit = False
    pub.publish("q", b"m", 1, packet_id=3)
    sim.run()
    sim.fail_commits()
    sim.run()
    assert pub.received.stored[3] == [False]
    assert not pub.acknowledged(3)
    assert sim.shard(0).counters["store_failures"] == 1


class BrokenCore:
    """A core whose timer and failed_envelope raise."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.guard = EnvelopeGuard("broken", self.counters, log)
        self.later: Held = []
        self.done = 0

    def handle(self, envelope: Wire, now: float) -> None:
        held: Any = envelope
        self.later.append((envelope[1], held))

    def next_timer(self) -> float | None:
        return 0.0

    def handle_timer(self, now: float) -> None:
        raise RuntimeError("a bug in a timer")

    def flush_outputs(self, sink: Sink) -> None:
        pass

    def take_durable(self) -> tuple[list[Op], Held]:
        later, self.later = self.later, []
        return [], later

    def hold_for_commit(self, later: Held) -> object:
        return len(later)

    def commit_done(self, hold: object) -> None:
        self.done += 1

    def failed_envelope(self, dest: Any, envelope: Envelope) -> tuple[Any, Envelope]:
        if dest == 0:
            raise ValueError("a bug in failed_envelope")
        return dest, envelope

    def destination(self, dest: Any) -> Hashable:
        return runtime.acceptor(dest)


def test_a_timer_that_raises_is_counted_and_the_pass_still_ends() -> None:
    core, sink, committer = BrokenCore(), ListSink(), Committer()
    runner = CoreRunner("broken", core, sink, committer, log)
    runner.feed([[Kind.STORED, 1]], 1.0)
    runner.tick(2.0)
    runner.tick(3.0)
    assert core.counters["timer_errors"] == 2
    assert len(committer.pending) == 1  # the frame's pass still released its envelope


def test_a_held_envelope_whose_replacement_raises_costs_only_itself() -> None:
    core, sink, committer = BrokenCore(), ListSink(), Committer()
    runner = CoreRunner("broken", core, sink, committer, log)
    runner.feed([[Kind.STORED, 0], [Kind.STORED, 1]], 1.0)
    committer.settle(StoreError("disk full"))
    assert sink.sent == [(runtime.acceptor(1), [Kind.STORED, 1])]
    assert core.counters["envelope_errors"] == 1
    assert core.counters["store_failures"] == 1
    assert core.done == 1  # the commit bracket is closed all the same
