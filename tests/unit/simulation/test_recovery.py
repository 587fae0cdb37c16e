"""Recovery around a restarted process, seen from MQTT clients of real
acceptors (harness.py, `acceptor_cores=True`): the whole broker from the
acceptor's socket to the other's, in one process, deterministic.

Persistent sessions keep their connections through a worker's restart (a
pause, not a disconnect); clean sessions on that shard are closed and can
reconnect; a router restart keeps every subscription working; a SUBSCRIBE or
a CONNECT that died in a worker's inbox is answered by its next incarnation.
These were end-to-end tests with kill -9 and SIGSTOP (tests/e2e/
test_recovery.py), where "the request is in the frozen worker" could only be
hoped for; here the test decides what a process had received when it died.
"""

from __future__ import annotations

import itertools

from flockmq.frontend.codec import (
    Connack,
    Connect,
    Disconnect,
    Packet,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Will,
)
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.sharding import shard_of

from .harness import MqttClient, Simulation

WORKERS = 2
PERSISTENT = {"session_expiry_interval": 3600}  # MQTT 5: the session outlives the connection


def id_on_shard(prefix: str, shard: int) -> str:
    for n in itertools.count():
        client_id = f"{prefix}{n}"
        if shard_of(client_id, WORKERS) == shard:
            return client_id
    raise AssertionError("unreachable")


def connect(
    sim: Simulation, client_id: str, *, clean: bool, acceptor: int = 0, level: int = 4
) -> MqttClient:
    client = sim.mqtt_client(acceptor, level)
    client.send(Connect(client_id, level, clean, 60, properties=PERSISTENT if level == 5 else {}))
    (connack,) = client.take()
    assert isinstance(connack, Connack) and connack.reason_code == 0, connack
    return client


def subscribe(client: MqttClient, topic: str, qos: int, packet_id: int = 1) -> None:
    client.send(Subscribe(packet_id, (Subscription(topic, qos),)))
    assert client.take() == [Suback(packet_id, (qos,))]


def publishes(packets: list[Packet]) -> list[Publish]:
    return [p for p in packets if isinstance(p, Publish)]


def test_a_persistent_session_keeps_its_connection_through_a_worker_restart() -> None:
    sim = Simulation(workers=WORKERS, acceptors=2, acceptor_cores=True)
    sub = connect(sim, id_on_shard("sub", 1), clean=False)
    subscribe(sub, "t", 1)
    pub = connect(sim, id_on_shard("pub", 0), clean=True, acceptor=1)
    pub.send(Publish("t", b"before", 1, packet_id=1))
    assert pub.take() == [Puback(1)]
    (before,) = publishes(sub.take())
    sub.send(Puback(before.packet_id or 0))

    sim.restart_worker(1)
    sim.run()
    pub.send(Publish("t", b"after", 1, packet_id=2))
    assert pub.take() == [Puback(2)]
    (after,) = publishes(sub.take())
    assert after.payload == b"after" and not sub.closed  # a pause, not a disconnect
    assert sim.acceptors[0].acceptor.counters["reattached_after_worker_restart"] == 1


def test_an_unacknowledged_message_comes_again_with_dup_after_a_worker_restart() -> None:
    sim = Simulation(workers=WORKERS, acceptors=1, acceptor_cores=True)
    sub = connect(sim, id_on_shard("sub", 1), clean=False)
    subscribe(sub, "t", 1)
    pub = connect(sim, id_on_shard("pub", 0), clean=True)
    pub.send(Publish("t", b"m", 1, packet_id=1))
    (first,) = publishes(sub.take())
    assert not first.dup
    sim.restart_worker(1)  # before the subscriber's PUBACK
    sim.run()
    (again,) = publishes(sub.take())
    assert (again.payload, again.dup, again.packet_id) == (b"m", True, first.packet_id)
    sub.send(Puback(again.packet_id or 0))
    assert sim.shard(1).sessions[sub.conn.session.client_id].inflight == {}


def test_a_clean_session_on_a_restarted_worker_is_closed_and_can_reconnect() -> None:
    sim = Simulation(workers=WORKERS, acceptors=1, acceptor_cores=True)
    client_id = id_on_shard("clean", 1)
    first = connect(sim, client_id, clean=True)
    subscribe(first, "t", 1)
    sim.restart_worker(1)
    sim.run()
    assert first.closed  # its subscriptions lived only in the dead worker
    again = connect(sim, client_id, clean=True)
    subscribe(again, "t", 1)
    again.send(Publish("t", b"works", 1, packet_id=5))
    packets = again.take()
    assert Puback(5) in packets and [p.payload for p in publishes(packets)] == [b"works"]


def test_subscriptions_of_clean_and_persistent_sessions_work_after_a_router_restart() -> None:
    sim = Simulation(workers=WORKERS, acceptors=2, acceptor_cores=True)
    subs = [
        connect(sim, "persistent", clean=False),
        connect(sim, "clean", clean=True, acceptor=1),
    ]
    for sub in subs:
        subscribe(sub, "r/#", 1)
    sim.restart_router()
    sim.run()
    pub = connect(sim, "pub", clean=True, acceptor=1)
    pub.send(Publish("r/1", b"re-registered", 1, packet_id=1))
    assert pub.take() == [Puback(1)]
    for sub in subs:
        (copy,) = publishes(sub.take())
        assert copy.payload == b"re-registered" and not sub.closed


def test_a_publish_the_router_lost_is_routed_again_after_its_restart() -> None:
    """The router dies with a QoS 1 publish in its inbox: the acceptor sends
    it again to the next router (in arrival order), and acknowledges it once."""
    sim = Simulation(workers=WORKERS, acceptors=1, acceptor_cores=True)
    sub = connect(sim, "sub", clean=False)
    subscribe(sub, "t", 1)
    pub = connect(sim, "pub", clean=True)
    pub.send(Publish("t", b"1", 1, packet_id=1), Publish("t", b"2", 1, packet_id=2), run=False)
    sim.restart_router()
    sim.run()
    assert pub.take() == [Puback(1), Puback(2)]
    assert [p.payload for p in publishes(sub.take())] == [b"1", b"2"]


def test_a_subscribe_that_died_with_its_worker_is_answered_after_the_restart() -> None:
    sim = Simulation(workers=WORKERS, acceptors=1, acceptor_cores=True)
    sub = connect(sim, id_on_shard("held", 1), clean=False)
    sub.send(Subscribe(1, (Subscription("late", 1),)), run=False)
    sim.restart_worker(1)  # the SUBSCRIBE was in its inbox
    sim.run()
    assert sub.take() == [Suback(1, (1,))]
    pub = connect(sim, id_on_shard("pub", 0), clean=True)
    pub.send(Publish("late", b"subscribed", 1, packet_id=1))
    (copy,) = publishes(sub.take())
    assert copy.payload == b"subscribed" and not sub.closed


def test_a_connect_that_died_with_its_worker_is_answered_after_the_restart() -> None:
    """Not left waiting for the connect timeout: the acceptor sends the
    CONNECT again to the restarted worker."""
    sim = Simulation(workers=WORKERS, acceptors=1, acceptor_cores=True)
    client_id = id_on_shard("late", 1)
    client = sim.mqtt_client(0)
    client.send(Connect(client_id, 4, False, 60), run=False)
    sim.restart_worker(1)
    sim.run()
    assert client.take() == [Connack(False, 0)]
    subscribe(client, "late/t", 1)
    assert sim.acceptors[0].acceptor.counters["connects_resent_after_worker_restart"] == 1


def test_takeover_across_acceptors_closes_the_old_connection_and_resumes_the_session() -> None:
    sim = Simulation(workers=WORKERS, acceptors=2, acceptor_cores=True)
    old = connect(sim, "c", clean=False, level=5)
    subscribe(old, "t", 1)
    pub = connect(sim, "pub", clean=True, acceptor=1)
    for i in range(3):
        pub.send(Publish("t", b"%d" % i, 1, packet_id=10 + i))
    copies = publishes(old.take())
    assert [p.payload for p in copies] == [b"0", b"1", b"2"]
    old.send(Puback(copies[0].packet_id or 0))

    new = sim.mqtt_client(1, level=5)
    new.send(Connect("c", 5, False, 60, properties=PERSISTENT))
    sim.advance(0.01)  # the old connection's read grace (TAKEOVER_READ_GRACE)
    assert old.take() == [Disconnect(ReasonCode.SESSION_TAKEN_OVER)]
    assert old.closed
    packets = new.take()
    assert isinstance(packets[0], Connack) and packets[0].session_present
    # The two copies not acknowledged come again, with DUP, in order.
    assert [(p.payload, p.dup) for p in publishes(packets)] == [(b"1", True), (b"2", True)]


def test_qos2_is_delivered_exactly_once_through_a_worker_restart_mid_flow() -> None:
    """Inbound: the publisher's shard restarts between PUBREC and PUBREL
    (the retransmission is not routed twice). Outbound: the subscriber's
    shard restarts after its PUBREC (PUBREL comes again, not the message)."""
    sim = Simulation(workers=WORKERS, acceptors=1, acceptor_cores=True)
    sub = connect(sim, id_on_shard("sub", 1), clean=False)
    subscribe(sub, "q", 2)
    pub = connect(sim, id_on_shard("pub", 0), clean=False)
    pub.send(Publish("q", b"once", 2, packet_id=7))
    assert pub.take() == [Pubrec(7)]
    sim.restart_worker(0)
    sim.run()
    pub.send(Publish("q", b"once", 2, packet_id=7, dup=True))  # the client's retry
    assert pub.take() == [Pubrec(7)]
    pub.send(Pubrel(7))
    assert pub.take() == [Pubcomp(7)]

    (copy,) = publishes(sub.take())
    assert copy.payload == b"once"
    sub.send(Pubrec(copy.packet_id or 0))
    assert sub.take() == [Pubrel(copy.packet_id or 0)]
    sim.restart_worker(1)
    sim.run()
    assert sub.take() == [Pubrel(copy.packet_id or 0)]  # again: not the message
    sub.send(Pubcomp(copy.packet_id or 0))
    pub.send(Publish("q", b"next", 2, packet_id=8), Pubrel(8))
    assert [p.payload for p in publishes(sub.take())] == [b"next"]


def test_an_acceptor_restart_publishes_its_clients_wills_and_keeps_their_sessions() -> None:
    """The acceptor dies with its connections: each client's will goes out
    (here the retained `client/status` = offline pattern), a persistent
    session stays with its queued messages, and the client that reconnects
    (to any acceptor) resumes it."""
    sim = Simulation(workers=WORKERS, acceptors=2, acceptor_cores=True)
    device = sim.mqtt_client(0)
    will = Will("client/status", b"offline", 1, True)
    device.send(Connect("device", 4, False, 60, will=will))
    assert device.take() == [Connack(False, 0)]
    subscribe(device, "cmd", 1)
    watcher = connect(sim, "watcher", clean=True, acceptor=1)
    subscribe(watcher, "client/status", 1)

    sim.restart_acceptor(0)
    sim.run()
    (status,) = publishes(watcher.take())
    assert (status.topic, status.payload) == ("client/status", b"offline")
    watcher.send(Publish("cmd", b"while away", 1, packet_id=1))
    assert watcher.take() == [Puback(1)]

    back = sim.mqtt_client(0)
    back.send(Connect("device", 4, False, 60))
    packets = back.take()
    assert packets[0] == Connack(True, 0)
    assert [p.payload for p in publishes(packets)] == [b"while away"]
    late = connect(sim, "late", clean=True, acceptor=1)
    late.send(Subscribe(1, (Subscription("client/status", 0),)))
    retained = publishes(late.take())
    assert [(p.payload, p.retain) for p in retained] == [(b"offline", True)]
