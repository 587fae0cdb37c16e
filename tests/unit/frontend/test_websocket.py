"""flockmq.frontend.websocket: MQTT over WebSocket, driven by a wsproto client
(no sockets)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from flockmq.frontend.codec import Connect, Publish, StreamDecoder, encode
from flockmq.frontend.websocket import Received, WebSocketStream

CONNECT = encode(Connect("ws-client", 4, True, 30), 4)
PUBLISH = encode(Publish("a/b", b"x" * 300), 4)


class Client:
    """A wsproto client talking to one WebSocketStream."""

    def __init__(self, stream: WebSocketStream) -> None:
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.stream = stream
        self.mqtt = b""
        self.events: list[Event] = []
        self.closed = False
        self.counters: list[str] = []  # why the stream ended, as the acceptor counts it

    def deliver(self, data: bytes, step: int | None = None) -> None:
        """`data` to the server, whole or `step` bytes at a time."""
        chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
        for chunk in chunks:
            self.take(self.stream.receive_data(chunk))

    def take(self, out: Received) -> None:
        self.mqtt += out.mqtt
        self.closed = self.closed or out.closed
        if out.counter is not None:
            self.counters.append(out.counter)
        if out.send:
            self.ws.receive_data(out.send)
            self.events.extend(self.ws.events())

    def upgrade(self, target: str = "/mqtt", subprotocols: tuple[str, ...] = ("mqtt",)) -> Event:
        self.deliver(self.ws.send(Request("localhost", target, subprotocols=list(subprotocols))))
        return self.events[0]  # AcceptConnection, or RejectConnection then RejectData


def test_the_upgrade_chooses_the_mqtt_subprotocol() -> None:
    for target, offered, chosen in [
        ("/mqtt", ("mqtt",), "mqtt"),
        ("/", ("mqtt",), "mqtt"),
        ("/mqtt?x=1", ("mqttv3.1",), "mqttv3.1"),
        ("/mqtt", ("chat", "mqtt"), "mqtt"),
    ]:
        client = Client(WebSocketStream())
        answer = client.upgrade(target, offered)
        assert isinstance(answer, AcceptConnection)
        assert answer.subprotocol == chosen
        assert client.stream.open


def test_a_wrong_path_or_no_mqtt_subprotocol_is_refused() -> None:
    for target, offered, status in [("/other", ("mqtt",), 404), ("/mqtt", ("chat",), 400)]:
        client = Client(WebSocketStream())
        answer = client.upgrade(target, offered)
        assert isinstance(answer, RejectConnection)
        assert answer.status_code == status
        assert client.closed
        assert client.mqtt == b""
        assert client.counters == ["websocket_upgrades_refused"]


def test_packets_split_across_frames_and_several_in_one_frame() -> None:
    client = Client(WebSocketStream())
    client.upgrade()
    stream = CONNECT + PUBLISH + PUBLISH
    # one frame with a packet and a half, then the rest in 7-byte frames
    first = len(CONNECT) + len(PUBLISH) // 2
    frames = [client.ws.send(BytesMessage(stream[:first], message_finished=False))]
    rest = stream[first:]
    for i in range(0, len(rest), 7):
        last = i + 7 >= len(rest)
        frames.append(client.ws.send(BytesMessage(rest[i : i + 7], message_finished=last)))
    client.deliver(b"".join(frames), step=3)  # and the socket delivers 3 bytes at a time
    assert client.mqtt == stream
    decoder = StreamDecoder(protocol_level=4)
    decoder.feed(client.mqtt)
    packets = [decoder.next_packet() for _ in range(3)]
    publish = Publish("a/b", b"x" * 300)
    assert packets == [Connect("ws-client", 4, True, 30), publish, publish]
    assert not client.closed


def test_mqtt_to_the_client_goes_in_binary_messages() -> None:
    client = Client(WebSocketStream())
    client.upgrade()
    client.ws.receive_data(client.stream.send(PUBLISH))
    (event,) = client.ws.events()
    assert isinstance(event, BytesMessage)
    assert event.data == PUBLISH


def test_pings_are_answered() -> None:
    client = Client(WebSocketStream())
    client.upgrade()
    client.deliver(client.ws.send(Ping(b"hi")))
    assert isinstance(client.events[-1], Pong)
    assert client.events[-1].payload == b"hi"


def test_a_text_message_closes_with_1003() -> None:
    client = Client(WebSocketStream())
    client.upgrade()
    client.deliver(client.ws.send(TextMessage("CONNECT")))
    assert client.closed
    assert isinstance(client.events[-1], CloseConnection)
    assert client.events[-1].code == 1003
    assert client.counters == ["websocket_text_messages"]


def test_a_message_over_the_limit_closes_with_1009() -> None:
    client = Client(WebSocketStream(max_message=1000))
    client.upgrade()
    client.deliver(client.ws.send(BytesMessage(b"\x00" * 600, message_finished=False)))
    assert not client.closed
    client.deliver(client.ws.send(BytesMessage(b"\x00" * 600)))
    assert client.closed
    assert isinstance(client.events[-1], CloseConnection)
    assert client.events[-1].code == 1009
    assert client.counters == ["websocket_messages_too_big"]
    # messages under the limit, one after another, are fine
    client = Client(WebSocketStream(max_message=1000))
    client.upgrade()
    for _ in range(5):
        client.deliver(client.ws.send(BytesMessage(b"\x00" * 900)))
    assert not client.closed


def test_the_closing_handshake_is_answered() -> None:
    client = Client(WebSocketStream())
    client.upgrade()
    client.deliver(client.ws.send(CloseConnection(1000)))
    assert client.closed
    assert isinstance(client.events[-1], CloseConnection)
    assert client.stream.send(PUBLISH) == b""


def test_the_server_closes_with_a_close_frame() -> None:
    client = Client(WebSocketStream())
    client.upgrade()
    client.ws.receive_data(client.stream.close(1000))
    (event,) = client.ws.events()
    assert isinstance(event, CloseConnection)


def test_eof_and_garbage_end_the_stream_without_raising() -> None:
    stream = WebSocketStream()
    out = stream.receive_data(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c")  # raw MQTT, not HTTP
    assert out.closed
    assert out.error
    assert out.counter == "websocket_protocol_errors"
    stream = WebSocketStream()
    Client(stream).upgrade()
    out = stream.receive_data(None)
    assert out.closed
    assert out.counter is None  # wsproto reports it as a close (1006): not an error


def test_a_frame_that_declares_a_huge_length_is_closed_at_the_limit() -> None:
    """A binary frame whose header claims 2**40 bytes: what arrives is
    counted as it comes, and the stream closes once the limit is passed,
    without waiting for (or keeping) the rest."""
    client = Client(WebSocketStream(max_message=4096))
    client.upgrade()
    header = bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big") + b"\x00\x00\x00\x00"  # masked
    client.deliver(header + b"\x00" * 4000)
    assert not client.closed
    client.deliver(b"\x00" * 200)
    assert client.closed
    assert client.counters == ["websocket_messages_too_big"]
    assert len(client.mqtt) <= 4096


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=50))
def test_any_bytes_after_the_upgrade_give_mqtt_bytes_or_a_close(data: bytes, step: int) -> None:
    client = Client(WebSocketStream(max_message=1000))
    client.upgrade()
    for i in range(0, len(data), step):
        out = client.stream.receive_data(data[i : i + step])
        assert len(out.mqtt) <= len(data)
        if out.closed:
            break
