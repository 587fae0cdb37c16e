"""Session expiry, message expiry and retained-message expiry on the fake
clock (harness.py): nothing sleeps; time moves with `advance`, and each core
runs its timers as its process's tick would."""

from __future__ import annotations

from flockmq.message_expiry import INTERVAL
from flockmq.sharding import shard_of

from .harness import Simulation


def test_an_offline_session_expires_on_time_even_across_a_worker_restart() -> None:
    sim = Simulation(workers=2, acceptors=1)
    sub = sim.client("sub")
    sub.connect(clean=False, expiry=60)
    sub.subscribe("s", 1)
    sub.closed()
    pub = sim.client("pub")
    pub.connect(clean=True)
    sim.run()
    sim.advance(30)
    pub.publish("s", b"queued", 1, packet_id=1)
    sim.run()
    sim.restart_worker(shard_of("sub", 2))  # it keeps the time it went offline
    sim.run()
    sim.advance(29)
    assert "sub" in sim.shard(shard_of("sub", 2)).sessions
    sim.advance(2)  # 61 s offline
    assert "sub" not in sim.shard(shard_of("sub", 2)).sessions
    # Gone from the router too: a publish finds no subscriber.
    routed = sim.router_core.counters["messages_without_subscribers"]
    pub.publish("s", b"late", 1, packet_id=2)
    sim.run()
    assert sim.router_core.counters["messages_without_subscribers"] == routed + 1
    back = sim.client("sub")
    back.connect(clean=False, expiry=60)
    sim.run()
    assert back.received.connacks[0][2] is False  # no session present
    assert back.payloads() == []


def test_queued_messages_expire_and_the_rest_carry_what_is_left_of_their_interval() -> None:
    sim = Simulation(workers=1, acceptors=1)
    sub = sim.client("sub")
    sub.connect(clean=False, expiry=3600, level=5)
    sub.subscribe("m", 1)
    sub.closed()
    pub = sim.client("pub")
    pub.connect(clean=True, level=5)
    sim.run()
    pub.publish("m", b"short", 1, packet_id=1, props={INTERVAL: 10})
    pub.publish("m", b"long", 1, packet_id=2, props={INTERVAL: 100})
    sim.run()
    sim.advance(40)
    back = sim.client("sub")
    back.connect(clean=False, expiry=3600, level=5)
    sim.run()
    assert [(e[4], e[8][INTERVAL]) for e in back.received.publishes] == [(b"long", 60)]


def test_a_retained_message_expires_and_is_gone_after_a_router_restart() -> None:
    sim = Simulation(workers=1, acceptors=1)
    pub = sim.client("pub")
    pub.connect(clean=True, level=5)
    pub.publish("r", b"soon", 0, retain=True, props={INTERVAL: 10})
    pub.publish("k", b"kept", 0, retain=True)
    sim.run()
    sim.advance(11)
    assert sim.router_core.counters["retained_expired"] == 1
    sim.restart_router()
    sim.run()
    late = sim.client("late")
    late.connect(clean=True, level=5)
    late.subscribe("#", 0)
    sim.run()
    assert late.payloads() == [b"kept"]
