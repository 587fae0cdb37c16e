"""Cross-check against paho-mqtt, an implementation we did not write.

A one-connection TCP server on 127.0.0.1 (a thread, plain sockets) decodes
what a real paho client puts on the wire with our StreamDecoder and answers
with our encoder; the tests check that paho's CONNECT (will, user name,
password, keep alive), SUBSCRIBE, PUBLISH at QoS 0/1/2, UNSUBSCRIBE, PINGREQ,
DISCONNECT and MQTT 5 properties decode to what paho was asked to send, and
that paho accepts what we encode. Every wait has a timeout.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypedDict, TypeVar, Unpack

import pytest

from flockmq.frontend.codec import (
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    ProtocolError,
    Puback,
    Publish,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
    encode,
    encode_ack,
    encode_publish,
)

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
else:
    mqtt = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

TIMEOUT = 5.0
pytestmark = pytest.mark.timeout(60)


def answer(packet: Packet, level: int) -> bytes | None:
    """What a broker would send back, written by our encoder."""
    if isinstance(packet, Connect):
        props = {"receive_maximum": 20, "topic_alias_maximum": 0} if level == 5 else {}
        return encode(Connack(False, 0, props), level)
    if isinstance(packet, Subscribe):
        return encode(Suback(packet.packet_id, tuple(s.qos for s in packet.subscriptions)), level)
    if isinstance(packet, Unsubscribe):
        codes = (0,) * len(packet.topic_filters) if level == 5 else ()
        return encode(Unsuback(packet.packet_id, codes), level)
    return flow_answer(packet, level)


def flow_answer(packet: Packet, level: int) -> bytes | None:
    """What a broker would send back to a PUBLISH, PUBREL or PINGREQ."""
    if isinstance(packet, Publish) and packet.qos and packet.packet_id is not None:
        return encode_ack(4 if packet.qos == 1 else 5, packet.packet_id, level)
    if isinstance(packet, Pubrel):
        return encode_ack(7, packet.packet_id, level)
    if isinstance(packet, Pingreq):
        return b"\xd0\x00"
    return None


P = TypeVar("P", bound=Packet)


class WireServer:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port: int = self.listener.getsockname()[1]
        self.received: queue.Queue[Packet | BaseException] = queue.Queue()
        self.conn: socket.socket | None = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        from flockmq.frontend.codec import StreamDecoder

        try:
            conn, _ = self.listener.accept()
            conn.settimeout(30)
            self.conn = conn
            decoder = StreamDecoder()
            while data := conn.recv(65536):
                decoder.feed(data)
                for packet in decoder:
                    self.received.put(packet)
                    assert decoder.protocol_level is not None
                    reply = answer(packet, decoder.protocol_level)
                    if reply:
                        self.send(reply)
        except (OSError, ProtocolError) as exc:
            self.received.put(exc)

    def send(self, data: bytes) -> None:
        assert self.conn is not None
        with self.lock:
            self.conn.sendall(data)

    def expect(self, cls: type[P]) -> P:
        item = self.received.get(timeout=TIMEOUT)
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, cls), item
        return item

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()
        self.thread.join(TIMEOUT)


@pytest.fixture
def server() -> Iterator[WireServer]:
    srv = WireServer()
    yield srv
    srv.close()


class Events(TypedDict, total=False):
    """What a client's callbacks saw."""

    connected: threading.Event
    messages: queue.Queue[mqtt.MQTTMessage]
    connack: tuple[ReasonCode, Properties | None]


class ConnectOptions(TypedDict, total=False):
    """paho's connect() options the tests pass."""

    keepalive: int
    clean_start: bool
    properties: Properties | None


def start_client(
    client: mqtt.Client, server: WireServer, **connect_kw: Unpack[ConnectOptions]
) -> Events:
    events: Events = {"connected": threading.Event(), "messages": queue.Queue()}

    def on_connect(
        c: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        events["connack"] = (reason, props)
        events["connected"].set()

    client.on_connect = on_connect
    client.on_message = lambda c, userdata, msg: events["messages"].put(msg)
    client.connect("127.0.0.1", server.port, **connect_kw)
    client.loop_start()
    return events


def publish_and_check(
    client: mqtt.Client,
    server: WireServer,
    level: int,
    qos: int,
    properties: Properties | None = None,
) -> Publish:
    info = client.publish(
        f"t/{qos}", f"m{qos}".encode(), qos=qos, retain=qos == 1, properties=properties
    )
    packet: Publish = server.expect(Publish)
    assert (packet.topic, packet.payload, packet.qos, packet.retain, packet.dup) == (
        f"t/{qos}",
        f"m{qos}".encode(),
        qos,
        qos == 1,
        False,
    )
    assert (packet.packet_id is None) == (qos == 0)
    if qos == 2:
        assert server.expect(Pubrel).packet_id == packet.packet_id
    info.wait_for_publish(TIMEOUT)
    assert info.is_published()
    return packet


@pytest.mark.parametrize(("protocol", "level"), [("MQTTv31", 3), ("MQTTv311", 4)])
def test_paho_v3(server: WireServer, protocol: str, level: int) -> None:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="paho-v3", protocol=getattr(mqtt, protocol)
    )
    client.username_pw_set("user", "secret")
    client.will_set("will/topic", b"gone", qos=1, retain=True)
    events = start_client(client, server, keepalive=30)
    try:
        assert server.expect(Connect) == Connect(
            "paho-v3", level, True, 30, "user", b"secret", Will("will/topic", b"gone", 1, True)
        )
        assert events["connected"].wait(TIMEOUT)

        client.subscribe([("a/+", 1), ("b/#", 2)])
        sub = server.expect(Subscribe)
        assert sub.subscriptions == (Subscription("a/+", 1), Subscription("b/#", 2))

        for qos in (0, 1, 2):
            publish_and_check(client, server, level, qos)

        client.unsubscribe("a/+")
        assert server.expect(Unsubscribe).topic_filters == ("a/+",)

        client._send_pingreq()
        server.expect(Pingreq)

        # paho accepts a PUBLISH we encode, and acknowledges it.
        server.send(encode_publish("x/y", b"hello", 1, False, False, 77, None, level))
        msg = events["messages"].get(timeout=TIMEOUT)
        assert (msg.topic, msg.payload, msg.qos, msg.mid) == ("x/y", b"hello", 1, 77)
        assert server.expect(Puback) == Puback(77)

        client.disconnect()
        assert server.expect(Disconnect) == Disconnect()
    finally:
        client.loop_stop()


def test_paho_v5(server: WireServer) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="paho-5", protocol=mqtt.MQTTv5)
    will_props = Properties(PacketTypes.WILLMESSAGE)
    will_props.WillDelayInterval = 10
    will_props.MessageExpiryInterval = 300
    client.will_set("will/5", b"bye", 2, False, properties=will_props)
    client.username_pw_set("user5", "pw5")
    conn_props = Properties(PacketTypes.CONNECT)
    conn_props.SessionExpiryInterval = 120
    conn_props.ReceiveMaximum = 50
    conn_props.UserProperty = [("app", "test")]
    events = start_client(client, server, keepalive=45, clean_start=True, properties=conn_props)
    try:
        connect = server.expect(Connect)
        assert connect == Connect(
            "paho-5",
            5,
            True,
            45,
            "user5",
            b"pw5",
            Will(
                "will/5",
                b"bye",
                2,
                False,
                {"will_delay_interval": 10, "message_expiry_interval": 300},
            ),
            {
                "session_expiry_interval": 120,
                "receive_maximum": 50,
                "user_property": (("app", "test"),),
            },
        )
        assert events["connected"].wait(TIMEOUT)
        reason, props = events["connack"]
        # paho read our CONNACK properties (paho's Properties has its names at run time only):
        assert reason == 0 and props.ReceiveMaximum == 20  # type: ignore[union-attr]

        sub_props = Properties(PacketTypes.SUBSCRIBE)
        sub_props.SubscriptionIdentifier = 7
        options = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True, retainHandling=2)
        client.subscribe(
            [("a/+", options), ("$share/g/b/#", SubscribeOptions(qos=2))], properties=sub_props
        )
        sub = server.expect(Subscribe)
        assert sub.subscriptions == (
            Subscription("a/+", 1, True, True, 2),
            Subscription("$share/g/b/#", 2),
        )
        assert sub.properties == {"subscription_identifier": 7}

        pub_props = Properties(PacketTypes.PUBLISH)
        pub_props.MessageExpiryInterval = 60
        pub_props.ContentType = "text/plain"
        pub_props.ResponseTopic = "reply/to"
        pub_props.CorrelationData = b"cd"
        pub_props.UserProperty = [("k", "v"), ("k", "w")]
        for qos in (0, 1, 2):
            packet = publish_and_check(client, server, 5, qos, properties=pub_props)
            assert packet.properties == {
                "message_expiry_interval": 60,
                "content_type": "text/plain",
                "response_topic": "reply/to",
                "correlation_data": b"cd",
                "user_property": (("k", "v"), ("k", "w")),
            }

        client.unsubscribe(["a/+", "$share/g/b/#"])
        assert server.expect(Unsubscribe).topic_filters == ("a/+", "$share/g/b/#")

        client._send_pingreq()
        server.expect(Pingreq)

        out_props = {"user_property": (("a", "b"),), "message_expiry_interval": 9}
        server.send(encode_publish("x/y", b"hi", 1, False, False, 78, out_props, 5))
        msg = events["messages"].get(timeout=TIMEOUT)
        assert (msg.topic, msg.payload, msg.qos) == ("x/y", b"hi", 1)
        # paho's Properties has its names at run time only.
        assert msg.properties.UserProperty == [("a", "b")]  # type: ignore[union-attr]
        assert msg.properties.MessageExpiryInterval == 9  # type: ignore[union-attr]
        assert server.expect(Puback) == Puback(78)

        client.disconnect()
        assert server.expect(Disconnect) == Disconnect()
    finally:
        client.loop_stop()
