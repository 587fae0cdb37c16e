"""SUBSCRIBE/UNSUBSCRIBE end to end: wildcard matching, the `$`-topic rule,
SUBACK return codes, unsubscribe stopping delivery."""

from __future__ import annotations

import threading
import time

import pytest

from flockmq.frontend.codec import (
    Connack,
    Connect,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
)

from .broker import Broker
from .clients import RawClient, connected, unique


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("a/+/c", ["a/b/c", "a//c"], ["a/b/c/d", "a/c", "x/b/c"]),
        ("a/#", ["a", "a/b", "a/b/c/d"], ["b/a", "ab"]),
        ("+/+", ["a/b", "x/y"], ["a", "a/b/c"]),
        ("a/+", ["a/b", "a/"], ["a", "a/b/c"]),
        ("+", ["a"], ["a/b"]),
    ],
)
def test_wildcard_matching(
    broker: Broker, pattern: str, matching: list[str], not_matching: list[str]
) -> None:
    # Unique prefix keeps parallel tests apart: a level of its own in front.
    base = unique("m")
    sub = connected(broker)
    sub.subscribe(f"{base}/{pattern}", 1)
    pub = connected(broker)
    for topic in not_matching + matching:
        pub.publish(f"{base}/{topic}", topic.encode(), 1)
    got = [m.payload.decode() for m in sub.expect(len(matching))]
    assert got == matching  # order per publisher kept; the misses came first
    pub.publish(f"{base}/{matching[0]}", b"barrier", 1)
    assert sub.expect(1)[0].payload == b"barrier"
    sub.disconnect()
    pub.disconnect()


def test_unsubscribe_stops_delivery(broker: Broker) -> None:
    base = unique("unsub")
    sub = connected(broker)
    sub.subscribe(f"{base}/a", 1)
    sub.subscribe(f"{base}/b", 1)
    pub = connected(broker)
    pub.publish(f"{base}/a", b"1", 1)
    assert sub.expect(1)[0].payload == b"1"
    unsubacked = threading.Event()
    sub.paho.on_unsubscribe = lambda *args: unsubacked.set()
    result, _mid = sub.paho.unsubscribe(f"{base}/a")
    assert result == 0
    assert unsubacked.wait(10)
    pub.publish(f"{base}/a", b"gone", 1)
    pub.publish(f"{base}/b", b"barrier", 1)
    (msg,) = sub.expect(1)
    assert (msg.topic, msg.payload) == (f"{base}/b", b"barrier")
    sub.expect_nothing(0.2)
    sub.disconnect()
    pub.disconnect()


def test_unsubscribe_stops_delivery_raw(broker: Broker) -> None:
    base = unique("unsub")
    raw = RawClient(broker.port)
    raw.send(Connect(unique("rawsub"), 4, True, 30))
    assert isinstance(raw.recv(), Connack)
    raw.send(Subscribe(1, (Subscription(f"{base}/a", 1), Subscription(f"{base}/b", 1))))
    assert raw.recv() == Suback(1, (1, 1))
    pub = connected(broker)
    raw.send(Unsubscribe(2, (f"{base}/a",)))
    assert raw.recv() == Unsuback(2)
    pub.publish(f"{base}/a", b"gone", 1)
    pub.publish(f"{base}/b", b"barrier", 1)
    msg = raw.recv()
    # recv() gives any packet (or None): anything but a Publish fails here too.
    assert (msg.topic, msg.payload) == (f"{base}/b", b"barrier")  # type: ignore[union-attr]
    raw.close()
    pub.disconnect()


def test_dollar_topics_and_leading_wildcards(broker: Broker) -> None:
    """[MQTT-4.7.2-1]: `#` and `+/...` do not match topics starting with `$`;
    `$foo/#` does."""
    dollar = "$" + unique("foo")
    everything = connected(broker)
    everything.subscribe("#", 0)
    plus = connected(broker)
    plus.subscribe("+/x", 0)
    exact = connected(broker)
    exact.subscribe(f"{dollar}/#", 0)
    pub = connected(broker)
    pub.publish(f"{dollar}/x", b"dollar", 1)
    (msg,) = exact.expect(1)
    assert (msg.topic, msg.payload) == (f"{dollar}/x", b"dollar")
    barrier = unique("bar")
    pub.publish(f"{barrier}/x", b"barrier", 1)
    # '#' sees traffic of other tests too: everything before the barrier must
    # not be our $ topic (and $SYS never shows up either)
    for client in (everything, plus):
        while True:
            (m,) = client.expect(1)
            assert not m.topic.startswith("$"), m.topic
            if m.topic == f"{barrier}/x":
                break
    for c in (everything, plus, exact, pub):
        c.disconnect()


def test_sys_topics_need_an_explicit_subscription(broker: Broker) -> None:
    sys_sub = connected(broker)
    sys_sub.subscribe("$SYS/broker/#", 0)
    (msg,) = sys_sub.expect(1)
    assert msg.topic.startswith("$SYS/broker/")
    sys_sub.disconnect()
    # The counters are retained: a later subscriber gets them at once (a live
    # update may come first: the router sends QoS 0 copies to online sessions
    # straight to their acceptor, retained ones go through the session).
    late = connected(broker)
    late.subscribe("$SYS/broker/#", 0)
    deadline = time.monotonic() + 10
    while not late.expect(1)[0].retain:
        assert time.monotonic() < deadline, "no retained $SYS message"
    late.disconnect()


def test_suback_return_codes_per_granted_qos(broker: Broker) -> None:
    base = unique("sa")
    raw = RawClient(broker.port)
    raw.send(Connect(unique("raw"), 4, True, 30))
    assert isinstance(raw.recv(), Connack)
    subs = (
        Subscription(f"{base}/0", 0),
        Subscription(f"{base}/1", 1),
        Subscription(f"{base}/2", 2),
        Subscription(f"{base}/#", 1),
    )
    raw.send(Subscribe(77, subs))
    assert raw.recv() == Suback(77, (0, 1, 2, 1))
    raw.close()


def test_suback_return_codes_mqtt5(broker: Broker) -> None:
    base = unique("sa5")
    raw = RawClient(broker.port, level=5)
    raw.send(Connect(unique("raw5"), 5, True, 30))
    assert isinstance(raw.recv(), Connack)
    raw.send(Subscribe(3, (Subscription(f"{base}/a", 2), Subscription(f"{base}/b", 0))))
    suback = raw.recv()
    assert isinstance(suback, Suback)
    assert (suback.packet_id, suback.reason_codes) == (3, (2, 0))
    raw.send(Unsubscribe(4, (f"{base}/a", f"{base}/none")))
    unsuback = raw.recv()
    assert isinstance(unsuback, Unsuback)
    assert unsuback.reason_codes == (0x00, 0x11)  # success, no subscription existed
    raw.close()


def test_paho_sees_granted_qos(broker: Broker) -> None:
    sub = connected(broker)
    for qos in (0, 1, 2):
        assert [rc.value for rc in sub.subscribe(unique("g"), qos)] == [qos]
    sub.disconnect()
