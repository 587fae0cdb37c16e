"""Client takeover across acceptors, with the router and the shards wired
together (harness.py): the new connection is answered only once the old
one's acceptor reported it closed, after everything the old connection sent;
and not waited for longer than TAKEOVER_WAIT when that acceptor is silent."""

from __future__ import annotations

from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.workers.takeover import TAKEOVER_WAIT

from .harness import NEVER, Simulation


def test_a_message_flows_from_publisher_to_subscriber_through_the_cores() -> None:
    sim = Simulation(workers=2, acceptors=2)
    sub = sim.client("sub", acceptor=0)
    sub.connect(clean=True)
    sub.subscribe("a/#", 1)
    pub = sim.client("pub", acceptor=1)
    pub.connect(clean=True)
    sim.run()
    assert [e[2] for e in sub.received.subacks] == [1]
    pub.publish("a/b", b"hello", 1, packet_id=7)
    sim.run()
    (copy,) = sub.received.publishes
    assert (copy[3], copy[4], copy[5]) == ("a/b", b"hello", 1)
    assert pub.acknowledged(7)  # no persistent copy: ROUTED 0, PUBACK at once


def test_takeover_waits_for_the_old_connection_and_resumes_its_session() -> None:
    sim = Simulation(workers=2, acceptors=2)
    old = sim.client("c", acceptor=0)
    old.connect(clean=False, expiry=NEVER)
    old.subscribe("t", 1)
    sim.run()
    pub = sim.client("pub", acceptor=1)
    pub.connect(clean=True)
    for i in range(3):
        pub.publish("t", b"%d" % i, 1, packet_id=10 + i)
    sim.run()
    assert old.payloads() == [b"0", b"1", b"2"]

    new = sim.client("c", acceptor=1)
    new.connect(clean=False, expiry=NEVER)
    sim.run()
    # The old connection is asked to close; the new one is not answered yet.
    assert old.received.closes == [ReasonCode.SESSION_TAKEN_OVER]
    assert new.received.connacks == []
    # What the old client sent before it was closed (its last PUBACK, on its
    # own acceptor's pipe) still counts: it comes before the CLOSED.
    old.puback(old.received.publishes[0][2])
    old.closed()
    sim.run()
    (connack,) = new.received.connacks
    assert connack[2] is True  # session present
    # The two copies not acknowledged come again, with DUP, in order.
    assert [(e[4], e[7]) for e in new.received.publishes] == [(b"1", True), (b"2", True)]


def test_a_takeover_whose_old_acceptor_never_answers_completes_after_the_wait() -> None:
    sim = Simulation(workers=1, acceptors=2)
    old = sim.client("c", acceptor=0)
    old.connect(clean=False, expiry=NEVER)
    sim.run()
    new = sim.client("c", acceptor=1)
    new.connect(clean=False, expiry=NEVER)
    sim.run()
    assert new.received.connacks == []
    sim.advance(TAKEOVER_WAIT - 0.5)
    assert new.received.connacks == []
    sim.advance(1.0)
    (connack,) = new.received.connacks
    assert connack[2] is True
    assert sim.shard(0).counters["takeovers_unconfirmed"] == 1
