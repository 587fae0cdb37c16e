"""Test clients: paho-mqtt wrapped so tests wait for events with timeouts, and a
raw-socket client (our codec over a plain socket) for exact bytes and malformed
input."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict, Unpack, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from flockmq.frontend.codec import Packet, StreamDecoder, Will, encode
from flockmq.frontend.codec import Properties as PacketProperties

TIMEOUT = 10.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class HasPort(Protocol):
    """A broker to connect to (tests.e2e.broker.Broker, a proxy in front of one)."""

    @property
    def port(self) -> int: ...


class ClientOptions(TypedDict, total=False):
    """Client's keyword arguments (ClientSettings has their defaults), as
    `connected` and `watch` pass them on."""

    protocol: int
    clean: bool
    keepalive: int
    will: tuple[str, bytes, int, bool] | None
    username: str | None
    session_expiry: int | None
    host: str
    will_properties: Properties | None
    password: str | None
    transport: Literal["tcp", "websockets"]
    ws_path: str
    tls: dict[str, Any] | None
    bind_address: str


@dataclass(frozen=True)
class ClientSettings:
    """ClientOptions with their defaults. `transport`: "tcp" or "websockets"
    (at `ws_path`); `tls`: the keyword arguments of paho's `tls_set` (ca_certs,
    certfile, keyfile); `will`: topic, payload, QoS, retain."""

    protocol: int = 4
    clean: bool = True
    keepalive: int = 60
    will: tuple[str, bytes, int, bool] | None = None
    username: str | None = None
    session_expiry: int | None = None
    host: str = "127.0.0.1"
    will_properties: Properties | None = None
    password: str | None = None
    transport: Literal["tcp", "websockets"] = "tcp"
    ws_path: str = "/mqtt"
    tls: dict[str, Any] | None = None
    bind_address: str = ""


class Client:
    """A paho client that records what it receives."""

    def __init__(
        self, port: int, client_id: str | None = None, **options: Unpack[ClientOptions]
    ) -> None:
        """`options`: see ClientSettings."""
        settings = ClientSettings(**options)
        self.client_id = client_id if client_id is not None else unique("c")
        version = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[settings.protocol]
        kwargs: dict[str, Any] = {"protocol": version}
        if settings.protocol < 5:
            kwargs["clean_session"] = settings.clean
        self.protocol = settings.protocol
        self.clean = settings.clean
        self.session_expiry = settings.session_expiry
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            reconnect_on_failure=False,
            transport=settings.transport,
            **kwargs,
        )
        if settings.transport == "websockets":
            self.paho.ws_set_options(path=settings.ws_path)
        if settings.tls is not None:
            self.paho.tls_set(**settings.tls)
        self.paho.max_inflight_messages_set(100)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: queue.Queue[tuple[mqtt.ConnectFlags, ReasonCode]] = queue.Queue()
        self.disconnected = threading.Event()
        self.disconnect_reason: ReasonCode | None = None
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.paho.on_message = lambda c, u, m: self.messages.put(m)
        self.paho.on_connect = lambda c, u, flags, rc, props: self.connack.put((flags, rc))
        self.paho.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put(rcs)
        self.paho.on_disconnect = self._on_disconnect
        will = settings.will
        if will is not None:
            self.paho.will_set(will[0], will[1], will[2], will[3], settings.will_properties)
        if settings.username is not None:
            self.paho.username_pw_set(settings.username, settings.password)
        self.host = settings.host
        self.bind_address = settings.bind_address
        self.port = port
        self.keepalive = settings.keepalive

    def _on_disconnect(
        self,
        c: mqtt.Client,
        u: object,
        flags: mqtt.DisconnectFlags,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        self.disconnect_reason = rc
        self.disconnected.set()

    def connect(self, expect_rc: int = 0) -> mqtt.ConnectFlags:
        props = None
        kwargs: dict[str, Any] = {}
        if self.protocol == 5:
            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                props.SessionExpiryInterval = self.session_expiry
            kwargs["clean_start"] = self.clean
            kwargs["properties"] = props
        self.paho.connect(
            self.host, self.port, self.keepalive, bind_address=self.bind_address, **kwargs
        )
        self.paho.loop_start()
        flags, rc = self.connack.get(timeout=TIMEOUT)
        assert rc == expect_rc, f"CONNACK {rc}, expected {expect_rc}"
        return flags

    def subscribe(
        self,
        topic: str,
        qos: int = 0,
        *,
        options: SubscribeOptions | None = None,
        sub_id: int | None = None,
    ) -> list[ReasonCode]:
        """MQTT 5: `options` (then `qos` is not used) and a Subscription Identifier."""
        props = None
        if sub_id is not None:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        result, _mid = self.paho.subscribe(topic, qos, options, props)
        assert result == mqtt.MQTT_ERR_SUCCESS
        return self.subacks.get(timeout=TIMEOUT)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        info = self.paho.publish(topic, payload, qos, retain, properties)
        if qos:
            info.wait_for_publish(TIMEOUT)
            assert info.is_published()

    def expect(self, count: int = 1, timeout: float = TIMEOUT) -> list[mqtt.MQTTMessage]:
        out = []
        deadline = time.monotonic() + timeout
        for _ in range(count):
            out.append(self.messages.get(timeout=max(0.01, deadline - time.monotonic())))
        return out

    def expect_nothing(self, within: float = 0.5) -> None:
        """Used only after a positive barrier showed the path is flushed."""
        try:
            msg = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {msg.topic} {msg.payload!r}")

    def disconnect(self, reason_code: int | None = None) -> None:
        """MQTT 5: `reason_code` for the DISCONNECT (0x04: publish the will)."""
        reason = None
        if reason_code is not None:
            reason = ReasonCode(PacketTypes.DISCONNECT, identifier=reason_code)
        self.paho.disconnect(reason)
        self.paho.loop_stop()

    def tcp_socket(self) -> socket.socket:
        """The connected client's socket (paho types it as its SocketLike protocol)."""
        sock = self.paho.socket()
        assert isinstance(sock, socket.socket), sock
        return sock

    def drop(self) -> None:
        """Close the socket without DISCONNECT (as a crash or network loss would).

        The socket is shut down before paho's network thread is stopped: the
        thread wakes on it at once and ends (it does not reconnect), where
        stopping it first waited out its select timeout (1 s per drop).
        Nothing is sent after the shutdown, so the broker sees a lost
        connection either way."""
        # paho types it as its SocketLike protocol; over plain TCP it is a socket.
        sock = cast(socket.socket | None, self.paho.socket())
        if sock is not None:
            # OSError: the thread already closed it (the broker closed first)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.paho.loop_stop()
        if sock is not None:
            sock.close()


class ConnectOptions(TypedDict, total=False):
    """The optional fields of a CONNECT a test sends with RawClient."""

    username: str | None
    password: bytes | None
    will: Will | None
    properties: PacketProperties


class RawClient:
    """Exact packets over a plain socket, using our codec."""

    def __init__(self, port: int, level: int = 4, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.level = level
        self.decoder = StreamDecoder(protocol_level=level)

    def send(self, packet: Packet) -> None:
        self.sock.sendall(encode(packet, self.level))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout: float = TIMEOUT) -> Packet | None:
        """The next packet, or None if the server closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            packet = self.decoder.next_packet()
            if packet is not None:
                return packet
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no packet from the broker")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.decoder.feed(data)

    def expect_closed(self, timeout: float = TIMEOUT) -> list[Packet]:
        """Read until the broker closes; return what came before the close."""
        got: list[Packet] = []
        while True:
            packet = self.recv(timeout)
            if packet is None:
                return got
            got.append(packet)

    def close(self) -> None:
        self.sock.close()


def connected(
    broker: HasPort, client_id: str | None = None, **kwargs: Unpack[ClientOptions]
) -> Client:
    """A paho client of `broker` (anything with a `port`), connected."""
    client = Client(broker.port, client_id, **kwargs)
    client.connect()
    return client


def watch(
    broker: HasPort, topic_filter: str, qos: int = 1, **kwargs: Unpack[ClientOptions]
) -> Client:
    """A connected client subscribed to `topic_filter`."""
    watcher = connected(broker, **kwargs)
    watcher.subscribe(topic_filter, qos)
    return watcher


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Until `predicate()` holds, checked every 20 ms; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


def assert_round_trip(broker: HasPort) -> None:
    """A fresh pub/sub pair of `broker` exchanges a QoS 1 message."""
    topic = unique("alive")
    sub = connected(broker)
    sub.subscribe(topic, 1)
    pub = connected(broker)
    pub.publish(topic, b"still here", 1)
    assert sub.expect(1)[0].payload == b"still here"
    sub.disconnect()
    pub.disconnect()
