"""A cluster of 2 nodes fails over like one of 3 (issue 14): the survivor
has no quorum, so it evicts the dead node's PostgreSQL sessions because
the dead node's liveness lease expired by the server's clock while its own
was renewed (flockmq/dead_nodes.py, store/node_leases.py), not after the
server's keepalives. Two `flockmq serve --cluster FILE --node NAME` in
network namespaces (tests/cluster/netns.py), one cluster for the module,
made whole again before each test (failover.py `Cluster.healthy`; the
kill comes last, so that in file order nothing has to be started again).

- B's link cut: B's shards are served through A and locked from A's
  address (the time from the cut is printed, not asserted: two shared
  cores); messages acknowledged before the cut into an offline session of
  B's shard are delivered after it moved, and those after; with the link
  back, B rejoins and holds its shards again.
- kill -9 of every process of node B, under QoS 1 into persistent
  sessions: the same, B's client resumes through A with session present,
  and every acknowledged message reaches every subscriber.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.e2e.clients import Client, unique, wait_for
from tests.postgres import PostgresServer

from .failover import (
    SHARDS,
    TIMEOUT,
    WAIT,
    Cluster,
    Publisher,
    check_acked_delivered,
    collect,
    failover_cluster,
    holders,
    resume,
    served_through,
    subscriber,
    wait_shards_served,
)
from .netns import Network
from .nodes import client_on_shard

BEFORE, DURING, AFTER = 5, 10, 5  # QoS 1 messages published around the kill


@pytest.fixture(scope="module")
def pair(
    netns_network: Network, netns_postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    hosts = {"pa": 1, "pb": 1}
    with failover_cluster(
        netns_network, netns_postgres, tmp_path_factory.mktemp("pair"), hosts
    ) as c:
        yield c


@pytest.fixture
def cluster(pair: Cluster) -> Cluster:
    pair.healthy()
    return pair


def locked_from(cluster: Cluster, shards: list[int], address: str) -> bool:
    held = holders(cluster.dsn)
    return all(held.get(s) == address for s in shards)


@pytest.mark.timeout(300)
def test_a_cut_off_node_is_evicted_by_the_other_and_rejoins_when_its_link_is_back(
    cluster: Cluster,
) -> None:
    """B's link goes down: its processes live on, cut off from A and from
    PostgreSQL (which sees no FIN), so B's lease is not renewed and A, which
    renews its own, evicts B and serves its shards. Messages acknowledged
    before the cut into an offline session of B's shard are delivered when
    it resumes through A. With the link back B rejoins: every shard served
    through both nodes, B's locked from B again."""
    (pa, pb), (a, b) = cluster.hosts, cluster.nodes
    victim = cluster.shards_of(b)
    topic = unique("paircut")
    live = subscriber(a, client_on_shard("live", victim[0], SHARDS), topic)
    offline_id = client_on_shard("off", victim[-1], SHARDS)
    subscriber(a, offline_id, topic).disconnect()  # its session, left offline
    pub = Client(a.port, client_on_shard("pub", cluster.shards_of(a)[0], SHARDS), host=a.host)
    pub.connect()
    for seq in range(3):
        pub.publish(topic, str(seq).encode(), 1)  # each acknowledged (PUBACK) or the test fails
    assert collect(live, {0, 1, 2}, set()) >= {0, 1, 2}  # B's shard had them

    pb.link_down()
    cut = time.monotonic()
    served = wait_shards_served(a, victim, cut)
    wait_for(lambda: locked_from(cluster, victim, pa.address), WAIT, "B's shards locked from A")
    print(
        f"\n2 nodes, link of node {b.node} down: its shards {victim} served through {a.node}"
        f" after {', '.join(f'{served[s]:.2f}' for s in victim)} s, all locked from"
        f" {a.node} after {time.monotonic() - cut:.2f} s (heartbeat_timeout {TIMEOUT} s)"
    )
    for seq in range(3, 6):
        pub.publish(topic, str(seq).encode(), 1)
    assert collect(live, set(range(6)), set()) >= set(range(3, 6))
    resumed, _ = resume(a, offline_id)  # its session, queued on B, now on A
    assert collect(resumed, set(range(6)), set()) >= set(range(6))

    pb.link_up()
    up = time.monotonic()
    wait_for(
        lambda: all(served_through(n, list(range(SHARDS))) for n in (a, b)),
        WAIT,
        "every shard served through every node",
    )
    wait_for(lambda: locked_from(cluster, victim, pb.address), WAIT, "B's shards locked from B")
    print(f"link up: {b.node} holds its shards again after {time.monotonic() - up:.2f} s")
    pub.publish(topic, b"6", 1)  # to the sessions, back on B
    assert 6 in collect(live, {6}, set())
    for client in (live, resumed, pub):
        client.disconnect()


@pytest.mark.timeout(300)
def test_a_killed_nodes_shards_move_to_the_other_node_losing_nothing_acknowledged(
    cluster: Cluster,
) -> None:
    (pa, pb), (a, b) = cluster.hosts, cluster.nodes
    victim = cluster.shards_of(b)
    topic = unique("pair")
    ids = {
        "b_on_b": client_on_shard("bb", victim[0], SHARDS),  # its connection dies too
        "b_on_a": client_on_shard("ba", victim[-1], SHARDS),
        "a_on_b": client_on_shard("ab", cluster.shards_of(a)[0], SHARDS),
    }
    subs = {
        "b_on_b": subscriber(b, ids["b_on_b"], topic),
        "b_on_a": subscriber(a, ids["b_on_a"], topic),
        "a_on_b": subscriber(b, ids["a_on_b"], topic),
    }
    pub_client = Client(
        a.port, client_on_shard("pub", cluster.shards_of(a)[-1], SHARDS), host=a.host
    )
    pub_client.connect()
    publisher = Publisher(pub_client, topic, BEFORE + DURING + AFTER)
    publisher.start()
    wait_for(lambda: publisher.sent >= BEFORE, WAIT, "the first messages")

    for pid in pb.pids():  # every process of node B, at once
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    served = wait_shards_served(a, victim, killed)
    wait_for(lambda: locked_from(cluster, victim, pa.address), WAIT, "B's shards locked from A")
    locked = time.monotonic() - killed
    print(
        f"\n2 nodes, kill -9 of node {b.node}: its shards {victim} served through {a.node}"
        f" after {', '.join(f'{served[s]:.2f}' for s in victim)} s, all locked from"
        f" {a.node} after {locked:.2f} s (heartbeat_timeout {TIMEOUT} s)"
    )

    before = {name: subs[name] for name in ("b_on_b", "a_on_b")}  # connected through B
    for client in before.values():
        client.paho.loop_stop()
    subs["b_on_b"], at = resume(a, ids["b_on_b"])
    subs["a_on_b"], _ = resume(a, ids["a_on_b"])
    print(
        f"{b.node}'s client resumed through {a.node} with session present after {at - killed:.2f} s"
    )

    check_acked_delivered(publisher, subs, before)
