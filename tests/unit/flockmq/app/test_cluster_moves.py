"""flockmq/app/cluster_moves.py: nodes' heartbeats over real sockets on
127.0.0.1-3 with a fake clock, an eviction that records its calls
(store/shard_evict.py has its own tests against PostgreSQL) and leases in
a table of the test's own, aged by the same fake clock
(store/node_leases.py has its tests against PostgreSQL). At start each
node starts its static shards; when one dies the survivors start its
shards between them and each evicts it (address, broker: a quorum); a
survivor left alone (no quorum) that renews its lease takes every shard
and evicts the dead node once its lease expired (flockmq/dead_nodes.py),
one that cannot renew takes nothing; with 2 nodes the survivor
takes every shard, and never evicts while the other's lease is renewed
(it reaches PostgreSQL: a partition of two nodes) nor while its own
renewal fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from flockmq.app.cluster_moves import ClusterMoves
from flockmq.cluster import Cluster
from flockmq.dead_nodes import Lease
from flockmq.shard_manager import WorkerActions
from flockmq.shard_plan import assign_shards
from flockmq.store import StoreError
from flockmq.store.shard_evict import Eviction
from tests.unit.flockmq.app.test_heartbeats import node_with_free_heartbeat_port

NAMES = ("a", "b", "c")
SHARDS = 12
WAIT = 20.0


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class Evictions:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []  # node, arguments (dsn too)
        self.lock = threading.Lock()

    def for_node(self, me: str) -> Any:
        def evict(dsn: str, *, address: str, broker: str, silent_for: float) -> Eviction:
            kwargs = {"dsn": dsn, "address": address, "broker": broker, "silent_for": silent_for}
            with self.lock:
                self.calls.append((me, kwargs))
            return Eviction((1,), ())

        return evict


class LeaseTable:
    """flockmq.node_leases of the test: node -> (incarnation, broker,
    renewed_at), aged by `clock`; a node in `unreachable` cannot renew."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rows: dict[str, tuple[int, str, float]] = {}
        self.unreachable: set[str] = set()
        self.lock = threading.Lock()

    def renew(self, node: str, incarnation: int, broker: str) -> tuple[bool, dict[str, Lease]]:
        if node in self.unreachable:
            raise StoreError(f"{node}: no database")
        with self.lock:
            now = self.clock.now
            self.rows[node] = (incarnation, broker, now)
            return True, {n: Lease(i, b, now - at) for n, (i, b, at) in self.rows.items()}

    def for_node(self, node: str, incarnation: int, broker: str) -> Any:
        table = self

        class NodeLeases:
            def renew(self) -> tuple[bool, dict[str, Lease]]:
                return table.renew(node, incarnation, broker)

            def close(self) -> None:
                pass

        return NodeLeases()


def wait_calls(evictions: Evictions, n: int) -> None:
    deadline = time.monotonic() + WAIT
    while len(evictions.calls) < n:
        assert time.monotonic() < deadline, evictions.calls
        time.sleep(0.01)


@pytest.fixture
def cluster() -> Cluster:
    nodes = []
    for i, name in enumerate(NAMES):
        address = f"127.0.0.{i + 1}"
        nodes.append(node_with_free_heartbeat_port(name, address))
    return Cluster("test", tuple(nodes), SHARDS, "host=127.0.0.1 dbname=x", 1, 1.0, 5.0)


@pytest.fixture
def made() -> Iterator[list[ClusterMoves]]:
    moves: list[ClusterMoves] = []
    yield moves
    for m in moves:
        m.close()


def poll_until(
    moves: list[ClusterMoves], clock: Clock, running: dict[str, set[int]], done: Any
) -> dict[str, set[int]]:
    """Poll every node (the clock a tenth of an interval on each round) until
    `done(running)`; `running`, what each node runs, follows the actions
    each returned."""
    deadline = time.monotonic() + WAIT
    while True:
        clock.now += 0.1
        for m in moves:
            acts = m.poll()
            me = m.membership.me
            running[me] = (running[me] | set(acts.start)) - set(acts.stop)
        if done(running):
            return running
        assert time.monotonic() < deadline, f"timed out: {running}"
        moves[0].heartbeats.wait(0.01)


def test_a_dead_nodes_shards_move_to_the_survivors_which_evict_it(
    cluster: Cluster, made: list[ClusterMoves]
) -> None:
    clock, evictions = Clock(), Evictions()
    table, running, first = running_nodes(cluster, NAMES, made, clock, evictions)
    a, b, c = made
    static = assign_shards(NAMES, SHARDS)
    assert first == {n: WorkerActions(tuple(sorted(static[n])), ()) for n in NAMES}

    c.close()
    made.remove(c)
    got = poll_until([a, b], clock, running, lambda r: r["a"] | r["b"] == set(range(SHARDS)))
    assert not got["a"] & got["b"]
    wait_calls(evictions, 2)
    assert sorted(me for me, _ in evictions.calls) == ["a", "b"]
    for _, kwargs in evictions.calls:
        assert kwargs["address"] == "127.0.0.3" and kwargs["broker"] == "broker-c"
        assert kwargs["dsn"] == cluster.postgres_dsn
        assert kwargs["silent_for"] == 0.0  # what it opened while silent goes too

    # a is alone, 1 of 3: no quorum, but it renews its lease (it reaches
    # PostgreSQL): it takes b's shards too, and evicts b by its lease
    b.close()
    made.remove(b)
    poll_until(
        [a], clock, running, lambda r: len(evictions.calls) == 3 and r["a"] == set(range(SHARDS))
    )
    assert not a.manager.without_quorum and a.membership.live == {"a"}
    me, kwargs = evictions.calls[2]
    assert me == "a" and (kwargs["address"], kwargs["broker"]) == ("127.0.0.2", "broker-b")
    assert table.renew("x", 1, "")[1]["b"].age > cluster.heartbeat_timeout


def running_nodes(
    cluster: Cluster,
    names: tuple[str, ...],
    made: list[ClusterMoves],
    clock: Clock,
    evictions: Evictions,
) -> tuple[LeaseTable, dict[str, set[int]], dict[str, WorkerActions]]:
    """`names` of `cluster` running (their leases in one table), each heard
    by every other; the table, what each runs, and each one's first actions."""
    table = LeaseTable(clock)
    for name in names:
        leases = table.for_node(name, 7, f"broker-{name}")
        made.append(
            ClusterMoves(
                cluster, name, 7, f"broker-{name}", clock, evictions.for_node(name), leases=leases
            )
        )
    static = assign_shards(names, SHARDS)
    running = {name: set(static[name]) for name in names}
    first = {m.membership.me: m.poll() for m in made}
    poll_until(
        made,
        clock,
        running,
        lambda _: all(
            m.membership.incarnation(o) == 7 for m in made for o in names if o != m.membership.me
        ),
    )
    return table, running, first


def two_nodes(
    cluster: Cluster, made: list[ClusterMoves], clock: Clock, evictions: Evictions
) -> tuple[LeaseTable, dict[str, set[int]]]:
    """a and b of `cluster` running, each heard by the other."""
    table, running, _ = running_nodes(cluster, ("a", "b"), made, clock, evictions)
    return table, running


@pytest.fixture
def pair() -> Cluster:
    nodes = tuple(node_with_free_heartbeat_port(n, f"127.0.0.{i + 1}") for i, n in enumerate("ab"))
    return Cluster("test", nodes, SHARDS, "host=127.0.0.1 dbname=x", 1, 1.0, 5.0)


def test_two_nodes_that_lose_each_other_but_renew_their_leases_evict_nobody(
    pair: Cluster, made: list[ClusterMoves]
) -> None:
    """b's heartbeats stop, its lease goes on (a partition: both reach
    PostgreSQL): a takes b's shards (their locks decide) but evicts nobody;
    once b's lease is no longer renewed, a evicts it."""
    clock, evictions = Clock(), Evictions()
    table, running = two_nodes(pair, made, clock, evictions)
    a, b = made
    b.heartbeats.close()  # b falls silent on the bus, and renews by hand below
    made.remove(b)
    deadline = time.monotonic() + WAIT
    while a.lease_rounds < 15:  # 15 s of the fake clock at least: b dead after 5
        assert time.monotonic() < deadline, a.lease_rounds
        poll_until([a], clock, running, lambda _: True)
        table.renew("b", 7, "broker-b")  # b's lease stays fresh
    assert running["a"] == set(range(SHARDS)) and "b" not in a.membership.live
    assert evictions.calls == []
    poll_until([a], clock, running, lambda _: len(evictions.calls) == 1)  # b's lease expires
    assert clock.now - table.rows["b"][2] > pair.heartbeat_timeout
    assert evictions.calls[0][1]["address"] == "127.0.0.2"
    b.close()


def test_a_node_that_cannot_renew_its_own_lease_evicts_nobody(
    pair: Cluster, made: list[ClusterMoves]
) -> None:
    """a is cut off from PostgreSQL and from b: b's lease expires in the
    table, but a's renewals fail, so a evicts nobody (b evicts a instead:
    a's lease expired and b renews)."""
    clock, evictions = Clock(), Evictions()
    table, running = two_nodes(pair, made, clock, evictions)
    a = made[0]
    table.unreachable.add("a")
    for m in made:  # neither hears the other any more
        m.heartbeats.sub.setsockopt(zmq.UNSUBSCRIBE, b"")
    poll_until(made, clock, running, lambda _: len(evictions.calls) == 1)
    assert evictions.calls[0][0] == "b" and evictions.calls[0][1]["address"] == "127.0.0.1"
    errors = a.lease_errors
    poll_until(made, clock, running, lambda _: a.lease_errors >= errors + 10)
    assert len(evictions.calls) == 1  # a: 10 more rounds, all failed, no eviction


def test_a_node_alone_that_cannot_renew_its_lease_takes_no_shards(
    cluster: Cluster, made: list[ClusterMoves]
) -> None:
    """Cut off from the others and from PostgreSQL: no quorum, no lease
    renewed, so it starts no worker (they could not serve) and keeps the
    ones it runs; once it renews again it plans as usual."""
    clock, evictions = Clock(), Evictions()
    table, running, _ = running_nodes(cluster, NAMES, made, clock, evictions)
    a = made[0]
    static = assign_shards(NAMES, SHARDS)
    table.unreachable.add("a")
    a.heartbeats.sub.setsockopt(zmq.UNSUBSCRIBE, b"")  # a hears nobody any more
    errors = a.lease_errors
    poll_until(
        [a], clock, running, lambda _: a.membership.live == {"a"} and a.lease_errors >= errors + 5
    )
    assert a.manager.without_quorum and running["a"] == static["a"]
    assert evictions.calls == []
    table.unreachable.discard("a")  # PostgreSQL again (the others still silent)
    poll_until([a], clock, running, lambda r: r["a"] == set(range(SHARDS)))
    assert not a.manager.without_quorum
