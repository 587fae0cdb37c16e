"""The supervisor end to end: named child processes, restarts after SIGKILL
(worker, router, acceptor) while the rest keeps serving, a clean SIGTERM stop,
children that stop when the supervisor itself is killed (-9) with nothing
acknowledged lost, one broker per data dir, and clear refusals of a taken
port and of a bad configuration."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flockmq.app.probe import free_port
from flockmq.sharding import shard_of

from .broker import FLOCKMQ, Broker, MakeBroker
from .clients import Client, unique, wait_for
from .load import WAIT, Publisher, Subscriber, check_delivery

WORKERS = 2
ROLES = [("router", 0), ("worker", 0), ("worker", 1), ("acceptor", 0), ("acceptor", 1)]


def id_on_shard(shard: int, prefix: str = "c") -> str:
    while True:
        client_id = unique(prefix)
        if shard_of(client_id, WORKERS) == shard:
            return client_id


def connect_retrying(port: int, client_id: str, timeout: float = 20.0) -> Client:
    """Connect, retrying while a restarted process is still coming up."""
    deadline = time.monotonic() + timeout
    while True:
        client = Client(port, client_id)
        try:
            client.connect()
            return client
        except (queue.Empty, OSError, AssertionError):
            client.drop()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def roundtrip(sub: Client, pub: Client, topic: str, payload: bytes) -> None:
    pub.publish(topic, payload, 1)
    (msg,) = sub.expect(1)
    assert (msg.topic, msg.payload) == (topic, payload)


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker of this module's own whose processes the tests kill in turn."""
    b = Broker(tmp_path_factory.mktemp("victim"), extra_args=["--sys-interval", "0.5"])
    b.start()
    yield b
    b.stop()


def test_children_are_named_by_role_and_index(victim: Broker) -> None:
    """`ps` names each child by its title (`ps aux`, `args`: `flockmq worker
    1`) and its name (`comm`: `worker-1`); tests/e2e/test_proctitle.py checks
    both spawn modes."""
    pids = {victim.pid_of(role, index) for role, index in ROLES}
    assert pids == {child.pid for child in victim.children()}
    ps = subprocess.run(
        ["ps", "-o", "comm=,args=", "--ppid", str(victim.pid)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for role, index in ROLES:
        assert re.search(rf"^{role}-{index} +flockmq {role} {index}\b", ps, re.M), ps


def test_killed_worker_restarts_while_the_other_shard_keeps_working(victim: Broker) -> None:
    topic0 = unique("shard0")
    sub0 = Client(victim.port, id_on_shard(0, "sub"))
    sub0.connect()
    sub0.subscribe(topic0, 1)
    pub0 = Client(victim.port, id_on_shard(0, "pub"))
    pub0.connect()
    id1 = id_on_shard(1, "victim")
    on1 = Client(victim.port, id1)
    on1.connect()
    roundtrip(sub0, pub0, topic0, b"before")

    # shard 0 traffic keeps flowing while worker 1 dies and comes back
    stop = threading.Event()
    sent: list[int] = []

    def publish_steadily() -> None:
        i = 0
        while not stop.is_set():
            pub0.publish(topic0, str(i).encode(), 1)
            sent.append(i)
            i += 1
            time.sleep(0.02)

    publisher = threading.Thread(target=publish_steadily)
    publisher.start()
    try:
        old = victim.kill("worker", 1)
        new = victim.wait_restarted("worker", 1, old)
        assert new != old
        assert on1.disconnected.wait(20)  # its session was lost with the worker
        time.sleep(0.3)
    finally:
        stop.set()
        publisher.join()
    # QoS 1: a publish that was waiting for its routing confirmation when
    # worker 1 came back is routed again (the acceptor cannot tell which shards
    # it went to), so a copy may arrive twice; none may be lost or reordered.
    got = [int(m.payload) for m in sub0.expect(len(sent), timeout=20)]
    while set(got) != set(sent):
        got.append(int(sub0.expect(1, timeout=20)[0].payload))
    assert list(dict.fromkeys(got)) == sent
    assert sub0.disconnected.is_set() is False and pub0.disconnected.is_set() is False

    log = victim.log()
    assert re.search(rf"worker 1 \(pid {old}\) killed by SIGKILL .*restarting", log), log

    # the killed shard's clients can come back and work again
    on1.drop()
    back = connect_retrying(victim.port, id1)
    topic1 = unique("shard1")
    back.subscribe(topic1, 1)
    roundtrip(back, pub0, topic1, b"after")
    for c in (sub0, pub0, back):
        c.disconnect()


def test_killed_router_restarts_and_subscriptions_are_resent(victim: Broker) -> None:
    topic = unique("rtr")
    subs = [Client(victim.port, id_on_shard(s, "rsub")) for s in (0, 1)]
    for s in subs:
        s.connect()
        s.subscribe(topic, 1)
    pub = Client(victim.port)
    pub.connect()
    pub.publish(topic, b"before", 1)
    for s in subs:
        assert s.expect(1)[0].payload == b"before"

    old = victim.kill("router", 0)
    victim.wait_restarted("router", 0, old)
    # Until the workers have re-sent the subscriptions a publish may find
    # nobody: publish until the first copy arrives, then exactly once more.
    got: list[bytes] = []
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        pub.publish(topic, b"probe", 1)
        with contextlib.suppress(queue.Empty):
            got = [bytes(m.payload) for m in subs[0].expect(1, timeout=0.5)]
    assert got == [b"probe"]
    # from here on, exactly one copy each (drain the probes first)
    pub.publish(topic, b"marker", 1)
    for s in subs:
        while (payload := s.expect(1)[0].payload) == b"probe":
            pass
        assert payload == b"marker"
    # and new subscriptions work too
    fresh = Client(victim.port)
    fresh.connect()
    fresh.subscribe(topic, 1)
    pub.publish(topic, b"new", 1)
    assert fresh.expect(1)[0].payload == b"new"
    for s in subs:
        assert s.expect(1)[0].payload == b"new"
    for c in (*subs, pub, fresh):
        assert not c.disconnected.is_set()
        c.disconnect()


def test_retained_messages_survive_a_router_restart(victim: Broker) -> None:
    topic = unique("keep")
    pub = Client(victim.port)
    pub.connect()
    pub.publish(topic, b"kept", 1, retain=True)
    old = victim.kill("router", 0)
    victim.wait_restarted("router", 0, old)
    sub = connect_retrying(victim.port, unique("late"))
    sub.subscribe(topic, 1)
    try:
        assert sub.expect(1, timeout=5)[0].payload == b"kept"
    finally:
        pub.publish(topic, b"", 1, retain=True)
        sub.disconnect()
        pub.disconnect()


def test_counters_that_did_not_move_are_in_sys_again_after_a_router_restart(
    victim: Broker,
) -> None:
    """Processes send their counters only when they change and the router
    keeps none across a restart: each process sends all of them again when
    the new router speaks to it. A worker's takeover count, set before the
    kill and not moved since, is retained in $SYS again."""
    topic = "$SYS/broker/worker/0/takeovers"
    watcher = Client(victim.port)
    watcher.connect()
    watcher.subscribe(topic, 0)
    client_id = id_on_shard(0, "taken")
    first = Client(victim.port, client_id)
    first.connect()
    second = Client(victim.port, client_id)
    second.connect()  # takes the session over: worker 0 counts it
    assert first.disconnected.wait(WAIT)
    # what the subscription brought as retained may be an older value: the
    # worker's publish of the change comes live (RETAIN 0 [MQTT-3.3.1-9])
    deadline = time.monotonic() + WAIT
    while (msg := watcher.expect(1, timeout=deadline - time.monotonic())[0]).retain:
        pass
    before = bytes(msg.payload)
    assert int(before) >= 1
    watcher.disconnect()

    old = victim.kill("router", 0)
    victim.wait_restarted("router", 0, old)
    after = connect_retrying(victim.port, unique("sysw"))
    after.subscribe(topic, 0)
    # retained if the worker's resend came first, live if it comes after
    assert bytes(after.expect(1, timeout=WAIT)[0].payload) == before
    for c in (after, second):
        c.disconnect()


def acceptor_of_client(broker: Broker, client: Client) -> int:
    sock = client.tcp_socket()
    assert sock is not None
    local_port = sock.getsockname()[1]
    for index in (0, 1):
        proc = psutil.Process(broker.pid_of("acceptor", index))
        for conn in proc.net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == local_port and conn.laddr.port == broker.port:
                return index
    raise LookupError("no acceptor holds this client's connection")


def test_killed_acceptor_restarts_and_its_clients_can_reconnect(victim: Broker) -> None:
    clients = []
    for _ in range(8):  # enough that both acceptors hold some (the kernel spreads them)
        c = Client(victim.port)
        c.connect()
        clients.append(c)
    by_acceptor = {c.client_id: acceptor_of_client(victim, c) for c in clients}
    if 0 not in by_acceptor.values():
        pytest.skip("the kernel put every connection on acceptor 1")
    old = victim.kill("acceptor", 0)
    for c in clients:
        if by_acceptor[c.client_id] == 0:
            assert c.disconnected.wait(10), c.client_id
    victim.wait_restarted("acceptor", 0, old)
    survivors = [c for c in clients if by_acceptor[c.client_id] == 1]
    for c in survivors:
        assert not c.disconnected.is_set()
    topic = unique("acc")
    again = {cid: connect_retrying(victim.port, cid) for cid, a in by_acceptor.items() if a == 0}
    for c in again.values():
        c.subscribe(topic, 1)
    for c in survivors:
        c.subscribe(topic, 1)
    pub = Client(victim.port)
    pub.connect()
    pub.publish(topic, b"all", 1)
    for c in [*again.values(), *survivors]:
        assert c.expect(1)[0].payload == b"all"
    for c in [*again.values(), *survivors, pub]:
        c.disconnect()
    for c in clients:
        if by_acceptor[c.client_id] == 0:
            c.drop()


def test_sigterm_stops_everything_cleanly(make_broker: MakeBroker) -> None:
    b = make_broker()
    children = b.children()
    assert len(children) == len(ROLES)
    runtime_dir = b.runtime_dir()
    assert runtime_dir.name.startswith("flockmq-") and runtime_dir.is_dir()
    sockets = list(runtime_dir.glob("*.sock"))
    assert sockets  # the ipc endpoints live there
    client = Client(b.port)
    client.connect()
    assert b.proc is not None
    started = time.monotonic()
    b.proc.send_signal(signal.SIGTERM)
    code = b.proc.wait(10)
    assert code == 0
    assert time.monotonic() - started < 8
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    assert not runtime_dir.exists()
    assert client.disconnected.wait(5)
    assert "stopped" in b.log()
    client.drop()


def test_json_logs_name_every_process(make_broker: MakeBroker) -> None:
    b = make_broker("--log-format", "json", acceptors=1, workers=1)
    client = Client(b.port)
    client.connect()
    client.disconnect()
    assert b.proc is not None
    b.proc.send_signal(signal.SIGTERM)
    assert b.proc.wait(10) == 0
    entries = [json.loads(line) for line in b.log().splitlines() if line.strip()]
    assert {e["process"] for e in entries} >= {"supervisor", "router-0", "worker-0", "acceptor-0"}
    assert all(e["level"] in ("debug", "info", "warning", "error") for e in entries)
    assert any("stopped" in e["message"] for e in entries)


def test_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [FLOCKMQ, "serve", "--port", str(port), "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "already in use" in result.stderr
    assert not list(Path(tmp_path).glob("flockmq-*"))


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("bogus_key = 1\n", "bogus_key"),
        ('workers = "two"\n', "workers"),
        ("max_packet_size = 0\n", "max_packet_size"),
        ('log_level = "loud"\n', "log_level"),
    ],
)
def test_invalid_config_is_refused_naming_the_key(tmp_path: Path, toml: str, key: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    result = subprocess.run(
        [FLOCKMQ, "serve", "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert key in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# --- kill -9 of the supervisor; one broker per data dir ------------------------------------
COUNT = 300  # QoS 1 messages
RATE = 200.0  # per second: 1.5 s of load


@pytest.fixture
def strays() -> Iterator[list[psutil.Process]]:
    """Processes a test must not leave running, even when it fails."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


@pytest.mark.parametrize("subscriber", ["offline", "online"])
def test_children_stop_when_the_supervisor_is_killed_and_nothing_acknowledged_is_lost(
    make_broker: MakeBroker, strays: list[psutil.Process], subscriber: str
) -> None:
    """kill -9 of `flockmq serve` under QoS 1 load into a persistent session:
    every child stops (none is left serving with nobody to restart it, holding
    the port and the data dir), `flockmq serve` starts again on the same data
    dir and port, and every message the publisher saw acknowledged reaches the
    subscriber (QoS 1: maybe twice, never not at all)."""
    broker = make_broker()
    port = broker.port
    topic = unique("orphans")
    sub = Subscriber(port, unique("sub"))  # clean session 0
    sub.start()
    sub.subscribe(topic, 1)
    if subscriber == "offline":
        sub.stop()  # DISCONNECT: the session queues meanwhile
    pub = Publisher(port, unique("pub"), topic, 1, COUNT, RATE)
    pub.start()
    pub.begin()
    wait_for(lambda: len(pub.acked()) >= COUNT // 3, WAIT, "a third of the load acknowledged")

    runtime_dir = broker.runtime_dir()
    children = broker.kill_supervisor()
    strays.extend(children)
    assert len(children) == len(ROLES)
    _gone, alive = psutil.wait_procs(children, timeout=20)
    assert alive == [], f"children left running after the supervisor was killed: {alive}"
    assert not runtime_dir.exists(), "the stopping children left the ipc sockets behind"
    assert "stopped: the supervisor (pid" in broker.log()
    pub.mark_in_flight()  # what was unacknowledged may come again, after newer ones

    again = Broker(broker.data_dir, port=port, extra_args=list(broker.extra_args))
    again.start()
    try:
        # The publisher reconnects by itself and retransmits what was not
        # acknowledged; the online subscriber reconnects by itself too.
        wait_for(pub.all_acked, WAIT, "every publish acknowledged")
        if subscriber == "offline":
            sub.start()
        # A barrier: the session delivers in order, so everything before it
        # was delivered when it arrives.
        pub.paho.publish(topic, b"marker", 1).wait_for_publish(WAIT)
        wait_for(lambda: b"marker" in sub.distinct(), WAIT, "the marker")
        assert all(sub.session_present[1:]), sub.session_present
        check_delivery(sub, [pub], 1)  # none acknowledged is missing (all are, by now)
        pub.stop()
        sub.stop()
    finally:
        again.stop()


def test_a_second_broker_on_the_same_data_dir_is_refused_naming_the_first(
    make_broker: MakeBroker,
) -> None:
    first = make_broker()
    children = {c.pid for c in first.children()}
    second = subprocess.Popen(
        [FLOCKMQ, "serve", "--port", str(free_port()), "--data-dir", str(first.data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _out, err = second.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        second.terminate()  # SIGTERM: it stops its children
        second.communicate(timeout=30)
        pytest.fail("a second broker is serving on the same data dir")
    assert second.returncode != 0
    assert f"pid {first.pid}" in err, err
    assert str(first.data_dir) in err and "in use" in err
    assert "Traceback" not in err
    # The first one was not disturbed: the same processes, still serving.
    assert first.proc is not None and first.proc.poll() is None
    assert {c.pid for c in first.children()} == children
    topic = unique("first")
    sub = Client(first.port)
    sub.connect()
    sub.subscribe(topic, 1)
    pub = Client(first.port)
    pub.connect()
    roundtrip(sub, pub, topic, b"still serving")
    sub.disconnect()
    pub.disconnect()
