"""A restarted router gets every process's $SYS counters again, those that
did not move since included, and takes them as where they stand.

Each process sends its counters only when they change (flockmq/sysstats.py),
and the router keeps no $SYS value across a restart. So a process that hears
from a new router incarnation (`CoreProcess.on_peer_restarted`, on the frame
that brings the router's ROUTER_UP) sends them all again; the new router's
Mosquitto figures count them in its totals but not as traffic in its loads.
Here the processes' `SysStats` feed real `RouterCore`s, one per incarnation,
as their processes do; the bus between them is a list."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence

import pytest
import uvloop

from flockmq import envelopes as env
from flockmq import runtime
from flockmq.auth import auth_key
from flockmq.auth.core import AuthCore
from flockmq.config import Config
from flockmq.envelopes import Envelope, Kind, Route
from flockmq.router.process import RouterCore
from flockmq.runtime_process import CoreProcess, Role
from flockmq.sysstats import SysStats
from tests.unit.wire import wire

INTERVAL = 10.0


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[Hashable, Envelope]] = []

    def send(self, key: Hashable, envelope: Envelope) -> None:
        self.sent.append((key, envelope))

    def extend(self, key: Hashable, envelopes: Sequence[Envelope]) -> None:
        self.sent.extend((key, e) for e in envelopes)

    @property
    def congested(self) -> bool:
        return False


def start_router(incarnation: int, sink: Sink) -> RouterCore:
    core = RouterCore.create(Config(), [])
    core.start(sink, incarnation, workers=1, acceptors=1, auth_processes=1)
    core.handle(wire(env.Synced(Kind.SYNCED, 0)), 0.0)  # the shard re-sent its subscriptions
    return core


def publish(stats: SysStats, now: float, router: RouterCore) -> list[Route]:
    """One `maybe_publish`, its ROUTEs handled by the router as it gets them."""
    routes: list[Route] = []
    stats.maybe_publish(now, INTERVAL, routes.append)
    for route in routes:
        router.handle(wire(route), now)
    return routes


def retained(router: RouterCore, topic: str) -> bytes | None:
    message = router.router.retained.get(topic)
    return None if message is None else message.payload


def test_a_new_router_is_sent_every_counter_again_and_holds_them() -> None:
    worker_counters: Counter[str] = Counter(takeovers=3, sessions_loaded=7)
    acceptor_counters: Counter[str] = Counter(packets_received=5000, connects=40)
    worker = SysStats("worker", 0, worker_counters)
    acceptor = SysStats("acceptor", 0, acceptor_counters)
    first = start_router(0, Sink())
    publish(worker, 100.0, first)
    publish(acceptor, 100.0, first)
    assert retained(first, "$SYS/broker/worker/0/takeovers") == b"3"
    first.router.mosquitto_sys.topics(100.0)

    # the router dies; nothing moves the worker's counters meanwhile
    acceptor_counters["packets_received"] += 600
    sink = Sink()
    second = start_router(1, sink)
    sent_to = {key for key, e in sink.sent if e[0] == Kind.ROUTER_UP}
    assert sent_to == {runtime.worker(0), runtime.acceptor(0), auth_key(0)}
    second.router.mosquitto_sys.topics(101.0)  # its first tick, before any counter
    # what changed only is all a process would send the new router ...
    assert [r.topic for r in publish(worker, 105.0, second)] == []
    # ... until it hears from the router's new incarnation
    worker.resend_all()
    acceptor.resend_all()
    routes = publish(worker, 106.0, second)  # at once, not an interval later
    assert {r.topic for r in routes} == {
        "$SYS/broker/worker/0/takeovers",
        "$SYS/broker/worker/0/sessions_loaded",
    }
    publish(acceptor, 106.0, second)
    assert retained(second, "$SYS/broker/worker/0/takeovers") == b"3"
    values = second.router.mosquitto_sys.process_values
    assert values[("worker", 0, "sessions_loaded")] == 7
    assert values[("acceptor", 0, "packets_received")] == 5600
    # the totals are back, and what was counted before this router is no traffic
    got = dict(second.router.mosquitto_sys.topics(111.0))
    assert got["$SYS/broker/messages/received"] == b"5600"
    assert got["$SYS/broker/load/messages/received/1min"] == b"0.00"
    # what moves from here on is
    acceptor_counters["packets_received"] += 600
    publish(acceptor, 121.0, second)
    got = dict(second.router.mosquitto_sys.topics(121.0))
    assert float(got["$SYS/broker/load/messages/received/1min"]) > 0


def test_an_auth_process_takes_router_up_as_no_call() -> None:
    core = AuthCore(0, start=lambda call: pytest.fail("no hook call"))
    core.handle(wire(env.RouterUp(Kind.ROUTER_UP, 2)), 0.0)
    assert core.counters["unknown_envelopes"] == 0


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = uvloop.new_event_loop()
    yield loop
    loop.close()


def test_a_process_resends_its_counters_when_a_new_router_incarnation_speaks(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The wiring in CoreProcess: the bus's peer-restart hook, for the
    router's key, makes the next tick send everything."""
    config = Config()
    core = AuthCore(0, start=lambda call: None)
    stats = SysStats("auth", 0, core.counters)
    sent: list[Route] = []
    role = Role(
        "auth 0",
        core,
        bus_id=config.auth_id(0),
        incarnation=0,
        stats=stats,
        send_stats=lambda routes, now: sent.extend(routes),
        tick_interval=1.0,
        logger=logging.getLogger("test"),
    )
    process = CoreProcess(loop, config, None, role)
    try:
        core.counters["hook_authenticate_calls"] = 4
        stats.maybe_publish(loop.time(), config.sys_interval, lambda r: None)  # sent once
        process.on_peer_restarted(runtime.acceptor(0))  # not the router: nothing
        process.tick()
        assert sent == []
        process.on_peer_restarted(runtime.ROUTER)
        process.tick()
        assert [r.topic for r in sent] == ["$SYS/broker/auth/0/hook_authenticate_calls"]
    finally:
        process.bus.close()
