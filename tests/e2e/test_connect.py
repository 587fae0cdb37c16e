"""CONNECT/CONNACK end to end: accepted, refused protocol levels, zero-length
client ids, packets out of order, the connect timeout, and MQTT 3.1 clients.

Also home to the raw-socket helpers the session, will and keepalive tests use:
`raw_connect`, `acceptor_holding` (which acceptor process holds a TCP
connection) and `raw_on_acceptor` (a connection on a chosen acceptor)."""

from __future__ import annotations

import socket
import time

import psutil
import pytest

from flockmq.frontend.codec import (
    Connack,
    Connect,
    Pingreq,
    Pingresp,
    Publish,
    Suback,
    Subscribe,
    Subscription,
    Will,
)
from flockmq.frontend.codec.packets import Packet
from flockmq.sharding import shard_of

from .broker import Broker, MakeBroker
from .clients import TIMEOUT, Client, RawClient, unique


# --- helpers shared by the e2e session/will/keepalive tests -----------------------------
def raw_connect(
    port: int,
    client_id: str,
    *,
    clean: bool = True,
    keepalive: int = 0,
    will: Will | None = None,
    level: int = 4,
    raw: RawClient | None = None,
) -> tuple[RawClient, Connack]:
    """A raw client after its CONNECT was answered; asserts it was accepted."""
    if raw is None:
        raw = RawClient(port, level)
    raw.send(Connect(client_id, level, clean, keepalive, will=will))
    connack = raw.recv()
    assert isinstance(connack, Connack), connack
    assert connack.reason_code == 0, connack
    return raw, connack


def acceptor_holding(broker: Broker, sock: socket.socket, timeout: float = TIMEOUT) -> int:
    """The index of the acceptor process that accepted this client socket."""
    port = sock.getsockname()[1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for index in range(broker.acceptors):
            proc = psutil.Process(broker.pid_of("acceptor", index))
            for conn in proc.net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == port and conn.laddr.port == broker.port:
                    return index
        time.sleep(0.02)  # not accepted yet
    raise TimeoutError(f"no acceptor holds the connection from port {port}")


def raw_on_acceptor(broker: Broker, index: int, level: int = 4) -> RawClient:
    """A raw connection (no CONNECT sent yet) held by acceptor `index`.
    SO_REUSEPORT lets the kernel pick the acceptor, so connect until it does."""
    spare: list[RawClient] = []
    try:
        for _ in range(100):
            raw = RawClient(broker.port, level)
            if acceptor_holding(broker, raw.sock) == index:
                return raw
            spare.append(raw)
    finally:
        for raw in spare:
            raw.close()
    raise AssertionError(f"100 connections and none on acceptor {index}")


def id_on_same_shard(client_id: str, workers: int = 2) -> str:
    """Another client id that the broker puts on the same worker shard."""
    while True:
        other = unique("probe")
        if shard_of(other, workers) == shard_of(client_id, workers):
            return other


def connect_bytes(name: bytes, level: int, client_id: bytes = b"cid", flags: int = 0x02) -> bytes:
    """A CONNECT built by hand, for protocol names/levels the codec will not encode."""
    body = (
        len(name).to_bytes(2, "big")
        + name
        + bytes([level, flags])
        + (60).to_bytes(2, "big")
        + len(client_id).to_bytes(2, "big")
        + client_id
    )
    return bytes([0x10, len(body)]) + body


# --- CONNACK ----------------------------------------------------------------------------
@pytest.mark.parametrize("level", [3, 4])
def test_connect_is_accepted(broker: Broker, level: int) -> None:
    raw = RawClient(broker.port, level)
    raw.send(Connect(unique("acc"), level, True, 60))
    assert raw.recv() == Connack(False, 0)
    raw.send(Pingreq())
    assert raw.recv() == Pingresp()
    raw.close()


@pytest.mark.parametrize(
    ("name", "level", "answer_level", "expected"),
    [
        (b"MQTT", 6, 4, Connack(False, 0x01)),  # unacceptable protocol level (3.1.1)
        (b"MQTT", 3, 3, Connack(False, 0x01)),  # level 3 must be called MQIsdp
        (b"MQIsdp", 4, 4, Connack(False, 0x01)),  # ... and MQIsdp is only level 3
        (b"MQIsdp", 5, 5, Connack(False, 0x84)),  # v5-looking: v5 Unsupported Protocol Version
    ],
)
def test_unsupported_protocol_gets_connack_then_close(
    broker: Broker, name: bytes, level: int, answer_level: int, expected: Connack
) -> None:
    raw = RawClient(broker.port, answer_level)
    raw.send_raw(connect_bytes(name, level))
    (connack,) = raw.expect_closed()
    assert isinstance(connack, Connack)
    assert (connack.session_present, connack.reason_code) == (False, expected.reason_code)


@pytest.mark.parametrize("level", [3, 4, 5])
@pytest.mark.parametrize("name", [b"MQTU", b"MQTX", b"mqtt", b"MQIsdp\x00"])
def test_unknown_protocol_name_is_closed_without_connack(
    broker: Broker, name: bytes, level: int
) -> None:
    """Not MQTT: the server closes [MQTT-3.1.2-1] (3.1.1 and 5.0); CONNACK
    0x01 would tell a client that is not speaking MQTT an MQTT answer."""
    raw = RawClient(broker.port, 4)
    raw.send_raw(connect_bytes(name, level))
    assert raw.expect_closed() == []


def test_mqtt31_reserved_connect_flag_is_accepted(broker: Broker) -> None:
    """MQTT 3.1 does not reserve bit 0 of the connect flags (3.1.1 does:
    see test_malformed.py)."""
    raw = RawClient(broker.port, 3)
    raw.send_raw(connect_bytes(b"MQIsdp", 3, unique("r31").encode()[:23], flags=0x03))
    assert raw.recv() == Connack(False, 0)
    raw.send(Pingreq())
    assert raw.recv() == Pingresp()
    raw.close()


def test_mqtt31_client_id_length(broker: Broker) -> None:
    """MQTT 3.1 asks for 1-23 characters: an empty id is rejected (CONNACK
    0x02) even with clean session; a longer one is accepted, as Mosquitto
    does."""
    raw = RawClient(broker.port, 3)
    raw.send(Connect("", 3, True, 60))
    assert raw.expect_closed() == [Connack(False, 0x02)]
    long_id = unique("a-client-id-longer-than-23-characters")
    raw, connack = raw_connect(broker.port, long_id, level=3)
    assert connack == Connack(False, 0)
    raw.close()


def test_zero_length_client_id_with_clean_session_is_accepted(broker: Broker) -> None:
    topic = unique("zid")
    first, connack = raw_connect(broker.port, "", clean=True)
    assert connack == Connack(False, 0)
    first.send(Subscribe(1, (Subscription(topic, 0),)))
    assert first.recv() == Suback(1, (0,))
    # A second empty id is another client, not a takeover of the first.
    second, connack = raw_connect(broker.port, "", clean=True)
    assert connack == Connack(False, 0)
    second.send(Publish(topic, b"hello"))
    assert first.recv() == Publish(topic, b"hello")
    second.send(Pingreq())
    assert second.recv() == Pingresp()
    first.close()
    second.close()


@pytest.mark.parametrize("level", [3, 4])
def test_zero_length_client_id_without_clean_session_is_refused(broker: Broker, level: int) -> None:
    raw = RawClient(broker.port, level)
    raw.send(Connect("", level, False, 60))
    assert raw.expect_closed() == [Connack(False, 0x02)]  # identifier rejected [MQTT-3.1.3-8]


@pytest.mark.parametrize(
    "first",
    [
        Pingreq(),
        Subscribe(1, (Subscription("a/b", 0),)),
        Publish("a/b", b"x"),
        Publish("a/b", b"x", qos=1, packet_id=1),
    ],
    ids=["pingreq", "subscribe", "publish0", "publish1"],
)
def test_first_packet_that_is_not_connect_closes_the_connection(
    broker: Broker, first: Packet
) -> None:
    raw = RawClient(broker.port, 4)
    raw.send(first)
    assert raw.expect_closed() == []  # [MQTT-3.1.0-1]


def test_second_connect_closes_the_connection(broker: Broker) -> None:
    client_id = unique("twice")
    raw, _ = raw_connect(broker.port, client_id)
    raw.send(Connect(client_id, 4, True, 60))
    assert raw.expect_closed() == []  # [MQTT-3.1.0-2]


def test_no_connect_within_the_connect_timeout_closes_the_connection(
    make_broker: MakeBroker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = tmp_path_factory.mktemp("conf") / "flockmq.toml"
    config.write_text("connect_timeout = 1.0\n")
    broker = make_broker("--config", str(config))
    silent = RawClient(broker.port, 4)
    partial = RawClient(broker.port, 4)
    started = time.monotonic()
    partial.send_raw(connect_bytes_prefix())
    assert silent.expect_closed(timeout=15) == []
    assert partial.expect_closed(timeout=15) == []
    assert time.monotonic() - started >= 0.9
    # A client that does connect in time is served as usual.
    raw, connack = raw_connect(broker.port, unique("intime"))
    assert connack == Connack(False, 0)
    raw.close()


def connect_bytes_prefix() -> bytes:
    """The first half of a CONNECT: a client that stalls mid-packet."""
    data = connect_bytes(b"MQTT", 4)
    return data[: len(data) // 2]


# --- MQTT 3.1 end to end ----------------------------------------------------------------
@pytest.mark.parametrize(("pub_level", "sub_level"), [(3, 3), (3, 4), (4, 3)])
def test_mqtt31_clients_work_end_to_end(broker: Broker, pub_level: int, sub_level: int) -> None:
    topic = unique("v31") + "/t"
    sub = Client(broker.port, protocol=sub_level)
    sub.connect()
    assert [rc.value for rc in sub.subscribe(topic, 2)] == [2]
    pub = Client(broker.port, protocol=pub_level)
    pub.connect()
    for qos in (0, 1, 2):
        pub.publish(topic, b"q%d" % qos, qos)
    got = sorted((m.payload, m.qos, m.retain) for m in sub.expect(3))
    assert got == [(b"q0", 0, False), (b"q1", 1, False), (b"q2", 2, False)]
    sub.disconnect()
    pub.disconnect()


def test_mqtt31_persistent_session_resumes(broker: Broker) -> None:
    topic = unique("v31s")
    client_id = unique("v31s")[:23]  # 3.1 limits client ids to 23 characters
    sub = Client(broker.port, client_id, protocol=3, clean=False)
    assert sub.connect().session_present is False
    sub.subscribe(topic, 1)
    sub.disconnect()
    again = Client(broker.port, client_id, protocol=3, clean=False)
    # MQTT 3.1's CONNACK has no session present flag (its first byte is reserved).
    assert again.connect().session_present is False
    pub = Client(broker.port, protocol=3)
    pub.connect()
    pub.publish(topic, b"still subscribed", 1)
    (msg,) = again.expect(1)
    assert (msg.payload, msg.qos) == (b"still subscribed", 1)
    again.disconnect()
    pub.disconnect()
