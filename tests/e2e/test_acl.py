"""ACLs end to end (Mosquitto's format, `--acl-file`): a subscription that can
match no readable topic gets SUBACK 0x80 (v5: 0x87), others are granted and
each message is checked on delivery (retained ones too; a QoS 1/2 copy not
written frees its slot of the window), refused publishes are acknowledged but
not delivered, `%c`/`%u` patterns and the injection through them, deny lines,
and the counters in $SYS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flockmq.frontend.codec import (
    Connack,
    Connect,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Subscription,
    Will,
)

from .broker import Broker
from .clients import Client, RawClient, connected, unique

ACL_FILE = """\
# anonymous clients may read public/# only
topic read public/#

user writer
topic write acltest/#
topic deny acltest/closed/#
topic write public/#
topic write announce/#

user reader
topic read acltest/#
topic read public/#
topic read $SYS/#

pattern readwrite devices/%c/#
pattern read users/%u/#
pattern read announce/#
"""

# Mosquitto's standard test lines for anonymous clients, a publisher that may
# write the denied topic, and a spy that may read it (the positive control).
STANDARD_ACL_FILE = """\
topic readwrite #
topic deny test/nosubscribe

user pub
topic write test/#

user spy
topic read test/#
topic read $SYS/#
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    data = tmp_path_factory.mktemp("acl")
    acl = data / "acl.conf"
    acl.write_text(ACL_FILE)
    b = Broker(data, extra_args=["--sys-interval", "0.5", "--acl-file", str(acl)])
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def standard_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A window of 2 messages in flight per session, so copies that are not
    written would stop delivery after two."""
    data = tmp_path_factory.mktemp("acl-standard")
    acl = data / "acl.conf"
    acl.write_text(STANDARD_ACL_FILE)
    b = Broker(
        data,
        extra_args=["--sys-interval", "0.5", "--acl-file", str(acl), "--max-inflight", "2"],
    )
    b.start()
    yield b
    b.stop()


def raw_connected(broker: Broker, username: str | None = None, level: int = 4) -> RawClient:
    raw = RawClient(broker.port, level=level)
    raw.send(Connect(unique("raw"), level, True, 30, username=username))
    connack = raw.recv()
    assert isinstance(connack, Connack) and connack.reason_code == 0
    return raw


def test_refused_subscription_gets_0x80(broker: Broker) -> None:
    raw = raw_connected(broker)  # anonymous
    u = unique("s")
    raw.send(
        Subscribe(
            9,
            (
                Subscription(f"public/{u}", 1),
                Subscription(f"acltest/{u}", 1),
                Subscription("#", 0),  # granted as by Mosquitto: filtered on delivery
                Subscription(f"public/{u}/#", 2),
            ),
        )
    )
    assert raw.recv() == Suback(9, (1, 0x80, 0, 2))
    raw.close()


def test_refused_subscription_mqtt5_is_not_authorized(broker: Broker) -> None:
    raw = raw_connected(broker, "reader", level=5)
    u = unique("s5")
    raw.send(Subscribe(2, (Subscription(f"acltest/{u}", 1), Subscription("devices/x/#", 1))))
    suback = raw.recv()
    assert isinstance(suback, Suback)
    assert suback.reason_codes == (1, 0x87)
    raw.close()


def test_refused_publish_is_acked_but_not_delivered(broker: Broker) -> None:
    u = unique("p")
    reader = connected(broker, username="reader")
    assert [rc.value for rc in reader.subscribe("acltest/#", 1)] == [1]
    writer = raw_connected(broker, "writer")
    # deny wins over `topic write acltest/#`; 3.1.1 still PUBACKs [MQTT-3.3.5-2]
    writer.send(Publish(f"acltest/closed/{u}", b"denied", 1, packet_id=1))
    assert writer.recv() == Puback(1)
    writer.send(Publish(f"acltest/open/{u}", b"allowed", 1, packet_id=2))
    assert writer.recv() == Puback(2)
    while True:  # acltest/# may see other tests' messages, never the denied one
        (msg,) = reader.expect(1)
        assert msg.payload != b"denied"
        if msg.topic == f"acltest/open/{u}":
            assert msg.payload == b"allowed"
            break
    writer.close()
    reader.disconnect()


def test_read_only_user_cannot_publish(broker: Broker) -> None:
    u = unique("ro")
    reader = connected(broker, username="reader")
    reader.subscribe(f"public/{u}/#", 1)
    anon = raw_connected(broker)
    anon.send(Publish(f"public/{u}/anon", b"no", 1, packet_id=5))  # anonymous: read only
    assert anon.recv() == Puback(5)
    reader.publish(f"public/{u}/reader", b"no", 1)  # read only too: acked, dropped
    writer = connected(broker, username="writer")
    writer.publish(f"public/{u}/writer", b"yes", 1)
    (msg,) = reader.expect(1)
    assert (msg.topic, msg.payload) == (f"public/{u}/writer", b"yes")
    for c in (reader, writer):
        c.disconnect()
    anon.close()


def test_refused_publish_mqtt5_says_not_authorized(broker: Broker) -> None:
    raw = raw_connected(broker, "reader", level=5)
    raw.send(Publish(f"acltest/{unique('x')}", b"no", 1, packet_id=3))
    puback = raw.recv()
    assert isinstance(puback, Puback)
    assert (puback.packet_id, puback.reason_code) == (3, 0x87)
    raw.close()


def test_client_id_pattern(broker: Broker) -> None:
    dev = unique("dev")
    client = connected(broker, client_id=dev)
    assert [rc.value for rc in client.subscribe(f"devices/{dev}/#", 1)] == [1]
    assert [rc.value for rc in client.subscribe("devices/other/#", 1)] == [0x80]
    client.publish(f"devices/{dev}/state", b"on", 1)
    (msg,) = client.expect(1)
    assert (msg.topic, msg.payload) == (f"devices/{dev}/state", b"on")
    client.disconnect()


def test_username_pattern(broker: Broker) -> None:
    reader = connected(broker, username="reader")
    assert [rc.value for rc in reader.subscribe("users/reader/#", 1)] == [1]
    assert [rc.value for rc in reader.subscribe("users/writer/#", 1)] == [0x80]
    anon = connected(broker)
    assert [rc.value for rc in anon.subscribe("users//#", 1)] == [0x80]  # %u needs a name
    reader.disconnect()
    anon.disconnect()


def test_will_on_a_denied_topic_refuses_the_connect(broker: Broker) -> None:
    raw = RawClient(broker.port)
    raw.send(Connect(unique("w"), 4, True, 30, will=Will("acltest/will", b"x")))
    assert raw.expect_closed() == [Connack(False, 5)]  # 3.1.1: not authorized


def test_denied_publishes_counter_in_sys(broker: Broker) -> None:
    anon = raw_connected(broker)
    anon.send(Publish(f"acltest/{unique('c')}", b"no", 1, packet_id=1))
    assert anon.recv() == Puback(1)
    anon.close()
    reader = connected(broker, username="reader")
    reader.subscribe("$SYS/broker/acceptor/+/acl_denied_publishes", 0)
    msg = reader.expect(1)[0]  # retained, or the next update within --sys-interval
    parts = msg.topic.split("/")
    assert parts[:3] == ["$SYS", "broker", "acceptor"] and parts[3] in ("0", "1")
    assert int(msg.payload) >= 1
    reader.disconnect()


def receive_until(client: Client, topic: str, forbidden: str) -> list[tuple[str, bytes]]:
    """What `client` receives up to and including the barrier on `topic`; the
    `#` subscriptions here also see other tests' messages, never `forbidden`."""
    got: list[tuple[str, bytes]] = []
    while True:
        (msg,) = client.expect(1)
        assert msg.topic != forbidden, f"{forbidden} delivered: {msg.payload!r}"
        got.append((msg.topic, bytes(msg.payload)))
        if msg.topic == topic:
            return got


# --- Mosquitto's semantics: granted wide filters, filtered on delivery -------------


@pytest.mark.parametrize("qos", [0, 1])
def test_hash_is_granted_and_the_denied_topic_is_filtered(
    standard_broker: Broker, qos: int
) -> None:
    """QoS 0 reaches the acceptor as SEND_PUBLISH_MANY (the router's direct
    path), QoS 1 as SEND_PUBLISH with a packet id: both are checked."""
    u = unique("hash")
    sub = connected(standard_broker)  # anonymous: `topic readwrite #`
    assert [rc.value for rc in sub.subscribe("#", qos)] == [qos]
    assert [rc.value for rc in sub.subscribe("+/+", qos)] == [qos]
    # refused: a filter that can match only denied topics, and $-topics
    assert [rc.value for rc in sub.subscribe("test/nosubscribe", qos)] == [0x80]
    assert [rc.value for rc in sub.subscribe("$SYS/#", qos)] == [0x80]
    pub = connected(standard_broker, username="pub")
    pub.publish("test/nosubscribe", f"denied {u}".encode(), qos)
    pub.publish(f"test/{u}", b"barrier", qos)  # after the denied one, same path
    got = receive_until(sub, f"test/{u}", forbidden="test/nosubscribe")
    assert got[-1] == (f"test/{u}", b"barrier")
    sub.disconnect()
    pub.disconnect()


def test_retained_message_on_a_denied_topic_is_not_delivered(standard_broker: Broker) -> None:
    u = unique("ret")
    pub = connected(standard_broker, username="pub")
    # acknowledged once the retained message is stored
    pub.publish("test/nosubscribe", f"retained {u}".encode(), 1, retain=True)
    pub.publish(f"test/{u}", b"barrier", 1, retain=True)
    pub.disconnect()
    spy = connected(standard_broker, username="spy")  # may read it: the message is there
    assert [rc.value for rc in spy.subscribe("test/nosubscribe", 1)] == [1]
    (msg,) = spy.expect(1)
    assert (msg.topic, msg.payload, msg.retain) == (
        "test/nosubscribe",
        f"retained {u}".encode(),
        True,
    )
    spy.disconnect()
    sub = connected(standard_broker)
    # Two SUBSCRIBEs: the retained copies of the first reach the client before
    # those of the second (one ordered path: router, worker, acceptor).
    assert [rc.value for rc in sub.subscribe("+/nosubscribe", 1)] == [1]
    assert [rc.value for rc in sub.subscribe(f"test/{u}", 1)] == [1]
    got = receive_until(sub, f"test/{u}", forbidden="test/nosubscribe")
    assert got[-1] == (f"test/{u}", b"barrier")
    sub.disconnect()


def test_undelivered_qos1_and_qos2_copies_free_the_window(standard_broker: Broker) -> None:
    """The broker runs with --max-inflight 2: a denied copy that held its slot
    would stop the session after two of them."""
    u = unique("win")
    sub = connected(standard_broker)
    assert [rc.value for rc in sub.subscribe("#", 2)] == [2]
    pub = connected(standard_broker, username="pub")
    for i in range(3):
        pub.publish("test/nosubscribe", f"q1 {u} {i}".encode(), 1)
        pub.publish("test/nosubscribe", f"q2 {u} {i}".encode(), 2)
    for i in range(3):
        pub.publish(f"test/{u}", str(i).encode(), 1)
    got: list[bytes] = []
    while len(got) < 3:
        got += [
            p for t, p in receive_until(sub, f"test/{u}", "test/nosubscribe") if t == f"test/{u}"
        ]
    assert got == [b"0", b"1", b"2"]
    pub.disconnect()
    # counted where the copies were dropped (the acceptor of the subscriber)
    spy = connected(standard_broker, username="spy")
    spy.subscribe("$SYS/broker/acceptor/+/acl_denied_deliveries", 0)
    while int(spy.expect(1)[0].payload) < 6:  # retained values, then updates every 0.5 s
        pass
    spy.disconnect()
    sub.disconnect()


# --- pattern injection over a real connection ------------------------------------


def test_client_id_percent_u_with_username_hash_reads_nothing_of_others(broker: Broker) -> None:
    """Substituting %c then %u in the result turned devices/%c/# into
    devices/#/# for client id `%u` with username `#`."""
    u = unique("inj")
    victim_id = unique("victim")
    attacker = connected(broker, username="#", client_id="%u")
    assert [rc.value for rc in attacker.subscribe("devices/#", 1)] == [0x80]
    assert [rc.value for rc in attacker.subscribe(f"devices/{victim_id}/#", 1)] == [0x80]
    assert [rc.value for rc in attacker.subscribe("users/#", 1)] == [0x80]
    # `#` is granted (announce/# is readable by everyone) and filtered on delivery
    assert [rc.value for rc in attacker.subscribe("#", 1)] == [1]
    victim = connected(broker, username="writer", client_id=victim_id)
    victim.publish(f"devices/{victim_id}/secret", b"secret", 1)
    victim.publish(f"announce/{u}", b"barrier", 1)
    got = receive_until(attacker, f"announce/{u}", forbidden=f"devices/{victim_id}/secret")
    assert all(topic.startswith("announce/") for topic, _ in got)
    attacker.disconnect()
    victim.disconnect()
