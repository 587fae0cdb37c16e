"""A shard with several routers (Config.routers = 2): every subscription
change goes to every router, a publish to its publisher's router only; the
SUBACK/UNSUBACK waits for every router's answer, a restarted router's
ROUTER_UP counting as its answer; the retained messages one router sends
after its SUBSCRIBED wait behind the SUBACK."""

from __future__ import annotations

import pytest

from flockmq import envelopes as env
from flockmq.envelopes import Kind, make_conn_id
from flockmq.store import PutSubscription
from flockmq.workers.subscriptions import ROUTER_UP_GRACE
from tests.unit.wire import kind_of

from .test_shard import CONN_A, Harness
from .test_shard_ordering import subscribe

RETAINED = [Kind.DELIVER, "t", b"r", 0, True, None, [["c", 0, True, [], "t"]], None]


def connected() -> Harness:
    h = Harness(routers=2)
    h.connect(CONN_A, "c", clean=True)
    h.take()
    return h


def test_subscription_changes_go_to_every_router_and_publishes_to_the_publishers() -> None:
    h = connected()
    subscribe(h, 1, "t")
    per = h.shard.out.split_to_router()
    assert [[kind_of(e) for e in out] for out in per] == [[Kind.ONLINE, Kind.SUB]] * 2
    assert h.shard.to_router == []
    h.publish_in(CONN_A, "c", 1, 2, b"q2")  # QoS 2: the worker routes it, once stored
    _ops, later = h.shard.take_durable()
    assert [(dest, kind_of(e)) for dest, e in later] == [(("router", 0), Kind.ROUTE)]
    on_acceptor_1 = make_conn_id(1, 1, 9)
    h.connect(on_acceptor_1, "d", clean=True)
    h.publish_in(on_acceptor_1, "d", 1, 2, b"q2")
    _ops, later = h.shard.take_durable()
    assert [(dest, kind_of(e)) for dest, e in later] == [(("router", 1), Kind.ROUTE)]
    assert env.Route._make(later[0][1]).origin == "d"


def test_suback_waits_for_both_routers_and_retained_copies_wait_behind_it() -> None:
    h = connected()
    subscribe(h, 1, "t")
    h.take()
    h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 1, [0], 0], h.now)
    h.shard.handle(RETAINED, h.now)  # router 0 (the subscriber's) sends the retained one
    assert h.take() == ([], [])
    h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 1, [0], 1], h.now)
    _, acceptors = h.take()
    assert [kind_of(e) for e in acceptors] == [Kind.SEND_SUBACK, Kind.SEND_PUBLISH]
    assert h.shard.out.behind_answers == {}
    h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 1, [0], 1], h.now)  # again: ignored
    assert h.take() == ([], []) and h.shard.counters["late_router_answers"] == 1


def test_two_subscribes_answered_out_of_order_keep_their_order() -> None:
    h = connected()
    subscribe(h, 1, "t")
    subscribe(h, 2, "u")
    h.take()
    for router in (0, 1):
        h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 2, [0], router], h.now)
    h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 1, [0], 1], h.now)
    assert h.take() == ([], [])
    h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 1, [0], 0], h.now)
    _, acceptors = h.take()
    assert [(kind_of(e), e[2]) for e in acceptors] == [
        (Kind.SEND_SUBACK, 1),
        (Kind.SEND_SUBACK, 2),
    ]


def test_unsuback_waits_for_both_routers() -> None:
    h = connected()
    subscribe(h, 1, "t")
    for router in (0, 1):
        h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 1, [0], router], h.now)
    h.take()
    h.shard.handle([Kind.UNSUBSCRIBE, CONN_A, "c", 2, ["t"]], h.now)
    h.shard.handle([Kind.UNSUBSCRIBED, "c", CONN_A, 2, [0], 1], h.now)
    assert h.take()[1] == []
    h.shard.handle([Kind.UNSUBSCRIBED, "c", CONN_A, 2, [0], 0], h.now)
    assert [kind_of(e) for e in h.take()[1]] == [Kind.SEND_UNSUBACK]


def test_a_restarted_routers_resync_counts_as_its_answer() -> None:
    h = connected()
    subscribe(h, 1, "t")
    h.take()
    h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 1, [0], 0], h.now)
    h.shard.handle([Kind.ROUTER_UP, 3, 1], h.now)  # router 1 restarted: it never answers
    router, acceptors = h.take()
    assert [kind_of(e) for e in router] == [
        Kind.RESYNC,
        Kind.ONLINE,
        Kind.SUB,
        Kind.RESYNC,
        Kind.SYNCED,
    ]
    assert [kind_of(e) for e in acceptors] == [Kind.SEND_SUBACK]
    assert h.shard.state.awaiting_router == {}
    # the resync goes to both routers (router 0 re-takes what it holds)
    h.shard.handle([Kind.ROUTER_UP, 3, 1], h.now)
    per = h.shard.out.split_to_router()
    assert [kind_of(e) for e in per[0]] == [kind_of(e) for e in per[1]]


def test_a_will_goes_through_its_connections_router() -> None:
    """What the connection published went through its acceptor's router;
    its will goes there too, so it comes after them at every subscriber."""
    h = Harness(routers=2)
    on_acceptor_1 = make_conn_id(1, 1, 9)  # shard 0 would pick router 0
    will = env.Will("w/t", b"bye", 0, False, None, 0)
    h.connect(on_acceptor_1, "d", clean=True, will=will)
    h.take()
    h.close(on_acceptor_1, "d", will=True)
    per = h.shard.out.split_to_router()
    assert [kind_of(e) for e in per[1]] == [Kind.ROUTE]
    assert per[0] == [] and h.shard.out.pinned == {}


def test_a_router_declared_down_is_not_waited_for_and_resynced_when_live_again() -> None:
    """A cluster's router on a dead node (ROUTERS_LIVE from the supervisor):
    a SUBACK already waiting for it goes on the live router's answer, a new
    one waits for the live router only; the bus is told (Bus.peer_down);
    declared live again, it re-takes every subscription."""
    h = connected()
    told: list[tuple[frozenset[int], frozenset[int]]] = []
    h.shard.subscriptions.on_down = lambda down, up: told.append((down, up))
    subscribe(h, 1, "t")
    h.take()
    h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 1, [0], 0], h.now)
    assert h.take() == ([], [])  # router 1 has not answered
    h.shard.handle([Kind.ROUTERS_LIVE, [0]], h.now)
    assert [kind_of(e) for e in h.take()[1]] == [Kind.SEND_SUBACK]
    assert told == [(frozenset({1}), frozenset())]
    subscribe(h, 2, "u")  # after the death: router 0's answer is enough
    h.take()
    h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 2, [0], 0], h.now)
    assert [(kind_of(e), e[2]) for e in h.take()[1]] == [(Kind.SEND_SUBACK, 2)]
    assert h.shard.state.awaiting_router == {} and h.shard.out.behind_answers == {}
    h.shard.handle([Kind.ROUTERS_LIVE, [0]], h.now)  # the periodic repeat: nothing new
    assert h.take() == ([], []) and len(told) == 1
    h.shard.handle([Kind.ROUTERS_LIVE, [0, 1]], h.now)
    assert told[-1] == (frozenset(), frozenset({1}))
    per = h.shard.out.split_to_router()
    subs = [e for e in per[1] if kind_of(e) == Kind.SUB]
    assert [sorted(entry[0] for entry in env.Sub._make(e).entries) for e in subs] == [["t", "u"]]
    assert kind_of(per[1][-1]) == Kind.SYNCED
    subscribe(h, 3, "v")  # both routers live again: both answers awaited
    h.take()
    h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 3, [0], 0], h.now)
    assert h.take() == ([], [])


def test_a_malformed_routers_live_is_refused_and_changes_nothing() -> None:
    """It raises (the runtime isolates and counts it: flockmq/isolation.py)."""
    h = connected()
    for bad in ([0, 7], [-1], "01", [0, 1, 1]):
        with pytest.raises((ValueError, TypeError)):
            h.shard.handle([Kind.ROUTERS_LIVE, bad], h.now)
    assert h.shard.state.routers_down == frozenset()


@pytest.mark.parametrize("released_by", ["declared down", "restarted"])
def test_a_persistent_sessions_suback_a_router_releases_still_waits_for_its_commit(
    released_by: str,
) -> None:
    """The SUBACK promises the subscription is kept [MQTT-3.9.3]: one whose
    last awaited router was declared down (ROUTERS_LIVE) or restarted
    (ROUTER_UP) goes after the commit, as one every router answered does."""
    h = Harness(routers=2)
    h.connect(CONN_A, "p", clean=False)
    h.take()
    subscribe(h, 1, "t", client_id="p")
    h.shard.handle([Kind.SUBSCRIBED, "p", CONN_A, 1, [0], 0], h.now)
    assert h.peek_acceptors() == []
    if released_by == "declared down":
        h.shard.handle([Kind.ROUTERS_LIVE, [0]], h.now)
    else:
        h.shard.handle([Kind.ROUTER_UP, 3, 1], h.now)
    assert h.peek_acceptors() == []  # not before the commit
    ops, later = h.shard.take_durable()
    assert any(isinstance(op, PutSubscription) for op in ops)
    assert [kind_of(e) for _dest, e in later if kind_of(e) == Kind.SEND_SUBACK] == [
        Kind.SEND_SUBACK
    ]


def test_a_router_back_before_its_nodes_heartbeat_is_not_declared_down_again() -> None:
    """Its node restarted: its ROUTER_UP comes before this node's supervisor
    hears the node, whose ROUTERS_LIVE (repeated every second) still says
    it is down. It is believed live for ROUTER_UP_GRACE: no second
    declaration (which would drop the resync at the bus), its answers
    waited for; a ROUTERS_LIVE that caught up asks for no second resync;
    one past the grace declares it down."""
    h = connected()
    told: list[tuple[frozenset[int], frozenset[int]]] = []
    h.shard.subscriptions.on_down = lambda down, up: told.append((down, up))
    h.shard.handle([Kind.ROUTERS_LIVE, [0]], h.now)
    h.shard.handle([Kind.ROUTER_UP, 1, 1], h.now + 10)
    assert told == [(frozenset({1}), frozenset()), (frozenset(), frozenset({1}))]
    h.take()
    h.shard.handle([Kind.ROUTERS_LIVE, [0]], h.now + 11)  # not caught up yet
    assert h.shard.state.routers_down == frozenset() and len(told) == 2
    subscribe(h, 1, "t")
    h.take()
    h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 1, [0], 0], h.now + 11)
    assert h.take() == ([], [])  # router 1's answer is awaited
    h.shard.handle([Kind.ROUTERS_LIVE, [0, 1]], h.now + 12)  # caught up
    assert h.take() == ([], []) and h.shard.state.routers_up_at == {}
    h.shard.handle([Kind.SUBSCRIBED, "c", CONN_A, 1, [0], 1], h.now + 12)
    assert [kind_of(e) for e in h.take()[1]] == [Kind.SEND_SUBACK]
    # died again before its node was heard: declared down once the grace is over
    h.shard.handle([Kind.ROUTERS_LIVE, [0]], h.now + 20)
    h.shard.handle([Kind.ROUTER_UP, 2, 1], h.now + 30)
    h.shard.handle([Kind.ROUTERS_LIVE, [0]], h.now + 30 + ROUTER_UP_GRACE)
    assert h.shard.state.routers_down == frozenset({1})
