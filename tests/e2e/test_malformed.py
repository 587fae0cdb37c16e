"""Malformed and forbidden input from raw sockets. 3.1.1: the connection is
closed; MQTT 5: DISCONNECT (after CONNACK) or CONNACK with the reason code.
Every time, the broker's processes survive, other clients keep working and
the `protocol_errors` counter shows up in $SYS."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Unpack

import pytest

from flockmq.frontend.codec import (
    Connack,
    Connect,
    Disconnect,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Suback,
    Subscribe,
    Subscription,
    Will,
    encode,
)

from .broker import Broker, MakeBroker
from .clients import Client, ConnectOptions, RawClient, assert_round_trip, unique

ROLES = [("router", 0), ("worker", 0), ("worker", 1), ("acceptor", 0), ("acceptor", 1)]
MALFORMED = 0x81
PROTOCOL_ERROR = 0x82
PACKET_TOO_LARGE = 0x95


def publish_bytes(topic: bytes, level: int, qos: int = 0, packet_id: int | None = None) -> bytes:
    """A PUBLISH built by hand, so it can carry what the encoder refuses."""
    body = len(topic).to_bytes(2, "big") + topic
    if packet_id is not None:
        body += packet_id.to_bytes(2, "big")
    if level == 5:
        body += b"\x00"  # no properties
    body += b"payload"
    return bytes([0x30 | qos << 1, len(body)]) + body


def subscribe_without_topics(level: int) -> bytes:
    return b"\x82\x03\x00\x01\x00" if level == 5 else b"\x82\x02\x00\x01"


# name -> (bytes for a level, v5 reason code)
AFTER_CONNECT: dict[str, tuple[Callable[[int], bytes], int]] = {
    "reserved-flags-pingreq": (lambda lv: b"\xc1\x00", MALFORMED),
    "reserved-flags-subscribe": (lambda lv: b"\x80\x06\x00\x01\x00\x01a\x00", MALFORMED),
    "remaining-length-5-bytes": (lambda lv: b"\x30\xff\xff\xff\xff\x01", MALFORMED),
    "publish-wildcard-topic": (lambda lv: publish_bytes(b"a/+/b", lv), PROTOCOL_ERROR),
    "publish-hash-topic": (lambda lv: publish_bytes(b"a/#", lv), PROTOCOL_ERROR),
    "publish-qos-3": (lambda lv: bytes([0x36, 5, 0, 1]) + b"a\x00\x01", MALFORMED),
    "publish-packet-id-0": (lambda lv: publish_bytes(b"a", lv, 1, 0), PROTOCOL_ERROR),
    "publish-invalid-utf8": (lambda lv: publish_bytes(b"a/\xff\xfe", lv), MALFORMED),
    "subscribe-no-topics": (subscribe_without_topics, PROTOCOL_ERROR),
    "packet-type-0": (lambda lv: b"\x00\x00", MALFORMED),
    "connack-from-client": (lambda lv: b"\x20\x03\x00\x00\x00", PROTOCOL_ERROR),
    "garbage": (lambda lv: b"\xde\xad\xbe\xef" * 16, MALFORMED),
    "too-large-256MB": (lambda lv: b"\x30\xff\xff\xff\x7f", PACKET_TOO_LARGE),
    "too-large-2MB": (lambda lv: b"\x30\x80\x80\x80\x01", PACKET_TOO_LARGE),
}


@pytest.fixture(scope="module")
def pids(broker: Broker) -> dict[tuple[str, int], int]:
    return {(role, i): broker.pid_of(role, i) for role, i in ROLES}


def assert_healthy(broker: Broker, pids: dict[tuple[str, int], int]) -> None:
    """No broker process died, and a pub/sub pair still exchanges a message."""
    assert broker.proc is not None and broker.proc.poll() is None
    assert {(role, i): broker.pid_of(role, i) for role, i in ROLES} == pids
    assert_round_trip(broker)


def connect_raw(broker: Broker, level: int, **kwargs: Unpack[ConnectOptions]) -> RawClient:
    raw = RawClient(broker.port, level=level)
    raw.send(Connect(unique("bad"), level, True, 30, **kwargs))
    connack = raw.recv()
    assert isinstance(connack, Connack) and connack.reason_code == 0
    return raw


@pytest.mark.parametrize("name", sorted(AFTER_CONNECT))
def test_mqtt311_closes_the_connection(
    broker: Broker, pids: dict[tuple[str, int], int], name: str
) -> None:
    make, _rc = AFTER_CONNECT[name]
    raw = connect_raw(broker, 4)
    raw.send_raw(make(4))
    assert raw.expect_closed() == []  # 3.1.1 has no DISCONNECT from the server
    raw.close()
    assert_healthy(broker, pids)


@pytest.mark.parametrize("name", sorted(AFTER_CONNECT))
def test_mqtt5_disconnect_with_reason_code(
    broker: Broker, pids: dict[tuple[str, int], int], name: str
) -> None:
    make, rc = AFTER_CONNECT[name]
    raw = connect_raw(broker, 5)
    raw.send_raw(make(5))
    assert raw.expect_closed() == [Disconnect(rc)]
    raw.close()
    assert_healthy(broker, pids)


def test_large_packet_is_refused_without_reading_it(broker: Broker) -> None:
    """A 256 MB announcement is answered at once: the broker closes the
    connection long before we could send that much."""
    raw = connect_raw(broker, 4)
    raw.send_raw(b"\x30\xff\xff\xff\x7f")
    sent = 0
    chunk = b"\x00" * 65536
    deadline = time.monotonic() + 10
    with pytest.raises(OSError):  # reset or broken pipe once the broker closed
        while time.monotonic() < deadline:
            raw.sock.sendall(chunk)
            sent += len(chunk)
    assert sent < 64 * 1024 * 1024
    raw.close()


def reserved_connect(level: int) -> bytes:
    data = bytearray(encode(Connect(unique("rsv"), level, True, 30), level))
    assert data[9] == 0x02  # the connect flags: clean start
    data[9] |= 0x01  # the reserved bit [MQTT-3.1.2-3]
    return bytes(data)


def test_connect_with_reserved_flag_mqtt311(
    broker: Broker, pids: dict[tuple[str, int], int]
) -> None:
    raw = RawClient(broker.port, level=4)
    raw.send_raw(reserved_connect(4))
    assert raw.expect_closed() == []
    assert_healthy(broker, pids)


def test_connect_with_reserved_flag_mqtt5(broker: Broker, pids: dict[tuple[str, int], int]) -> None:
    raw = RawClient(broker.port, level=5)
    raw.send_raw(reserved_connect(5))
    (connack,) = raw.expect_closed()
    assert isinstance(connack, Connack)
    assert (connack.session_present, connack.reason_code) == (False, MALFORMED)
    assert_healthy(broker, pids)


def test_first_packet_not_connect(broker: Broker, pids: dict[tuple[str, int], int]) -> None:
    raw = RawClient(broker.port, level=4)
    raw.send(Publish("early", b"x"))
    assert raw.expect_closed() == []
    assert_healthy(broker, pids)


def test_second_connect_closes(broker: Broker, pids: dict[tuple[str, int], int]) -> None:
    raw = connect_raw(broker, 4)
    raw.send(Connect(unique("again"), 4, True, 30))
    assert raw.expect_closed() == []
    raw = connect_raw(broker, 5)
    raw.send(Connect(unique("again"), 5, True, 30))
    assert raw.expect_closed() == [Disconnect(PROTOCOL_ERROR)]
    assert_healthy(broker, pids)


def test_unsupported_protocol_level(broker: Broker) -> None:
    data = bytearray(encode(Connect(unique("lvl"), 4, True, 30), 4))
    assert data[8] == 4
    data[8] = 9
    raw = RawClient(broker.port, level=4)
    raw.send_raw(bytes(data))
    assert raw.expect_closed() == [Connack(False, 0x01)]  # unacceptable protocol version


def test_garbage_before_connect(broker: Broker, pids: dict[tuple[str, int], int]) -> None:
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        # 'G' reads as a packet of 0x45 bytes: send at least that many
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".ljust(100, b"x"))
        sock.settimeout(10)
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data == b""
    assert_healthy(broker, pids)


def test_will_of_a_client_that_sends_malformed_input_is_published(broker: Broker) -> None:
    topic = unique("will")
    watcher = Client(broker.port)
    watcher.connect()
    watcher.subscribe(topic, 1)
    raw = connect_raw(broker, 4, will=Will(topic, b"gone bad", 1))
    raw.send_raw(b"\xc1\x00")
    assert raw.expect_closed() == []
    (msg,) = watcher.expect(1)
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"gone bad", 1)
    watcher.disconnect()


def test_protocol_errors_counter_in_sys(broker: Broker) -> None:
    raw = connect_raw(broker, 4)
    raw.send_raw(b"\xc1\x00")
    raw.expect_closed()
    sys_sub = Client(broker.port)
    sys_sub.connect()
    sys_sub.subscribe("$SYS/broker/acceptor/+/protocol_errors", 0)
    (msg,) = sys_sub.expect(1)  # retained, or the next update within --sys-interval
    assert msg.topic.split("/")[3] in ("0", "1")
    assert int(msg.payload) >= 1
    sys_sub.disconnect()


def test_max_packet_size_from_config(make_broker: MakeBroker, tmp_path: Path) -> None:
    config = tmp_path / "flockmq.toml"
    config.write_text("max_packet_size = 1024\n")
    small = make_broker("--config", str(config))
    topic = unique("size")
    sub = Client(small.port)
    sub.connect()
    sub.subscribe(topic, 1)
    ok = RawClient(small.port, level=5)
    ok.send(Connect(unique("ok"), 5, True, 30))
    connack = ok.recv()
    assert isinstance(connack, Connack)
    assert connack.properties["maximum_packet_size"] == 1024
    ok.send(Publish(topic, b"x" * 900, 0))
    assert sub.expect(1)[0].payload == b"x" * 900
    ok.send(Publish(topic, b"x" * 2000, 0))
    assert ok.expect_closed() == [Disconnect(PACKET_TOO_LARGE)]
    old = connect_raw(small, 4)
    old.send(Publish(topic, b"x" * 2000, 0))
    assert old.expect_closed() == []
    old.close()
    ok.close()
    pub = Client(small.port)
    pub.connect()
    pub.publish(topic, b"after", 1)
    assert sub.expect(1)[0].payload == b"after"
    sub.disconnect()
    pub.disconnect()


def wait_for_log(broker: Broker, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in broker.log():
        assert time.monotonic() < deadline, f"{text!r} not in the broker's log"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("qos", "wrong"),
    [(1, Pubcomp), (1, Pubrec), (2, Puback), (2, Pubcomp)],
    ids=["pubcomp-for-qos1", "pubrec-for-qos1", "puback-for-qos2", "pubcomp-before-pubrel"],
)
@pytest.mark.parametrize("level", [4, 5])
def test_wrong_ack_for_a_message_in_flight_is_a_protocol_error(
    broker: Broker, level: int, qos: int, wrong: type[Puback | Pubrec | Pubcomp]
) -> None:
    """Decided by the session's worker, answered by the acceptor as any
    protocol error [MQTT-4.8.0-1]: 3.1.1 closes, MQTT 5 sends DISCONNECT 0x82
    first; the will goes out and the error is counted and logged."""
    topic, will_topic = unique("inflight"), unique("will")
    watcher = Client(broker.port)
    watcher.connect()
    watcher.subscribe(will_topic, 1)
    client_id = unique("wrong-ack")
    raw = RawClient(broker.port, level=level)
    raw.send(Connect(client_id, level, True, 30, will=Will(will_topic, b"violated", 1)))
    connack = raw.recv()
    assert isinstance(connack, Connack) and connack.reason_code == 0
    raw.send(Subscribe(1, (Subscription(topic, 2),)))
    assert isinstance(raw.recv(), Suback)
    pub = Client(broker.port)
    pub.connect()
    pub.publish(topic, b"m", qos)
    publish = raw.recv()
    assert isinstance(publish, Publish) and publish.qos == qos and publish.packet_id
    raw.send(wrong(publish.packet_id))
    assert raw.expect_closed() == ([Disconnect(PROTOCOL_ERROR)] if level == 5 else [])
    (msg,) = watcher.expect(1)
    assert (msg.topic, msg.payload) == (will_topic, b"violated")
    wait_for_log(broker, f"client {client_id} (")  # the acceptor's protocol-error line
    assert "the session's worker found a protocol violation" in broker.log()
    pub.disconnect()
    watcher.disconnect()
