"""Listeners (issue 11): TLS, mTLS with the certificate's CN as the username,
WebSocket and secure WebSocket, on one broker beside a plain listener, with
real clients: paho-mqtt (TCP, TLS, websockets) and mosquitto_pub/_sub.
Certificates are made by the test (trustme)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request

from flockmq.app.probe import free_port
from flockmq.frontend.codec import (
    Connack,
    Connect,
    Publish,
    StreamDecoder,
    Suback,
    Subscribe,
    Subscription,
    encode,
)

from .broker import Broker
from .clients import Client, unique

ACL = """\
topic readwrite e2e/#
user device-7
topic readwrite devices/device-7/#
"""


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path
    device_cert: Path
    device_key: Path
    stranger_cert: Path
    stranger_key: Path


@dataclass
class Ports:
    plain: int
    tls: int
    mtls: int
    ws: int
    wss: int


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    where = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    device = ca.issue_cert("device-7.example", common_name="device-7")
    stranger = trustme.CA().issue_cert("device-8.example", common_name="device-8")
    paths = Certs(*(where / n for n in ("ca", "c", "k", "dc", "dk", "sc", "sk")))
    ca.cert_pem.write_to_path(str(paths.ca))
    server.cert_chain_pems[0].write_to_path(str(paths.cert))
    server.private_key_pem.write_to_path(str(paths.key))
    device.cert_chain_pems[0].write_to_path(str(paths.device_cert))
    device.private_key_pem.write_to_path(str(paths.device_key))
    stranger.cert_chain_pems[0].write_to_path(str(paths.stranger_cert))
    stranger.private_key_pem.write_to_path(str(paths.stranger_key))
    return paths


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports(*(free_port() for _ in range(5)))


@pytest.fixture(scope="module")
def broker(
    tmp_path_factory: pytest.TempPathFactory, certs: Certs, ports: Ports
) -> Iterator[Broker]:
    where = tmp_path_factory.mktemp("listeners")
    (where / "acl").write_text(ACL)
    tls = f'certfile = "{certs.cert}"\nkeyfile = "{certs.key}"\n'
    (where / "flockmq.toml").write_text(
        f'acl_file = "{where / "acl"}"\nconnect_timeout = 3\n'
        f"[[listeners]]\nport = {ports.plain}\n"
        f"[[listeners]]\nport = {ports.tls}\n{tls}"
        f'[[listeners]]\nport = {ports.mtls}\n{tls}cafile = "{certs.ca}"\n'
        "require_certificate = true\nuse_identity_as_username = true\n"
        f'[[listeners]]\nport = {ports.ws}\nprotocol = "websockets"\n'
        f'[[listeners]]\nport = {ports.wss}\nprotocol = "websockets"\n{tls}'
    )
    b = Broker(where, port=ports.plain, extra_args=["--config", str(where / "flockmq.toml")])
    b.start()
    yield b
    b.stop()


def client(port: int, **kwargs: object) -> Client:
    c = Client(port, **kwargs)  # type: ignore[arg-type]
    c.connect()
    return c


def round_trip(sub: Client, pub: Client) -> None:
    topic = unique("e2e/listeners")
    assert sub.subscribe(topic, 1)[0] == 1
    pub.publish(topic, b"across listeners", 1)
    assert sub.expect(1)[0].payload == b"across listeners"


def test_tls_clients_talk_with_plain_ones(broker: Broker, certs: Certs, ports: Ports) -> None:
    tls = {"ca_certs": str(certs.ca)}
    over_tls = client(ports.tls, tls=tls)
    plain = client(ports.plain)
    round_trip(over_tls, plain)
    round_trip(plain, over_tls)
    for c in (over_tls, plain):
        c.disconnect()


def test_websocket_clients_talk_with_plain_ones(broker: Broker, certs: Certs, ports: Ports) -> None:
    ws = client(ports.ws, transport="websockets")
    root = client(ports.ws, transport="websockets", ws_path="/")
    wss = client(ports.wss, transport="websockets", tls={"ca_certs": str(certs.ca)})
    plain = client(ports.plain, protocol=5)
    for c in (ws, root, wss):
        round_trip(c, plain)
        round_trip(plain, c)
    for c in (ws, root, wss, plain):
        c.disconnect()


def test_a_websocket_upgrade_to_another_path_is_refused(broker: Broker, ports: Ports) -> None:
    with socket.create_connection(("127.0.0.1", ports.ws), timeout=10) as sock:
        ws = WSConnection(ConnectionType.CLIENT)
        sock.sendall(ws.send(Request("localhost", "/other", subprotocols=["mqtt"])))
        assert sock.recv(4096).startswith(b"HTTP/1.1 404")


def test_packets_split_across_frames_and_sharing_frames(broker: Broker, ports: Ports) -> None:
    topic = unique("e2e/frames")
    with socket.create_connection(("127.0.0.1", ports.ws), timeout=10) as sock:
        ws = WSConnection(ConnectionType.CLIENT)
        sock.sendall(ws.send(Request("localhost", "/mqtt", subprotocols=["mqtt"])))
        decoder = StreamDecoder(protocol_level=4)

        def receive(count: int) -> list[object]:
            packets: list[object] = []
            while len(packets) < count:
                data = sock.recv(65536)
                assert data, "the broker closed the WebSocket"
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, BytesMessage):
                        decoder.feed(bytes(event.data))
                while (packet := decoder.next_packet()) is not None:
                    packets.append(packet)
            return packets

        while not any(isinstance(e, AcceptConnection) for e in ws.events()):
            ws.receive_data(sock.recv(4096))
        # CONNECT and SUBSCRIBE in one frame
        subscribe = Subscribe(1, (Subscription(topic, 1),))
        both = encode(Connect(unique("ws"), 4, True, 30), 4) + encode(subscribe, 4)
        sock.sendall(ws.send(BytesMessage(both)))
        connack, suback = receive(2)
        assert isinstance(connack, Connack) and connack.reason_code == 0
        assert isinstance(suback, Suback)
        # a PUBLISH split over three frames
        publish = encode(Publish(topic, b"in pieces", 0), 4)
        third = len(publish) // 3
        for start, end, last in (
            (0, third, False),
            (third, 2 * third, False),
            (2 * third, None, True),
        ):
            sock.sendall(ws.send(BytesMessage(publish[start:end], message_finished=last)))
        (echo,) = receive(1)
        assert isinstance(echo, Publish) and echo.payload == b"in pieces"


def test_mtls_takes_the_username_from_the_certificate(
    broker: Broker, certs: Certs, ports: Ports
) -> None:
    device = {
        "ca_certs": str(certs.ca),
        "certfile": str(certs.device_cert),
        "keyfile": str(certs.device_key),
    }
    c = client(ports.mtls, tls=device, username="someone-else", password="ignored")
    # the ACL's `user device-7` section applies: its topics, not the anonymous ones
    assert c.subscribe("devices/device-7/in", 1)[0] == 1
    assert c.subscribe(unique("e2e/x"), 1)[0] == 0x80
    anonymous = client(ports.plain)
    assert anonymous.subscribe("devices/device-7/in", 1)[0] == 0x80
    for x in (c, anonymous):
        x.disconnect()


def mtls_connack(port: int, ca: Path, cert: Path | None, key: Path | None) -> object:
    """The CONNACK over a TLS connection (None if the broker closed it first)."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(encode(Connect(unique("tls"), 4, True, 30), 4))
            decoder = StreamDecoder(protocol_level=4)
            while (packet := decoder.next_packet()) is None:
                data = sock.recv(4096)
                if not data:
                    return None
                decoder.feed(data)
            return packet
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return None


def test_mtls_refuses_clients_without_a_certificate_of_the_ca(
    broker: Broker, certs: Certs, ports: Ports
) -> None:
    assert mtls_connack(ports.mtls, certs.ca, None, None) is None
    assert mtls_connack(ports.mtls, certs.ca, certs.stranger_cert, certs.stranger_key) is None
    accepted = mtls_connack(ports.mtls, certs.ca, certs.device_cert, certs.device_key)
    assert isinstance(accepted, Connack) and accepted.reason_code == 0


def wait_closed(sock: socket.socket) -> None:
    """Read until the broker closes `sock` (its 30 s timeout fails the test)."""
    try:
        while sock.recv(4096):
            pass  # a TLS alert may come first
    except ConnectionResetError:
        pass
    finally:
        sock.close()


def test_a_stalled_or_garbage_handshake_costs_only_itself(
    broker: Broker, certs: Certs, ports: Ports
) -> None:
    stalled = socket.create_connection(("127.0.0.1", ports.tls), timeout=30)
    garbage = socket.create_connection(("127.0.0.1", ports.tls), timeout=30)
    garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    # meanwhile, TLS clients are served
    tls = {"ca_certs": str(certs.ca)}
    a, b = client(ports.tls, tls=tls), client(ports.tls, tls=tls)
    round_trip(a, b)
    # both are closed: the garbage at once, the stalled one at the connect timeout (3 s)
    for sock in (garbage, stalled):
        wait_closed(sock)
    for c in (a, b):
        c.disconnect()


needs_mosquitto_clients = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None,
    reason="mosquitto-clients is not installed (make test installs it where it can)",
)


@needs_mosquitto_clients
def test_mosquitto_clients_over_tls_and_mtls(broker: Broker, certs: Certs, ports: Ports) -> None:
    topic = unique("e2e/mosq")
    tls = ["-h", "localhost", "--cafile", str(certs.ca)]
    # a retained message, so the subscriber started after it receives it
    subprocess.run(
        ["mosquitto_pub", *tls, "-p", str(ports.tls), "-t", topic, "-m", "hello", "-r", "-q", "1"],
        check=True,
        timeout=30,
    )
    got = subprocess.run(
        ["mosquitto_sub", *tls, "-p", str(ports.tls), "-t", topic, "-C", "1", "-W", "20"],
        check=True,
        timeout=30,
        capture_output=True,
        text=True,
    )
    assert got.stdout.strip() == "hello"
    device = ["--cert", str(certs.device_cert), "--key", str(certs.device_key)]
    own = "devices/device-7/status"
    subprocess.run(
        ["mosquitto_pub", *tls, *device, "-p", str(ports.mtls), "-t", own, "-m", "up", "-r"],
        check=True,
        timeout=30,
    )
    got = subprocess.run(
        ["mosquitto_sub", *tls, *device, "-p", str(ports.mtls), "-t", own, "-C", "1", "-W", "20"],
        check=True,
        timeout=30,
        capture_output=True,
        text=True,
    )
    assert got.stdout.strip() == "up"
