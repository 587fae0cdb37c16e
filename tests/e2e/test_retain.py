"""Retained messages end to end: set, replace, clear, wildcard subscribers,
RETAIN=1 only on messages sent because of a subscription, QoS downgrade."""

from __future__ import annotations

import pytest

from .broker import Broker
from .clients import connected, unique


def test_set_replace_and_clear(broker: Broker) -> None:
    base = unique("ret")
    pub = connected(broker)
    pub.publish(f"{base}/t", b"first", 1, retain=True)
    pub.publish(f"{base}/t", b"second", 1, retain=True)
    pub.publish(f"{base}/barrier", b"here", 1, retain=True)

    sub = connected(broker)
    sub.subscribe(f"{base}/t", 1)
    (msg,) = sub.expect(1)
    assert (msg.topic, msg.payload, msg.retain, msg.qos) == (f"{base}/t", b"second", True, 1)
    sub.disconnect()

    pub.publish(f"{base}/t", b"", 1, retain=True)  # empty payload deletes [MQTT-3.3.1-10]
    late = connected(broker)
    late.subscribe(f"{base}/t", 1)
    late.subscribe(f"{base}/barrier", 1)  # positive barrier: retained, sent after the first
    (msg,) = late.expect(1)
    assert (msg.topic, msg.payload, msg.retain) == (f"{base}/barrier", b"here", True)
    late.expect_nothing()
    late.disconnect()
    pub.publish(f"{base}/barrier", b"", 1, retain=True)
    pub.disconnect()


@pytest.mark.parametrize("pattern", ["+/x", "#", "+/+"])
def test_wildcard_subscribers_get_every_matching_retained(broker: Broker, pattern: str) -> None:
    base = unique("wild")
    pub = connected(broker)
    expected = {f"{base}/a/x": b"ax", f"{base}/b/x": b"bx"}
    for topic, payload in expected.items():
        pub.publish(topic, payload, 1, retain=True)
    pub.publish(f"{base}/c/y", b"cy", 1, retain=True)
    if pattern != "+/x":
        expected[f"{base}/c/y"] = b"cy"
    sub = connected(broker)
    sub.subscribe(f"{base}/{pattern}", 1)
    got = {m.topic: (m.payload, m.retain) for m in sub.expect(len(expected))}
    assert got == {t: (p, True) for t, p in expected.items()}
    # nothing else: a live message on the subscription is the barrier
    pub.publish(f"{base}/z/x", b"live", 1)
    (live,) = sub.expect(1)
    assert (live.topic, live.payload, live.retain) == (f"{base}/z/x", b"live", False)
    for topic in [*expected, f"{base}/c/y"]:
        pub.publish(topic, b"", 1, retain=True)
    sub.disconnect()
    pub.disconnect()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_live_forward_to_existing_subscriber_has_retain_0(broker: Broker, qos: int) -> None:
    topic = unique("live") + "/t"
    sub = connected(broker)
    sub.subscribe(topic, 2)
    pub = connected(broker)
    pub.publish(topic, b"now", qos, retain=True)
    (msg,) = sub.expect(1)
    assert (msg.payload, msg.retain, msg.qos) == (b"now", False, qos)  # [MQTT-3.3.1-9]
    # while a new subscriber gets the same message with RETAIN=1
    late = connected(broker)
    late.subscribe(topic, 2)
    (msg,) = late.expect(1)
    assert (msg.payload, msg.retain, msg.qos) == (b"now", True, qos)
    pub.publish(topic, b"", 1, retain=True)
    for c in (sub, late, pub):
        c.disconnect()


@pytest.mark.parametrize(("stored", "granted", "delivered"), [(2, 0, 0), (2, 1, 1), (1, 0, 0)])
def test_retained_qos_is_downgraded_to_the_subscription(
    broker: Broker, stored: int, granted: int, delivered: int
) -> None:
    topic = unique("rq")
    pub = connected(broker)
    pub.publish(topic, b"kept", stored, retain=True)
    sub = connected(broker)
    assert sub.subscribe(topic, granted)[0].value == granted
    (msg,) = sub.expect(1)
    assert (msg.payload, msg.retain, msg.qos) == (b"kept", True, delivered)
    pub.publish(topic, b"", 1, retain=True)
    sub.disconnect()
    pub.disconnect()


def test_retained_qos0_publish_is_stored(broker: Broker) -> None:
    topic = unique("r0")
    pub = connected(broker)
    pub.publish(topic, b"zero", 0, retain=True)
    pub.publish(topic + "/sync", b"s", 1)  # a QoS 1 round trip: the QoS 0 one went first
    sub = connected(broker)
    sub.subscribe(topic, 1)
    (msg,) = sub.expect(1)
    assert (msg.payload, msg.retain, msg.qos) == (b"zero", True, 0)
    pub.publish(topic, b"", 0, retain=True)
    sub.disconnect()
    pub.disconnect()


def test_resubscribe_sends_retained_again(broker: Broker) -> None:
    """Retain handling 0 (and every 3.1.1 SUBSCRIBE): retained on each subscribe."""
    topic = unique("again")
    pub = connected(broker)
    pub.publish(topic, b"r", 1, retain=True)
    sub = connected(broker)
    sub.subscribe(topic, 1)
    assert sub.expect(1)[0].retain
    sub.subscribe(topic, 1)
    (msg,) = sub.expect(1)
    assert (msg.payload, msg.retain) == (b"r", True)
    pub.publish(topic, b"", 1, retain=True)
    sub.disconnect()
    pub.disconnect()
