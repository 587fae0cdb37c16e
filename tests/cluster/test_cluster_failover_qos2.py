"""Issue 14's failure proof at QoS 2, exactly once: a node of a 3-node
cluster (network namespace hosts, the tests' PostgreSQL, real paho
clients) loses every process (kill -9) or its link (then gets it back),
under QoS 2 load into persistent MQTT 5 sessions.

Subscribers at QoS 2: two sessions on the victim C's shards (one connected
through C, one through B), one on A's shard connected through C.
Publishers at QoS 2, persistent too: one whose session is on B, connected
through B; one whose session is on C, connected through C, which reconnects
through A and resends what it had in flight (PUBLISH with DUP, or PUBREL),
as paho does for a session with clean start 0. Each publishes a sequence,
one message at a time, before, during and after the failure.

Every client keeps its one paho object across its reconnections (so paho's
own QoS 2 state, in both directions, lives on as a real client's would), and
every delivery to the application is counted per payload. Asserted: every
message whose PUBCOMP the publisher got reaches every subscriber, none
twice, and each publisher's messages first arrive in the order published.
The time from the kill or the cut until C's shards are served again is
printed, not asserted (two shared cores).
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.clients import Client, unique, wait_for
from tests.postgres import PostgresServer

from .failover import (
    SHARDS,
    TIMEOUT,
    Cluster,
    failover_cluster,
    holders,
    persistent,
    served_through,
    wait_shards_served,
)
from .netns import Network
from .nodes import ClusterNode, client_on_shard

BEFORE, AFTER = 5, 5  # messages of each publisher before the failure, after the recovery
WAIT = 60.0


@pytest.fixture(scope="module")
def qos2_cluster(
    netns_network: Network, netns_postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    hosts = {"qa": 1, "qb": 1, "qc": 1}
    with failover_cluster(
        netns_network, netns_postgres, tmp_path_factory.mktemp("qos2"), hosts
    ) as c:
        yield c


@pytest.fixture
def cluster(qos2_cluster: Cluster) -> Cluster:
    qos2_cluster.healthy()
    return qos2_cluster


def move(client: Client, node: ClusterNode) -> float:
    """Connect the same paho client (its QoS 2 state kept) through `node`
    until the session's owner accepts it with session present (a shard not
    served yet answers Server unavailable); when it was accepted."""
    deadline = time.monotonic() + WAIT
    client.paho.loop_stop()
    client.host = node.host
    while True:
        while not client.connack.empty():  # a late answer to an earlier try
            client.connack.get_nowait()
        try:
            flags = client.connect()
        except (AssertionError, OSError, queue.Empty):
            client.paho.loop_stop()
            assert time.monotonic() < deadline, f"{client.client_id} never accepted by {node.node}"
            time.sleep(0.2)
            continue
        assert flags.session_present, f"{client.client_id}: no session present on {node.node}"
        return time.monotonic()


class Publisher(threading.Thread):
    """Publishes `name:0`, `name:1`, ... at QoS 2, each once and waited for
    (PUBCOMP, or a PUBREC refusing it) before the next, until `stop` is set;
    `acked`: those completed with a PUBCOMP."""

    def __init__(self, client: Client, topic: str, name: str) -> None:
        super().__init__(daemon=True)
        self.client, self.topic, self.name = client, topic, name
        self.sent = 0
        self.acked: list[int] = []
        self.refused: list[int] = []
        self.stop = threading.Event()
        self._done: dict[int, bool] = {}
        self._cond = threading.Condition()
        client.paho.on_publish = self._on_publish

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._cond:
            self._done[mid] = not rc.is_failure
            self._cond.notify_all()

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            info = self.client.paho.publish(self.topic, f"{self.name}:{seq}".encode(), 2)
            self.sent = seq + 1
            mid = info.mid
            with self._cond:
                if not self._cond.wait_for(lambda: mid in self._done, WAIT):  # noqa: B023
                    return  # never completed: the test sees `sent` ahead of `acked`
                (self.acked if self._done.pop(mid) else self.refused).append(seq)
            seq += 1
            time.sleep(0.02)


def deliveries(sub: Client) -> list[str]:
    out = []
    while not sub.messages.empty():
        out.append(sub.messages.get_nowait().payload.decode())
    return out


def check_exactly_once(subs: dict[str, Client], pubs: list[Publisher]) -> None:
    """Every acknowledged message at every subscriber exactly once, and
    each publisher's messages first delivered in the order published."""
    expected = {f"{p.name}:{seq}" for p in pubs for seq in p.acked}
    got: dict[str, list[str]] = {name: [] for name in subs}
    deadline = time.monotonic() + WAIT
    for name, sub in subs.items():
        while not expected <= set(got[name]) and time.monotonic() < deadline:
            got[name] += deliveries(sub)
            time.sleep(0.05)
        got[name] += deliveries(sub)
    lost = {n: sorted(expected - set(g)) for n, g in got.items() if not expected <= set(g)}
    twice = {
        n: sorted(p for p, k in Counter(g).items() if k > 1)
        for n, g in got.items()
        if len(set(g)) < len(g)
    }
    assert not lost, f"acknowledged (PUBCOMP), never delivered: {lost}"
    assert not twice, f"QoS 2 messages delivered more than once: {twice}"
    for name, g in got.items():
        for pub in pubs:
            seqs = [int(x.split(":")[1]) for x in g if x.split(":")[0] == pub.name]
            assert seqs == sorted(seqs), f"{name}: {pub.name}'s messages out of order: {seqs}"


def run_failover(
    cluster: Cluster, fail: Callable[[list[Client]], float], what: str
) -> tuple[dict[str, Client], list[Publisher]]:
    """The clients, the load, the failure (`fail`, given the clients
    connected through C), C's shards served again (timed), C's clients moved
    to survivors, AFTER more messages each; the subscribers and publishers."""
    a, b, c = cluster.nodes
    victim = cluster.shards_of(c)
    a_shard, b_shard = cluster.shards_of(a)[0], cluster.shards_of(b)[0]
    topic = unique("qos2")
    subs = {
        "c_on_c": persistent(c, client_on_shard("cc", victim[0], SHARDS)),
        "c_on_b": persistent(b, client_on_shard("cb", victim[-1], SHARDS)),
        "a_on_c": persistent(c, client_on_shard("ac", a_shard, SHARDS)),
    }
    for sub in subs.values():
        sub.subscribe(topic, 2)
    pub_b = persistent(b, client_on_shard("pb", b_shard, SHARDS))
    pub_c = persistent(c, client_on_shard("pc", victim[0], SHARDS))
    pubs = [Publisher(pub_b, topic, "pb"), Publisher(pub_c, topic, "pc")]
    for pub in pubs:
        pub.start()
    wait_for(lambda: all(len(p.acked) >= BEFORE for p in pubs), WAIT, "the first messages")

    moved = {"c_on_c": a, "a_on_c": b, "pc": a}
    clients = {**subs, "pc": pub_c}
    since = fail([clients[name] for name in moved])
    served = wait_shards_served(a, victim, since)
    print(
        f"\n{what} of node {c.node}: its shards {victim} served again after"
        f" {', '.join(f'{served[s]:.2f}' for s in victim)} s (heartbeat_timeout {TIMEOUT} s)"
    )
    at = {name: move(clients[name], node) - since for name, node in moved.items()}
    print(
        f"{what}: C's clients resumed with session present after "
        + ", ".join(f"{n} {t:.2f} s (through {moved[n].node})" for n, t in at.items())
    )
    wait_more(pubs, subs, cluster.nodes)
    return subs, pubs


def wait_more(pubs: list[Publisher], subs: dict[str, Client], nodes: list[ClusterNode]) -> None:
    """Until each publisher has AFTER more messages acknowledged; a client
    the broker disconnected meanwhile (its session moved back: DISCONNECT
    0x9C Use another server) connects again through the same node."""
    marks = [len(p.acked) for p in pubs]
    clients = [*subs.values(), *(p.client for p in pubs)]
    deadline = time.monotonic() + WAIT
    while not all(len(p.acked) >= m + AFTER for p, m in zip(pubs, marks, strict=True)):
        assert time.monotonic() < deadline, "more messages: " + ", ".join(
            f"{p.name} sent {p.sent}, acked {len(p.acked)}" for p in pubs
        )
        for client in clients:
            if not client.paho.is_connected():
                print(f"{client.client_id} disconnected ({client.disconnect_reason}): again")
                move(client, next(n for n in nodes if n.host == client.host))
        time.sleep(0.05)


def stop(pubs: list[Publisher]) -> None:
    for pub in pubs:
        pub.stop.set()
    for pub in pubs:
        pub.join(WAIT)
        assert not pub.is_alive()
        assert pub.sent == len(pub.acked), f"{pub.name}: never completed {pub.sent - 1}"
        print(f"{pub.name}: {len(pub.acked)} acknowledged (refused: {pub.refused})")


def disconnect(subs: dict[str, Client], pubs: list[Publisher]) -> None:
    for client in [*subs.values(), *(p.client for p in pubs)]:
        client.disconnect()


@pytest.mark.timeout(300)
def test_qos2_exactly_once_when_a_nodes_link_is_cut_and_back(cluster: Cluster) -> None:
    """C's link goes down (its processes live on, cut off): its shards
    move; C's clients drop their dead connections (as their keepalive
    would) and resume through survivors; the link comes back, C holds its
    shards again, and the load goes on."""
    hosts, (a, b, c) = cluster.hosts, cluster.nodes
    victim = cluster.shards_of(c)

    def cut(clients_of_c: list[Client]) -> float:
        hosts[2].link_down()
        at = time.monotonic()
        for client in clients_of_c:  # the client gives up on it, as its keepalive would
            client.tcp_socket().shutdown(socket.SHUT_RDWR)
        return at

    subs, pubs = run_failover(cluster, cut, "link down")
    hosts[2].link_up()
    up = time.monotonic()
    wait_for(
        lambda: all(holders(cluster.dsn).get(s) == hosts[2].address for s in victim),
        WAIT,
        "C's shards locked from C again",
    )
    wait_for(
        lambda: all(served_through(n, list(range(SHARDS))) for n in (a, b, c)),
        WAIT,
        "every shard served through every node",
    )
    print(f"link up: C holds its shards again after {time.monotonic() - up:.2f} s")
    wait_more(pubs, subs, cluster.nodes)
    stop(pubs)
    check_exactly_once(subs, pubs)
    disconnect(subs, pubs)


@pytest.mark.timeout(300)
def test_qos2_exactly_once_when_every_process_of_a_node_is_killed(cluster: Cluster) -> None:
    """kill -9 of every process of C: the connections through it close, and
    its clients resume through survivors."""
    hosts = cluster.hosts

    def kill(_clients_of_c: list[Client]) -> float:
        for pid in hosts[2].pids():  # every process of node C, at once
            os.kill(pid, signal.SIGKILL)
        return time.monotonic()

    subs, pubs = run_failover(cluster, kill, "kill -9")
    stop(pubs)
    check_exactly_once(subs, pubs)
    disconnect(subs, pubs)
