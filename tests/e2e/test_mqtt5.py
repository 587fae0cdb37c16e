"""MQTT 5.0 features end to end, with paho v5 clients and, where the exact
packets matter, raw sockets: session expiry (on disconnect, kept, changed by
DISCONNECT, expired), will delay (published after it, cancelled by a new
connection with Clean Start 0 or 1, cut short when the session expires;
DISCONNECT 0x04), topic aliases from the client, subscription options (no
local, retain as published, retain handling), subscription identifiers,
shared subscriptions, the client's Receive Maximum and Maximum Packet Size,
the CONNACK properties, reason codes in
SUBACK/UNSUBACK/PUBACK/PUBREC/PUBCOMP/PUBREL/DISCONNECT, and message
properties passed through unchanged. Message expiry is in test_message_expiry.py.

Barriers: a message is proven absent by a later one that would have come
after it: the same publisher's next message, through the same processes (QoS
1 copies go router -> worker -> acceptor; QoS 0 copies to online sessions go
router -> acceptor, unless they carry a subscription identifier, which makes
them go through the worker too). The tests about time (expiry, will delay)
wait for it on purpose, a few seconds at most, and their assertions allow for
a loaded machine."""

from __future__ import annotations

import functools
import queue
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from flockmq.frontend.codec import (
    Connack,
    Connect,
    Disconnect,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
)
from flockmq.frontend.codec import Properties as PacketProperties

from . import clients
from .broker import Broker
from .clients import TIMEOUT, Client, RawClient, unique

# In this file clients speak MQTT 5 unless told otherwise.
connected = functools.partial(clients.connected, protocol=5)
watch = functools.partial(clients.watch, protocol=5)

SHORT = 2  # seconds: an expiry or a delay that passes during the test
LONG = 3600  # seconds: one that does not
SLACK = 0.1  # seconds of clock granularity allowed in "not before" assertions

PROTOCOL_ERROR = 0x82
NOT_AUTHORIZED = 0x87
PACKET_IDENTIFIER_NOT_FOUND = 0x92
TOPIC_ALIAS_INVALID = 0x94
NO_SUBSCRIPTION_EXISTED = 0x11
NO_MATCHING_SUBSCRIBERS = 0x10
DISCONNECT_WITH_WILL = 0x04


# --- helpers ------------------------------------------------------------------------------


def raw_connected(
    broker: Broker,
    client_id: str | None = None,
    *,
    clean: bool = True,
    keepalive: int = 30,
    properties: PacketProperties | None = None,
) -> tuple[RawClient, Connack]:
    """A raw MQTT 5 connection after its CONNACK; asserts it was accepted."""
    raw = RawClient(broker.port, level=5)
    cid = unique("raw") if client_id is None else client_id
    raw.send(Connect(cid, 5, clean, keepalive, properties=properties or {}))
    connack = raw.recv()
    assert isinstance(connack, Connack), connack
    assert connack.reason_code == 0, connack
    return raw, connack


def recv_publish(raw: RawClient, timeout: float = TIMEOUT) -> Publish:
    packet = raw.recv(timeout)
    assert isinstance(packet, Publish), packet
    return packet


def will_delay(seconds: int) -> Properties:
    props = Properties(PacketTypes.WILLMESSAGE)
    props.WillDelayInterval = seconds
    return props


def with_will(
    broker: Broker, client_id: str, topic: str, *, session_expiry: int, delay: int = 0
) -> Client:
    """A client whose will (payload b"gone:<client id>", QoS 1) has `delay`."""
    return Client(
        broker.port,
        client_id,
        protocol=5,
        session_expiry=session_expiry,
        will=(topic, b"gone:" + client_id.encode(), 1, False),
        will_properties=will_delay(delay) if delay else None,
    )


def sub_ids(msg: mqtt.MQTTMessage) -> list[int] | None:
    ids: list[int] | None = getattr(msg.properties, "SubscriptionIdentifier", None)
    return ids


def options(
    qos: int = 1,
    *,
    no_local: bool = False,
    retain_as_published: bool = False,
    retain_handling: int = 0,
) -> SubscribeOptions:
    return SubscribeOptions(qos, no_local, retain_as_published, retain_handling)


def collect(clients: list[Client], count: int, timeout: float = TIMEOUT) -> list[list[bytes]]:
    """The payloads each client received, until `count` arrived over all of them."""
    got: list[list[bytes]] = [[] for _ in clients]
    deadline = time.monotonic() + timeout
    total = 0
    while total < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{total} of {count} messages arrived: {got}")
        for i, client in enumerate(clients):
            try:
                msg = client.messages.get(timeout=0.01)
            except queue.Empty:
                continue
            got[i].append(bytes(msg.payload))
            total += 1
    return got


# Application message properties a publisher sets, as paho names them.
PASSED_THROUGH: dict[str, object] = {
    # several, one name repeated: their order is kept [MQTT-3.3.2-18]
    "UserProperty": [("origin", "test"), ("k", "1"), ("k", "2")],
    "ContentType": "application/json; charset=utf-8",
    "ResponseTopic": "replies/for/me",
    "CorrelationData": b"\x00\xffrequest-17",
    "PayloadFormatIndicator": 1,
}


def message_properties(packet_type: int = PacketTypes.PUBLISH) -> Properties:
    props = Properties(packet_type)
    for name, value in PASSED_THROUGH.items():
        setattr(props, name, value)
    return props


def assert_passed_through(msg: mqtt.MQTTMessage) -> None:
    got = {name: getattr(msg.properties, name, None) for name in PASSED_THROUGH}
    assert got == PASSED_THROUGH


# --- session expiry [MQTT-3.1.2-23], section 3.1.2.11.2 ------------------------------------
def test_session_expiry_0_ends_the_session_with_the_connection(broker: Broker) -> None:
    base = unique("exp0")
    client_id = unique("e0")
    first = connected(broker, client_id)  # no Session Expiry Interval: 0
    first.subscribe(f"{base}/t", 1)
    first.disconnect()
    again = Client(broker.port, client_id, protocol=5, clean=False)
    assert again.connect().session_present is False
    again.subscribe(f"{base}/barrier", 1)
    pub = connected(broker)
    pub.publish(f"{base}/t", b"to the old subscription", 1)
    pub.publish(f"{base}/barrier", b"barrier", 1)
    (msg,) = again.expect(1)  # the subscription went with the session
    assert (msg.topic, msg.payload) == (f"{base}/barrier", b"barrier")
    again.disconnect()
    pub.disconnect()


def test_session_with_an_expiry_keeps_subscriptions_and_queued_messages(broker: Broker) -> None:
    base = unique("keep")
    client_id = unique("k")
    watcher = watch(broker, f"{base}/will")
    first = with_will(broker, client_id, f"{base}/will", session_expiry=LONG)
    assert first.connect().session_present is False
    first.subscribe(f"{base}/t", 1)
    first.drop()
    assert watcher.expect(1)[0].payload == b"gone:" + client_id.encode()  # detached
    pub = connected(broker)
    pub.publish(f"{base}/t", b"queued 1", 1)
    pub.publish(f"{base}/t", b"queued 2", 1)
    again = Client(broker.port, client_id, protocol=5, clean=False, session_expiry=LONG)
    assert again.connect().session_present is True
    got = again.expect(2)
    assert [(m.topic, m.payload, m.qos, m.dup) for m in got] == [
        (f"{base}/t", b"queued 1", 1, False),
        (f"{base}/t", b"queued 2", 1, False),
    ]
    pub.publish(f"{base}/t", b"live", 1)  # the subscription is still there
    assert again.expect(1)[0].payload == b"live"
    for client in (again, pub, watcher):
        client.disconnect()


def test_disconnect_can_end_the_session_with_expiry_0(broker: Broker) -> None:
    client_id = unique("short")
    raw, _ = raw_connected(broker, client_id, properties={"session_expiry_interval": LONG})
    raw.send(Subscribe(1, (Subscription(unique("t"), 1),)))
    assert raw.recv() == Suback(1, (1,))
    raw.send(Disconnect(0, {"session_expiry_interval": 0}))  # section 3.14.2.2.2
    assert raw.expect_closed() == []
    again, connack = raw_connected(
        broker, client_id, clean=False, properties={"session_expiry_interval": LONG}
    )
    assert connack.session_present is False
    again.close()


def test_disconnect_can_lengthen_the_session_expiry(broker: Broker) -> None:
    base = unique("longer")
    client_id = unique("long")
    raw, _ = raw_connected(broker, client_id, properties={"session_expiry_interval": 1})
    raw.send(Subscribe(1, (Subscription(f"{base}/t", 1),)))
    assert raw.recv() == Suback(1, (1,))
    raw.send(Disconnect(0, {"session_expiry_interval": LONG}))
    assert raw.expect_closed() == []
    time.sleep(SHORT + 1)  # well past the expiry of 1 s the CONNECT asked for
    again, connack = raw_connected(
        broker, client_id, clean=False, properties={"session_expiry_interval": LONG}
    )
    assert connack.session_present is True
    pub = connected(broker)
    pub.publish(f"{base}/t", b"still subscribed", 1)
    msg = recv_publish(again)
    assert (msg.topic, msg.payload, msg.qos) == (f"{base}/t", b"still subscribed", 1)
    again.send(Puback(msg.packet_id or 0))
    again.close()
    pub.disconnect()


def test_disconnect_cannot_give_an_expiry_to_a_session_without_one(broker: Broker) -> None:
    client_id = unique("noexp")
    raw, _ = raw_connected(broker, client_id)  # Session Expiry Interval 0
    raw.send(Disconnect(0, {"session_expiry_interval": LONG}))
    assert raw.expect_closed() == [Disconnect(PROTOCOL_ERROR)]
    again, connack = raw_connected(broker, client_id, clean=False)
    assert connack.session_present is False
    again.close()


def test_an_expired_session_is_gone(broker: Broker) -> None:
    """The will, delayed past the session's expiry, goes out when the session
    ends [MQTT-3.1.2-8]: it tells the test the session expired (a reconnect
    to look would resume it)."""
    base = unique("expired")
    client_id = unique("x")
    watcher = watch(broker, f"{base}/will")
    first = with_will(broker, client_id, f"{base}/will", session_expiry=SHORT, delay=LONG)
    first.connect()
    first.subscribe(f"{base}/t", 1)
    first.drop()
    assert watcher.expect(1)[0].payload == b"gone:" + client_id.encode()
    again = Client(broker.port, client_id, protocol=5, clean=False, session_expiry=LONG)
    assert again.connect().session_present is False
    again.subscribe(f"{base}/barrier", 1)
    pub = connected(broker)
    pub.publish(f"{base}/t", b"to the expired subscription", 1)
    pub.publish(f"{base}/barrier", b"barrier", 1)
    (msg,) = again.expect(1)
    assert (msg.topic, msg.payload) == (f"{base}/barrier", b"barrier")
    for client in (again, pub, watcher):
        client.disconnect()


# --- will delay, section 3.1.3.2.2 ----------------------------------------------------------
def test_will_is_published_after_the_will_delay(broker: Broker) -> None:
    topic = unique("delayed")
    client_id = unique("wd")
    watcher = watch(broker, topic)
    client = with_will(broker, client_id, topic, session_expiry=LONG, delay=SHORT)
    client.connect()
    client.drop()
    dropped = time.monotonic()
    (msg,) = watcher.expect(1)
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"gone:" + client_id.encode(), 1)
    assert time.monotonic() - dropped >= SHORT - SLACK
    watcher.disconnect()


def test_will_is_not_published_when_the_client_reconnects_within_the_delay(
    broker: Broker,
) -> None:
    topic = unique("back")
    client_id = unique("wb")
    delay = 2  # seconds: the reconnect below takes milliseconds
    watcher = watch(broker, topic)
    client = with_will(broker, client_id, topic, session_expiry=LONG, delay=delay)
    client.connect()
    client.drop()
    dropped = time.monotonic()
    again = Client(broker.port, client_id, protocol=5, clean=False, session_expiry=LONG)
    assert again.connect().session_present is True
    assert time.monotonic() - dropped < delay, "the reconnect took longer than the delay"
    time.sleep(max(0.0, dropped + delay + 1 - time.monotonic()))  # past the delay
    pub = connected(broker)
    pub.publish(topic, b"barrier", 1)  # a will at the end of the delay would come first
    (msg,) = watcher.expect(1)
    assert msg.payload == b"barrier"
    for c in (again, pub, watcher):
        c.disconnect()


def test_will_is_not_published_when_a_clean_start_reconnects_within_the_delay(
    broker: Broker,
) -> None:
    """A new connection for the client id within the will delay cancels the
    will with Clean Start 1 as with Clean Start 0: "If a new Network
    Connection to this Session is made before the Will Delay Interval has
    passed, the Server MUST NOT send the Will Message" [MQTT-3.1.3-9], and
    the will is published "unless ... a new Network Connection for the
    ClientID is opened before the Will Delay Interval has elapsed"
    [MQTT-3.1.2-8]. (Mosquitto does the same.) The clean start still ends
    the old session: session present 0."""
    topic = unique("fresh")
    client_id = unique("wf")
    delay = 2  # seconds: the reconnect below takes milliseconds
    watcher = watch(broker, topic)
    client = with_will(broker, client_id, topic, session_expiry=LONG, delay=delay)
    client.connect()
    client.drop()
    dropped = time.monotonic()
    fresh = Client(broker.port, client_id, protocol=5, clean=True)
    assert fresh.connect().session_present is False
    assert time.monotonic() - dropped < delay, "the reconnect took longer than the delay"
    pub = connected(broker)
    pub.publish(topic, b"barrier 1", 1)  # a will at the clean start would come first
    assert watcher.expect(1)[0].payload == b"barrier 1"
    time.sleep(max(0.0, dropped + delay + 1 - time.monotonic()))  # past the delay
    pub.publish(topic, b"barrier 2", 1)  # a will at the end of the delay would come first
    assert watcher.expect(1)[0].payload == b"barrier 2"
    for c in (fresh, pub, watcher):
        c.disconnect()


@pytest.mark.parametrize("session_expiry", [0, SHORT])
def test_will_is_published_when_the_session_ends_before_the_delay(
    broker: Broker, session_expiry: int
) -> None:
    topic = unique("ends")
    client_id = unique("we")
    watcher = watch(broker, topic)
    client = with_will(broker, client_id, topic, session_expiry=session_expiry, delay=LONG)
    client.connect()
    client.drop()
    dropped = time.monotonic()
    # At the session's end [MQTT-3.1.2-8], long before the delay of LONG
    # seconds: at once for expiry 0, after the expiry otherwise.
    (msg,) = watcher.expect(1)
    assert (msg.topic, msg.payload) == (topic, b"gone:" + client_id.encode())
    assert time.monotonic() - dropped >= session_expiry - SLACK
    watcher.disconnect()


def test_disconnect_with_will_message_publishes_the_will(broker: Broker) -> None:
    topic = unique("dww")
    watcher = watch(broker, topic)
    client = connected(broker, will=(topic, b"asked for", 1, False))
    client.disconnect(DISCONNECT_WITH_WILL)  # reason code 0x04, section 3.14.2.1
    (msg,) = watcher.expect(1)
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"asked for", 1)
    watcher.disconnect()


# --- topic aliases from the client, section 3.3.2.3.4 ----------------------------------------
def test_topic_alias_is_set_then_used_with_an_empty_topic(broker: Broker) -> None:
    base = unique("alias")
    topic = f"{base}/a/rather/long/topic/name"
    sub = connected(broker)
    sub.subscribe(f"{base}/#", 1)
    raw, _ = raw_connected(broker)
    raw.send(Publish(topic, b"sets", 1, packet_id=1, properties={"topic_alias": 3}))
    assert raw.recv() == Puback(1)
    raw.send(Publish("", b"uses", 1, packet_id=2, properties={"topic_alias": 3}))
    assert raw.recv() == Puback(2)
    got = sub.expect(2)
    assert [(m.topic, m.payload) for m in got] == [(topic, b"sets"), (topic, b"uses")]
    # The alias is the publisher's, on its connection: never forwarded.
    assert [getattr(m.properties, "TopicAlias", None) for m in got] == [None, None]
    raw.close()
    sub.disconnect()


def test_topic_alias_can_be_remapped(broker: Broker) -> None:
    base = unique("remap")
    sub = connected(broker)
    sub.subscribe(f"{base}/#", 1)
    raw, _ = raw_connected(broker)
    raw.send(Publish(f"{base}/first", b"1", 1, packet_id=1, properties={"topic_alias": 7}))
    raw.send(Publish(f"{base}/second", b"2", 1, packet_id=2, properties={"topic_alias": 7}))
    raw.send(Publish("", b"3", 1, packet_id=3, properties={"topic_alias": 7}))
    assert [raw.recv() for _ in range(3)] == [Puback(1), Puback(2), Puback(3)]
    got = [(m.topic, m.payload) for m in sub.expect(3)]
    assert got == [(f"{base}/first", b"1"), (f"{base}/second", b"2"), (f"{base}/second", b"3")]
    raw.close()
    sub.disconnect()


def test_topic_alias_above_the_maximum_gets_disconnect_0x94(broker: Broker) -> None:
    raw, connack = raw_connected(broker)
    maximum = connack.properties["topic_alias_maximum"]
    topic = unique("max")
    raw.send(Publish(topic, b"at the maximum", 1, packet_id=1, properties={"topic_alias": maximum}))
    assert raw.recv() == Puback(1)
    raw.send(Publish(topic, b"over", 1, packet_id=2, properties={"topic_alias": maximum + 1}))
    # [MQTT-3.3.2-9]; section 3.2.2.3.8: DISCONNECT with 0x94 (Topic Alias invalid)
    assert raw.expect_closed() == [Disconnect(TOPIC_ALIAS_INVALID)]


def test_topic_aliases_do_not_outlive_the_connection(broker: Broker) -> None:
    client_id = unique("life")
    first, _ = raw_connected(broker, client_id)
    first.send(Publish(unique("t"), b"sets", 1, packet_id=1, properties={"topic_alias": 5}))
    assert first.recv() == Puback(1)
    first.send(Disconnect())
    assert first.expect_closed() == []
    second, _ = raw_connected(broker, client_id)
    # [MQTT-3.3.2-7]: the new connection knows no alias 5, a Protocol Error
    second.send(Publish("", b"uses", 1, packet_id=1, properties={"topic_alias": 5}))
    assert second.expect_closed() == [Disconnect(PROTOCOL_ERROR)]


# --- subscription options, section 3.8.3.1 ----------------------------------------------------
def test_no_local_keeps_a_clients_own_messages_from_it(broker: Broker) -> None:
    base = unique("nl")
    own = connected(broker)
    own.subscribe(f"{base}/t", options=options(1, no_local=True))
    own.subscribe(f"{base}/barrier", 1)
    other = connected(broker)
    other.subscribe(f"{base}/t", 1)
    own.publish(f"{base}/t", b"mine", 1)
    assert other.expect(1)[0].payload == b"mine"  # only the publisher is left out
    own.publish(f"{base}/barrier", b"barrier", 1)
    (msg,) = own.expect(1)  # [MQTT-3.8.3-3]: not its own message on {base}/t
    assert (msg.topic, msg.payload) == (f"{base}/barrier", b"barrier")
    other.publish(f"{base}/t", b"theirs", 1)
    (msg,) = own.expect(1)
    assert (msg.topic, msg.payload) == (f"{base}/t", b"theirs")
    own.disconnect()
    other.disconnect()


def test_retain_as_published_keeps_the_retain_flag_of_live_messages(broker: Broker) -> None:
    topic = unique("rap")
    kept = connected(broker)
    kept.subscribe(topic, options=options(1, retain_as_published=True))
    plain = connected(broker)
    plain.subscribe(topic, options=options(1))
    pub = connected(broker)
    pub.publish(topic, b"retained", 1, retain=True)
    pub.publish(topic, b"not retained", 1)
    # [MQTT-3.3.1-13]: as published; [MQTT-3.3.1-12]: retain 0 otherwise
    assert [(m.payload, m.retain) for m in kept.expect(2)] == [
        (b"retained", True),
        (b"not retained", False),
    ]
    assert [(m.payload, m.retain) for m in plain.expect(2)] == [
        (b"retained", False),
        (b"not retained", False),
    ]
    pub.publish(topic, b"", 1, retain=True)  # clear it
    for client in (kept, plain, pub):
        client.disconnect()


@pytest.mark.parametrize(
    ("handling", "on_first", "on_again"),
    [
        (0, True, True),  # at every subscribe [MQTT-3.3.1-9]
        (1, True, False),  # only when the subscription is new [MQTT-3.3.1-10]
        (2, False, False),  # never [MQTT-3.3.1-11]
    ],
)
def test_retain_handling(broker: Broker, handling: int, on_first: bool, on_again: bool) -> None:
    topic = unique(f"rh{handling}")
    pub = connected(broker)
    pub.publish(topic, b"retained", 1, retain=True)
    sub = connected(broker)
    for n, expected in enumerate((on_first, on_again)):
        sub.subscribe(topic, options=options(1, retain_handling=handling))
        barrier = f"barrier {n}".encode()
        pub.publish(topic, barrier, 1)  # after the SUBACK: behind any retained copy
        want = [(b"retained", True)] if expected else []
        want.append((barrier, False))
        assert [(m.payload, m.retain) for m in sub.expect(len(want))] == want
    pub.publish(topic, b"", 1, retain=True)
    sub.disconnect()
    pub.disconnect()


# --- subscription identifiers, section 3.8.2.1.2 and 3.3.4 ----------------------------------
@pytest.mark.parametrize("qos", [0, 1])
def test_subscription_identifier_is_sent_with_the_message(broker: Broker, qos: int) -> None:
    topic = unique("sid")
    sub = connected(broker)
    sub.subscribe(topic, qos, sub_id=42)
    pub = connected(broker)
    pub.publish(topic, b"tagged", qos)
    (msg,) = sub.expect(1)
    assert (msg.payload, msg.qos, sub_ids(msg)) == (b"tagged", qos, [42])
    sub.disconnect()
    pub.disconnect()


def test_one_copy_for_overlapping_subscriptions_carries_both_identifiers(
    broker: Broker,
) -> None:
    base = unique("sids")
    sub = connected(broker)
    sub.subscribe(f"{base}/a", 1, sub_id=1)
    sub.subscribe(f"{base}/+", 1, sub_id=2)
    pub = connected(broker)
    pub.publish(f"{base}/a", b"both match", 1)
    pub.publish(f"{base}/b", b"the wildcard only", 1)  # and a barrier against a 2nd copy
    first, second = sub.expect(2)
    # [MQTT-3.3.4-4]: a single copy carries every matching identifier, in any order
    assert (first.topic, first.payload, sorted(sub_ids(first) or [])) == (
        f"{base}/a",
        b"both match",
        [1, 2],
    )
    assert (second.topic, sub_ids(second)) == (f"{base}/b", [2])
    sub.disconnect()
    pub.disconnect()


def test_resubscribing_without_an_identifier_removes_it(broker: Broker) -> None:
    topic = unique("nosid")
    sub = connected(broker)
    sub.subscribe(topic, 1, sub_id=5)
    pub = connected(broker)
    pub.publish(topic, b"with", 1)
    assert sub_ids(sub.expect(1)[0]) == [5]
    sub.subscribe(topic, 1)  # the identifier belongs to the subscription it replaces
    pub.publish(topic, b"without", 1)
    (msg,) = sub.expect(1)
    assert (msg.payload, sub_ids(msg)) == (b"without", None)
    sub.disconnect()
    pub.disconnect()


def test_retained_message_on_subscribe_carries_the_identifier(broker: Broker) -> None:
    topic = unique("rsid")
    pub = connected(broker)
    pub.publish(topic, b"retained", 1, retain=True)
    sub = connected(broker)
    sub.subscribe(topic, 1, sub_id=77)
    (msg,) = sub.expect(1)
    assert (msg.payload, msg.retain, sub_ids(msg)) == (b"retained", True, [77])
    pub.publish(topic, b"", 1, retain=True)
    sub.disconnect()
    pub.disconnect()


# --- shared subscriptions, section 4.8.2 ------------------------------------------------------
@pytest.mark.parametrize("qos", [0, 1])
def test_shared_subscription_gives_each_message_to_one_member(broker: Broker, qos: int) -> None:
    base = unique("share")
    topic = f"{base}/jobs"
    members = [connected(broker), connected(broker)]
    for member in members:
        assert [rc.value for rc in member.subscribe(f"$share/workers/{topic}", qos)] == [qos]
        member.subscribe(f"{base}/barrier", qos)
    everyone = connected(broker)
    everyone.subscribe(topic, qos)
    pub = connected(broker)
    payloads = [f"job {i}".encode() for i in range(10)]
    for payload in payloads:
        pub.publish(topic, payload, qos)
    got = collect(members, len(payloads))
    pub.publish(f"{base}/barrier", b"barrier", qos)
    for member in members:  # nothing more of the shared topic before the barrier
        assert member.expect(1)[0].payload == b"barrier"
    assert sorted(got[0] + got[1]) == sorted(payloads)  # each to exactly one member
    assert got[0] and got[1], got  # spread over both
    # A non-shared subscription to the same topic still gets every message.
    assert [m.payload for m in everyone.expect(len(payloads))] == payloads
    for client in (*members, everyone, pub):
        client.disconnect()


def test_shared_subscription_with_no_local_is_a_protocol_error(broker: Broker) -> None:
    raw, _ = raw_connected(broker)
    raw.send(Subscribe(1, (Subscription(f"$share/g/{unique('t')}", 1, no_local=True),)))
    # [MQTT-3.8.3-4]: no SUBACK, DISCONNECT 0x82
    assert raw.expect_closed() == [Disconnect(PROTOCOL_ERROR)]


# --- the client's Receive Maximum and Maximum Packet Size, section 3.1.2.11 -----------------
def test_receive_maximum_limits_unacknowledged_qos1_messages(broker: Broker) -> None:
    base = unique("rm")
    raw, _ = raw_connected(broker, properties={"receive_maximum": 2})
    raw.send(Subscribe(1, (Subscription(f"{base}/t", 1),)))
    assert raw.recv() == Suback(1, (1,))
    # QoS 0 with an identifier goes through the session's worker, as the QoS 1
    # copies do, and is not held by the window: a barrier behind them.
    raw.send(Subscribe(2, (Subscription(f"{base}/barrier", 0),), {"subscription_identifier": 9}))
    assert raw.recv() == Suback(2, (0,))
    pub = connected(broker)
    for i in range(5):
        pub.publish(f"{base}/t", f"m{i}".encode(), 1)
    pub.publish(f"{base}/barrier", b"barrier 1", 0)
    inflight = [recv_publish(raw), recv_publish(raw)]
    assert [p.payload for p in inflight] == [b"m0", b"m1"]
    assert recv_publish(raw).payload == b"barrier 1"  # [MQTT-3.3.4-9]: m2 waits
    raw.send(Puback(inflight[0].packet_id or 0))
    third = recv_publish(raw)  # one acknowledged, one more sent
    assert third.payload == b"m2"
    pub.publish(f"{base}/barrier", b"barrier 2", 0)
    assert recv_publish(raw).payload == b"barrier 2"
    ids = {p.packet_id for p in (*inflight, third)}
    assert len(ids) == 3  # distinct packet ids [MQTT-2.2.1-4]
    raw.send(Puback(inflight[1].packet_id or 0))
    raw.send(Puback(third.packet_id or 0))
    rest = [recv_publish(raw), recv_publish(raw)]
    assert [p.payload for p in rest] == [b"m3", b"m4"]
    raw.close()
    pub.disconnect()


def test_message_over_the_clients_maximum_packet_size_is_not_sent(broker: Broker) -> None:
    topic = unique("mps")
    raw, _ = raw_connected(broker, properties={"maximum_packet_size": 256})
    raw.send(Subscribe(1, (Subscription(topic, 0),)))
    assert raw.recv() == Suback(1, (0,))
    pub = connected(broker)
    pub.publish(topic, b"x" * 500, 0)  # [MQTT-3.1.2-24]: discarded by the server
    pub.publish(topic, b"fits", 0)
    msg = recv_publish(raw)
    assert msg.payload == b"fits"
    raw.close()
    pub.disconnect()


def test_an_oversized_qos1_message_does_not_hold_the_receive_window(broker: Broker) -> None:
    topic = unique("mpsq")
    raw, _ = raw_connected(broker, properties={"maximum_packet_size": 256, "receive_maximum": 1})
    raw.send(Subscribe(1, (Subscription(topic, 1),)))
    assert raw.recv() == Suback(1, (1,))
    pub = connected(broker)
    pub.publish(topic, b"x" * 500, 1)
    pub.publish(topic, b"fits", 1)
    msg = recv_publish(raw, TIMEOUT)
    assert msg.payload == b"fits"
    raw.close()
    pub.disconnect()


# --- CONNACK properties, section 3.2.2.3 ------------------------------------------------------
def test_connack_properties(broker: Broker) -> None:
    raw, connack = raw_connected(broker, keepalive=30)
    props = connack.properties
    assert props["topic_alias_maximum"] == 10  # at most 10 topics kept per connection, as Mosquitto
    assert props["maximum_packet_size"] == 1024 * 1024  # the default max_packet_size
    assert props["shared_subscription_available"] == 1
    # Only when the client id was empty, and only when the keepalive is over the maximum.
    assert "assigned_client_identifier" not in props
    assert "server_keep_alive" not in props
    raw.close()


def test_empty_client_id_gets_an_assigned_client_identifier(broker: Broker) -> None:
    topic = unique("assigned")
    expiry = {"session_expiry_interval": LONG}
    raw, connack = raw_connected(broker, "", properties=expiry)
    assigned = connack.properties["assigned_client_identifier"]  # [MQTT-3.1.3-7]
    other, other_connack = raw_connected(broker, "")
    assert assigned and other_connack.properties["assigned_client_identifier"] != assigned
    other.close()
    raw.send(Subscribe(1, (Subscription(topic, 1),)))
    assert raw.recv() == Suback(1, (1,))
    raw.send(Disconnect())
    assert raw.expect_closed() == []
    # The assigned identifier names the session.
    again, connack = raw_connected(broker, assigned, clean=False, properties=expiry)
    assert connack.session_present is True
    assert "assigned_client_identifier" not in connack.properties
    again.send(Disconnect(0, {"session_expiry_interval": 0}))
    again.expect_closed()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker with this file's limits for the three tests that need one:
    a keepalive cap, a session expiry cap and an ACL (each test exercises
    one; none touches what the others' limits bound)."""
    where = tmp_path_factory.mktemp("limited")
    (where / "flockmq.toml").write_text("max_keepalive = 30\nmax_session_expiry = 600\n")
    (where / "acl.conf").write_text(ACL)
    b = Broker(
        where,
        extra_args=[
            "--config",
            str(where / "flockmq.toml"),
            "--acl-file",
            str(where / "acl.conf"),
        ],
    )
    b.start()
    yield b
    b.stop()


def test_server_keep_alive_caps_the_keepalive(limited: Broker) -> None:
    capped = limited
    raw, connack = raw_connected(capped, keepalive=60)
    assert connack.properties["server_keep_alive"] == 30  # section 3.2.2.3.14
    raw.close()
    raw, connack = raw_connected(capped, keepalive=30)
    assert "server_keep_alive" not in connack.properties
    raw.close()


def test_a_capped_session_expiry_is_told_in_the_connack(limited: Broker) -> None:
    capped = limited
    raw, connack = raw_connected(capped, properties={"session_expiry_interval": 86400})
    assert connack.properties["session_expiry_interval"] == 600  # section 3.2.2.3.2
    raw.close()
    raw, connack = raw_connected(capped, properties={"session_expiry_interval": 60})
    assert "session_expiry_interval" not in connack.properties
    raw.close()


# --- reason codes, section 2.4 ----------------------------------------------------------------
def test_unsuback_reason_codes(broker: Broker) -> None:
    base = unique("unsub")
    raw, _ = raw_connected(broker)
    raw.send(Subscribe(1, (Subscription(f"{base}/a", 1),)))
    assert raw.recv() == Suback(1, (1,))
    raw.send(Unsubscribe(2, (f"{base}/a", f"{base}/never")))
    assert raw.recv() == Unsuback(2, (0x00, NO_SUBSCRIPTION_EXISTED))
    raw.send(Unsubscribe(3, (f"{base}/a",)))  # gone since the last one
    assert raw.recv() == Unsuback(3, (NO_SUBSCRIPTION_EXISTED,))
    raw.close()


def test_puback_pubrec_pubcomp_reason_codes(broker: Broker) -> None:
    base = unique("acks")
    sub = connected(broker)
    sub.subscribe(f"{base}/t", 2)
    raw, _ = raw_connected(broker)
    raw.send(Publish(f"{base}/t", b"qos 1", 1, packet_id=1))
    assert raw.recv() == Puback(1, 0x00)
    raw.send(Publish(f"{base}/t", b"qos 2", 2, packet_id=2))
    assert raw.recv() == Pubrec(2, 0x00)
    raw.send(Pubrel(2))
    assert raw.recv() == Pubcomp(2, 0x00)
    assert [m.payload for m in sub.expect(2)] == [b"qos 1", b"qos 2"]
    raw.send(Publish(f"{base}/nobody", b"unheard", 1, packet_id=3))
    puback = raw.recv()
    assert isinstance(puback, Puback) and puback.packet_id == 3
    # Success, or (the server may say so) No matching subscribers.
    assert puback.reason_code in (0x00, NO_MATCHING_SUBSCRIBERS)
    raw.close()
    sub.disconnect()


def test_unknown_packet_ids_get_0x92(broker: Broker) -> None:
    raw, _ = raw_connected(broker)
    raw.send(Pubrel(41))  # no QoS 2 publish 41 from this client
    assert raw.recv() == Pubcomp(41, PACKET_IDENTIFIER_NOT_FOUND)
    raw.send(Pubrec(42))  # no QoS 2 publish 42 to this client
    assert raw.recv() == Pubrel(42, PACKET_IDENTIFIER_NOT_FOUND)
    raw.close()


ACL = """\
topic readwrite open/#
"""


def test_refusals_by_the_acl_are_not_authorized(limited: Broker) -> None:
    guarded = limited
    u = unique("acl")
    raw, _ = raw_connected(guarded)
    raw.send(Subscribe(1, (Subscription(f"open/{u}", 1), Subscription(f"closed/{u}", 1))))
    assert raw.recv() == Suback(1, (1, NOT_AUTHORIZED))
    raw.send(Publish(f"closed/{u}", b"no", 1, packet_id=2))
    assert raw.recv() == Puback(2, NOT_AUTHORIZED)
    raw.send(Publish(f"closed/{u}", b"no", 2, packet_id=3))
    assert raw.recv() == Pubrec(3, NOT_AUTHORIZED)  # the flow ends there (section 4.3.3)
    raw.send(Publish(f"open/{u}", b"yes", 1, packet_id=4))  # allowed, for contrast
    got = [raw.recv(), raw.recv()]  # its PUBACK and its copy, in either order
    assert [p for p in got if isinstance(p, Puback)] == [Puback(4, 0x00)]
    copies = [(p.topic, p.payload) for p in got if isinstance(p, Publish)]
    assert copies == [(f"open/{u}", b"yes")]
    raw.close()


# --- properties passed through, section 3.3.2.3 ------------------------------------------------
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_message_properties_pass_through_unchanged(broker: Broker, qos: int) -> None:
    topic = unique("props")
    sub = connected(broker)
    sub.subscribe(topic, qos)
    pub = connected(broker)
    pub.publish(topic, b'{"temperature": 21}', qos, properties=message_properties())
    (msg,) = sub.expect(1)
    assert (msg.payload, msg.qos) == (b'{"temperature": 21}', qos)
    assert_passed_through(msg)  # [MQTT-3.3.2-4], [MQTT-3.3.2-15] to -18, [MQTT-3.3.2-20]
    sub.disconnect()
    pub.disconnect()


def test_message_properties_survive_the_offline_queue(broker: Broker) -> None:
    base = unique("qprops")
    client_id = unique("qp")
    watcher = watch(broker, f"{base}/will")
    first = with_will(broker, client_id, f"{base}/will", session_expiry=LONG)
    first.connect()
    first.subscribe(f"{base}/t", 1)
    first.drop()
    watcher.expect(1)  # detached
    pub = connected(broker)
    pub.publish(f"{base}/t", b"stored", 1, properties=message_properties())
    again = Client(broker.port, client_id, protocol=5, clean=False, session_expiry=LONG)
    assert again.connect().session_present is True
    (msg,) = again.expect(1)
    assert msg.payload == b"stored"
    assert_passed_through(msg)
    for client in (again, pub, watcher):
        client.disconnect()


def test_retained_message_keeps_its_properties(broker: Broker) -> None:
    topic = unique("rprops")
    pub = connected(broker)
    pub.publish(topic, b"kept", 1, retain=True, properties=message_properties())
    sub = connected(broker)
    sub.subscribe(topic, 1)
    (msg,) = sub.expect(1)
    assert (msg.payload, msg.retain) == (b"kept", True)
    assert_passed_through(msg)
    pub.publish(topic, b"", 1, retain=True)
    sub.disconnect()
    pub.disconnect()


def test_will_properties_pass_through(broker: Broker) -> None:
    topic = unique("wprops")
    watcher = watch(broker, topic)
    client = connected(
        broker,
        will=(topic, b"last words", 1, False),
        will_properties=message_properties(PacketTypes.WILLMESSAGE),
    )
    client.drop()
    (msg,) = watcher.expect(1)
    assert msg.payload == b"last words"
    assert_passed_through(msg)  # section 3.1.3.2; user property order [MQTT-3.1.3-10]
    watcher.disconnect()


def test_request_response_by_response_topic_and_correlation_data(broker: Broker) -> None:
    base = unique("rr")
    responder = connected(broker)
    responder.subscribe(f"{base}/requests", 1)
    requester = connected(broker)
    requester.subscribe(f"{base}/responses/me", 1)
    request = Properties(PacketTypes.PUBLISH)
    request.ResponseTopic = f"{base}/responses/me"
    request.CorrelationData = b"\x01\x02req"
    requester.publish(f"{base}/requests", b"what time is it?", 1, properties=request)
    (req,) = responder.expect(1)
    response = Properties(PacketTypes.PUBLISH)
    response.CorrelationData = getattr(req.properties, "CorrelationData", None)
    responder.publish(getattr(req.properties, "ResponseTopic", ""), b"noon", 1, properties=response)
    (resp,) = requester.expect(1)
    assert (resp.topic, resp.payload, getattr(resp.properties, "CorrelationData", None)) == (
        f"{base}/responses/me",
        b"noon",
        b"\x01\x02req",
    )
    responder.disconnect()
    requester.disconnect()
