"""Durability end to end: what a QoS 1/2 acknowledgment promised survives any
process being killed (-9), the whole broker being killed, and a restart; a
store that is corrupt or from a newer flockmq is refused and left untouched; a
publish (QoS 1 or 2) that cannot be stored is not acknowledged.

The kill tests run a small load (2 publishers x 300 messages into persistent
sessions: 2 subscribers online, 2 offline) and kill a process once a third of
the messages were acknowledged. Publishers are paho clients with clean session
0 that reconnect and retransmit whatever was not acknowledged. See
`load.check_delivery` for exactly what is asserted per subscriber.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from flockmq.app.probe import free_port
from flockmq.frontend.codec import (
    Connack,
    Connect,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
)

from .broker import FLOCKMQ, Broker, MakeBroker
from .clients import Client, RawClient, unique, wait_for
from .load import WAIT, WINDOW, Publisher, Subscriber, check_delivery, id_on_shard

COUNT = 300  # messages per publisher
RATE = 200.0  # messages per second per publisher: 1.5 s of load
# An unconfirmed publish (its router or worker died) closes the publisher's
# connection after this long, so it retransmits; 2 s keeps the tests short.
CONFIG = "publish_confirm_timeout = 2.0\n"


@pytest.fixture
def config_file(tmp_path: Path) -> str:
    path = tmp_path / "flockmq.toml"
    path.write_text(CONFIG)
    return str(path)


@pytest.fixture
def extra_brokers() -> Iterator[list[Broker]]:
    """Brokers a test starts itself (on a data dir it reuses); always stopped."""
    started: list[Broker] = []
    yield started
    for b in started:
        b.stop()


def freeze_then_kill(pids: list[int], publishers: list[Publisher]) -> None:
    """kill -9 with messages certainly in flight through the victims: stop
    them (SIGSTOP), wait until every publisher has a full window of
    unacknowledged messages (each has a destination behind every victim),
    then SIGKILL."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: all(p.unacked() >= WINDOW for p in publishers), WAIT, "full publisher windows"
        )
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)


def restart_on_same_dir(broker: Broker, extra: list[Broker], port: int | None = None) -> Broker:
    again = Broker(
        broker.data_dir,
        broker.acceptors,
        broker.workers,
        list(broker.extra_args),
        port=broker.port if port is None else port,
    )
    extra.append(again)
    return again.start()


def kill_mid_load(
    role: str, broker: Broker, extra: list[Broker], publishers: list[Publisher]
) -> None:
    if role == "acceptor":
        # Both, so every client connection is certainly hit (the kernel
        # spreads connections over the acceptors at random).
        olds = [broker.pid_of("acceptor", i) for i in range(broker.acceptors)]
        freeze_then_kill(olds, publishers)
        for i, old in enumerate(olds):
            broker.wait_restarted("acceptor", i, old)
    elif role in ("router", "worker"):
        # Worker 0: its shard holds one online and one offline subscriber
        # and a publisher.
        old = broker.pid_of(role, 0)
        freeze_then_kill([old], publishers)
        broker.wait_restarted(role, 0, old)
    else:
        # The whole broker: the supervisor first (so it restarts nothing),
        # then every child; then `flockmq serve` again on the same data dir.
        children = broker.children()
        assert len(children) >= 5, "expected a router, 2 workers and 2 acceptors"
        freeze_then_kill([broker.pid, *(c.pid for c in children)], publishers)
        psutil.wait_procs(children, timeout=WAIT)
        assert broker.proc is not None
        broker.proc.wait(WAIT)
        restart_on_same_dir(broker, extra)


KILLS = [
    pytest.param(role, qos, marks=marks)
    for role, qos, marks in [
        ("acceptor", 1, ()),
        ("acceptor", 2, ()),
        ("router", 1, ()),
        ("router", 2, ()),
        ("worker", 1, ()),
        ("worker", 2, ()),
        ("broker", 1, ()),
        ("broker", 2, ()),
    ]
]


def wait_all_acked(publishers: list[Publisher]) -> None:
    """Until every publish is acknowledged; else fail with, per publisher, its
    connects, disconnects and the first unacknowledged messages' paho states."""
    try:
        wait_for(lambda: all(p.all_acked() for p in publishers), 30, "every publish acked")
    except AssertionError as exc:
        state = [
            (
                p.client_id,
                p.connects,
                p.disconnects,
                [
                    (seq, str(getattr(p.paho._out_messages.get(p.mids[seq]), "state", "?")))
                    for seq in sorted(set(range(COUNT)) - p.acked())[:10]
                ],
            )
            for p in publishers
        ]
        raise AssertionError(
            f"{exc}: (publisher, connects, disconnects, [(unacked seq, paho state)]) {state}"
        ) from None


def assert_sessions_found(subscribers: list[Subscriber], publishers: list[Publisher]) -> None:
    """Every reconnection found its session (clean session 0)."""
    for sub in subscribers:
        assert sub.session_present[0] is False
        assert all(sub.session_present[1:]), (sub.client_id, sub.session_present)
    for pub in publishers:
        assert all(pub.session_present[1:]), (pub.client_id, pub.session_present)


@pytest.mark.parametrize(("role", "qos"), KILLS)
def test_no_acknowledged_message_is_lost_when_a_process_is_killed(
    make_broker: MakeBroker,
    config_file: str,
    extra_brokers: list[Broker],
    role: str,
    qos: int,
    kill_with: Callable[[Broker, list[Publisher]], None] | None = None,
) -> None:
    """`kill_with`: another way to hit worker 0 mid-load (tests of other
    modules call this one with theirs)."""
    broker = make_broker("--config", config_file)
    port = broker.port
    base = unique("dur")
    online = [Subscriber(port, id_on_shard("on", shard)) for shard in (0, 1)]
    offline = [Subscriber(port, id_on_shard("off", shard)) for shard in (0, 1)]
    subscribers = online + offline
    for sub in subscribers:
        sub.start()
        sub.subscribe(f"{base}/#", qos)
    for sub in offline:
        sub.stop()  # DISCONNECT; the session (clean session 0) queues meanwhile
    publishers = [
        Publisher(port, id_on_shard("pub", shard), f"{base}/{shard}", qos, COUNT, RATE)
        for shard in (0, 1)
    ]
    for pub in publishers:
        pub.start()
    for pub in publishers:
        pub.begin()

    def acked() -> int:
        return sum(len(p.acked()) for p in publishers)

    wait_for(lambda: acked() >= len(publishers) * COUNT // 3, WAIT, "a third of the load acked")
    acked_before_kill = acked()
    kill = kill_with or (lambda b, pubs: kill_mid_load(role, b, extra_brokers, pubs))
    kill(broker, publishers)
    for pub in publishers:
        pub.mark_in_flight()

    # The dust settles: every message is eventually acknowledged (the
    # publishers reconnect and retransmit), then the offline subscribers return.
    wait_all_acked(publishers)
    for sub in offline:
        sub.start()
    # Markers, published after everything was acknowledged, are barriers: a
    # session delivers in order, so every earlier message is ahead of them.
    marker = f"marker-1-{base}".encode()
    publishers[0].paho.publish(f"{base}/marker", marker, qos).wait_for_publish(WAIT)
    wait_for(lambda: all(marker in s.distinct() for s in subscribers), WAIT, "marker 1")
    expected = {p.payload(seq) for p in publishers for seq in range(COUNT)}
    # A little slack for stragglers (that would be an ordering problem);
    # check_delivery below names what is missing.
    with contextlib.suppress(AssertionError):
        wait_for(lambda: all(expected <= s.distinct() for s in subscribers), 5, "deliveries")

    # One more session each: whatever arrives before marker 2 is a leftover
    # redelivery (a duplicate; for QoS 2 an error).
    for sub in subscribers:
        sub.stop()
        sub.start()
    marker = f"marker-2-{base}".encode()
    publishers[0].paho.publish(f"{base}/marker", marker, qos).wait_for_publish(WAIT)
    wait_for(lambda: all(marker in s.distinct() for s in subscribers), WAIT, "marker 2")

    stats = {sub.client_id: check_delivery(sub, publishers, qos) for sub in subscribers}
    assert_sessions_found(subscribers, publishers)
    if role in ("acceptor", "broker"):
        for peer in [*publishers, *online]:
            assert peer.disconnects >= 1, f"{peer.client_id} was not disconnected by the kill"
    for peer in [*publishers, *subscribers]:
        peer.stop()
    print(
        f"{role} qos {qos}: {acked_before_kill} acked before the kill; "
        f"publisher reconnects {[p.connects - 1 for p in publishers]}; "
        f"retransmittable {[len(p.retransmittable) for p in publishers]}; {stats}"
    )


# --- restart with a populated data dir ------------------------------------------------


def test_restart_restores_sessions_queues_and_retained_messages(
    make_broker: MakeBroker, extra_brokers: list[Broker]
) -> None:
    broker = make_broker()
    base = unique("restart")
    sub_id = unique("sub")
    sub = Client(broker.port, sub_id, clean=False)
    sub.connect()
    sub.subscribe(f"{base}/q/#", 2)
    sub.disconnect()
    pub = Client(broker.port)
    pub.connect()
    sent = []
    for i in range(10):
        for qos in (1, 2):
            payload = f"m{i}-q{qos}".encode()
            pub.publish(f"{base}/q/{qos}", payload, qos)  # waits for PUBACK / PUBCOMP
            sent.append((payload, qos))
    pub.publish(f"{base}/ret/a", b"retained-a", 1, retain=True)
    pub.publish(f"{base}/ret/b", b"retained-b", 2, retain=True)
    pub.publish(f"{base}/ret/gone", b"deleted", 1, retain=True)
    pub.publish(f"{base}/ret/gone", b"", 1, retain=True)  # deletes it
    pub.disconnect()
    assert broker.stop() == 0

    again = restart_on_same_dir(broker, extra_brokers, port=free_port())
    sub = Client(again.port, sub_id, clean=False)
    flags = sub.connect()
    assert flags.session_present, "the persistent session was not restored"
    got = [(m.payload, m.qos) for m in sub.expect(len(sent), timeout=WAIT)]
    # In order per topic (one topic per QoS here; paho hands a QoS 2 message
    # over only at PUBREL, so QoS 1 and 2 interleave differently on arrival).
    for qos in (1, 2):
        assert [g for g in got if g[1] == qos] == [x for x in sent if x[1] == qos], (
            f"queued QoS {qos} messages lost, reordered or downgraded: {got}"
        )
    # The subscription itself survived: a new publish arrives without SUBSCRIBE.
    pub = Client(again.port)
    pub.connect()
    pub.publish(f"{base}/q/1", b"after-restart", 1)
    assert sub.expect(1)[0].payload == b"after-restart"
    sub.disconnect()
    reader = Client(again.port)
    reader.connect()
    reader.subscribe(f"{base}/ret/#", 2)
    retained = {(m.topic, m.payload, m.qos, m.retain) for m in reader.expect(2)}
    assert retained == {
        (f"{base}/ret/a", b"retained-a", 1, True),
        (f"{base}/ret/b", b"retained-b", 2, True),
    }
    # Barrier: a live message after the retained ones; nothing else came first.
    pub.publish(f"{base}/ret/live", b"live", 1)
    assert reader.expect(1)[0].payload == b"live"
    reader.disconnect()
    pub.disconnect()


def test_a_format_1_store_is_migrated_and_its_sessions_resume(
    tmp_path: Path, extra_brokers: list[Broker]
) -> None:
    """Upgrading: `flockmq serve` on a data dir written by format 1 (the checked
    in golden file) migrates it and resumes what it holds."""
    data = tmp_path / "data"
    data.mkdir()
    golden = Path(__file__).parents[1] / "unit" / "store" / "golden_v1.db"
    shutil.copyfile(golden, data / "flockmq.db")
    broker = Broker(data)
    extra_brokers.append(broker)
    broker.start()
    assert "migrating the store from format 1 to 2" in broker.log()
    raw = sqlite3.connect(data / "flockmq.db")
    assert raw.execute("SELECT value FROM meta").fetchone() == (2,)
    raw.close()
    # "älterer-client": persistent (expiry never), subscribed to a/b at QoS 0.
    old = Client(broker.port, "älterer-client", clean=False)
    assert old.connect().session_present
    pub = Client(broker.port)
    pub.connect()
    pub.publish("a/b", b"after the upgrade", 1)
    (got,) = old.expect(1)
    assert (got.topic, got.payload, got.qos) == ("a/b", b"after the upgrade", 0)
    old.disconnect()
    reader = Client(broker.port)
    reader.connect()
    reader.subscribe("status/#", 1)
    retained = {(m.topic, m.payload, m.qos, m.retain) for m in reader.expect(2)}
    assert retained == {("status/€", b"online", 1, True), ("status/x", b"\x01", 0, True)}
    reader.disconnect()
    pub.disconnect()


# --- stores that must be refused ------------------------------------------------------


def serve(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOCKMQ, "serve", "--port", str(free_port()), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def assert_refused(data_dir: Path) -> None:
    db = data_dir / "flockmq.db"
    before = db.read_bytes()
    result = serve(data_dir)
    output = result.stdout + result.stderr
    assert result.returncode == 2, f"exit {result.returncode}: {output}"
    assert str(db) in output, f"the message does not name {db}: {output}"
    assert db.read_bytes() == before, "the refused store was modified"


def test_a_corrupt_store_is_refused_and_left_untouched(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "flockmq.db").write_bytes(b"this is not a database\n" * 4096)
    assert_refused(data_dir)


def test_a_store_from_a_newer_flockmq_is_refused_and_left_untouched(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker()
    c = Client(broker.port, unique("keep"), clean=False)
    c.connect()
    c.subscribe(unique("t"), 1)
    c.disconnect()
    assert broker.stop() == 0
    with contextlib.closing(sqlite3.connect(broker.data_dir / "flockmq.db")) as db, db:
        db.execute("UPDATE meta SET value = 99 WHERE key = 'format_version'")
    assert_refused(broker.data_dir)


# --- a store that cannot write ----------------------------------------------------------


def set_fsize_limit(pids: list[int], limit: int | None) -> None:
    """RLIMIT_FSIZE stops file writes even for root (EFBIG; Python ignores
    SIGXFSZ); None restores no limit."""
    for pid in pids:
        proc = psutil.Process(pid)
        _soft, hard = proc.rlimit(psutil.RLIMIT_FSIZE)
        proc.rlimit(psutil.RLIMIT_FSIZE, (psutil.RLIM_INFINITY if limit is None else limit, hard))


def test_a_publish_that_cannot_be_stored_is_not_acknowledged(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker()
    topic = unique("nostore")
    # A persistent subscriber that never acknowledges: its copy must be
    # written (one acknowledged within the same group commit would need no
    # row at all, and the publish would rightly be acknowledged).
    sub = RawClient(broker.port)
    sub.send(Connect(unique("sub"), 4, False, 60))
    assert sub.recv() == Connack(False, 0)
    sub.send(Subscribe(1, (Subscription(topic, 1),)))
    assert sub.recv() == Suback(1, (1,))
    watcher = Client(broker.port)
    watcher.connect()
    watcher.subscribe("$SYS/broker/acceptor/+/publishes_not_stored", 0)
    pub = Publisher(broker.port, unique("pub"), topic, 1, 1, 1.0)
    pub.start()
    workers = [broker.pid_of("worker", i) for i in range(broker.workers)]
    set_fsize_limit(workers, 1)
    try:
        info = pub.paho.publish(topic, pub.payload(0), 1)
        first = sub.recv()  # delivered at once; its row is what cannot be written
        assert isinstance(first, Publish) and first.payload == pub.payload(0)
        # Not acknowledged: the acceptor closes the publisher's connection.
        wait_for(lambda: pub.disconnects >= 1, WAIT, "the publisher's connection closed")
        assert not info.is_published()
        counted = watcher.expect(1, timeout=WAIT)[0]
        assert int(counted.payload) >= 1
    finally:
        set_fsize_limit(workers, None)
    # The store writes again: paho retransmits on reconnect and is acknowledged.
    info.wait_for_publish(WAIT)
    assert info.is_published()
    again = sub.recv()  # routed again: a second copy (QoS 1 allows it)
    assert isinstance(again, Publish) and again.payload == pub.payload(0)
    assert broker.pid_of("worker", 0) in workers, "a worker died instead of failing the write"
    pub.stop()
    sub.close()
    watcher.disconnect()


def qos2_handshake_in(raw: RawClient, packet_id: int) -> None:
    """The receiver's side of QoS 2: PUBREC, then PUBCOMP for the PUBREL."""
    raw.send(Pubrec(packet_id))
    assert raw.recv() == Pubrel(packet_id)
    raw.send(Pubcomp(packet_id))


def test_a_qos2_publish_that_cannot_be_stored_gets_no_pubrec_and_is_delivered_once_later(
    make_broker: MakeBroker, tmp_path: Path
) -> None:
    """A persistent publisher's QoS 2 packet id is stored before the publish is
    routed; when that write fails the publish is neither routed nor
    acknowledged (no PUBREC) and the connection is closed at once, so the
    client resends it; once the store writes again it is delivered once."""
    # The acceptor's own retry (after publish_confirm_timeout) would also end
    # in a close: make it later than the close this test waits for.
    config = tmp_path / "slow-retry.toml"
    config.write_text("publish_confirm_timeout = 60.0\n")
    broker = make_broker("--config", str(config))
    topic = unique("nostore2")
    sub = RawClient(broker.port)
    sub.send(Connect(unique("sub"), 4, False, 60))
    assert sub.recv() == Connack(False, 0)
    sub.send(Subscribe(1, (Subscription(topic, 2),)))
    assert sub.recv() == Suback(1, (2,))
    pub_id = unique("pub")
    pub = RawClient(broker.port)
    pub.send(Connect(pub_id, 4, False, 60))  # persistent: its packet id is stored
    assert pub.recv() == Connack(False, 0)
    message = Publish(topic, b"exactly once", 2, packet_id=1)
    workers = [broker.pid_of("worker", i) for i in range(broker.workers)]
    set_fsize_limit(workers, 1)
    try:
        pub.send(message)
        # Closed well before the acceptor's retry, with no PUBREC first.
        assert pub.expect_closed(timeout=20) == []
    finally:
        set_fsize_limit(workers, None)
    pub.close()
    # The store writes again: the client resends the PUBLISH on a new
    # connection, and the QoS 2 flow completes.
    pub = RawClient(broker.port)
    pub.send(Connect(pub_id, 4, False, 60))
    assert pub.recv() == Connack(True, 0)
    pub.send(Publish(topic, message.payload, 2, dup=True, packet_id=1))
    assert pub.recv(timeout=WAIT) == Pubrec(1)
    pub.send(Pubrel(1))
    assert pub.recv() == Pubcomp(1)
    got = sub.recv(timeout=WAIT)
    assert isinstance(got, Publish) and (got.payload, got.qos) == (message.payload, 2)
    assert got.packet_id is not None
    qos2_handshake_in(sub, got.packet_id)
    # Barrier: the same publisher's next QoS 2 message on the same topic comes
    # after any second copy of the first.
    pub.send(Publish(topic, b"after", 2, packet_id=2))
    assert pub.recv(timeout=WAIT) == Pubrec(2)
    pub.send(Pubrel(2))
    assert pub.recv() == Pubcomp(2)
    barrier = sub.recv(timeout=WAIT)
    assert isinstance(barrier, Publish) and barrier.payload == b"after", barrier
    assert barrier.packet_id is not None
    qos2_handshake_in(sub, barrier.packet_id)
    assert [broker.pid_of("worker", i) for i in range(broker.workers)] == workers, (
        "a worker died instead of failing the write"
    )
    pub.close()
    sub.close()
