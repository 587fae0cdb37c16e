"""Packets a client may not send, and what they must not do to others or to
the broker's state (issue 9 items 10, 11, 12, 14, 17): a fake `$SYS`
message, a PUBLISH carrying a Subscription Identifier, enhanced
authentication, a PUBLISH after DISCONNECT in the same read, a Maximum Packet
Size nothing fits. tests/e2e/corpus checks each packet's answer; these check
that nothing reaches a subscriber or the retained store, and that the broker
is healthy afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Unpack

from flockmq.frontend.codec import (
    Connack,
    Connect,
    Disconnect,
    Puback,
    Publish,
    Will,
    encode,
)
from tests.e2e.broker import Broker, MakeBroker
from tests.e2e.clients import Client, ConnectOptions, RawClient, unique

from .health import assert_healthy, child_pids


def connected(
    port: int, level: int, client_id: str | None = None, **kwargs: Unpack[ConnectOptions]
) -> RawClient:
    raw = RawClient(port, level)
    raw.send(Connect(client_id or unique("raw"), level, True, 60, **kwargs))
    connack = raw.recv()
    assert isinstance(connack, Connack) and connack.reason_code == 0, connack
    return raw


def barrier(sub: Client, port: int, topic: str) -> None:
    """A publish from a fresh client to `topic` reaches `sub`, and it is the
    first thing `sub` gets: what the attacker sent before it did not."""
    pub = Client(port)
    pub.connect()
    pub.publish(topic, b"barrier", 1)
    pub.disconnect()
    (msg,) = sub.expect(1)
    assert (msg.topic, msg.payload) == (topic, b"barrier"), f"got {msg.topic} {msg.payload!r}"


def assert_nothing_retained(port: int, topic_filter: str, control: str) -> None:
    """A new subscriber to `topic_filter` gets the retained `control`
    message and no other: retained copies of one SUBSCRIBE come together."""
    reader = Client(port)
    reader.connect()
    reader.subscribe(topic_filter, 1)
    (msg,) = reader.expect(1)
    assert msg.topic == control and msg.retain, f"retained {msg.topic} {msg.payload!r}"
    reader.expect_nothing(0.5)
    reader.disconnect()


def store_control(port: int, control: str) -> None:
    pub = Client(port)
    pub.connect()
    pub.publish(control, b"control", 1, retain=True)
    pub.disconnect()


# --- item 10: $SYS belongs to the broker ----------------------------------------------------


def test_clients_cannot_write_sys_topics(broker: Broker) -> None:
    """A v5 QoS 1 PUBLISH to `$SYS/...` gets PUBACK 0x87 and a 3.1.1 one is
    acknowledged and dropped; a subscriber to `$SYS/#` sees neither, and a
    retained fake is not stored (before: delivered and retained)."""
    pids = child_pids(broker)
    base = f"$SYS/fake-{unique('x')}"
    sub = Client(broker.port)
    sub.connect()
    sub.subscribe(f"{base}/#", 1)
    probe = unique("probe")
    sub.subscribe(probe, 1)

    v5 = connected(broker.port, 5)
    v5.send(Publish(f"{base}/clients", b"666", 1, True, packet_id=1))
    ack = v5.recv()
    assert isinstance(ack, Puback) and ack.reason_code == 0x87, ack
    v5.send(Publish(f"{base}/uptime", b"fake", 0, True))
    v311 = connected(broker.port, 4)
    v311.send(Publish(f"{base}/load", b"fake", 1, True, packet_id=1))
    ack = v311.recv()
    assert isinstance(ack, Puback), ack  # acknowledged [MQTT-3.3.5-2], and dropped
    v311.send(Publish(f"{base}/load", b"fake", 0, False))
    for raw in (v5, v311):
        raw.send(Disconnect())
        raw.sock.close()

    barrier(sub, broker.port, probe)  # no fake came before it
    sub.expect_nothing(0.5)
    sub.disconnect()
    # Nothing was retained under the fake prefix: a new subscriber to it
    # gets no retained message (retained copies follow the SUBACK, before a
    # live message published after it).
    reader = Client(broker.port)
    reader.connect()
    reader.subscribe(f"{base}/#", 1)
    reader.subscribe(probe, 1)
    barrier(reader, broker.port, probe)
    reader.disconnect()
    # Counted: the acceptors' `sys_publishes_refused` in $SYS (retained).
    counters = Client(broker.port)
    counters.connect()
    counters.subscribe("$SYS/broker/acceptor/+/sys_publishes_refused", 0)
    refused: dict[str, int] = {}  # per acceptor: its value, then its updates
    while sum(refused.values()) < 4:  # the two clients may be on either acceptor
        msg = counters.expect(1)[0]
        refused[msg.topic] = int(msg.payload)
    counters.disconnect()
    assert_healthy(broker, pids)


SYS_ACL = """\
topic readwrite #

user sysadmin
topic readwrite $SYS/custom/#

user plain
topic readwrite #
"""


def test_an_acl_line_naming_sys_lets_a_client_write_there(
    make_broker: MakeBroker, tmp_path: Path
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(SYS_ACL)
    broker = make_broker("--acl-file", str(acl))
    pids = child_pids(broker)
    topic = f"$SYS/custom/{unique('t')}"
    sub = Client(broker.port, username="sysadmin")
    sub.connect()
    sub.subscribe("$SYS/custom/#", 1)
    plain = connected(broker.port, 5, username="plain")
    plain.send(Publish(topic, b"not granted", 1, packet_id=1))
    ack = plain.recv()
    assert isinstance(ack, Puback) and ack.reason_code == 0x87, ack  # `#` does not match $SYS
    admin = connected(broker.port, 5, username="sysadmin")
    admin.send(Publish(topic, b"granted", 1, packet_id=1))
    ack = admin.recv()
    assert isinstance(ack, Puback) and ack.reason_code == 0, ack
    (msg,) = sub.expect(1)
    assert (msg.topic, msg.payload) == (topic, b"granted")
    sub.expect_nothing(0.3)
    sub.disconnect()
    for raw in (plain, admin):
        raw.sock.close()
    assert_healthy(broker, pids)


# --- item 11: a client's Subscription Identifier -----------------------------------------


def test_a_publish_carrying_a_subscription_identifier_is_refused_and_not_delivered(
    broker: Broker,
) -> None:
    pids = child_pids(broker)
    topic = unique("subid")
    sub = Client(broker.port, protocol=5)
    sub.connect()
    sub.subscribe(topic, 1)
    raw = connected(broker.port, 5)
    props = {"subscription_identifier": (7,)}
    raw.send(Publish(topic, b"forged", 1, packet_id=1, properties=props))
    got = raw.expect_closed()
    assert [type(p) for p in got] == [Disconnect], got
    # got[0] is a Disconnect, asserted just above.
    assert got[0].reason_code == 0x82, got  # type: ignore[union-attr]
    barrier(sub, broker.port, topic)
    sub.expect_nothing(0.3)
    sub.disconnect()
    assert_healthy(broker, pids)


# --- item 12: enhanced authentication ----------------------------------------------------


def test_a_connect_with_an_authentication_method_is_refused_and_leaves_no_session(
    broker: Broker,
) -> None:
    """CONNACK 0x8C and closed; the publish sent behind the CONNECT is not
    delivered, no will, and no session was created for the client id."""
    pids = child_pids(broker)
    topic = unique("auth")
    client_id = unique("auth")
    sub = Client(broker.port, protocol=5)
    sub.connect()
    sub.subscribe(f"{topic}/#", 1)
    raw = RawClient(broker.port, 5)
    connect = Connect(
        client_id,
        5,
        False,
        60,
        will=Will(f"{topic}/will", b"will", 1),
        properties={"authentication_method": "SCRAM-SHA-1", "session_expiry_interval": 300},
    )
    raw.send_raw(encode(connect, 5) + encode(Publish(f"{topic}/data", b"sneaked", 0), 5))
    got = raw.expect_closed()
    assert len(got) == 1 and isinstance(got[0], Connack), got
    assert got[0].reason_code == 0x8C, got
    barrier(sub, broker.port, f"{topic}/data")
    sub.expect_nothing(0.3)
    sub.disconnect()
    again = Client(broker.port, client_id, protocol=5, clean=False, session_expiry=0)
    flags = again.connect()
    assert not flags.session_present, "a refused CONNECT created a session"
    again.disconnect()
    assert_healthy(broker, pids)


# --- item 14: nothing after DISCONNECT ---------------------------------------------------


def test_a_publish_after_disconnect_in_the_same_write_is_not_acted_on(broker: Broker) -> None:
    pids = child_pids(broker)
    base = unique("afterdisc")
    control = f"{base}/control"
    store_control(broker.port, control)
    sub = Client(broker.port)
    sub.connect()
    sub.subscribe(f"{base}/#", 1)
    assert sub.expect(1)[0].topic == control
    for level in (4, 5):
        raw = RawClient(broker.port, level)
        raw.send_raw(
            encode(Connect(unique("ghost"), level, True, 60), level)
            + encode(Disconnect(), level)
            + encode(Publish(f"{base}/ghost", b"ghost", 1, True, packet_id=1), level)
            + encode(Publish(f"{base}/ghost", b"ghost0", 0, True), level)
        )
        got = raw.expect_closed()
        # What follows a CONNECT is acted on after its CONNACK [MQTT-3.1.4-5].
        assert [type(p) for p in got] == [Connack], got
    barrier(sub, broker.port, f"{base}/live")
    sub.expect_nothing(0.3)
    sub.disconnect()
    assert_nothing_retained(broker.port, f"{base}/#", control)
    assert_healthy(broker, pids)


# --- item 17: a Maximum Packet Size nothing fits -----------------------------------------


def test_a_maximum_packet_size_smaller_than_the_connack_closes_with_nothing_sent(
    broker: Broker,
) -> None:
    pids = child_pids(broker)
    topic = unique("tiny")
    sub = Client(broker.port)
    sub.connect()
    sub.subscribe(topic, 1)
    raw = RawClient(broker.port, 5)
    raw.send_raw(
        encode(Connect(unique("tiny"), 5, True, 60, properties={"maximum_packet_size": 2}), 5)
        + encode(Publish(topic, b"behind a refused CONNECT", 0), 5)
    )
    got = raw.expect_closed()
    assert got == [], got
    # Nothing after a CONNECT the server refuses is acted on [MQTT-3.1.4-5].
    barrier(sub, broker.port, topic)
    sub.expect_nothing(0.3)
    sub.disconnect()
    assert_healthy(broker, pids)
