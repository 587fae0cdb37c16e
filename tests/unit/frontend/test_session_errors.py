"""Protocol errors of one client session become their wire answer in one
place (ClientSession.fail): CONNACK with the reason for a bad v5 CONNECT,
DISCONNECT with the reason for a connected v5 client, a closed connection
and nothing said for 3.1/3.1.1 -- always a counter, and the will kept."""

from __future__ import annotations

from flockmq.config import Config
from flockmq.envelopes import Kind
from flockmq.frontend.codec import (
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    ProtocolError,
    Publish,
    ReasonCode,
    Subscribe,
    Subscription,
    encode,
)
from flockmq.frontend.codec.packets import Auth, Will

from .sessions import Client, FakeHost, connected
from .test_session_connect import V5_CONNACK_PROPS


def test_a_first_packet_that_is_not_connect_closes_silently() -> None:
    """[MQTT-3.1.0-1]"""
    c = Client()
    c.receive(encode(Pingreq(), 4))
    assert c.link.closed and c.link.written == []
    assert c.host.counters["protocol_errors_protocol_error"] == 1


def test_a_publish_before_connect_closes() -> None:
    c = Client()
    c.receive(encode(Publish("t", b"x"), 4))
    assert c.link.closed and c.host.router == []


def test_a_second_connect_is_disconnect_protocol_error_in_v5() -> None:
    """[MQTT-3.1.0-2]"""
    c = connected(5)
    c.send(Connect("again", 5))
    assert c.packets() == [Disconnect(ReasonCode.PROTOCOL_ERROR)]
    assert c.link.closed and c.session.will_on_close is True


def test_a_311_protocol_error_closes_without_a_word_and_keeps_the_will() -> None:
    c = connected(4)
    c.send(Connect("again", 4))
    assert c.link.closed and c.link.written == []
    c.session.connection_lost()
    assert c.host.take()[1] == [[Kind.CLOSED, 7, "c", True, None]]


def test_malformed_input_is_disconnect_malformed_packet() -> None:
    c = connected(5)
    c.receive(b"\x36\x00")  # PUBLISH with QoS 3 [MQTT-3.3.1-4]
    assert c.packets() == [Disconnect(ReasonCode.MALFORMED_PACKET)]
    assert c.host.counters["protocol_errors_malformed_packet"] == 1


def test_a_packet_over_the_maximum_is_disconnect_packet_too_large() -> None:
    c = connected(5, host=FakeHost(Config(workers=4, max_packet_size=100)))
    c.send(Publish("t", b"x" * 200))
    assert c.packets() == [Disconnect(ReasonCode.PACKET_TOO_LARGE)] and c.host.router == []


def test_an_unsupported_protocol_level_is_answered_with_connack_0x01() -> None:
    """[MQTT-3.1.2-2]"""
    data = bytearray(encode(Connect("a", 4), 4))
    data[8] = 6  # the protocol level
    c = Client()
    c.receive(bytes(data))
    assert c.packets() == [Connack(False, 0x01)]
    assert c.link.closed and c.host.workers == []


def test_a_bad_v5_connect_is_answered_with_a_connack_saying_why() -> None:
    """[MQTT-3.1.4-1]: a will too deep for max_topic_levels, CONNACK 0x90."""
    c = Client(FakeHost(Config(workers=4, max_topic_levels=1)))
    c.send(Connect("a", 5, will=Will("a/b")), level=5)
    assert c.packets() == [Connack(False, ReasonCode.TOPIC_NAME_INVALID, V5_CONNACK_PROPS)]


def test_a_publish_carrying_a_subscription_identifier_is_a_protocol_error() -> None:
    """[MQTT-3.3.4-6]"""
    c = connected(5)
    c.send(Publish("t", b"x", properties={"subscription_identifier": 1}))
    assert c.packets() == [Disconnect(ReasonCode.PROTOCOL_ERROR)] and c.host.router == []


def test_a_topic_too_deep_is_topic_name_invalid() -> None:
    c = connected(5, host=FakeHost(Config(workers=4, max_topic_levels=2)))
    c.send(Publish("a/b/c", b"x"))
    assert c.packets() == [Disconnect(ReasonCode.TOPIC_NAME_INVALID)]
    assert c.host.counters["topics_too_deep"] == 1


def test_auth_without_an_authentication_method_is_a_protocol_error() -> None:
    """[MQTT-4.12.0-1]"""
    c = connected(5)
    c.send(Auth(0x18))
    assert c.packets() == [Disconnect(ReasonCode.PROTOCOL_ERROR)]


def test_no_local_on_a_shared_subscription_is_a_protocol_error() -> None:
    """[MQTT-3.8.3-4]"""
    c = connected(5)
    c.send(Subscribe(1, (Subscription("$share/g/t", 1, no_local=True),)))
    assert c.packets() == [Disconnect(ReasonCode.PROTOCOL_ERROR)] and c.host.workers == []


def test_a_shared_subscription_is_refused_in_311() -> None:
    c = connected(4)
    c.send(Subscribe(1, (Subscription("$share/g/t", 1), Subscription("t", 1))))
    (e,) = c.host.take()[1]
    assert [entry[1] for entry in e[4]] == [0x80, 1]
    assert c.host.counters["shared_subscriptions_refused"] == 1


def test_a_violation_the_worker_found_is_answered_like_one_found_here() -> None:
    """CLOSE from the worker (the acceptor calls fail): [MQTT-4.8.0-1]."""
    c = connected(5)
    c.session.fail(ProtocolError("wrong ack", ReasonCode.PROTOCOL_ERROR))
    assert c.packets() == [Disconnect(ReasonCode.PROTOCOL_ERROR)] and c.link.closed


def test_nothing_is_read_after_a_protocol_error() -> None:
    c = connected(5)
    c.send(Connect("again", 5), Publish("t", b"after"))
    c.send(Publish("t", b"later"))
    assert c.host.router == []


def test_an_unknown_protocol_name_is_closed_without_a_connack() -> None:
    """[MQTT-3.1.2-1]"""
    data = bytearray(encode(Connect("a", 4), 4))
    data[4:8] = b"MQXX"  # the protocol name
    c = Client()
    c.receive(bytes(data))
    assert c.link.closed and c.link.written == [] and c.host.workers == []


def test_a_packet_over_the_clients_maximum_is_not_sent() -> None:
    """[MQTT-3.1.2-25]: dropped and counted; the connection stays."""
    c = connected(5, properties={"maximum_packet_size": 64})
    c.session.write(encode(Publish("t", b"x" * 100), 5))
    c.session.write(encode(Publish("t", b"small"), 5))
    assert c.packets() == [Publish("t", b"small")] and not c.link.closed
    assert c.host.counters["dropped_over_client_maximum_packet_size"] == 1
