"""MQTT 5 message expiry end to end [MQTT-3.3.2-5, -6]: a message queued for
an offline session, or retained, is not delivered after its Message Expiry
Interval has passed; one delivered later carries the interval minus the time
it waited in the broker; the deadline holds across a broker restart.

These tests wait for time to pass on purpose (the feature is time); the
intervals are a few seconds and the assertions allow for a loaded machine."""

from __future__ import annotations

import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .broker import Broker, MakeBroker
from .clients import TIMEOUT, Client, unique

SHORT = 2  # seconds: expires during the test (and is delivered before, where a test looks)
LONG = 3600  # seconds: does not


def expiring(seconds: int) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = seconds
    return props


def publish(
    client: Client,
    topic: str,
    payload: bytes,
    qos: int,
    *,
    retain: bool = False,
    expiry: int | None = None,
) -> float:
    """Publish and wait for the acknowledgement; returns the time after it.
    The broker took the message (and set its deadline) before it answered,
    so the deadline is at most SHORT after that time, however slow the
    machine."""
    props = expiring(expiry) if expiry is not None else None
    info = client.paho.publish(topic, payload, qos, retain, properties=props)
    assert qos, "an acknowledgement bounds when the broker took the message"
    info.wait_for_publish(TIMEOUT)
    assert info.is_published()
    return time.monotonic()


def go_offline(broker: Broker, client_id: str, topic_filter: str, *, protocol: int) -> None:
    """A persistent session subscribed to `topic_filter`, then offline for
    certain: its connection drops, and its will, which the broker publishes
    only once it has detached the session, has arrived. (A message routed
    before the detach would go in flight to the closing connection: its
    onward delivery started, so it no longer expires [MQTT-3.3.2-5].)"""
    will_topic = unique("gone")
    watcher = Client(broker.port)
    watcher.connect()
    watcher.subscribe(will_topic, 1)
    if protocol == 5:
        sub = Client(
            broker.port,
            client_id,
            protocol=5,
            clean=True,
            session_expiry=LONG,
            will=(will_topic, b"offline", 1, False),
        )
    else:
        sub = Client(broker.port, client_id, clean=False, will=(will_topic, b"offline", 1, False))
    sub.connect()
    sub.subscribe(topic_filter, 1)
    sub.drop()
    assert watcher.expect(1)[0].payload == b"offline"
    watcher.disconnect()


def interval_of(msg: object) -> int | None:
    props = getattr(msg, "properties", None)
    return getattr(props, "MessageExpiryInterval", None)


def wait_past(moment: float) -> None:
    """Until the monotonic clock is past `moment` (the broker's clock moves alike)."""
    time.sleep(max(0.0, moment - time.monotonic()) + 0.2)


def test_a_queued_message_expires_for_an_offline_session(broker: Broker) -> None:
    topic = unique("exp")
    client_id = unique("sub")
    go_offline(broker, client_id, topic, protocol=5)
    pub = Client(broker.port, protocol=5)
    pub.connect()
    acked = publish(pub, topic, b"short-lived", 1, expiry=SHORT)
    publish(pub, topic, b"long-lived", 1, expiry=LONG)
    publish(pub, topic, b"forever", 1)
    wait_past(acked + SHORT)

    back = Client(broker.port, client_id, protocol=5, clean=False, session_expiry=LONG)
    assert back.connect().session_present
    got = back.expect(2)
    assert [m.payload for m in got] == [b"long-lived", b"forever"]
    # Counted down by the time it waited (at least SHORT seconds), never 0.
    remaining = interval_of(got[0])
    assert remaining is not None and 0 < remaining <= LONG - SHORT
    assert interval_of(got[1]) is None
    # Nothing else is queued: a barrier comes next.
    publish(pub, topic, b"barrier", 1)
    assert back.expect(1)[0].payload == b"barrier"
    back.disconnect()
    pub.disconnect()


def test_an_expired_retained_message_is_no_longer_sent(broker: Broker) -> None:
    base = unique("rexp")
    pub = Client(broker.port, protocol=5)
    pub.connect()
    acked = publish(pub, f"{base}/short", b"gone soon", 1, retain=True, expiry=SHORT)
    publish(pub, f"{base}/long", b"stays", 1, retain=True, expiry=LONG)
    early = Client(broker.port, protocol=5)
    early.connect()
    early.subscribe(f"{base}/#", 1)
    assert sorted(m.payload for m in early.expect(2)) == [b"gone soon", b"stays"]
    early.disconnect()
    wait_past(acked + SHORT)

    late = Client(broker.port, protocol=5)
    late.connect()
    late.subscribe(f"{base}/#", 1)
    (msg,) = late.expect(1)
    assert (msg.topic, msg.payload, msg.retain) == (f"{base}/long", b"stays", True)
    remaining = interval_of(msg)
    assert remaining is not None and 0 < remaining <= LONG - SHORT
    publish(pub, f"{base}/live", b"barrier", 1)
    assert late.expect(1)[0].payload == b"barrier"  # the expired one did not come
    late.disconnect()
    pub.disconnect()


def test_a_3_1_1_subscriber_gets_no_expired_message_either(broker: Broker) -> None:
    topic = unique("exp4")
    client_id = unique("sub4")
    go_offline(broker, client_id, topic, protocol=4)
    pub = Client(broker.port, protocol=5)
    pub.connect()
    acked = publish(pub, topic, b"short-lived", 1, expiry=SHORT)
    publish(pub, topic, b"barrier", 1)
    wait_past(acked + SHORT)
    back = Client(broker.port, client_id, clean=False)
    assert back.connect().session_present
    assert back.expect(1)[0].payload == b"barrier"
    back.disconnect()
    pub.disconnect()


def test_deadlines_hold_across_a_broker_restart(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker()
    topic = unique("rest")
    client_id = unique("sub")
    go_offline(broker, client_id, f"{topic}/#", protocol=5)
    pub = Client(broker.port, protocol=5)
    pub.connect()
    acked = publish(pub, f"{topic}/q", b"queued short", 1, expiry=SHORT)
    publish(pub, f"{topic}/q", b"queued long", 1, expiry=LONG)
    publish(pub, f"{topic}/r", b"retained short", 1, retain=True, expiry=SHORT)
    pub.disconnect()
    assert broker.stop() == 0
    wait_past(acked + SHORT)

    # `flockmq serve` again on the same data directory
    again = Broker(broker.data_dir, broker.acceptors, broker.workers, list(broker.extra_args))
    again.start()
    try:
        back = Client(again.port, client_id, protocol=5, clean=False, session_expiry=LONG)
        assert back.connect().session_present
        (msg,) = back.expect(1)
        assert msg.payload == b"queued long"
        reader = Client(again.port, protocol=5)
        reader.connect()
        reader.subscribe(f"{topic}/r", 1)
        probe = Client(again.port, protocol=5)
        probe.connect()
        publish(probe, f"{topic}/r", b"barrier", 1)
        assert reader.expect(1)[0].payload == b"barrier"  # no retained message first
        for c in (back, reader, probe):
            c.disconnect()
    finally:
        again.stop()
