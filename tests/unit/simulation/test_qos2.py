"""QoS 2 exactly-once across restarts (harness.py): a persistent publisher
whose PUBREC was lost resends the same packet id after both shards (its own
and the subscriber's) and the router restarted; the subscriber gets the
message once, the publisher gets its PUBREC, and PUBREL completes it."""

from __future__ import annotations

from flockmq.mqtt.packet_types import PacketType
from flockmq.sharding import shard_of

from .harness import NEVER, Simulation

# Client ids on different shards of two (shard_of is stable: CRC-32).
PUB, SUB = "pub", "sub"


def test_the_client_ids_are_on_different_shards() -> None:
    assert shard_of(PUB, 2) != shard_of(SUB, 2)


def test_a_qos2_resend_after_every_core_restarted_is_delivered_once() -> None:
    sim = Simulation(workers=2, acceptors=2)
    sub = sim.client(SUB, acceptor=0)
    sub.connect(clean=False, expiry=NEVER)
    sub.subscribe("in/#", 2)
    sub.closed()  # offline: the copy waits in its queue
    pub = sim.client(PUB, acceptor=1)
    pub.connect(clean=False, expiry=NEVER)
    sim.run()

    pub.publish("in/t", b"once", 2, packet_id=5)
    sim.run()
    assert pub.pubrecs == [5]  # ROUTED 1, STORED by the subscriber's shard
    # The client never read that PUBREC: its connection dropped. Meanwhile
    # every core restarts.
    pub.closed()
    sim.run()
    sim.restart_worker(shard_of(PUB, 2))
    sim.restart_worker(shard_of(SUB, 2))
    sim.restart_router()
    sim.run()

    again = sim.client(PUB, acceptor=1)
    again.connect(clean=False, expiry=NEVER)
    sim.run()
    assert again.received.connacks[0][2] is True
    again.publish("in/t", b"once", 2, packet_id=5)  # the client's DUP resend
    sim.run()
    assert again.pubrecs == [5]
    again.pubrel(5)
    sim.run()
    assert (PacketType.PUBCOMP, 5) in again.received.acks

    back = sim.client(SUB, acceptor=0)
    back.connect(clean=False, expiry=NEVER)
    sim.run()
    assert back.payloads() == [b"once"]
    assert sim.shard(shard_of(SUB, 2)).counters["qos2_retries_deduplicated"] == 1
    # Released: the subscriber's shard no longer keeps the key.
    (record,) = sim.store.load_sessions(lambda cid: cid == SUB)
    assert record.seen_qos2 == ()


def test_a_qos2_message_is_delivered_with_the_outbound_handshake_once() -> None:
    sim = Simulation(workers=2, acceptors=1)
    sub = sim.client(SUB)
    sub.connect(clean=False, expiry=NEVER)
    sub.subscribe("in/#", 2)
    pub = sim.client(PUB)
    pub.connect(clean=True)
    sim.run()
    pub.publish("in/t", b"x", 2, packet_id=1)
    sim.run()
    (copy,) = sub.received.publishes
    packet_id = copy[2]
    sub.pubrec(packet_id)
    sim.run()
    assert sub.pubrels() == [packet_id]
    # The subscriber's worker restarts before PUBCOMP: the PUBREL state was
    # kept, the message is not sent again.
    sim.restart_worker(shard_of(SUB, 2))
    sim.run()
    back = sim.client(SUB)
    back.connect(clean=False, expiry=NEVER)
    sim.run()
    assert back.payloads() == []
    assert back.pubrels() == [packet_id]  # PUBREL again [MQTT-4.4.0-1]
    back.pubcomp(packet_id)
    sim.run()
    assert sim.shard(shard_of(SUB, 2)).sessions[SUB].inflight == {}
