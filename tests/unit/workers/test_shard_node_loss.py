"""A cluster's node declared dead (ROUTERS_LIVE; workers/connections.py
`follow_nodes`): the sessions of this shard attached through that node's
acceptors are detached at once (wills published through this node's router,
messages queued offline), their takeovers abandoned or completed, and the
connections are closed if the node comes back with its acceptors still up
(a healed link)."""

from __future__ import annotations

import pytest

from flockmq import envelopes as env
from flockmq.envelopes import Kind, make_conn_id
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.workers import shard_state
from tests.unit.wire import kind_of

from .test_shard import NEVER, Harness, connack_conn, publishes, session_present

# Two nodes: acceptors 0 and 1 on node 0 (this worker's), 2 and 3 on node 1.
TABLE = (0, 0, 1, 1)
HERE = make_conn_id(0, 1, 1)  # through node 0
THERE = make_conn_id(2, 1, 5)  # through node 1
ELSEWHERE = make_conn_id(1, 1, 7)  # node 0 again: the client back
WILL = env.Will("client/status", b"offline", 1, True, None, 0)


def cluster() -> Harness:
    """`d` (persistent, with a will) through node 1, `c` through node 0."""
    h = Harness(routers=2, acceptor_routers=TABLE, home_router=0)
    h.connect(HERE, "c", clean=True)
    h.connect(THERE, "d", clean=False, will=WILL)
    h.subscribe(THERE, "d", "t", 1)
    for router in (0, 1):
        h.shard.handle([Kind.SUBSCRIBED, "d", THERE, 1, [1], router], h.now)
    h.take()
    return h


def node_1_dies(h: Harness) -> list[list[env.Envelope]]:
    h.shard.handle([Kind.ROUTERS_LIVE, [0]], h.now)
    return h.shard.out.split_to_router()


def closes(acceptors: list[env.Wire]) -> list[tuple[int, int]]:
    return [(e[1], e[2]) for e in acceptors if kind_of(e) == Kind.CLOSE]


def test_a_dead_nodes_connections_are_detached_and_their_wills_published_here() -> None:
    h = cluster()
    per = node_1_dies(h)
    routes = [env.Route._make(e) for e in per[0] if kind_of(e) == Kind.ROUTE]
    assert [(r.topic, r.payload, r.qos, r.retain) for r in routes] == [
        ("client/status", b"offline", 1, True)
    ]
    assert not [e for e in per[1] if kind_of(e) == Kind.ROUTE]  # not via the dead router
    state = h.shard.state
    assert state.sessions["d"].conn is None and "d" in state.offline
    assert state.sessions["c"].conn == HERE  # its node is live
    assert h.shard.counters["connections_lost_with_node"] == 1
    assert h.take()[1] == []  # nothing to a dead acceptor
    h.deliver("d", b"m", 1)  # queued offline, not sent to the dead connection
    assert h.take()[1] == [] and len(state.sessions["d"].queue) == 1
    connack = h.connect(ELSEWHERE, "d", clean=False)  # no takeover wait
    assert session_present(connack)
    acceptors = h.take()[1]
    assert closes(acceptors) == []
    assert [p for _, p, _, _ in publishes(acceptors)] == [b"m"]


def test_a_takeover_waiting_for_a_dead_nodes_connection_completes_at_once() -> None:
    h = cluster()
    h.shard.handle(
        env.Connect(Kind.CONNECT, ELSEWHERE, "d", False, NEVER, 4, 60, None, None, 0, False),
        h.now,
    )
    assert [connack_conn(e) for e in h.take()[1]] == [None]  # the CLOSE to THERE only
    node_1_dies(h)
    acceptors = h.take()[1]
    assert [connack_conn(e) for e in acceptors] == [ELSEWHERE]
    assert h.shard.sessions["d"].conn == ELSEWHERE
    assert h.shard.state.takeovers.pending == {}


def test_a_takeover_from_a_dead_nodes_connection_is_abandoned() -> None:
    h = cluster()
    late = make_conn_id(3, 1, 9)  # through node 1, for `c`
    h.shard.handle(
        env.Connect(Kind.CONNECT, late, "c", True, 0, 4, 60, None, None, 0, False), h.now
    )
    assert closes(h.take()[1]) == [(HERE, ReasonCode.SESSION_TAKEN_OVER)]
    node_1_dies(h)
    assert h.shard.state.takeovers.pending == {}
    h.close(HERE, "c")  # the old one's CLOSED: nothing waits to be attached
    assert "c" not in h.shard.sessions
    assert [connack_conn(e) for e in h.take()[1]] == []


def test_a_node_back_without_a_restart_gets_its_detached_connections_closed() -> None:
    """A healed link: the node's acceptor still holds `d`'s connection,
    which the session no longer knows; it is closed, once."""
    h = cluster()
    node_1_dies(h)
    h.connect(ELSEWHERE, "d", clean=False)
    h.take()
    h.shard.handle([Kind.ROUTERS_LIVE, [0, 1]], h.now)
    assert closes(h.take()[1]) == [(THERE, ReasonCode.SESSION_TAKEN_OVER)]
    assert h.shard.counters["connections_closed_after_node_back"] == 1
    h.close(THERE, "d")  # its acceptor's CLOSED: the session stays attached
    assert h.shard.sessions["d"].conn == ELSEWHERE
    h.shard.handle([Kind.ROUTERS_LIVE, [0, 1]], h.now)
    h.shard.handle([Kind.ROUTERS_LIVE, [0]], h.now)
    h.shard.handle([Kind.ROUTERS_LIVE, [0, 1]], h.now)
    assert closes(h.take()[1]) == []  # closed once; nothing new was detached


def test_a_node_back_by_its_routers_restart_closes_them_too() -> None:
    """ROUTER_UP of the dead node's router (before this node's supervisor
    hears it) is the node back as well."""
    h = cluster()
    node_1_dies(h)
    h.shard.handle([Kind.ROUTER_UP, 2, 1], h.now)
    assert closes(h.take()[1]) == [(THERE, ReasonCode.SESSION_TAKEN_OVER)]


def test_a_restarted_acceptor_of_the_node_holds_none_of_them() -> None:
    h = cluster()
    node_1_dies(h)
    h.shard.handle(env.AcceptorUp(Kind.ACCEPTOR_UP, 2, 2), h.now)
    h.shard.handle([Kind.ROUTERS_LIVE, [0, 1]], h.now)
    assert closes(h.take()[1]) == []
    assert h.shard.state.lost_with_node == {}


def test_the_connections_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shard_state, "LOST_WITH_NODE_KEPT", 2)
    h = Harness(routers=2, acceptor_routers=TABLE, home_router=0)
    conns = [make_conn_id(2, 1, n) for n in range(3)]
    for n, conn in enumerate(conns):
        h.connect(conn, f"d{n}", clean=True)
    node_1_dies(h)
    assert list(h.shard.state.lost_with_node) == conns[1:]
    assert h.shard.counters["lost_connections_forgotten"] == 1


def test_one_host_routers_declared_down_take_no_connection() -> None:
    """Without a cluster's placement a router's death is not its acceptors'."""
    h = Harness(routers=2)
    h.connect(make_conn_id(1, 1, 1), "d", clean=False, will=WILL)
    h.take()
    h.shard.handle([Kind.ROUTERS_LIVE, [0]], h.now)
    assert h.shard.sessions["d"].conn is not None
    assert h.shard.counters["connections_lost_with_node"] == 0
