"""ACLs end to end (Mosquitto's format, `--acl-file`): refused subscriptions get
SUBACK 0x80 (v5: 0x87), refused publishes are acknowledged but not delivered,
`%c`/`%u` patterns, deny lines, and the counter in $SYS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from frontend.codec import (
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
from .clients import Client, RawClient, unique

ACL_FILE = """\
# anonymous clients may read public/# only
topic read public/#

user writer
topic write acltest/#
topic deny acltest/closed/#
topic write public/#

user reader
topic read acltest/#
topic read public/#
topic read $SYS/#

pattern readwrite devices/%c/#
pattern read users/%u/#
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


def connected(broker: Broker, username: str | None = None, client_id: str | None = None) -> Client:
    client = Client(broker.port, client_id, username=username)
    client.connect()
    return client


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
                Subscription("#", 0),  # wider than public/#
                Subscription(f"public/{u}/#", 2),
            ),
        )
    )
    assert raw.recv() == Suback(9, (1, 0x80, 0x80, 2))
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
    reader = connected(broker, "reader")
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
    reader = connected(broker, "reader")
    reader.subscribe(f"public/{u}/#", 1)
    anon = raw_connected(broker)
    anon.send(Publish(f"public/{u}/anon", b"no", 1, packet_id=5))  # anonymous: read only
    assert anon.recv() == Puback(5)
    reader.publish(f"public/{u}/reader", b"no", 1)  # read only too: acked, dropped
    writer = connected(broker, "writer")
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
    reader = connected(broker, "reader")
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
    reader = connected(broker, "reader")
    reader.subscribe("$SYS/broker/acceptor/+/acl_denied_publishes", 0)
    msg = reader.expect(1)[0]  # retained, or the next update within --sys-interval
    parts = msg.topic.split("/")
    assert parts[:3] == ["$SYS", "broker", "acceptor"] and parts[3] in ("0", "1")
    assert int(msg.payload) >= 1
    reader.disconnect()
