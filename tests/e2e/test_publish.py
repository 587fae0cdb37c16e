"""PUBLISH flows end to end: QoS 0/1/2 both ways, downgrade, overlap, order."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from .broker import Broker
from .clients import Client, unique
from .tcp_bus import start_tcp_broker


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_reaches_subscriber_at_each_qos(broker: Broker, qos: int) -> None:
    topic = unique("t") + "/x"
    sub = Client(broker.port)
    sub.connect()
    assert sub.subscribe(topic, qos)[0].value == qos
    pub = Client(broker.port)
    pub.connect()
    pub.publish(topic, b"payload-%d" % qos, qos)
    (msg,) = sub.expect(1)
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (topic, b"payload-%d" % qos, qos, False)
    sub.disconnect()
    pub.disconnect()


@pytest.mark.parametrize(
    ("pub_qos", "sub_qos", "delivered"), [(2, 0, 0), (2, 1, 1), (1, 0, 0), (0, 2, 0), (1, 2, 1)]
)
def test_delivered_qos_is_min_of_published_and_granted(
    broker: Broker, pub_qos: int, sub_qos: int, delivered: int
) -> None:
    topic = unique("down")
    sub = Client(broker.port)
    sub.connect()
    sub.subscribe(topic, sub_qos)
    pub = Client(broker.port)
    pub.connect()
    pub.publish(topic, b"x", pub_qos)
    (msg,) = sub.expect(1)
    assert msg.qos == delivered
    sub.disconnect()
    pub.disconnect()


def test_overlapping_subscriptions_deliver_one_copy_at_highest_qos(broker: Broker) -> None:
    base = unique("ovl")
    sub = Client(broker.port)
    sub.connect()
    sub.subscribe(f"{base}/#", 1)
    sub.subscribe(f"{base}/+/c", 2)
    sub.subscribe(f"{base}/b/c", 1)
    pub = Client(broker.port)
    pub.connect()
    pub.publish(f"{base}/b/c", b"one", 2)
    # The barrier is matched by # (QoS 1) and +/c (QoS 2): one copy at QoS 2
    # too, so that it takes the same path as the first (publisher's shard,
    # router, the subscriber's session queue) and paho hands both over at their
    # PUBREL, in order. (MQTT orders per topic and QoS only: a copy delivered
    # at QoS 1 is handed over on receipt and may overtake a QoS 2 one; a QoS 1
    # publish goes from the acceptor straight to the router and may overtake
    # a QoS 2 publish. Mosquitto's may too: it routes QoS 2 on PUBREL.)
    pub.publish(f"{base}/barrier/c", b"end", 2)
    first, barrier = sub.expect(2)
    assert (first.topic, first.payload, first.qos) == (f"{base}/b/c", b"one", 2)
    assert (barrier.topic, barrier.payload, barrier.qos) == (f"{base}/barrier/c", b"end", 2)
    sub.disconnect()
    pub.disconnect()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_order_per_topic_per_publisher(broker: Broker, qos: int) -> None:
    topic = unique("order")
    sub = Client(broker.port)
    sub.connect()
    sub.subscribe(topic, qos)
    pub = Client(broker.port)
    pub.connect()
    for i in range(200):
        pub.paho.publish(topic, str(i).encode(), qos)
    got = [int(m.payload) for m in sub.expect(200, timeout=30)]
    assert got == list(range(200))
    sub.disconnect()
    pub.disconnect()


def test_processes_can_talk_over_zeromq_tcp(tmp_path: Path) -> None:
    # Endpoints are configuration: tcp:// works as ipc:// does (multi-host setups).
    # The bus's ports are tcp_base_port and up, one per inbox: the start
    # retries on another range if one of them was taken (tests/e2e/tcp_bus.py).
    broker, base = start_tcp_broker(tmp_path)
    try:
        topic = unique("tcp")
        sub = Client(broker.port)
        sub.connect()
        sub.subscribe(topic, 1)
        pub = Client(broker.port)
        pub.connect()
        pub.publish(topic, b"over tcp", 1)
        assert sub.expect(1)[0].payload == b"over tcp"
        # Its inboxes are tcp:// endpoints: the router's core inbox is the base port.
        router = psutil.Process(broker.pid_of("router", 0))
        listening = {c.laddr.port for c in router.net_connections("tcp") if c.status == "LISTEN"}
        assert base in listening
        sub.disconnect()
        pub.disconnect()
    finally:
        broker.stop()
