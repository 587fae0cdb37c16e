"""What one connection sends takes effect in the order it was sent, whatever
path each packet takes between the processes (issue 9 item 22).

A QoS 0/1 PUBLISH goes from the acceptor straight to the router, a QoS 2 one
through the session's worker, SUBSCRIBE/UNSUBSCRIBE through the worker: each
case below sends two packets in one TCP write, on fresh topics, many times
over several acceptors and workers (the connections side by side, each
waiting for its own answers), and checks what came back, in order.
A barrier publish (same path as any stray copy, sent later) ends each wait:
no sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from flockmq.frontend.codec import encode
from flockmq.frontend.codec.packets import (
    Connack,
    Connect,
    Packet,
    Puback,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)

from .broker import Broker
from .clients import TIMEOUT, RawClient, unique

CONNECTIONS = 20
ROUNDS = 10  # per connection: 200 fresh topics per case and protocol level
FLOODERS = 2


@pytest.fixture(scope="module")
def busy_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("ordering"), acceptors=3, workers=3)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def flood(busy_broker: Broker) -> Iterator[None]:
    """Other clients keep the acceptors' pipes to the router busy (QoS 0 to a
    topic nobody reads), so a packet that takes the longer path through a
    worker has a real chance to overtake one sent straight to the router."""
    stop = threading.Event()
    burst = b"".join(encode(Publish(f"flood/{i}", b"x" * 64), 4) for i in range(200))
    # closed loop: each burst ends with a QoS 1 publish whose PUBACK (sent
    # once the router handled it) lets the next burst go
    burst += encode(Publish("flood/last", b"x", 1, packet_id=1), 4)

    def run() -> None:
        clients = [Session(busy_broker.port, 4) for _ in range(FLOODERS)]
        while not stop.is_set():
            for client in clients:
                client.raw.send_raw(burst)
            for client in clients:
                assert isinstance(client.raw.recv(), Puback)
        for client in clients:
            client.raw.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(TIMEOUT)


class Session:
    """A raw connection that answers the acknowledgements a test does not
    look at, and records every other packet in arrival order."""

    def __init__(self, port: int, level: int, persistent: bool = False) -> None:
        self.raw = RawClient(port, level)
        self.level = level
        self.next_id = 0
        props = {"session_expiry_interval": 60} if persistent and level >= 5 else {}
        self.raw.send(Connect(unique("ord"), level, not persistent, 60, properties=props))
        assert isinstance(self.raw.recv(), Connack)

    def packet_id(self) -> int:
        self.next_id = self.next_id % 65535 + 1
        return self.next_id

    def send(self, *packets: Packet) -> None:
        """One TCP write."""
        self.raw.send_raw(b"".join(encode(p, self.level) for p in packets))

    def until(self, done: Callable[[Packet], bool]) -> list[Packet]:
        """Packets up to and including the first for which `done` is true."""
        got: list[Packet] = []
        while True:
            packet = self.raw.recv()
            assert packet is not None, f"connection closed after {got}"
            if isinstance(packet, Pubrec):
                self.raw.send(Pubrel(packet.packet_id))
                continue
            if isinstance(packet, Puback):
                continue
            if isinstance(packet, Publish) and packet.qos == 1:
                assert packet.packet_id is not None
                self.raw.send(Puback(packet.packet_id))
            got.append(packet)
            if done(packet):
                return got


def sessions(broker: Broker, level: int, persistent: bool = False) -> list[Session]:
    return [Session(broker.port, level, persistent) for _ in range(CONNECTIONS)]


def each_connection(
    conns: list[Session], case: Callable[[Session, int], list[str] | None]
) -> list[list[str]]:
    """`case(conn, round)` for ROUNDS rounds on every connection, the
    connections side by side (a thread each: a connection's own packets stay
    in the order it sends and waits for them, while the others keep the
    broker busy meanwhile); the failures, each as the packets that came."""

    def rounds(conn: Session) -> list[list[str]]:
        failures = []
        for round_ in range(ROUNDS):
            failure = case(conn, round_)
            if failure is not None:
                failures.append(failure)
        conn.raw.close()
        return failures

    with ThreadPoolExecutor(len(conns)) as pool:
        return [failure for failed in pool.map(rounds, conns) for failure in failed]


def _name(packet: Packet) -> str:
    if isinstance(packet, Publish):
        return f"PUBLISH({packet.payload!r}, retain={int(packet.retain)})"
    return type(packet).__name__.upper()


def is_publish(payload: bytes) -> Callable[[Packet], bool]:
    return lambda p: isinstance(p, Publish) and p.payload == payload


@pytest.mark.parametrize("persistent", [False, True], ids=["clean", "persistent"])
@pytest.mark.parametrize("level", [4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_retained_then_subscribe(
    busy_broker: Broker, flood: None, level: int, qos: int, persistent: bool
) -> None:
    """SUBACK, then exactly one copy, with RETAIN=1 [MQTT-3.3.1-8] — never a
    live copy (RETAIN=0) from the SUBSCRIBE overtaking the PUBLISH."""

    def case(conn: Session, round_: int) -> list[str] | None:
        topic = unique(f"ord/{round_}")
        sub_id = conn.packet_id()
        conn.send(
            Publish(topic, b"retained", qos, True, packet_id=conn.packet_id() if qos else None),
            Subscribe(sub_id, (Subscription(topic, 0),)),
        )
        got = conn.until(lambda p: isinstance(p, Suback))
        conn.send(Publish(topic, b"barrier"))  # matched: the SUBACK came
        got += conn.until(is_publish(b"barrier"))
        copies = [p for p in got if isinstance(p, Publish) and p.payload == b"retained"]
        suback_at = next(i for i, p in enumerate(got) if isinstance(p, Suback))
        ok = (
            len(copies) == 1
            and copies[0].retain
            and got.index(copies[0]) > suback_at
            and isinstance(got[-1], Publish)
            and not got[-1].retain
        )
        conn.send(Publish(topic, b"", 0, True))  # clear the retained message
        return None if ok else [_name(p) for p in got]

    failures = each_connection(sessions(busy_broker, level, persistent), case)
    assert not failures, f"{len(failures)} of {CONNECTIONS * ROUNDS} out of order: {failures[:5]}"


@pytest.mark.parametrize("level", [4, 5])
def test_unsubscribe_then_publish(busy_broker: Broker, flood: None, level: int) -> None:
    """A PUBLISH sent after UNSUBSCRIBE is a new message: the server has
    stopped adding messages matching the filter for this client
    [MQTT-3.10.4-2], so no copy of it comes (the barrier, sent after it on
    a subscription kept, shows that nothing is still on its way)."""

    def case(conn: Session, round_: int) -> list[str] | None:
        topic = unique(f"unsub/{round_}")
        conn.send(
            Subscribe(
                conn.packet_id(), (Subscription(topic, 0), Subscription(f"{topic}/barrier", 0))
            )
        )
        conn.until(lambda p: isinstance(p, Suback))
        conn.send(
            Unsubscribe(conn.packet_id(), (topic,)),
            Publish(topic, b"after"),
            Publish(f"{topic}/barrier", b"barrier"),
        )
        got = conn.until(is_publish(b"barrier"))
        failed = any(isinstance(p, Publish) and p.payload == b"after" for p in got)
        if not any(isinstance(p, Unsuback) for p in got):
            got += conn.until(lambda p: isinstance(p, Unsuback))
        return [_name(p) for p in got] if failed else None

    failures = each_connection(sessions(busy_broker, level), case)
    assert not failures, f"{len(failures)} of {CONNECTIONS * ROUNDS} out of order: {failures[:5]}"


@pytest.mark.parametrize("level", [4, 5])
def test_publish_then_unsubscribe(busy_broker: Broker, flood: None, level: int) -> None:
    """A PUBLISH sent before UNSUBSCRIBE was matched while the subscription
    existed: its copy comes (an UNSUBSCRIBE overtaking it would lose it)."""

    def case(conn: Session, round_: int) -> list[str] | None:
        topic = unique(f"pubunsub/{round_}")
        conn.send(
            Subscribe(
                conn.packet_id(), (Subscription(topic, 0), Subscription(f"{topic}/barrier", 0))
            )
        )
        conn.until(lambda p: isinstance(p, Suback))
        conn.send(
            Publish(topic, b"before"),
            Unsubscribe(conn.packet_id(), (topic,)),
            Publish(f"{topic}/barrier", b"barrier"),
        )
        got = conn.until(is_publish(b"barrier"))
        failed = sum(isinstance(p, Publish) and p.payload == b"before" for p in got) != 1
        if not any(isinstance(p, Unsuback) for p in got):
            conn.until(lambda p: isinstance(p, Unsuback))
        return [_name(p) for p in got] if failed else None

    failures = each_connection(sessions(busy_broker, level), case)
    assert not failures, f"{len(failures)} of {CONNECTIONS * ROUNDS} out of order: {failures[:5]}"


WILLS = 50


@pytest.mark.parametrize("level", [4, 5])
def test_a_will_comes_after_what_the_client_published(
    busy_broker: Broker, flood: None, level: int
) -> None:
    """PUBLISH retained "up", then the connection drops: the will ("down",
    retained, same topic) goes out after it, so "down" is what stays."""
    failures = []
    watcher = Session(busy_broker.port, level)
    for i in range(WILLS):
        topic = unique(f"will/{i}")
        watcher.send(Subscribe(watcher.packet_id(), (Subscription(topic, 0),)))
        watcher.until(lambda p: isinstance(p, Suback))
        client = RawClient(busy_broker.port, level)
        client.send(Connect(unique("w"), level, True, 60, will=Will(topic, b"down", 0, True)))
        assert isinstance(client.recv(), Connack)
        client.send(Publish(topic, b"up", 0, True))
        client.close()  # no DISCONNECT: the will goes
        got = watcher.until(is_publish(b"down"))
        live = [p.payload for p in got if isinstance(p, Publish) and p.payload]
        fresh = Session(busy_broker.port, level)
        fresh.send(Subscribe(1, (Subscription(topic, 0),)))
        kept = fresh.until(lambda p: isinstance(p, Publish))
        fresh.raw.close()
        # kept ends with the Publish that until() waited for.
        if live != [b"up", b"down"] or kept[-1].payload != b"down":  # type: ignore[union-attr]
            failures.append((live, kept[-1]))
        watcher.send(Publish(topic, b"", 0, True))
    watcher.raw.close()
    assert not failures, f"{len(failures)} of {WILLS} out of order: {failures[:5]}"
