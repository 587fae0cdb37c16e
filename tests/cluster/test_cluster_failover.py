"""A node of a cluster dies and its shards move (issue 14): three
`flockmq serve --cluster FILE --node NAME` in network namespaces
(tests/cluster/netns.py) on the tests' PostgreSQL, real paho clients.

Persistent sessions (MQTT 5, session expiry) subscribe at QoS 1: two of
them live on shards of node C (one connected through C, one through B),
one on a shard of A connected through C. A publisher on B publishes
sequence numbers at QoS 1 before, during and after every process of C is
killed (kill -9 of everything in its namespace). Then:

- C's shards are served again by the survivors (a CONNECT of a client of
  each of them is accepted through A): the time from the kill is printed,
  not asserted (two shared cores);
- the clients C held reconnect through a survivor and resume with session
  present;
- every message the publisher got a PUBACK for reaches every subscriber
  (at least once: QoS 1).
"""

from __future__ import annotations

import os
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from flockmq.shard_plan import assign_shards
from tests.e2e.clients import Client, unique, wait_for
from tests.postgres import PostgresServer

from .failover import (
    DELIVERY_WAIT,
    SETTINGS,
    SHARDS,
    TIMEOUT,
    WAIT,
    Publisher,
    check_acked_delivered,
    collect,
    holders,
    resume,
    served_through,
    subscriber,
    wait_shards_served,
)
from .netns import Host, Network
from .nodes import ClusterNode, client_on_shard, running_cluster, wait_serving

BEFORE, DURING, AFTER = 10, 20, 10  # messages published around the kill
PIPE_BYTES = 64 * 1024  # max_pipe_bytes of every node


@pytest.fixture
def cluster(
    netns_network: Network, netns_postgres: PostgresServer, tmp_path: Path
) -> Iterator[tuple[list[Host], list[ClusterNode], str]]:
    with running_cluster(
        netns_network,
        netns_postgres,
        tmp_path,
        {"fa": 1, "fb": 1, "fc": 1},
        shards=SHARDS,
        # small pipes: subscription churn towards a dead router would fill one
        base_config=f"allow_anonymous = true\nmax_pipe_bytes = {PIPE_BYTES}\n",
        settings=SETTINGS,
    ) as cluster:
        yield cluster


@pytest.mark.timeout(400)
def test_a_killed_nodes_shards_move_and_its_clients_resume_losing_nothing_acknowledged(
    cluster: tuple[list[Host], list[ClusterNode], str],
) -> None:
    hosts, (a, b, c), _ = cluster
    victim_shards = sorted(i for role, i in c.roles if role == "worker")
    a_shard = min(i for role, i in a.roles if role == "worker")
    b_shard = min(i for role, i in b.roles if role == "worker")
    topic = unique("failover")
    ids = {
        "c_on_c": client_on_shard("cc", victim_shards[0], SHARDS),
        "c_on_b": client_on_shard("cb", victim_shards[-1], SHARDS),
        "a_on_c": client_on_shard("ac", a_shard, SHARDS),
    }
    subs = {
        "c_on_c": subscriber(c, ids["c_on_c"], topic),
        "c_on_b": subscriber(b, ids["c_on_b"], topic),
        "a_on_c": subscriber(c, ids["a_on_c"], topic),
    }
    pub_client = Client(b.port, client_on_shard("pub", b_shard, SHARDS), host=b.host)
    pub_client.connect()
    publisher = Publisher(pub_client, topic, BEFORE + DURING + AFTER)
    publisher.start()
    wait_for(lambda: publisher.sent >= BEFORE, WAIT, "the first messages")

    for pid in hosts[2].pids():  # every process of node C, at once
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()

    served = wait_shards_served(a, victim_shards, killed)
    print(
        f"\nkill -9 of node {c.node}: its shards {victim_shards} served again after"
        f" {', '.join(f'{served[s]:.2f}' for s in victim_shards)} s"
        f" (heartbeat_timeout {TIMEOUT} s)"
    )

    # what the clients C held got before the kill counts too
    before = {name: subs[name] for name in ("c_on_c", "a_on_c")}
    for client in before.values():
        client.paho.loop_stop()
    subs["c_on_c"], at = resume(a, ids["c_on_c"])
    subs["a_on_c"], at2 = resume(b, ids["a_on_c"])
    print(
        f"clients of {c.node} resumed with session present after"
        f" {at - killed:.2f} s (through {a.node}) and {at2 - killed:.2f} s (through {b.node})"
    )

    check_acked_delivered(publisher, subs, before)


@pytest.mark.timeout(400)
def test_a_cut_off_node_is_evicted_its_shards_move_and_it_rejoins_when_its_link_is_back(
    cluster: tuple[list[Host], list[ClusterNode], str],
) -> None:
    """C's link goes down: its processes live on, cut off from the others
    and from PostgreSQL, which sees nothing (no FIN); the survivors declare
    it dead, end its PostgreSQL sessions and serve its shards. When the link
    is back, C rejoins (nothing restarted but what lost its lock) and every
    shard is served through every node again, and C's router holds what the
    shards hold: an UNSUBSCRIBE it missed while cut off is not matched on C
    (the resync is authoritative: router/resync.py)."""
    hosts, (a, b, c), dsn = cluster
    victim_shards = sorted(i for role, i in c.roles if role == "worker")
    b_shard = min(i for role, i in b.roles if role == "worker")
    topic = unique("cut")
    client_id = client_on_shard("cut", victim_shards[0], SHARDS)
    sub = subscriber(a, client_id, topic)
    pub = Client(b.port, client_on_shard("pub", b_shard, SHARDS), host=b.host)
    pub.connect()
    # A clean session on a shard A serves before and after C's death,
    # subscribed (QoS 0: C's router sends such copies straight to A's
    # acceptor, no worker between) to a topic it drops while C is cut off.
    a_shards = {i for role, i in a.roles if role == "worker"}
    every = (a.node, b.node, c.node)
    stays = min(a_shards & assign_shards((a.node, b.node), SHARDS, every)[a.node])
    dropping = Client(a.port, client_on_shard("drop", stays, SHARDS), host=a.host)
    dropping.connect()
    gone, kept = unique("gone"), unique("kept")
    dropping.subscribe(gone, 0)
    dropping.subscribe(kept, 0)

    hosts[2].link_down()
    cut = time.monotonic()
    wait_for(lambda: served_through(a, victim_shards), WAIT, "C's shards served through A")
    took = time.monotonic() - cut
    print(f"\nlink of node {c.node} down: its shards served again after {took:.2f} s")
    unsubacks: queue.Queue[int] = queue.Queue()
    dropping.paho.on_unsubscribe = lambda _c, _u, mid, _rcs, _props: unsubacks.put(mid)
    dropping.paho.unsubscribe(gone)
    unsubacks.get(timeout=DELIVERY_WAIT)  # A's and B's routers have it; C's missed it
    for seq in range(10):
        pub.publish(topic, str(seq).encode(), 1)  # each acknowledged (PUBACK) or the test fails
    # at least once: a publish retried on a shard that moved may come twice
    assert collect(sub, set(range(10)), set()) >= set(range(10))

    hosts[2].link_up()
    up = time.monotonic()
    wait_for(
        lambda: all(served_through(n, list(range(SHARDS))) for n in (a, b, c)),
        WAIT,
        "every shard served through every node",
    )
    print(f"link up: every shard served through every node after {time.monotonic() - up:.2f} s")
    wait_for(
        lambda: all(holders(dsn).get(s) == hosts[2].address for s in victim_shards),
        WAIT,
        f"C's shards locked from C again: {holders(dsn)}",
    )
    print(f"link up: C holds its shards again after {time.monotonic() - up:.2f} s")
    pub.publish(topic, b"after", 1)  # to the session, back on C (connected through A)
    assert sub.expect(1, timeout=DELIVERY_WAIT)[0].payload == b"after"
    # Matched by C's router, resynced when A and B saw C live again (ROUTERS_LIVE),
    # which was heartbeat_timeout at least before C got its shards back.
    on_c = Client(c.port, unique("pubc"), host=c.host)
    on_c.connect()
    on_c.publish(gone, b"stale", 0)
    on_c.publish(kept, b"kept", 0)  # after it, on the same path: the barrier
    first = dropping.expect(1, timeout=DELIVERY_WAIT)[0]
    assert (first.topic, first.payload) == (kept, b"kept"), "C's router matched a dropped filter"
    for client in (sub, pub, dropping, on_c):
        client.disconnect()


def churn(client: Client, rounds: int, filters: int, length: int) -> int:
    """SUBSCRIBE then UNSUBSCRIBE `filters` filters of `length` bytes,
    `rounds` times, each answered (SUBACK, UNSUBACK) or the test fails; the
    bytes of filters sent (each one twice: to subscribe, to unsubscribe)."""
    unsubacks: queue.Queue[int] = queue.Queue()
    client.paho.on_unsubscribe = lambda c, u, mid, rcs, props: unsubacks.put(mid)
    sent = 0
    for r in range(rounds):
        names = [f"churn/{r}/{i}/".ljust(length, "x") for i in range(filters)]
        result, _ = client.paho.subscribe([(name, 0) for name in names])
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert len(client.subacks.get(timeout=DELIVERY_WAIT)) == filters, f"SUBACK {r}"
        result, _ = client.paho.unsubscribe(names)
        assert result == mqtt.MQTT_ERR_SUCCESS
        unsubacks.get(timeout=DELIVERY_WAIT)  # queue.Empty: no UNSUBACK
        sent += 2 * filters * length
    return sent


@pytest.mark.timeout(400)
def test_after_a_kill_new_subscriptions_are_answered_churn_does_not_stall_and_the_node_resyncs(
    cluster: tuple[list[Host], list[ClusterNode], str],
) -> None:
    """C is killed (-9): its router is gone. On the survivors a new
    SUBSCRIBE gets its SUBACK (not waiting for C's router) and receives
    what another survivor publishes; subscription churn well past
    max_pipe_bytes does not stall them (nothing queues towards C); a QoS 1
    round trip still completes. C comes back: its router holds the
    subscriptions made while it was dead (a publish through C reaches
    them) and the retained message set meanwhile (a subscriber through C
    gets it)."""
    hosts, (a, b, c), _ = cluster
    victim_shards = sorted(i for role, i in c.roles if role == "worker")
    a_shard = min(i for role, i in a.roles if role == "worker")
    b_shard = min(i for role, i in b.roles if role == "worker")
    topic, retained = unique("dead"), unique("kept")
    for pid in hosts[2].pids():
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: served_through(a, victim_shards), WAIT, "C's shards served through A")
    print(
        f"\nkill -9 of node {c.node}: its shards served again after"
        f" {time.monotonic() - killed:.2f} s"
    )

    sub = Client(a.port, client_on_shard("late", a_shard, SHARDS), host=a.host)
    sub.connect()
    assert sub.subscribe(topic, 1)[0] == 1  # the SUBACK, without C's router
    pub = Client(b.port, client_on_shard("pub", b_shard, SHARDS), host=b.host)
    pub.connect()
    pub.publish(topic, b"while dead", 1)
    assert sub.expect(1, timeout=DELIVERY_WAIT)[0].payload == b"while dead"
    pub.publish(retained, b"set while dead", 1, retain=True)

    churner = Client(a.port, client_on_shard("churn", a_shard, SHARDS), host=a.host)
    churner.connect()
    started = time.monotonic()
    sent = churn(churner, rounds=8, filters=40, length=256)
    assert sent > 2 * PIPE_BYTES
    print(f"churn: {sent} bytes of filters in {time.monotonic() - started:.2f} s")
    churner.subscribe(topic + "/rt", 1)  # a QoS 1 round trip on the churned shard
    churner.publish(topic + "/rt", b"round trip", 1)
    assert churner.expect(1, timeout=DELIVERY_WAIT)[0].payload == b"round trip"

    c.launch()
    back = time.monotonic()
    wait_serving([a, b, c], SHARDS, timeout=WAIT)
    print(
        f"node {c.node} back: every shard served through every node after"
        f" {time.monotonic() - back:.2f} s"
    )
    through_c = Client(c.port, client_on_shard("pubc", b_shard, SHARDS), host=c.host)
    through_c.connect()
    through_c.publish(topic, b"through the returned node", 1)
    assert sub.expect(1, timeout=DELIVERY_WAIT)[0].payload == b"through the returned node"
    late = Client(c.port, client_on_shard("retc", a_shard, SHARDS), host=c.host)
    late.connect()
    late.subscribe(retained, 1)
    assert late.expect(1, timeout=DELIVERY_WAIT)[0].payload == b"set while dead"
    for client in (sub, pub, churner, through_c, late):
        client.disconnect()
