"""A publisher whose QoS 1/2 publishes are not confirmed durable yet (a
slow disk, a store locked by a backup) is not read past
`max_unconfirmed_bytes`: the acceptor and the worker do not hold an
unbounded backlog of its messages, and nothing it had acknowledged is lost
once the store writes again."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flockmq.frontend.codec import Connect, Puback, Publish, StreamDecoder, encode
from tests.e2e.broker import Broker, MakeBroker
from tests.e2e.clients import TIMEOUT, Client, unique

from .health import MB, assert_healthy, child_pids

PAYLOAD = b"p" * 65536
LIMIT = 1 * MB


@contextmanager
def store_locked(broker: Broker) -> Iterator[None]:
    """Hold the SQLite store's write lock, as a backup or a slow disk would:
    the broker's commits wait (up to its busy timeout, 10 s)."""
    db = sqlite3.connect(broker.data_dir / "flockmq.db", isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        db.execute("ROLLBACK")
        db.close()


def wait_for_counter(broker: Broker, name: str) -> int:
    """The first positive value of an acceptor counter in $SYS."""
    got = threading.Event()
    value = [0]
    watcher = Client(broker.port)
    watcher.connect()
    watcher.subscribe(f"$SYS/broker/acceptor/0/{name}", 0)
    try:
        while not got.is_set():
            msg = watcher.expect(1, timeout=TIMEOUT)[0]
            value[0] = int(msg.payload)
            if value[0] > 0:
                got.set()
    finally:
        watcher.disconnect()
    return value[0]


class Flood:
    """QoS 1 publishes of PAYLOAD to `topic` over the raw socket `pub`, from a
    thread, until `done` is set or `cap` bytes are sent."""

    def __init__(self, pub: socket.socket, topic: str, cap: int) -> None:
        self.pub = pub
        self.topic = topic
        self.cap = cap
        self.sent = 0
        self.stalled = threading.Event()  # the broker took nothing for a second
        self.done = threading.Event()
        self.finished = threading.Event()  # the publisher sent all it had
        self.thread = threading.Thread(target=self._publish, daemon=True)

    def _publish(self) -> None:
        self.pub.settimeout(1.0)
        packet_id = 0
        while not self.done.is_set() and self.sent * len(PAYLOAD) < self.cap:
            packet_id = packet_id % 65535 + 1
            data = encode(Publish(self.topic, PAYLOAD, 1, packet_id=packet_id), 4)
            view = memoryview(data)
            while view and not self.done.is_set():
                try:
                    n = self.pub.send(view)
                except TimeoutError:
                    self.stalled.set()
                    continue
                view = view[n:]
            if not view:
                self.sent += 1
        self.finished.set()


def connect_publisher(broker: Broker) -> tuple[socket.socket, StreamDecoder]:
    """A raw MQTT 3.1.1 client with a small send buffer, connected."""
    pub = socket.create_connection(("127.0.0.1", broker.port))
    pub.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    pub.sendall(encode(Connect(unique("pub"), 4, True, 0), 4))
    decoder = StreamDecoder(protocol_level=4)
    decoder.feed(pub.recv(4))  # CONNACK
    assert decoder.next_packet() is not None
    return pub, decoder


def await_pubacks(pub: socket.socket, decoder: StreamDecoder, count: int) -> None:
    """Until `count` packet ids are acknowledged, each by a PUBACK."""
    pub.settimeout(TIMEOUT)
    acked: set[int] = set()
    while len(acked) < count:
        data = pub.recv(65536)
        assert data, "the publisher was disconnected"
        decoder.feed(data)
        while (packet := decoder.next_packet()) is not None:
            assert isinstance(packet, Puback)
            acked.add(packet.packet_id)


def test_a_publisher_is_not_read_while_its_publishes_wait_for_the_store(
    make_broker: MakeBroker, tmp_path: Path
) -> None:
    config = tmp_path / "unconfirmed.toml"
    config.write_text(
        f"max_unconfirmed_bytes = {LIMIT}\n"
        # the queue of the offline subscriber must not be what stops it
        f"max_queued_bytes = {1024 * MB}\n"
    )
    broker = make_broker("--config", str(config), acceptors=1, workers=1)
    pids = child_pids(broker)
    topic = unique("slowstore")
    sub_id = unique("offline")
    sub = Client(broker.port, sub_id, clean=False)
    sub.connect()
    sub.subscribe(topic, 1)
    sub.disconnect()  # every publish to it must now be committed before its PUBACK

    pub, decoder = connect_publisher(broker)
    # far over what the bound lets in; reached at once without it
    flood = Flood(pub, topic, cap=64 * MB)

    with store_locked(broker):
        flood.thread.start()
        # Paused: it reads nothing more, whatever the client sends.
        for _ in range(int(TIMEOUT * 10)):
            if flood.stalled.wait(0.1) or flood.finished.is_set():
                break
        taken = flood.sent * len(PAYLOAD)
        assert flood.stalled.is_set(), f"the broker kept reading: {taken / MB:.0f} MB taken"
        # What it read: the bound, one read's worth, and the kernel's buffers.
        assert taken < 32 * MB, f"{taken / MB:.0f} MB taken with the store locked"
        assert wait_for_counter(broker, "unconfirmed_full_pauses") >= 1
    flood.done.set()
    flood.thread.join(TIMEOUT)
    count = flood.sent
    # The store writes again: every publish is acknowledged and delivered.
    await_pubacks(pub, decoder, count)
    pub.close()
    sub = Client(broker.port, sub_id, clean=False)
    sub.connect()
    assert len(sub.expect(count)) == count
    sub.disconnect()
    assert_healthy(broker, pids)
