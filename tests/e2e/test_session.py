"""Sessions end to end: resume with session present, clean-session discard,
offline queues in order, QoS 0 not queued, takeover across acceptors,
redelivery with DUP on resume, and inbound QoS 2 exactly-once.

Offline barrier: a client that must be offline before the test publishes has
a will and is dropped; its will reaching a watcher proves the worker detached
the session (and told the router, which sends ONLINE before the will's ROUTE)."""

from __future__ import annotations

import pytest

from flockmq.frontend.codec import (
    Connack,
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

from .broker import Broker
from .clients import Client, RawClient, unique, watch
from .test_connect import id_on_same_shard, raw_connect, raw_on_acceptor


def go_offline(client: Client, watcher: Client) -> None:
    """Drop `client` (it has a will) and wait until its will reaches `watcher`."""
    client.drop()
    (will,) = watcher.expect(1)
    assert will.payload == b"gone:" + client.client_id.encode()


def persistent(broker: Broker, client_id: str, will_topic: str, protocol: int = 4) -> Client:
    """A clean-session-0 client whose will `go_offline` waits for."""
    will = (will_topic, b"gone:" + client_id.encode(), 1, False)
    return Client(broker.port, client_id, protocol=protocol, clean=False, will=will)


# --- resume and discard -----------------------------------------------------------------
@pytest.mark.parametrize("protocol", [3, 4])
def test_persistent_session_resumes_with_subscriptions_and_queued_messages(
    broker: Broker, protocol: int
) -> None:
    base = unique("resume")
    client_id = unique("rs")
    watcher = watch(broker, f"{base}/will")
    sub = persistent(broker, client_id, f"{base}/will", protocol)
    assert sub.connect().session_present is False
    sub.subscribe(f"{base}/t", 1)
    go_offline(sub, watcher)
    pub = Client(broker.port)
    pub.connect()
    pub.publish(f"{base}/t", b"while offline", 1)
    again = persistent(broker, client_id, f"{base}/will", protocol)
    # MQTT 3.1 has no session present flag on the wire.
    assert again.connect().session_present is (protocol == 4)
    (msg,) = again.expect(1)
    assert (msg.topic, msg.payload, msg.qos, msg.dup) == (f"{base}/t", b"while offline", 1, False)
    pub.publish(f"{base}/t", b"online again", 1)  # the subscription is still there
    (msg,) = again.expect(1)
    assert msg.payload == b"online again"
    again.disconnect()
    pub.disconnect()
    watcher.disconnect()


def test_clean_session_discards_subscriptions_and_queued_messages(broker: Broker) -> None:
    base = unique("discard")
    client_id = unique("dc")
    watcher = watch(broker, f"{base}/will")
    sub = persistent(broker, client_id, f"{base}/will")
    sub.connect()
    sub.subscribe(f"{base}/t", 1)
    go_offline(sub, watcher)
    # A subscriber on the same shard gets each message in the same DELIVER:
    # once it has "queued", so has the offline session's queue.
    witness = Client(broker.port, id_on_same_shard(client_id))
    witness.connect()
    witness.subscribe(f"{base}/t", 1)
    pub = Client(broker.port)
    pub.connect()
    pub.publish(f"{base}/t", b"queued", 1)
    assert witness.expect(1)[0].payload == b"queued"
    fresh = Client(broker.port, client_id, clean=True)
    assert fresh.connect().session_present is False
    fresh.subscribe(f"{base}/marker", 1)
    pub.publish(f"{base}/t", b"after", 1)  # the old subscription is gone
    pub.publish(f"{base}/marker", b"marker", 1)
    (msg,) = fresh.expect(1)
    assert msg.payload == b"marker"  # no queued message, no old subscription
    fresh.expect_nothing(0.3)
    fresh.disconnect()
    # The clean session ended with its connection: nothing to resume.
    later = Client(broker.port, client_id, clean=False)
    assert later.connect().session_present is False
    later.disconnect()
    pub.disconnect()
    witness.disconnect()
    watcher.disconnect()


@pytest.mark.parametrize("qos", [1, 2])
def test_offline_queue_is_delivered_in_order_on_resume(broker: Broker, qos: int) -> None:
    base = unique("queue")
    client_id = unique("q")
    watcher = watch(broker, f"{base}/will")
    sub = persistent(broker, client_id, f"{base}/will")
    sub.connect()
    sub.subscribe(f"{base}/t", qos)
    go_offline(sub, watcher)
    pub = Client(broker.port)
    pub.connect()
    infos = [pub.paho.publish(f"{base}/t", b"%d" % i, qos) for i in range(100)]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()
    again = persistent(broker, client_id, f"{base}/will")
    assert again.connect().session_present is True
    got = again.expect(100, timeout=30)
    assert [(m.payload, m.qos, m.dup) for m in got] == [(b"%d" % i, qos, False) for i in range(100)]
    again.disconnect()
    pub.disconnect()
    watcher.disconnect()


def test_qos0_is_not_queued_for_an_offline_session(broker: Broker) -> None:
    base = unique("noq0")
    client_id = unique("nq")
    watcher = watch(broker, f"{base}/will")
    sub = persistent(broker, client_id, f"{base}/will")
    sub.connect()
    sub.subscribe(f"{base}/t", 1)
    go_offline(sub, watcher)
    pub = Client(broker.port)
    pub.connect()
    pub.publish(f"{base}/t", b"qos0", 0)
    pub.publish(f"{base}/t", b"qos1", 1)
    again = persistent(broker, client_id, f"{base}/will")
    assert again.connect().session_present is True
    pub.publish(f"{base}/t", b"marker", 1)
    got = again.expect(2)
    assert [(m.payload, m.qos) for m in got] == [(b"qos1", 1), (b"marker", 1)]
    again.expect_nothing(0.3)
    again.disconnect()
    pub.disconnect()
    watcher.disconnect()


# --- takeover ---------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["same", "other"])
@pytest.mark.parametrize("clean", [False, True])
def test_takeover_closes_the_first_connection(broker: Broker, where: str, clean: bool) -> None:
    base = unique("takeover")
    client_id = unique("to")
    watcher = watch(broker, f"{base}/will")
    first = raw_on_acceptor(broker, 0)
    raw_connect(
        broker.port,
        client_id,
        clean=False,
        will=Will(f"{base}/will", b"first's will", 1),
        raw=first,
    )
    first.send(Subscribe(1, (Subscription(f"{base}/t", 1),)))
    assert first.recv() == Suback(1, (1,))
    second = raw_on_acceptor(broker, 0 if where == "same" else 1)
    _, connack = raw_connect(broker.port, client_id, clean=clean, raw=second)
    assert connack == Connack(not clean, 0)
    assert first.expect_closed() == []  # 3.1.1: closed without a packet
    (will,) = watcher.expect(1)
    assert will.payload == b"first's will"
    second.send(Subscribe(2, (Subscription(f"{base}/marker", 1),)))
    assert second.recv() == Suback(2, (1,))
    pub = Client(broker.port)
    pub.connect()
    pub.publish(f"{base}/t", b"to the session", 1)
    pub.publish(f"{base}/marker", b"marker", 1)
    expected = [b"marker"] if clean else [b"to the session", b"marker"]
    got = []
    for _ in expected:
        packet = second.recv()
        assert isinstance(packet, Publish)
        got.append(packet.payload)
        second.send(Puback(packet.packet_id or 0))
    assert got == expected
    second.close()
    pub.disconnect()
    watcher.disconnect()


def test_takeover_of_a_clean_session_by_a_persistent_one(broker: Broker) -> None:
    """The first session ends with its connection (clean session 1): the
    second starts a new one (session present 0) and works normally."""
    base = unique("tocp")
    client_id = unique("tocp")
    first = raw_on_acceptor(broker, 0)
    raw_connect(broker.port, client_id, clean=True, raw=first)
    first.send(Subscribe(1, (Subscription(f"{base}/old", 1),)))
    assert first.recv() == Suback(1, (1,))
    second = raw_on_acceptor(broker, 1)
    _, connack = raw_connect(broker.port, client_id, clean=False, raw=second)
    assert connack == Connack(False, 0)
    assert first.expect_closed() == []
    second.send(Subscribe(2, (Subscription(f"{base}/new", 1),)))
    assert second.recv() == Suback(2, (1,))
    pub = Client(broker.port)
    pub.connect()
    pub.publish(f"{base}/old", b"old", 1)
    pub.publish(f"{base}/new", b"new", 1)
    packet = second.recv()
    assert isinstance(packet, Publish) and packet.payload == b"new"
    second.close()
    pub.disconnect()


# --- redelivery on resume ---------------------------------------------------------------
def resume(broker: Broker, client_id: str) -> RawClient:
    raw, connack = raw_connect(broker.port, client_id, clean=False)
    assert connack == Connack(True, 0)
    return raw


def subscribed_raw(broker: Broker, client_id: str, topic: str, qos: int) -> RawClient:
    raw, connack = raw_connect(broker.port, client_id, clean=False)
    assert connack == Connack(False, 0)
    raw.send(Subscribe(1, (Subscription(topic, qos),)))
    assert raw.recv() == Suback(1, (qos,))
    return raw


def test_unacknowledged_qos1_is_redelivered_with_dup(broker: Broker) -> None:
    topic = unique("dup1")
    client_id = unique("dup1")
    raw = subscribed_raw(broker, client_id, topic, 1)
    pub = Client(broker.port)
    pub.connect()
    pub.publish(topic, b"m1", 1)
    first = raw.recv()
    assert isinstance(first, Publish)
    assert (first.payload, first.qos, first.dup) == (b"m1", 1, False)
    raw.close()  # no PUBACK
    raw = resume(broker, client_id)
    assert raw.recv() == Publish(topic, b"m1", 1, False, True, first.packet_id)
    raw.send(Puback(first.packet_id or 0))
    pub.publish(topic, b"m2", 1)
    second = raw.recv()
    assert isinstance(second, Publish)
    assert (second.payload, second.dup) == (b"m2", False)
    raw.send(Puback(second.packet_id or 0))
    raw.close()
    # Both acknowledged: nothing is redelivered on the next resume.
    raw = resume(broker, client_id)
    pub.publish(topic, b"m3", 1)
    third = raw.recv()
    assert isinstance(third, Publish) and (third.payload, third.dup) == (b"m3", False)
    raw.close()
    pub.disconnect()


def test_qos2_before_pubrec_is_redelivered_with_dup(broker: Broker) -> None:
    topic = unique("dup2")
    client_id = unique("dup2")
    raw = subscribed_raw(broker, client_id, topic, 2)
    pub = Client(broker.port)
    pub.connect()
    pub.publish(topic, b"m1", 2)
    first = raw.recv()
    assert isinstance(first, Publish)
    assert (first.payload, first.qos, first.dup) == (b"m1", 2, False)
    raw.close()  # no PUBREC
    raw = resume(broker, client_id)
    assert raw.recv() == Publish(topic, b"m1", 2, False, True, first.packet_id)
    pid = first.packet_id or 0
    raw.send(Pubrec(pid))
    assert raw.recv() == Pubrel(pid)
    raw.send(Pubcomp(pid))
    pub.publish(topic, b"m2", 2)
    second = raw.recv()
    assert isinstance(second, Publish) and (second.payload, second.dup) == (b"m2", False)
    raw.close()
    pub.disconnect()


def test_qos2_after_pubrec_resends_pubrel(broker: Broker) -> None:
    topic = unique("rel")
    client_id = unique("rel")
    raw = subscribed_raw(broker, client_id, topic, 2)
    pub = Client(broker.port)
    pub.connect()
    pub.publish(topic, b"m1", 2)
    first = raw.recv()
    assert isinstance(first, Publish)
    pid = first.packet_id or 0
    raw.send(Pubrec(pid))
    assert raw.recv() == Pubrel(pid)
    raw.close()  # no PUBCOMP
    raw = resume(broker, client_id)
    assert raw.recv() == Pubrel(pid)  # not the PUBLISH again [MQTT-4.4.0-1]
    raw.send(Pubcomp(pid))
    pub.publish(topic, b"m2", 2)
    second = raw.recv()
    assert isinstance(second, Publish) and (second.payload, second.dup) == (b"m2", False)
    pid2 = second.packet_id or 0
    raw.send(Pubrec(pid2))
    assert raw.recv() == Pubrel(pid2)
    raw.send(Pubcomp(pid2))
    raw.close()
    # Completed: nothing is resent on the next resume.
    raw = resume(broker, client_id)
    pub.publish(topic, b"m3", 2)
    third = raw.recv()
    assert isinstance(third, Publish) and third.payload == b"m3"
    raw.close()
    pub.disconnect()


def test_redelivery_keeps_the_original_order(broker: Broker) -> None:
    topic = unique("ord")
    client_id = unique("ord")
    raw = subscribed_raw(broker, client_id, topic, 1)
    pub = Client(broker.port)
    pub.connect()
    for i in range(5):
        pub.publish(topic, b"%d" % i, 1)
    sent = [raw.recv() for _ in range(5)]
    raw.close()
    raw = resume(broker, client_id)
    again = [raw.recv() for _ in range(5)]
    assert [(p.payload, p.packet_id, p.dup) for p in again if isinstance(p, Publish)] == [
        (p.payload, p.packet_id, True) for p in sent if isinstance(p, Publish)
    ]
    assert [p.payload for p in again if isinstance(p, Publish)] == [b"%d" % i for i in range(5)]
    raw.close()
    pub.disconnect()


# --- inbound QoS 2 exactly once ---------------------------------------------------------
def test_inbound_qos2_retransmission_is_delivered_once(broker: Broker) -> None:
    topic = unique("once")
    sub = Client(broker.port)
    sub.connect()
    sub.subscribe(topic, 2)
    raw, _ = raw_connect(broker.port, unique("pub2"))
    raw.send(Publish(topic, b"exactly once", 2, packet_id=7))
    assert raw.recv() == Pubrec(7)
    raw.send(Publish(topic, b"exactly once", 2, dup=True, packet_id=7))
    assert raw.recv() == Pubrec(7)
    raw.send(Pubrel(7))
    assert raw.recv() == Pubcomp(7)
    # After PUBCOMP, packet id 7 is free for a new message.
    raw.send(Publish(topic, b"new message", 2, packet_id=7))
    assert raw.recv() == Pubrec(7)
    raw.send(Pubrel(7))
    assert raw.recv() == Pubcomp(7)
    got = sub.expect(2)
    assert [(m.payload, m.qos) for m in got] == [(b"exactly once", 2), (b"new message", 2)]
    sub.expect_nothing(0.3)
    raw.close()
    sub.disconnect()


def test_inbound_qos2_retransmission_after_reconnect_is_delivered_once(broker: Broker) -> None:
    topic = unique("once2")
    client_id = unique("once2")
    sub = Client(broker.port)
    sub.connect()
    sub.subscribe(topic, 2)
    raw, _ = raw_connect(broker.port, client_id, clean=False)
    raw.send(Publish(topic, b"exactly once", 2, packet_id=9))
    assert raw.recv() == Pubrec(9)
    raw.close()  # the PUBREC was "lost": the client retries on its next connection
    raw, connack = raw_connect(broker.port, client_id, clean=False)
    assert connack == Connack(True, 0)
    raw.send(Publish(topic, b"exactly once", 2, dup=True, packet_id=9))
    assert raw.recv() == Pubrec(9)
    raw.send(Pubrel(9))
    assert raw.recv() == Pubcomp(9)
    raw.send(Publish(topic, b"marker", 1, packet_id=10))
    assert raw.recv() == Puback(10)
    got = sub.expect(2)
    assert [m.payload for m in got] == [b"exactly once", b"marker"]
    raw.close()
    sub.disconnect()
