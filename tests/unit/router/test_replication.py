"""Several routers (sans-IO): retained updates shared between routers
(router/replication.py), last writer wins by (stamp, router) whatever order
the updates arrive in, the store ends with the winner whatever order the
routers' commits land in, deletes are not undone by an older put arriving
late, expiry is the same everywhere, a restarted router is sent the recent
updates, malformed RETAINED envelopes cost only themselves, and only the
subscriber's router sends the retained messages a SUBSCRIBE asks for."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from flockmq import envelopes as env
from flockmq.envelopes import Kind, make_conn_id
from flockmq.router.replication import NS, TOMBSTONE_SECONDS, Versions
from flockmq.router.router import Router
from flockmq.router.sys_topics import SysTopics
from flockmq.store import DeleteRetained, ExpireRetained, PutRetained, RetainedRecord
from tests.unit.wire import kind_of, wire

from .test_router import route, sub

T0 = 1_700_000_000.0


def pair() -> tuple[Router, Router]:
    return Router(index=0, routers=2), Router(index=1, routers=2)


def shared(router: Router) -> list[list[Any]]:
    """The RETAINED envelopes `router` made for the other router, as the
    other router gets them; forgets them (and its store ops)."""
    router.take_durable()
    out = [wire(e) for e in router.to_routers.get(1 - router.index, [])]
    router.to_routers.clear()
    return out


def retained(router: Router, topic: str) -> bytes | None:
    msg = router.retained.get(topic)
    return None if msg is None else msg.payload


def publish(router: Router, topic: str, payload: bytes, now: float) -> list[list[Any]]:
    router.now = now
    route(router, topic, payload, qos=0, retain=True)
    return shared(router)


# --- versions --------------------------------------------------------------------------------


def test_a_routers_own_update_wins_over_what_it_holds_even_with_its_clock_behind() -> None:
    versions = Versions(0, 2)
    assert versions.accept("t", int((T0 + 5) * NS), 1, False, T0) == 1
    stamp = versions.local("t", T0, deleted=False)  # its clock is 5 s behind
    assert stamp == int((T0 + 5) * NS) + 1
    assert versions.accept("t", int((T0 + 5) * NS), 1, False, T0) == 0  # the older one loses


def test_ties_of_stamps_are_broken_by_the_router_index() -> None:
    versions = Versions(2, 3)
    assert versions.accept("t", 100, 1, False, T0) == 1
    assert versions.accept("t", 100, 0, False, T0) == 0
    assert versions.accept("t", 100, 2, False, T0) == 2  # its own: written again


def test_tombstones_are_bounded_in_time() -> None:
    versions = Versions(0, 2)
    versions.local("gone", T0, deleted=True)
    assert "gone" in versions.deleted
    versions.local("later", T0 + TOMBSTONE_SECONDS + 1, deleted=True)
    assert "gone" not in versions.deleted and "later" in versions.deleted


# --- two routers -------------------------------------------------------------------------------


@pytest.mark.parametrize("a_first", [True, False])
def test_concurrent_updates_of_one_topic_end_the_same_on_both_routers(a_first: bool) -> None:
    """Router 0 takes "zero" at T0+1, router 1 takes "one" at T0+2; each gets
    the other's update after its own, in either order: both hold "one"."""
    r0, r1 = pair()
    from0 = publish(r0, "t", b"zero", T0 + 1)
    from1 = publish(r1, "t", b"one", T0 + 2)
    for e in from0 if a_first else from1:
        (r1 if a_first else r0).handle(e, T0 + 3)
    for e in from1 if a_first else from0:
        (r0 if a_first else r1).handle(e, T0 + 3)
    assert retained(r0, "t") == retained(r1, "t") == b"one"
    assert r0.counters["retained_updates_applied"] == 1
    assert r1.counters["retained_updates_superseded"] == 1


def test_the_store_ends_with_the_winner_whatever_order_the_commits_land_in() -> None:
    """Router 0 wrote "zero" (older); it applies router 1's "one" and,
    having written the topic, writes "one" too. Each router's writes land in
    its own order; interleaved in every way, the last write is "one"."""
    r0, r1 = pair()
    r0.now, r1.now = T0 + 1, T0 + 2
    route(r0, "t", b"zero", qos=0, retain=True)
    ops0, _ = r0.take_durable()
    route(r1, "t", b"one", qos=0, retain=True)
    ops1, _ = r1.take_durable()
    for e in r1.to_routers[0]:
        r0.handle(wire(e), T0 + 3)
    more0, _ = r0.take_durable()
    stream0 = [*ops0, *more0]
    stream1 = list(ops1)
    assert [type(op) for op in stream0] == [PutRetained, PutRetained]
    finals = set()
    for picks in set(itertools.permutations([0] * len(stream0) + [1] * len(stream1))):
        streams = [iter(stream0), iter(stream1)]
        last = [next(streams[p]) for p in picks][-1]
        assert isinstance(last, PutRetained)
        finals.add(last.payload)
    assert finals == {b"one"}


def test_a_router_that_never_wrote_a_topic_does_not_write_anothers_update() -> None:
    r0, r1 = pair()
    for e in publish(r0, "t", b"zero", T0):
        r1.handle(e, T0)
    ops, _ = r1.take_durable()
    assert ops == [] and retained(r1, "t") == b"zero"


def test_a_put_older_than_a_delete_does_not_bring_the_topic_back() -> None:
    r0, r1 = pair()
    old_put = publish(r0, "t", b"old", T0 + 1)
    delete = publish(r1, "t", b"", T0 + 2)
    for e in delete:
        r0.handle(e, T0 + 3)
    assert retained(r0, "t") is None
    for e in old_put:
        r1.handle(e, T0 + 3)  # late: the delete at router 1 is newer
    assert retained(r1, "t") is None
    assert r1.counters["retained_updates_superseded"] == 1


def test_the_update_reaches_the_other_router_in_the_pass_that_applied_it() -> None:
    """Shared at once, as it is delivered at once: not after its commit."""
    r0, _r1 = pair()
    r0.now = T0
    route(r0, "t", b"x", qos=1, retain=True, reply=(make_conn_id(0, 0, 1), 5, 0, 1, None))
    assert [kind_of(e) for e in r0.to_routers[1]] == [Kind.RETAINED]
    ops, later = r0.take_durable()
    assert [type(op) for op in ops] == [PutRetained]
    assert [kind_of(e) for _, e in later] == [Kind.ROUTED]  # the PUBACK waits for the commit


def test_sys_updates_are_shared_and_not_stored() -> None:
    r0, r1 = pair()
    r0.now = T0
    route(r0, "$SYS/broker/worker/0/sessions", b"3", qos=0, retain=True)
    ops, later = r0.take_durable()
    assert ops == [] and later == []
    (e,) = r0.to_routers[1]
    r1.handle(wire(e), T0)
    assert r1.mosquitto_sys.process_values[("worker", 0, "sessions")] == 3
    assert r1.take_durable()[0] == []


def test_expiry_is_the_same_on_both_routers_and_only_the_writer_deletes_it() -> None:
    r0, r1 = pair()
    r0.now = T0
    route(r0, "t", b"x", qos=0, retain=True, props={"message_expiry_interval": 10})
    for e in shared(r0):
        r1.handle(e, T0)
    for r in (r0, r1):
        r.expire_retained(T0 + 11)
    assert retained(r0, "t") is None and retained(r1, "t") is None
    (op,) = r0.take_durable()[0]  # the writer deletes exactly the message that expired
    assert isinstance(op, ExpireRetained) and (op.topic, op.payload) == ("t", b"x")
    assert r1.take_durable()[0] == []


def test_loaded_messages_are_router_0s_to_delete() -> None:
    r0, r1 = pair()
    rec = RetainedRecord("t", b"x", 0, None)
    for r in (r0, r1):
        r.load_retained([rec])
        r.store_retained("t", b"", 0, None)
    assert r0.take_durable()[0] == [DeleteRetained("t")]
    assert r1.take_durable()[0] == [DeleteRetained("t")]  # its own delete: it writes


def test_a_restarted_router_is_sent_the_recent_updates() -> None:
    r0, _ = pair()
    publish(r0, "kept", b"k", T0)
    publish(r0, "gone", b"g", T0)
    publish(r0, "gone", b"", T0 + 1)
    r0.load_retained([RetainedRecord("old", b"o", 0, None)])  # in the store already
    r0.handle(wire(env.RouterUp(Kind.ROUTER_UP, 1, 1)), T0 + 2)
    fresh = Router(index=1, routers=2)
    fresh.load_retained([RetainedRecord("gone", b"g", 0, None)])  # its delete not committed
    for e in r0.to_routers[1]:
        fresh.handle(wire(e), T0 + 2)
    assert sorted(env.Retained._make(wire(e)).topic for e in r0.to_routers[1]) == [
        "gone",
        "kept",
    ]
    assert retained(fresh, "kept") == b"k" and retained(fresh, "gone") is None


@pytest.mark.parametrize(
    "bad",
    [
        [Kind.RETAINED, 1, 5, "t", b"x", 0, None],  # arity
        [Kind.RETAINED, 2, 5, "t", b"x", 0, None, 0.0],  # no router 2
        [Kind.RETAINED, 1, -5, "t", b"x", 0, None, 0.0],
        [Kind.RETAINED, 1, 5, "", b"x", 0, None, 0.0],
        [Kind.RETAINED, 1, 5, "t" * 70_000, b"x", 0, None, 0.0],
        [Kind.RETAINED, 1, 5, "t", "x", 0, None, 0.0],
        [Kind.RETAINED, 1, 5, "t", b"x", 3, None, 0.0],
        [Kind.RETAINED, 1, 5, "t", b"x", 0, [1], 0.0],
        [Kind.RETAINED, 1, 5, "t", b"x", 0, None, "soon"],
        [Kind.RETAINED, 1, 5, "t", b"x", 0, None, float("nan")],
    ],
)
def test_a_malformed_retained_envelope_costs_only_itself(bad: list[Any]) -> None:
    r0 = Router(index=0, routers=2)
    good = [Kind.RETAINED, 1, 6, "u", b"y", 0, None, 0.0]
    r0.guard.handle_each(r0.handle, [bad, good], T0)
    assert retained(r0, "t") is None and retained(r0, "u") == b"y"
    assert r0.counters["envelope_errors"] == 1


def test_only_the_subscribers_router_sends_the_retained_messages() -> None:
    r0, r1 = pair()
    for r in (r0, r1):
        r.load_retained([RetainedRecord("a/b", b"x", 0, None)])
    conn = make_conn_id(1, 0, 3)  # on acceptor 1: router 1's
    for r in (r0, r1):
        sub(r, 0, "c", ("a/#", 1), conn=conn)
    answers = {r.index: [wire(e) for e in r.to_workers[0]] for r in (r0, r1)}
    assert [kind_of(e) for e in answers[0]] == [Kind.SUBSCRIBED]
    assert [kind_of(e) for e in answers[1]] == [Kind.SUBSCRIBED, Kind.DELIVER]
    assert [env.Subscribed._make(answers[i][0]).router for i in (0, 1)] == [0, 1]


def test_a_message_is_matched_only_by_the_router_it_arrived_at() -> None:
    """Both routers hold the subscription; a publish that arrives at one is
    delivered by it alone (the other never sees it): one copy."""
    r0, r1 = pair()
    for r in (r0, r1):
        sub(r, 0, "c", ("$share/g/t", 1), conn=make_conn_id(0, 0, 1))
        sub(r, 1, "d", ("$share/g/t", 1), conn=make_conn_id(1, 0, 2))
        r.to_workers.clear()
    route(r0, "t", b"m")
    delivered = [e for out in r0.to_workers.values() for e in out]
    assert len(delivered) == 1 and r1.to_workers == {}


def test_the_broker_wide_retained_count_is_one_routers_not_their_sum() -> None:
    sys = SysTopics("test")
    sys.observe("$SYS/broker/router/0/retained_messages", b"5")
    sys.observe("$SYS/broker/router/1/retained_messages", b"5")
    sys.observe("$SYS/broker/worker/0/subscriptions", b"2")
    sys.observe("$SYS/broker/worker/1/subscriptions", b"3")
    topics = dict(sys.topics(T0))
    assert topics["$SYS/broker/retained messages/count"] == b"5"
    assert topics["$SYS/broker/subscriptions/count"] == b"5"


def test_a_restarted_router_takes_back_its_own_updates_from_the_other() -> None:
    """Router 1 shared "x" (stamp s) and restarted: it loads "x" from the
    store as (0, -1). Router 0 sends it back with (s, 1); router 1 must hold
    that version too, or a late older update from a third router would be
    taken by it and refused by router 0."""
    r0, r1 = pair()
    for e in publish(r1, "t", b"x", T0 + 5):
        r0.handle(e, T0 + 5)
    again = Router(index=1, routers=2)
    again.load_retained([RetainedRecord("t", b"x", 0, None)])
    r0.handle(wire(env.RouterUp(Kind.ROUTER_UP, 1, 1)), T0 + 6)
    for sent in r0.to_routers[1]:
        again.handle(wire(sent), T0 + 6)
    assert again.versions is not None and r0.versions is not None
    held = r0.versions.held("t")
    assert held is not None and again.versions.held("t") == (held.stamp, held.origin, True)
    older = [Kind.RETAINED, 0, int((T0 + 1) * NS), "t", b"old", 0, None, 0.0]
    again.handle(older, T0 + 6)
    assert retained(again, "t") == b"x"


def test_an_update_of_its_own_that_it_may_not_have_committed_is_written_again() -> None:
    """Router 1 shared "x" and died before its commit: router 0 (which never
    wrote the topic) sends it back, and router 1 writes it."""
    r0, r1 = pair()
    for e in publish(r1, "t", b"x", T0 + 5):
        r0.handle(e, T0 + 5)
    assert r0.take_durable()[0] == []
    again = Router(index=1, routers=2)  # the store never got "x"
    r0.handle(wire(env.RouterUp(Kind.ROUTER_UP, 1, 1)), T0 + 6)
    for sent in r0.to_routers[1]:
        again.handle(wire(sent), T0 + 6)
    (op,) = again.take_durable()[0]
    assert isinstance(op, PutRetained) and op.payload == b"x"
