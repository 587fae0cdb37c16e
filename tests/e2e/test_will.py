"""Wills end to end: published on every close but a DISCONNECT (socket closed,
reset, protocol error, keepalive expiry, takeover), with their QoS and RETAIN;
discarded on DISCONNECT; a retained will becomes the retained message."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from flockmq.frontend.codec import Connack, Connect, Puback, Publish, Will

from .broker import Broker
from .clients import Client, RawClient, unique, watch
from .test_connect import acceptor_holding, id_on_same_shard, raw_connect, raw_on_acceptor


@pytest.mark.parametrize("protocol", [3, 4])
def test_status_will_seed_pattern(broker: Broker, protocol: int) -> None:
    """online/offline status with a retained will, as devices use it."""
    status = unique("client1") + "/status"
    client1 = Client(
        broker.port, unique("c1")[:23], protocol=protocol, will=(status, b"offline", 1, True)
    )
    client1.connect()
    client1.publish(status, b"online", 1, retain=True)
    sub = watch(broker, status, protocol=protocol)
    (msg,) = sub.expect(1)
    assert (msg.payload, msg.retain) == (b"online", True)  # retained, sent on subscribe
    client1.drop()
    (msg,) = sub.expect(1)
    # Delivered live: RETAIN=0 to a subscriber that was already there [MQTT-3.3.1-9].
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (status, b"offline", 1, False)
    late = watch(broker, status, protocol=protocol)
    (msg,) = late.expect(1)
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (status, b"offline", 1, True)
    late.expect_nothing(0.2)
    for c in (sub, late):
        c.disconnect()
    cleanup = Client(broker.port)
    cleanup.connect()
    cleanup.publish(status, b"", 1, retain=True)
    cleanup.disconnect()


def raw_with_will(broker: Broker, topic: str, payload: bytes) -> RawClient:
    raw, _ = raw_connect(broker.port, unique("w"), will=Will(topic, payload, 1))
    return raw


def test_will_on_connection_reset(broker: Broker) -> None:
    topic = unique("rst")
    sub = watch(broker, topic)
    raw = raw_with_will(broker, topic, b"reset")
    # SO_LINGER 0: close() sends a RST, an I/O error for the broker.
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()
    (msg,) = sub.expect(1)
    assert (msg.payload, msg.qos) == (b"reset", 1)
    sub.disconnect()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00",  # packet type 0 is reserved
        b"\x60\x02\x00\x01",  # PUBREL without its required flags 0b0010
        b"\x30\x05\x00\x03a/+",  # PUBLISH to a topic with a wildcard
        b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02ab",  # a second CONNECT
    ],
    ids=["reserved-type", "bad-flags", "wildcard-topic", "second-connect"],
)
def test_will_on_protocol_error(broker: Broker, garbage: bytes) -> None:
    topic = unique("perr")
    sub = watch(broker, topic)
    raw = raw_with_will(broker, topic, b"protocol error")
    raw.send_raw(garbage)
    assert raw.expect_closed() == []
    (msg,) = sub.expect(1)
    assert msg.payload == b"protocol error"
    sub.disconnect()


def test_will_on_keepalive_expiry(broker: Broker) -> None:
    topic = unique("ka")
    sub = watch(broker, topic)
    keepalive = 1
    raw = RawClient(broker.port, 4)
    sent_at = time.monotonic()  # the broker hears nothing from the client after this
    will = Will(topic, b"silent", 1)
    raw_connect(broker.port, unique("ka"), keepalive=keepalive, will=will, raw=raw)
    (msg,) = sub.expect(1, timeout=20)
    assert msg.payload == b"silent"
    # Closed after 1.5 x keepalive [MQTT-3.1.2-24]: surely not before 1 x keepalive.
    assert msg.timestamp - sent_at >= keepalive
    assert raw.expect_closed() == []
    sub.disconnect()


def test_will_of_the_first_connection_on_takeover(broker: Broker) -> None:
    topic = unique("tow")
    sub = watch(broker, topic)
    client_id = unique("tow")
    first = Client(broker.port, client_id, will=(topic, b"taken over", 1, False))
    first.connect()
    other = 1 - acceptor_holding(broker, first.tcp_socket())
    second = raw_on_acceptor(broker, other)
    _, connack = raw_connect(broker.port, client_id, raw=second)
    assert connack == Connack(False, 0)
    assert first.disconnected.wait(10)  # the first client sees its connection closed
    (msg,) = sub.expect(1)
    assert msg.payload == b"taken over"
    second.close()
    sub.disconnect()


def test_will_is_discarded_on_disconnect(broker: Broker) -> None:
    topic = unique("disc")
    sub = watch(broker, topic)
    client = Client(broker.port, unique("disc"), will=(topic, b"must not appear", 1, False))
    client.connect()
    acceptor = acceptor_holding(broker, client.tcp_socket())
    client.disconnect()
    assert client.disconnected.wait(10)
    # Barrier: a client on the same acceptor and shard connects and publishes
    # a marker; the acceptor reported the close before this CONNECT, so the
    # worker has handled it, and a will would reach `sub` before the marker.
    probe = raw_on_acceptor(broker, acceptor)
    raw_connect(broker.port, id_on_same_shard(client.client_id), raw=probe)
    probe.send(Publish(topic, b"marker", 1, packet_id=1))
    assert probe.recv() == Puback(1)
    (msg,) = sub.expect(1)
    assert msg.payload == b"marker"
    sub.expect_nothing(0.3)
    probe.close()
    sub.disconnect()


@pytest.mark.parametrize("will_qos", [0, 1, 2])
def test_will_keeps_its_qos(broker: Broker, will_qos: int) -> None:
    topic = unique("wq")
    sub = watch(broker, topic, qos=2)
    raw, _ = raw_connect(broker.port, unique("wq"), will=Will(topic, b"q", will_qos))
    raw.close()
    (msg,) = sub.expect(1)
    assert (msg.payload, msg.qos) == (b"q", will_qos)
    sub.disconnect()


def test_retained_will_replaces_the_retained_message(broker: Broker) -> None:
    base = unique("rw")
    raw, _ = raw_connect(broker.port, unique("rw"), will=Will(f"{base}/r", b"will", 1, True))
    raw.send(Publish(f"{base}/r", b"before", 1, True, packet_id=1))
    assert raw.recv() == Puback(1)
    # A will without RETAIN does not touch the retained message of its topic.
    raw2, _ = raw_connect(broker.port, unique("rw"), will=Will(f"{base}/n", b"plain", 1))
    raw2.send(Publish(f"{base}/n", b"kept", 1, True, packet_id=1))
    assert raw2.recv() == Puback(1)
    live = watch(broker, f"{base}/#")
    assert sorted(m.payload for m in live.expect(2)) == [b"before", b"kept"]
    raw.close()
    raw2.close()
    assert sorted(m.payload for m in live.expect(2)) == [b"plain", b"will"]
    late = watch(broker, f"{base}/#")
    got = sorted((m.topic, m.payload, m.retain) for m in late.expect(2))
    assert got == [(f"{base}/n", b"kept", True), (f"{base}/r", b"will", True)]
    late.expect_nothing(0.2)
    live.disconnect()
    late.disconnect()


def test_will_of_a_persistent_session_on_drop(broker: Broker) -> None:
    topic = unique("pw")
    sub = watch(broker, topic)
    client_id = unique("pw")
    raw = RawClient(broker.port, 4)
    raw.send(Connect(client_id, 4, False, 0, will=Will(topic, b"persistent gone", 1)))
    assert raw.recv() == Connack(False, 0)
    raw.close()
    (msg,) = sub.expect(1)
    assert msg.payload == b"persistent gone"
    # The session stays; the will was used once and is not part of it.
    raw2, connack = raw_connect(broker.port, client_id, clean=False)
    assert connack == Connack(True, 0)
    raw2.close()
    sub.disconnect()
