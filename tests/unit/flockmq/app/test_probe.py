"""flockmq.app.probe: ready only when a CONNACK 0 comes back, not when a port is
merely open (a listener that says nothing, answers garbage or refuses)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flockmq.app.probe import free_port, free_port_range, mqtt_ready


@pytest.fixture
def server() -> Iterator[Callable[[bytes | None], int]]:
    """A one-connection TCP server on 127.0.0.1 that reads the CONNECT and
    answers `reply` (None: says nothing)."""
    socks: list[socket.socket] = []

    def start(reply: bytes | None) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        socks.append(listener)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                if reply is not None:
                    conn.sendall(reply)
                conn.recv(1024)  # until the probe goes

        threading.Thread(target=serve, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    for s in socks:
        s.close()


def test_connack_accepted_is_ready(server: Callable[[bytes | None], int]) -> None:
    assert mqtt_ready("127.0.0.1", server(b"\x20\x02\x00\x00"))


@pytest.mark.parametrize(
    "reply",
    [b"\x20\x02\x00\x05", b"HTTP/1.1 400 Bad Request\r\n\r\n", None],
    ids=["connack-refused", "not-mqtt", "silent"],
)
def test_anything_else_is_not_ready(
    server: Callable[[bytes | None], int], reply: bytes | None
) -> None:
    assert not mqtt_ready("127.0.0.1", server(reply), timeout=0.5)


def test_nobody_listening_is_not_ready() -> None:
    assert not mqtt_ready("127.0.0.1", free_port(), timeout=0.5)


def test_free_port_range_gives_consecutive_ports_below_the_ephemeral_range() -> None:
    base = free_port_range(16)
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert base >= 10_000 and base + 16 <= low
    socks = []
    try:
        for port in range(base, base + 16):  # all of them bind
            sock = socket.socket()
            socks.append(sock)
            sock.bind(("127.0.0.1", port))
    finally:
        for sock in socks:
            sock.close()
