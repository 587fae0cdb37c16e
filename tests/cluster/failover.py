"""What the failover tests of a cluster (issue 14) share: its settings
(6 shards, heartbeats every 0.5 s, a node dead after 2 s of silence), a
`Cluster` that a module-scoped fixture keeps and each test makes whole
again (`healthy`), persistent QoS 1 subscribers and their resumption on
another node, a QoS 1 publisher thread, who holds each shard's lock, and
whether (and when) shards are served through a node. Used by
test_cluster_failover.py (3 nodes), test_cluster_failover_qos2.py and
test_two_nodes.py (2 nodes)."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg

from flockmq.app.probe import mqtt_ready
from tests.e2e.clients import Client, wait_for
from tests.postgres import PostgresServer

from .netns import Host, Network
from .nodes import ClusterNode, client_on_shard, running_cluster, wait_serving

SHARDS = 6
INTERVAL, TIMEOUT = 0.5, 2.0  # heartbeats: a dead node is declared so after 2 s
SESSION_EXPIRY = 300
WAIT = 120.0
DELIVERY_WAIT = 30.0  # for the last acknowledged message to arrive

# heartbeats: a dead node is declared so after TIMEOUT seconds
SETTINGS = (f"heartbeat_interval = {INTERVAL}", f"heartbeat_timeout = {TIMEOUT}")


@dataclass
class Cluster:
    hosts: list[Host]
    nodes: list[ClusterNode]
    dsn: str

    def shards_of(self, node: ClusterNode) -> list[int]:
        return sorted(i for role, i in node.roles if role == "worker")

    def healthy(self) -> None:
        """Every node runs, every link is up, every shard is held by its
        node and served through every node (a test may leave a node dead)."""
        for host in self.hosts:
            host.link_up()
        for node in self.nodes:
            assert node.proc is not None
            if node.proc.poll() is not None:
                node.launch()
        pairs = zip(self.hosts, self.nodes, strict=True)
        home = {s: h.address for h, n in pairs for s in self.shards_of(n)}
        wait_for(lambda: holders(self.dsn) == home, WAIT, "every shard held by its own node")
        wait_serving(self.nodes, SHARDS, WAIT)


@contextlib.contextmanager
def failover_cluster(
    network: Network, postgres: PostgresServer, tmp: Path, acceptors: dict[str, int]
) -> Iterator[Cluster]:
    """running_cluster (nodes.py) with these settings, as a `Cluster`."""
    with running_cluster(
        network,
        postgres,
        tmp,
        acceptors,
        shards=SHARDS,
        base_config="allow_anonymous = true\n",
        settings=SETTINGS,
        timeout=WAIT,
    ) as (hosts, nodes, dsn):
        yield Cluster(hosts, nodes, dsn)


def persistent(node: ClusterNode, client_id: str) -> Client:
    """A client of a persistent session (MQTT 5, session expiry) through
    `node`, connected."""
    client = persistent_client(node, client_id)
    client.connect()
    return client


def persistent_client(node: ClusterNode, client_id: str) -> Client:
    return Client(
        node.port,
        client_id,
        host=node.host,
        protocol=5,
        clean=False,
        session_expiry=SESSION_EXPIRY,
    )


def subscriber(node: ClusterNode, client_id: str, topic: str) -> Client:
    client = persistent(node, client_id)
    client.subscribe(topic, 1)
    return client


def resume(node: ClusterNode, client_id: str) -> tuple[Client, float]:
    """Connect again until the shard's new owner accepts (a standby answers
    Server unavailable); the client and when it was accepted."""
    deadline = time.monotonic() + WAIT
    while True:
        client = persistent_client(node, client_id)
        try:
            flags = client.connect()
        except (AssertionError, OSError, queue.Empty):  # refused, or no CONNACK yet
            client.paho.loop_stop()
            assert time.monotonic() < deadline, f"{client_id} never accepted by {node.node}"
            time.sleep(0.2)
            continue
        assert flags.session_present, f"{client_id}: no session present on {node.node}"
        return client, time.monotonic()


def drain(client: Client) -> list[mqtt.MQTTMessage]:
    """What `client` received and the test has not read yet."""
    found = []
    while True:
        try:
            found.append(client.messages.get_nowait())
        except queue.Empty:
            return found


class Publisher(threading.Thread):
    """Publishes 0..n-1 at QoS 1, one after the other, each waited for
    (WAIT at most); `acked`: those the broker acknowledged."""

    def __init__(self, client: Client, topic: str, n: int) -> None:
        super().__init__(daemon=True)
        self.client, self.topic, self.n = client, topic, n
        self.acked: list[int] = []
        self.sent = 0
        self.failed: list[int] = []

    def run(self) -> None:
        for seq in range(self.n):
            info = self.client.paho.publish(self.topic, str(seq).encode(), 1)
            info.wait_for_publish(WAIT)
            (self.acked if info.is_published() else self.failed).append(seq)
            self.sent = seq + 1
            time.sleep(0.05)


def holders(dsn: str) -> dict[int, str]:
    """The address of the session holding each shard's lock."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT l.objid::int, host(a.client_addr) FROM pg_locks AS l"
            " JOIN pg_stat_activity AS a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
    return {int(shard): str(address) for shard, address in rows}


def served_through(node: ClusterNode, shards: list[int]) -> bool:
    return all(
        mqtt_ready(node.host, node.port, client_id=client_on_shard("probe", s, SHARDS))
        for s in shards
    )


def wait_shards_served(via: ClusterNode, shards: list[int], since: float) -> dict[int, float]:
    """Seconds from `since` until each shard answered a CONNECT through `via`."""
    served: dict[int, float] = {}
    while len(served) < len(shards):
        assert time.monotonic() - since < WAIT, f"shards served again: {served}"
        for shard in shards:
            if shard not in served and mqtt_ready(
                via.host, via.port, client_id=client_on_shard("probe", shard, SHARDS)
            ):
                served[shard] = time.monotonic() - since
        time.sleep(0.05)
    return served


def collect(sub: Client, want: set[int], got: set[int]) -> set[int]:
    """Read `sub`'s messages (sequence numbers) into `got` until it holds
    `want` or DELIVERY_WAIT passed; `got`."""
    deadline = time.monotonic() + DELIVERY_WAIT
    while not want <= got and time.monotonic() < deadline:
        try:
            (message,) = sub.expect(1, timeout=1.0)
        except queue.Empty:  # keep waiting until the deadline
            continue
        got.add(int(message.payload))
    return got


def undelivered(
    subs: dict[str, Client], before: dict[str, Client], acked: set[int]
) -> dict[str, list[int]]:
    """The acknowledged messages each subscriber never got, counting what
    its client of `before` (stopped at the failure) got before it."""
    lost = {}
    for name, sub in subs.items():
        got = {int(m.payload) for m in drain(before[name])} if name in before else set()
        got = collect(sub, acked, got)
        if not acked <= got:
            lost[name] = sorted(acked - got)
    return lost


def check_acked_delivered(
    publisher: Publisher, subs: dict[str, Client], before: dict[str, Client]
) -> None:
    """Once `publisher` has sent all: every message it got a PUBACK for
    reached every subscriber (`undelivered`); then every client disconnects."""
    publisher.join(WAIT * 2)
    assert not publisher.is_alive() and publisher.sent == publisher.n
    acked = set(publisher.acked)
    print(f"acknowledged {len(acked)} of {publisher.sent} (not: {publisher.failed})")
    lost = undelivered(subs, before, acked)
    assert not lost, f"acknowledged, never delivered: {lost}"
    for sub in subs.values():
        sub.disconnect()
    publisher.client.disconnect()
