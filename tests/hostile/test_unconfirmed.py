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

    pub = socket.create_connection(("127.0.0.1", broker.port))
    pub.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    pub.sendall(encode(Connect(unique("pub"), 4, True, 0), 4))
    decoder = StreamDecoder(protocol_level=4)
    decoder.feed(pub.recv(4))  # CONNACK
    assert decoder.next_packet() is not None

    sent = [0]
    stalled = threading.Event()  # the broker took nothing for a second
    done = threading.Event()
    finished = threading.Event()  # the publisher sent all it had
    cap = 64 * MB  # far over what the bound lets in; reached at once without it

    def publish() -> None:
        pub.settimeout(1.0)
        packet_id = 0
        while not done.is_set() and sent[0] * len(PAYLOAD) < cap:
            packet_id = packet_id % 65535 + 1
            data = encode(Publish(topic, PAYLOAD, 1, packet_id=packet_id), 4)
            view = memoryview(data)
            while view and not done.is_set():
                try:
                    n = pub.send(view)
                except TimeoutError:
                    stalled.set()
                    continue
                view = view[n:]
            if not view:
                sent[0] += 1
        finished.set()

    with store_locked(broker):
        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        # Paused: it reads nothing more, whatever the client sends.
        for _ in range(int(TIMEOUT * 10)):
            if stalled.wait(0.1) or finished.is_set():
                break
        taken = sent[0] * len(PAYLOAD)
        assert stalled.is_set(), f"the broker kept reading: {taken / MB:.0f} MB taken"
        # What it read: the bound, one read's worth, and the kernel's buffers.
        assert taken < 32 * MB, f"{taken / MB:.0f} MB taken with the store locked"
        assert wait_for_counter(broker, "unconfirmed_full_pauses") >= 1
    done.set()
    thread.join(TIMEOUT)
    count = sent[0]
    # The store writes again: every publish is acknowledged and delivered.
    pub.settimeout(TIMEOUT)
    acked: set[int] = set()
    while len(acked) < count:
        data = pub.recv(65536)
        assert data, "the publisher was disconnected"
        decoder.feed(data)
        while (packet := decoder.next_packet()) is not None:
            assert isinstance(packet, Puback)
            acked.add(packet.packet_id)
    pub.close()
    sub = Client(broker.port, sub_id, clean=False)
    sub.connect()
    assert len(sub.expect(count)) == count
    sub.disconnect()
    assert_healthy(broker, pids)
