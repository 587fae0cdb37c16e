"""One broker over three hosts (issue 14, phase 1): `flockmq serve --cluster
FILE --node NAME` in three network namespaces (tests/cluster/netns.py) on the
tests' PostgreSQL, real paho clients (and a raw one where the test must not
acknowledge) connecting to the hosts' addresses.

One cluster per module (3 nodes, 6 shards, 2 acceptors on A and 1 on the
others: light on two cores); each test uses topics and client ids of its own. Shard placement is
static (assign_shards over the three nodes), so every node serves two
shards and most sessions live on another host than their connection.

- QoS 0, 1 and 2 published on B reach subscribers on A and C, each message
  once, in order per topic.
- A retained message published on B is sent to new subscribers on C and A.
- A will of a client of A that dies without DISCONNECT reaches C.
- Takeover: a persistent session (of a shard on B) connected on A (with a message it has not
  acknowledged, and one queued while it was offline) is taken by the same
  client id on C: A's connection gets DISCONNECT 0x8E, C's CONNACK says
  session present, and both messages come again on C.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from flockmq.frontend.codec import (
    Connack,
    Connect,
    Disconnect,
    Publish,
    Suback,
    Subscribe,
    Subscription,
)
from tests.e2e.clients import Client, RawClient, connected, unique
from tests.postgres import PostgresServer

from .netns import Network
from .nodes import ClusterNode, client_on_shard, running_cluster

SHARDS = 6
# A has two: the acceptors' global numbers (A's 0 and 1, B's 2, C's 3) are
# not acceptor % routers, so each publishes through its own node's router
# only if the placement says so
ACCEPTORS = {"ra": 2, "rb": 1, "rc": 1}  # each host's acceptors
COUNT = 20  # messages per QoS
SESSION_EXPIRY = 300
SESSION_TAKEN_OVER = 0x8E


@dataclass
class Nodes:
    a: ClusterNode
    b: ClusterNode
    c: ClusterNode


@pytest.fixture(scope="module")
def nodes(
    netns_network: Network, netns_postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nodes]:
    with running_cluster(
        netns_network,
        netns_postgres,
        tmp_path_factory.mktemp("cluster"),
        ACCEPTORS,
        shards=SHARDS,
        # not loopback: anonymous clients allowed on purpose
        base_config="allow_anonymous = true\n",
    ) as (_hosts, started, _dsn):
        yield Nodes(*started)


def test_qos_0_1_2_published_on_b_reach_a_and_c_once_and_in_order(nodes: Nodes) -> None:
    base = unique("routing")
    subscribers = [connected(n, host=n.host) for n in (nodes.a, nodes.c)]
    for sub in subscribers:
        sub.subscribe(f"{base}/#", 2)  # SUBACK: every router holds the subscription
    publisher = connected(nodes.b, host=nodes.b.host)
    for qos in (0, 1, 2):
        for seq in range(COUNT):
            publisher.publish(f"{base}/{qos}", f"{qos}:{seq}".encode(), qos)
    publisher.publish(f"{base}/end", b"end", 1)  # after everything above, on every path
    expected = {
        f"{base}/{qos}": [f"{qos}:{seq}".encode() for seq in range(COUNT)] for qos in (0, 1, 2)
    }
    for sub in subscribers:
        got: dict[str, list[bytes]] = {topic: [] for topic in expected}
        for message in sub.expect(3 * COUNT + 1, timeout=30):
            if message.topic != f"{base}/end":
                got[message.topic].append(bytes(message.payload))
        assert got == expected  # each once, in order per topic
        sub.disconnect()
    publisher.disconnect()


def test_a_retained_message_published_on_b_goes_to_new_subscribers_on_c_and_a(
    nodes: Nodes,
) -> None:
    topic = unique("retained")
    publisher = connected(nodes.b, host=nodes.b.host)
    publisher.publish(topic, b"kept", 1, retain=True)  # PUBACK: written and shared
    publisher.disconnect()
    for node in (nodes.c, nodes.a):
        late = connected(node, host=node.host)
        late.subscribe(topic, 1)
        (message,) = late.expect(1)
        assert (message.payload, message.retain) == (b"kept", True)
        late.disconnect()


def test_the_will_of_a_client_of_a_that_dies_reaches_c(nodes: Nodes) -> None:
    topic = unique("will")
    watcher = connected(nodes.c, host=nodes.c.host)
    watcher.subscribe(topic, 1)
    dying = connected(nodes.a, host=nodes.a.host, will=(topic, b"a is gone", 1, False))
    dying.drop()  # no DISCONNECT: the will is published
    (message,) = watcher.expect(1)
    assert message.payload == b"a is gone"
    watcher.disconnect()


def test_a_client_id_taken_over_on_c_closes_a_and_resumes_its_session(nodes: Nodes) -> None:
    # a session on a shard of B: neither A nor C holds it
    shard = min(i for role, i in nodes.b.roles if role == "worker")
    client_id = client_on_shard("mover", shard, SHARDS)
    topic = unique("takeover")
    persistent = {"session_expiry_interval": SESSION_EXPIRY}
    raw = raw_on(nodes.a, client_id, clean=True, properties=persistent)
    raw.send(Subscribe(1, (Subscription(topic, 1),)))
    assert raw.recv() == Suback(1, (1,))
    raw.send(Disconnect())  # the session stays (its expiry) ...
    with contextlib.suppress(TimeoutError):
        raw.expect_closed()
    raw.close()
    publisher = connected(nodes.b, host=nodes.b.host)
    publisher.publish(topic, b"queued", 1)  # ... and queues this while it is offline
    raw = raw_on(nodes.a, client_id, clean=False, properties=persistent, present=True)
    queued = raw.recv()
    assert isinstance(queued, Publish) and queued.payload == b"queued", queued
    publisher.publish(topic, b"unacknowledged", 1)  # on A: received, never acknowledged
    second = raw.recv()
    assert isinstance(second, Publish) and second.payload == b"unacknowledged", second

    mover = Client(
        nodes.c.port,
        client_id,
        host=nodes.c.host,
        protocol=5,
        clean=False,
        session_expiry=SESSION_EXPIRY,
    )
    assert mover.connect().session_present  # the session, from A's connection
    closing = raw.expect_closed()  # A's connection is closed ...
    assert Disconnect(SESSION_TAKEN_OVER) in closing, closing  # ... saying why (v5)
    raw.close()
    messages = mover.expect(2)
    assert [m.payload for m in messages] == [b"queued", b"unacknowledged"]
    assert all(m.dup for m in messages)  # sent before, on A
    publisher.publish(topic, b"after", 1)
    assert mover.expect(1)[0].payload == b"after"
    mover.disconnect()
    publisher.disconnect()


def raw_on(
    node: ClusterNode,
    client_id: str,
    *,
    clean: bool,
    properties: dict[str, int],
    present: bool = False,
) -> RawClient:
    """A raw MQTT 5 connection to `node`, after its CONNACK (accepted, with
    session present as `present` says)."""
    raw = RawClient(node.port, level=5, host=node.host)
    raw.send(Connect(client_id, 5, clean, 60, properties=properties))
    connack = raw.recv()
    assert isinstance(connack, Connack), connack
    assert (connack.reason_code, connack.session_present) == (0, present), connack
    return raw
