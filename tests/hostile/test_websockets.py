"""Hostile clients on a WebSocket listener (issue 11): a subscriber that
never reads is disconnected on time like a TCP one; a message or a frame
over the listener's limit closes that connection (1009) without the broker
buffering it; an upgrade that never completes is closed by the connect
timeout. Each costs only itself: counted, the broker healthy, other clients
served."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request

from flockmq.app.probe import free_port
from flockmq.frontend.codec import Connect, Publish, Subscribe, Subscription, encode
from tests.e2e.broker import Broker
from tests.e2e.clients import Client, unique

from .health import MB, assert_healthy, child_pids, total_rss
from .test_slow_consumers import flood

MAX_MESSAGE = 64 * 1024
# The start of a valid 200 KB PUBLISH: what the broker reads of it before
# the WebSocket limit is a packet still incomplete, not an MQTT error (which
# would close the connection first, with 1000).
BIG_PUBLISH = encode(Publish("big", b"x" * 200_000, 0), 4)


@pytest.fixture
def ws_broker(tmp_path: Path) -> Iterator[tuple[Broker, int]]:
    """A broker of the test's own (its counters start at zero) with a plain
    listener and a WebSocket one (its port)."""
    plain, ws = free_port(), free_port()
    config = tmp_path / "flockmq.toml"
    config.write_text(
        "write_timeout = 2.0\nconnect_timeout = 2.0\n"
        f"[[listeners]]\nport = {plain}\n"
        f'[[listeners]]\nport = {ws}\nprotocol = "websockets"\n'
        f"max_websocket_message = {MAX_MESSAGE}\n"
    )
    broker = Broker(
        tmp_path / "b", port=plain, extra_args=["--config", str(config), "--sys-interval", "0.5"]
    )
    broker.start()
    yield broker, ws
    broker.stop()


def ws_connect(port: int, rcvbuf: int | None = None) -> tuple[socket.socket, WSConnection]:
    """An upgraded WebSocket (subprotocol mqtt), nothing sent over it yet."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", port))
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request("localhost", "/mqtt", subprotocols=["mqtt"])))
    while not any(isinstance(e, AcceptConnection) for e in ws.events()):
        data = sock.recv(4096)
        assert data, "the broker closed the upgrade"
        ws.receive_data(data)
    return sock, ws


def close_code(sock: socket.socket, ws: WSConnection) -> int | None:
    """Read until the broker closes: its close frame's code (None: none came)."""
    code = None
    with contextlib.suppress(ConnectionResetError):
        while data := sock.recv(1 << 16):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, CloseConnection):
                    code = event.code
    return code


def counter(broker: Broker, name: str) -> int:
    """The sum over acceptors of one $SYS counter, waited for until non-zero."""
    watcher = Client(broker.port)
    watcher.connect()
    watcher.subscribe(f"$SYS/broker/acceptor/+/{name}", 0)
    (msg,) = watcher.expect(1, timeout=20)
    watcher.disconnect()
    return int(msg.payload)


def test_a_websocket_subscriber_that_never_reads_is_disconnected_after_write_timeout(
    ws_broker: tuple[Broker, int],
) -> None:
    broker, ws_port = ws_broker
    pids = child_pids(broker)
    sock, ws = ws_connect(ws_port, rcvbuf=4096)
    connect = encode(Connect(unique("stuck-ws"), 4, True, 0), 4)
    subscribe = encode(Subscribe(1, (Subscription("ws-firehose", 0),)), 4)
    sock.sendall(ws.send(BytesMessage(connect + subscribe)))
    peak = 0
    with flood(broker.port, "ws-firehose", b"x" * 16 * 1024, None) as sent:
        assert counter(broker, "slow_consumers_disconnected") >= 1
        peak = total_rss(broker)
    assert sent[0] > 100
    assert peak < 600 * MB, f"broker RSS {peak / MB:.0f} MB"
    # The broker closed it: reading drains what was buffered, then EOF.
    close_code(sock, ws)
    sock.close()
    assert_healthy(broker, pids)


def test_a_message_over_the_limit_closes_only_that_websocket(
    ws_broker: tuple[Broker, int],
) -> None:
    broker, ws_port = ws_broker
    pids = child_pids(broker)
    sock, ws = ws_connect(ws_port)
    sock.sendall(ws.send(BytesMessage(encode(Connect(unique("big"), 4, True, 0), 4))))
    # one message in frames of 16 KiB, one byte past the limit (nothing
    # after it: the broker has read all there is when it closes, so its
    # close frame is not lost to a reset)
    step = 16 * 1024
    over = BIG_PUBLISH[: MAX_MESSAGE + 1]
    for start in range(0, len(over), step):
        sock.sendall(ws.send(BytesMessage(over[start : start + step], message_finished=False)))
    assert close_code(sock, ws) == 1009
    sock.close()
    assert counter(broker, "websocket_messages_too_big") >= 1
    assert_healthy(broker, pids)


def test_a_frame_that_declares_a_terabyte_is_closed_without_being_buffered(
    ws_broker: tuple[Broker, int],
) -> None:
    """The header claims 2**40 bytes; the client then sends as fast as it
    can: the broker closes at the limit and never holds more than it."""
    broker, ws_port = ws_broker
    pids = child_pids(broker)
    before = total_rss(broker)
    sock, ws = ws_connect(ws_port)
    sock.sendall(ws.send(BytesMessage(encode(Connect(unique("tera"), 4, True, 0), 4))))
    header = bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big") + b"\x00\x00\x00\x00"
    sock.sendall(header + BIG_PUBLISH[: MAX_MESSAGE // 2])  # masked with zeros: as is
    sent = 0
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        while sent < 64 * MB:
            sock.sendall(b"\x00" * (1 << 16))
            sent += 1 << 16
    # the close came long before 64 MB (a send failed), or the data went
    # nowhere (its close frame may be lost to the reset: the counter says)
    close_code(sock, ws)
    sock.close()
    assert total_rss(broker) - before < 100 * MB
    assert counter(broker, "websocket_messages_too_big") >= 1
    assert_healthy(broker, pids)


def test_an_upgrade_that_never_completes_is_closed_by_the_connect_timeout(
    ws_broker: tuple[Broker, int],
) -> None:
    broker, ws_port = ws_broker
    pids = child_pids(broker)
    sock = socket.create_connection(("127.0.0.1", ws_port), timeout=20)
    sock.sendall(b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\n")  # and never the rest
    assert sock.recv(4096) == b""  # closed by the broker (connect_timeout 2 s; ours is 20)
    sock.close()
    assert_healthy(broker, pids)
