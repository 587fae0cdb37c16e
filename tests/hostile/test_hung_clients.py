"""Clients that hang with a full socket (issue 9 item 4): a broker-side close
must complete even when the client reads nothing, so keepalive expiry
disconnects them within 1.5 x keepalive and publishes their wills
[MQTT-3.1.2-24, MQTT-3.1.2-8]. Before: `transport.close()` waited for the
buffer to drain, for ever; 5 hung clients published 0 wills in 45 s."""

from __future__ import annotations

import queue
import socket
import time

import psutil

from flockmq.frontend.codec import (
    Connack,
    Connect,
    Pingreq,
    Publish,
    StreamDecoder,
    Suback,
    Subscribe,
    Subscription,
    Will,
    encode,
)
from tests.e2e.broker import MakeBroker
from tests.e2e.clients import Client, unique

from .health import assert_healthy, child_pids

CLIENTS = 20
KEEPALIVE = 2
PAYLOAD = b"x" * 64 * 1024
FLOOD = 128  # 8 MB per client: more than the kernel buffers between them and the broker
CLOSE_GRACE = 1.0  # seconds a close may wait before it aborts (frontend/closing.py)
SLACK = 4.0  # seconds, for a loaded machine


def hung_client(port: int, flood_topic: str, will_topic: str) -> socket.socket:
    """Connected (keepalive 2 s, a will) and subscribed to the flood; its
    receive buffer is tiny and, after the SUBACK, it never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(10)
    will = Will(will_topic, b"gone", 1)
    sock.sendall(encode(Connect(unique("hung"), 4, True, KEEPALIVE, will=will), 4))
    sock.sendall(encode(Subscribe(1, (Subscription(flood_topic, 0),)), 4))
    decoder = StreamDecoder(protocol_level=4)
    got: list[object] = []
    while len(got) < 2:
        data = sock.recv(4096)
        assert data, "closed before SUBACK"
        decoder.feed(data)
        while (packet := decoder.next_packet()) is not None:
            got.append(packet)
    assert [type(p) for p in got] == [Connack, Suback], got
    return sock


def keep_alive(hung: list[socket.socket]) -> None:
    ping = encode(Pingreq(), 4)
    for s in hung:
        s.sendall(ping)  # they still send, so keepalive does not expire yet


def fill_sockets(port: int, base: str, watcher: Client, hung: list[socket.socket]) -> socket.socket:
    """Flood `base`/flood until the hung clients' sockets are full: the acceptor
    has written (or dropped) every copy for them once the watcher, on the same
    acceptor, got the last message. The hung clients keep sending PINGREQs
    meanwhile. Returns the publisher's socket."""
    publisher = socket.create_connection(("127.0.0.1", port))
    publisher.sendall(encode(Connect(unique("flood"), 4, True, 0), 4))
    for n in range(FLOOD):
        publisher.sendall(encode(Publish(f"{base}/flood", PAYLOAD, 0), 4))
        if n % 16 == 0:
            keep_alive(hung)
    publisher.sendall(encode(Publish(f"{base}/flood", b"last", 0), 4))
    deadline = time.monotonic() + 60
    last_ping = time.monotonic()
    while True:
        assert time.monotonic() < deadline, "the flood never reached the watcher"
        if time.monotonic() - last_ping > 0.5:
            keep_alive(hung)
            last_ping = time.monotonic()
        try:
            msg = watcher.messages.get(timeout=0.2)
        except queue.Empty:
            continue
        assert msg.topic == f"{base}/flood", f"early will {msg.topic}"
        if msg.payload == b"last":
            return publisher


def collect_wills(watcher: Client, base: str, until: float) -> set[str]:
    """The topics of the wills under `base`/will/ the watcher gets before `until`
    (monotonic), or once it has all CLIENTS of them."""
    wills: set[str] = set()
    while len(wills) < CLIENTS:
        remaining = until - time.monotonic()
        try:
            msg = watcher.messages.get(timeout=max(0.01, remaining))
        except queue.Empty:
            break
        if msg.topic.startswith(f"{base}/will/"):
            wills.add(msg.topic)
    return wills


def still_open(acceptor: psutil.Process, ports: set[int], broker_port: int) -> int:
    """How many of the clients at `ports` the acceptor still has a socket for."""
    return sum(
        1
        for c in acceptor.net_connections("tcp")
        if c.raddr and c.raddr.port in ports and c.laddr.port == broker_port
    )


def test_clients_that_stop_reading_and_sending_are_closed_and_their_wills_published(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(acceptors=1)  # the watcher's copy of the flood paces every client's
    pids = child_pids(broker)
    acceptor = psutil.Process(broker.pid_of("acceptor", 0))
    base = unique("hung")
    watcher = Client(broker.port)
    watcher.connect()
    watcher.subscribe(f"{base}/will/#", 1)
    watcher.subscribe(f"{base}/flood", 0)
    hung = [hung_client(broker.port, f"{base}/flood", f"{base}/will/{i}") for i in range(CLIENTS)]
    ports = {s.getsockname()[1] for s in hung}
    publisher = fill_sockets(broker.port, base, watcher, hung)

    # From now on the hung clients neither read nor send.
    stopped = time.monotonic()
    bound = 1.5 * KEEPALIVE + CLOSE_GRACE + SLACK
    wills = collect_wills(watcher, base, stopped + bound)
    elapsed = time.monotonic() - stopped
    assert len(wills) == CLIENTS, f"{len(wills)} of {CLIENTS} wills within {bound:.1f}s"
    print(f"{CLIENTS} wills {elapsed:.1f}s after the clients stopped (keepalive {KEEPALIVE}s)")

    deadline = time.monotonic() + 10
    while still_open(acceptor, ports, broker.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    open_now = still_open(acceptor, ports, broker.port)
    assert open_now == 0, f"{open_now} hung clients' sockets still open in the acceptor"
    for s in hung:
        s.close()
    publisher.close()
    watcher.disconnect()
    assert_healthy(broker, pids)
