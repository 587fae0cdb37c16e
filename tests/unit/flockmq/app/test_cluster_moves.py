"""flockmq/app/cluster_moves.py: three nodes' heartbeats over real sockets
on 127.0.0.1-3 with a fake clock, and an eviction that records its calls
(store/shard_evict.py has its own tests against PostgreSQL). At start each
node starts its static shards; when one dies the survivors start its
shards between them and each evicts it (address, broker); a survivor left
alone (no quorum) takes no shards and evicts nobody."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from flockmq.app.cluster_moves import ClusterMoves
from flockmq.cluster import Cluster
from flockmq.shard_manager import WorkerActions
from flockmq.shard_plan import assign_shards
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
    for name in NAMES:
        made.append(
            ClusterMoves(cluster, name, 7, f"broker-{name}", clock, evictions.for_node(name))
        )
    a, b, c = made
    static = assign_shards(NAMES, SHARDS)
    first = {m.membership.me: m.poll() for m in made}
    assert first == {n: WorkerActions(tuple(sorted(static[n])), ()) for n in NAMES}
    running = {name: set(static[name]) for name in NAMES}
    poll_until(
        made,
        clock,
        running,
        lambda _: all(
            m.membership.incarnation(o) == 7 for m in made for o in NAMES if o != m.membership.me
        ),
    )

    c.close()
    made.remove(c)
    got = poll_until([a, b], clock, running, lambda r: r["a"] | r["b"] == set(range(SHARDS)))
    assert not got["a"] & got["b"]
    deadline = time.monotonic() + WAIT
    while len(evictions.calls) < 2:
        assert time.monotonic() < deadline, evictions.calls
        time.sleep(0.01)
    assert sorted(me for me, _ in evictions.calls) == ["a", "b"]
    for _, kwargs in evictions.calls:
        assert kwargs["address"] == "127.0.0.3" and kwargs["broker"] == "broker-c"
        assert kwargs["dsn"] == cluster.postgres_dsn
        assert kwargs["silent_for"] == 0.0  # what it opened while silent goes too

    b.close()  # a is alone, 1 of 3: no quorum, so it takes nothing and evicts nobody
    made.remove(b)
    before = set(running["a"])
    poll_until([a], clock, running, lambda _: not a.membership.has_quorum())
    assert a.manager.without_quorum and running["a"] == before
    for _ in range(30):  # 3 s of polls: still nothing
        clock.now += 0.1
        assert not a.poll()
    assert len(evictions.calls) == 2 and a.evictions == 1  # a's own eviction of c only
