"""Router (sans-IO): envelopes in, envelopes out. One copy per subscriber at the
highest granted QoS, one DELIVER per destination shard, QoS 0 copies to online
sessions straight to their acceptor, no_local, the retained store and retained
messages after SUBSCRIBED, and WORKER_UP forgetting a restarted shard."""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

import pytest

from flockmq import envelopes as env
from flockmq.envelopes import make_conn_id
from flockmq.router.router import Router
from flockmq.store import RetainedRecord
from tests.unit.wire import kind_of, wire, wire_all


class EntryOptions(TypedDict, total=False):
    """A subscription's options, the same for each of its filters: no_local
    (default False), rap (retain as published, False), send_retained (True),
    sub_id (the subscription identifier, None), persistent (True)."""

    no_local: bool
    rap: bool
    send_retained: bool
    sub_id: int | None
    persistent: bool


def sub(
    router: Router,
    shard: int,
    client_id: str,
    *filters: tuple[str, int],
    conn: int = 7,
    packet_id: int = 1,
    **options: Unpack[EntryOptions],
) -> None:
    entries = [
        env.RouteEntry(
            f,
            q,
            options.get("no_local", False),
            options.get("rap", False),
            options.get("send_retained", True),
            options.get("sub_id"),
            options.get("persistent", True),
        )
        for f, q in filters
    ]
    codes = [q for _, q in filters]
    router.handle(wire(env.Sub(env.Kind.SUB, shard, client_id, conn, packet_id, entries, codes)))


def route(
    router: Router,
    topic: str,
    payload: bytes = b"p",
    qos: int = 1,
    retain: bool = False,
    origin: str = "pub",
    props: env.Props = None,
    reply: env.ReplyTuple | None = None,
) -> None:
    reply_ = None if reply is None else env.Reply(*reply)
    # As built (not through msgpack): props keep their tuples for the assertions.
    router.handle(env.Route(env.Kind.ROUTE, origin, topic, payload, qos, retain, props, reply_))


def take(router: Router) -> tuple[dict[int, list[list[Any]]], dict[int, list[list[Any]]]]:
    """What the router queued since the last call, per shard and per acceptor."""
    workers = {k: wire_all(v) for k, v in router.to_workers.items() if v}
    acceptors = {k: wire_all(v) for k, v in router.to_acceptors.items() if v}
    router.to_workers.clear()
    router.to_acceptors.clear()
    return workers, acceptors


def targets_of(deliver: env.Wire) -> list[list[Any]]:
    """[client_id, granted, retain_as_published, sub_ids] of each target."""
    d = env.Deliver._make(deliver)
    assert d.kind == env.Kind.DELIVER
    targets = map(env.Target._make, d.targets)
    return sorted([t.client_id, t.granted_qos, t.retain_as_published, t.sub_ids] for t in targets)


def filters_of(deliver: env.Wire) -> dict[str, str]:
    """The matched filter each target carries (the worker checks it still holds it)."""
    return {
        t.client_id: t.topic_filter
        for t in map(env.Target._make, env.Deliver._make(deliver).targets)
    }


def reply_of(deliver: env.Wire) -> list[Any] | None:
    """A DELIVER's reply as it crosses the wire: the fields of a DeliverReply, in a list."""
    reply = env.Deliver._make(deliver).reply
    return None if reply is None else list(reply)


def test_overlapping_filters_merge_to_one_copy_at_highest_qos() -> None:
    router = Router()
    sub(router, 0, "alice", ("a/#", 0), ("a/+/c", 2), ("a/b/c", 1))
    take(router)
    route(router, "a/b/c", qos=2)
    workers, acceptors = take(router)
    assert acceptors == {}
    assert list(workers) == [0]
    (deliver,) = workers[0]
    d = env.Deliver._make(deliver)
    assert [d.kind, d.topic, d.payload, d.qos, d.retain, d.props] == [
        env.Kind.DELIVER,
        "a/b/c",
        b"p",
        2,
        False,
        None,
    ]
    assert targets_of(deliver) == [["alice", 2, False, []]]
    assert filters_of(deliver)["alice"] in ("a/#", "a/+/c", "a/b/c")


def test_one_deliver_per_shard_carries_every_target_of_that_shard() -> None:
    router = Router()
    sub(router, 0, "a0", ("t/#", 1))
    sub(router, 0, "b0", ("t/x", 2))
    sub(router, 1, "c1", ("+/x", 0))
    sub(router, 2, "d2", ("other", 1))
    take(router)
    route(router, "t/x", qos=1)
    workers, _ = take(router)
    assert sorted(workers) == [0, 1]
    (d0,) = workers[0]
    (d1,) = workers[1]
    assert targets_of(d0) == [["a0", 1, False, []], ["b0", 2, False, []]]
    assert targets_of(d1) == [["c1", 0, False, []]]


def test_qos0_copies_to_online_sessions_go_straight_to_their_acceptor() -> None:
    router = Router()
    conn_a = make_conn_id(1, 0, 5)
    conn_b = make_conn_id(1, 0, 6)
    sub(router, 0, "a", ("q/#", 1), conn=conn_a)
    sub(router, 1, "b", ("q/x", 0), conn=conn_b)
    sub(router, 1, "offline", ("q/x", 0))
    router.handle([env.Kind.ONLINE, "a", conn_a])
    router.handle([env.Kind.ONLINE, "b", conn_b])
    take(router)
    route(router, "q/x", qos=0)
    workers, acceptors = take(router)
    (many,) = map(env.SendPublishMany._make, acceptors[1])
    assert many.kind == env.Kind.SEND_PUBLISH_MANY
    assert sorted(many.conns) == sorted([conn_a, conn_b])
    assert [many.topic, many.payload, many.retain, many.props] == ["q/x", b"p", False, None]
    # the offline session still goes through its shard (queueing is decided there)
    assert list(workers) == [1]
    assert targets_of(workers[1][0]) == [["offline", 0, False, []]]
    # a QoS 1 publish needs session state for the QoS 1 subscriber
    route(router, "q/x", qos=1)
    workers, acceptors = take(router)
    assert targets_of(workers[0][0]) == [["a", 1, False, []]]
    assert env.SendPublishMany._make(acceptors[1][0]).conns == [conn_b]  # QoS 0: still direct


def test_going_offline_invalidates_the_direct_plan() -> None:
    router = Router()
    conn = make_conn_id(0, 0, 1)
    sub(router, 0, "a", ("z", 0), conn=conn)
    router.handle([env.Kind.ONLINE, "a", conn])
    take(router)
    route(router, "z", qos=0)
    assert take(router)[1] == {0: [[env.Kind.SEND_PUBLISH_MANY, [conn], "z", b"p", False, None]]}
    router.handle([env.Kind.ONLINE, "a", 0])
    route(router, "z", qos=0)
    workers, acceptors = take(router)
    assert acceptors == {}
    assert targets_of(workers[0][0]) == [["a", 0, False, []]]


def test_publishers_coming_and_going_keep_the_cached_plans() -> None:
    router = Router()
    conn = make_conn_id(0, 0, 1)
    sub(router, 0, "a", ("z", 0), conn=conn)
    router.handle([env.Kind.ONLINE, "a", conn])
    route(router, "z", qos=0)
    take(router)
    assert router.plans  # the plan for "z" is cached
    for i in range(50):  # clients with no subscription connect and leave
        router.handle([env.Kind.ONLINE, f"pub-{i}", make_conn_id(0, 0, 100 + i)])
        router.handle([env.Kind.ONLINE, f"pub-{i}", 0])
    assert router.plans
    route(router, "z", qos=0)
    assert take(router)[1] == {0: [[env.Kind.SEND_PUBLISH_MANY, [conn], "z", b"p", False, None]]}
    # a subscriber going offline still changes the plan
    router.handle([env.Kind.ONLINE, "a", 0])
    assert not router.plans


def test_no_local_skips_the_publisher_only() -> None:
    router = Router()
    sub(router, 0, "me", ("n/#", 1), no_local=True)
    sub(router, 1, "you", ("n/#", 1), no_local=True)
    take(router)
    route(router, "n/1", origin="me")
    workers, _ = take(router)
    assert list(workers) == [1]
    assert targets_of(workers[1][0]) == [["you", 1, False, []]]
    route(router, "n/1", origin="you")
    workers, _ = take(router)
    assert list(workers) == [0]
    assert targets_of(workers[0][0]) == [["me", 1, False, []]]


def test_subscription_identifiers_and_retain_as_published_are_merged() -> None:
    router = Router()
    sub(router, 0, "s", ("i/#", 0), sub_id=3)
    sub(router, 0, "s", ("i/x", 1), rap=True, sub_id=9, packet_id=2)
    take(router)
    route(router, "i/x", qos=1)
    workers, _ = take(router)
    ((client_id, qos, rap, sub_ids),) = targets_of(workers[0][0])
    assert (client_id, qos, rap, sorted(sub_ids)) == ("s", 1, True, [3, 9])


def test_no_subscriber_is_counted_and_sends_nothing() -> None:
    router = Router()
    route(router, "nobody/home")
    assert take(router) == ({}, {})
    assert router.counters["messages_without_subscribers"] == 1


def test_unsubscribe_stops_delivery() -> None:
    router = Router()
    sub(router, 0, "u", ("a/+", 1), ("a/b", 1))
    take(router)
    router.handle([env.Kind.UNSUB, "u", ["a/+"], 0, 0, 0, []])
    route(router, "a/c")
    assert take(router) == ({}, {})
    route(router, "a/b")
    assert targets_of(take(router)[0][0][0]) == [["u", 1, False, []]]
    router.handle([env.Kind.UNSUB_ALL, "u"])
    route(router, "a/b")
    assert take(router) == ({}, {})


def test_subscribed_reply_comes_before_retained_messages() -> None:
    router = Router()
    route(router, "r/1", b"one", qos=1, retain=True)
    route(router, "r/2", b"two", qos=2, retain=True)
    take(router)
    sub(router, 1, "late", ("r/+", 1), conn=99, packet_id=4)
    workers, _ = take(router)
    out = workers[1]
    assert out[0] == [env.Kind.SUBSCRIBED, "late", 99, 4, [1], 0]
    retained = sorted(out[1:])
    assert retained == [
        [env.Kind.DELIVER, "r/1", b"one", 1, True, None, [["late", 1, True, [], "r/+"]], None],
        [env.Kind.DELIVER, "r/2", b"two", 2, True, None, [["late", 1, True, [], "r/+"]], None],
    ]


def test_retained_replace_and_clear() -> None:
    router = Router()
    route(router, "r", b"first", retain=True)
    route(router, "r", b"second", qos=0, retain=True)
    sub(router, 0, "a", ("r", 2))
    out = take(router)[0][0]
    assert out[1:] == [
        [env.Kind.DELIVER, "r", b"second", 0, True, None, [["a", 2, True, [], "r"]], None]
    ]
    route(router, "r", b"", retain=True)  # empty payload deletes [MQTT-3.3.1-10]
    assert "r" not in router.retained
    take(router)
    sub(router, 0, "b", ("r", 2))
    assert take(router)[0][0] == [[env.Kind.SUBSCRIBED, "b", 7, 1, [2], 0]]


def test_live_retained_publish_goes_to_existing_subscribers_with_retain_flag_as_is() -> None:
    """The worker clears RETAIN for live copies unless retain-as-published."""
    router = Router()
    sub(router, 0, "a", ("l", 1))
    take(router)
    route(router, "l", b"x", retain=True)
    (deliver,) = take(router)[0][0]
    assert env.Deliver._make(deliver).retain is True
    assert targets_of(deliver) == [["a", 1, False, []]]


def test_retained_not_sent_when_not_asked_or_to_shared_subscriptions() -> None:
    router = Router()
    route(router, "k/1", b"v", retain=True)
    take(router)
    sub(router, 0, "a", ("k/#", 1), send_retained=False)
    assert take(router)[0][0] == [[env.Kind.SUBSCRIBED, "a", 7, 1, [1], 0]]
    sub(router, 0, "b", ("$share/g/k/#", 1))
    assert take(router)[0][0] == [[env.Kind.SUBSCRIBED, "b", 7, 1, [1], 0]]


def test_resubscription_without_reply_sends_no_subscribed() -> None:
    router = Router()
    sub(router, 0, "a", ("x", 1), conn=0, packet_id=0, send_retained=False)
    assert take(router) == ({}, {})
    route(router, "x")
    assert targets_of(take(router)[0][0][0]) == [["a", 1, False, []]]


def test_dollar_topics_not_matched_by_leading_wildcards() -> None:
    router = Router()
    sub(router, 0, "all", ("#", 0), ("+/x", 0))
    sub(router, 1, "sys", ("$SYS/#", 0))
    take(router)
    route(router, "$SYS/x")
    workers, _ = take(router)
    assert list(workers) == [1]
    route(router, "a/x")
    workers, _ = take(router)
    assert list(workers) == [0]


def test_worker_up_forgets_that_shards_subscribers_only() -> None:
    router = Router()
    conn = make_conn_id(0, 0, 1)
    sub(router, 0, "gone", ("w", 1))
    sub(router, 1, "kept", ("w", 1))
    router.handle([env.Kind.ONLINE, "gone", conn])
    take(router)
    router.handle([env.Kind.WORKER_UP, 0, 1, False])
    assert "gone" not in router.online
    route(router, "w")
    workers, acceptors = take(router)
    assert list(workers) == [1] and acceptors == {}
    assert targets_of(workers[1][0]) == [["kept", 1, False, []]]
    # the restarted worker re-registers: delivery resumes
    sub(router, 0, "gone", ("w", 1), conn=0, packet_id=0, send_retained=False)
    route(router, "w")
    workers, _ = take(router)
    assert sorted(workers) == [0, 1]


def test_acceptor_up_forgets_connections_of_its_previous_incarnation() -> None:
    router = Router()
    old = make_conn_id(1, 0, 3)
    sub(router, 0, "a", ("t", 0))
    router.handle([env.Kind.ONLINE, "a", old])
    take(router)
    router.handle([env.Kind.ACCEPTOR_UP, 1, 1])
    route(router, "t", qos=0)
    workers, acceptors = take(router)
    assert acceptors == {}
    assert targets_of(workers[0][0]) == [["a", 0, False, []]]


def test_publish_with_reply_address_tells_the_acceptor_how_many_shards_confirm() -> None:
    router = Router()
    publisher = make_conn_id(1, 0, 42)
    sub(router, 0, "a", ("d/#", 1))
    sub(router, 1, "b", ("d/x", 1))
    take(router)
    route(router, "d/x", qos=1, reply=(publisher, 5, 0, 5, None))
    workers, acceptors = take(router)
    assert acceptors == {1: [[env.Kind.ROUTED_MANY, [publisher, 5, 2, 0]]]}
    assert [reply_of(d) for d in (*workers[0], *workers[1])] == [
        [publisher, 5, 0, 5, None, True],
        [publisher, 5, 0, 5, None, True],
    ]
    route(router, "nobody", qos=1, reply=(publisher, 6, 0, 6, None))
    assert take(router) == ({}, {1: [[env.Kind.ROUTED_MANY, [publisher, 6, 0, 0]]]})
    # a retained publish is confirmed only after its store write commits
    route(router, "d/x", qos=1, retain=True, reply=(publisher, 7, 0, 7, None))
    assert take(router)[1] == {}
    ops, later = router.take_durable()
    assert len(ops) == 1
    assert [(a, wire(e)) for a, e in later] == [(1, [env.Kind.ROUTED, publisher, 7, 2, 0])]


def test_the_routed_of_a_pass_go_as_one_envelope_in_order() -> None:
    """Consecutive ROUTED for one acceptor share a ROUTED_MANY; anything
    else for that acceptor in between (a QoS 0 copy, FENCED) starts a new
    one, so the order of what the acceptor gets is the order it was made."""
    router = Router()
    a, b = make_conn_id(1, 0, 42), make_conn_id(1, 0, 43)
    sub(router, 0, "s", ("t/#", 1))
    router.handle([env.Kind.ONLINE, "q0", b])
    sub(router, 0, "q0", ("q/#", 0))
    take(router)
    route(router, "t/1", qos=1, reply=(a, 1, 0, 1, None))
    route(router, "t/2", qos=1, reply=(b, 2, 0, 1, None))
    route(router, "q/x", qos=0)
    router.handle([env.Kind.FENCE, 1, 9])
    route(router, "t/3", qos=1, reply=(a, 3, 1, 2, None))
    _workers, acceptors = take(router)
    assert [e[0] for e in acceptors[1]] == [
        env.Kind.ROUTED_MANY,
        env.Kind.SEND_PUBLISH_MANY,
        env.Kind.FENCED,
        env.Kind.ROUTED_MANY,
    ]
    assert acceptors[1][0][1] == [a, 1, 1, 0, b, 2, 1, 0]  # (conn, packet id, shards, attempt)
    assert acceptors[1][3][1] == [a, 3, 1, 1]


def test_unknown_envelope_is_counted() -> None:
    router = Router()
    router.handle([250, "x"])
    assert router.counters["unknown_envelopes"] == 1


def test_only_shards_with_persistent_sessions_confirm() -> None:
    # A clean session's copy dies with its connection: its shard need not
    # store it, so the publish waits only for shards holding persistent ones.
    router = Router()
    publisher = make_conn_id(1, 0, 42)
    sub(router, 0, "clean", ("e/x", 1), persistent=False)
    sub(router, 1, "kept", ("e/x", 1), persistent=True)
    take(router)
    route(router, "e/x", qos=1, reply=(publisher, 8, 0, 8, None))
    workers, acceptors = take(router)
    assert acceptors == {1: [[env.Kind.ROUTED_MANY, [publisher, 8, 1, 0]]]}
    assert reply_of(workers[0][0]) is None  # QoS 1, nothing to confirm: no reply
    assert reply_of(workers[1][0]) == [publisher, 8, 0, 8, None, True]


def test_fence_is_answered_after_the_routes_before_it() -> None:
    """FENCED goes to the acceptor that sent the FENCE, after the ROUTEs it
    sent before (they are handled first: a SUBSCRIBE let go by it sees the
    retained message they set)."""
    router = Router()
    route(router, "t", b"r", qos=0, retain=True)
    router.handle([env.Kind.FENCE, 2, 17])
    _, acceptors = take(router)
    assert acceptors == {2: [[env.Kind.FENCED, 17]]}
    sub(router, 0, "s", ("t", 0), conn=make_conn_id(2, 1, 5))
    workers, _ = take(router)
    # retained:
    assert [d.retain for d in map(env.read, workers[0]) if isinstance(d, env.Deliver)] == [True]


def test_fence_waits_with_the_routes_while_shards_resync() -> None:
    router = Router()
    router.expect_sync(1)
    route(router, "t", b"r", qos=0, retain=True)
    router.handle([env.Kind.FENCE, 0, 3])
    assert take(router) == ({}, {})
    router.handle([env.Kind.SYNCED, 0])
    _, acceptors = take(router)
    assert acceptors == {0: [[env.Kind.FENCED, 3]]}
    assert router.retained.get("t") is not None


def test_unsub_with_a_connection_is_answered() -> None:
    router = Router()
    sub(router, 1, "u", ("a/+", 0))
    take(router)
    router.handle([env.Kind.UNSUB, "u", ["a/+"], 1, 9, 4, [0]])
    workers, _ = take(router)
    assert workers == {1: [[env.Kind.UNSUBSCRIBED, "u", 9, 4, [0], 0]]}
    route(router, "a/b")
    assert take(router) == ({}, {})


# --- after a restart: publishes wait until every shard has re-sent its subscriptions ---
def test_publishes_wait_for_every_shard_to_resync_then_go_in_order() -> None:
    router = Router()
    router.expect_sync(2)
    sub(router, 0, "c1", ("t", 1))
    take(router)  # its SUBSCRIBED
    route(router, "t", b"first")
    route(router, "t", b"second")
    assert take(router)[0] == {}
    sub(router, 1, "c2", ("t", 1), persistent=False)
    router.handle([env.Kind.SYNCED, 0])
    assert [kind_of(e) for e in take(router)[0].get(1, [])] == [env.Kind.SUBSCRIBED]
    router.handle([env.Kind.SYNCED, 1])
    workers, _ = take(router)
    assert [env.Deliver._make(d).payload for d in workers[0]] == [b"first", b"second"]
    assert [env.Deliver._make(d).payload for d in workers[1]] == [b"first", b"second"]


def test_held_publishes_are_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_HELD_BYTES the router stops waiting for the shards that have
    not answered (as after the sync timeout) rather than grow."""
    monkeypatch.setattr("flockmq.router.router.MAX_HELD_BYTES", 100_000)
    router = Router()
    router.expect_sync(2)
    sub(router, 0, "c1", ("t", 1))
    router.handle([env.Kind.SYNCED, 0])
    take(router)
    for _ in range(9):
        route(router, "t", b"x" * 10_000)
    assert take(router)[0] == {} and router.held_bytes > 90_000
    route(router, "t", b"x" * 10_000)
    assert not router.unsynced and router.held == [] and router.held_bytes == 0
    assert router.counters["sync_cut_short"] == 1
    workers, _ = take(router)
    assert len(workers[0]) == 10


# --- the retained store is bounded ---------------------------------------------------------
def test_retained_messages_past_the_count_are_delivered_but_not_retained() -> None:
    router = Router(max_retained_messages=2)
    sub(router, 0, "c1", ("r/#", 1))
    take(router)
    for topic in ("r/a", "r/b", "r/c"):
        route(router, topic, b"v", retain=True)
    assert sorted(t for t, _ in router.retained.items()) == ["r/a", "r/b"]
    assert router.counters["retained_quota_refusals"] == 1
    workers, _ = take(router)
    topics = [env.Deliver._make(d).topic for d in workers[0]]
    assert topics == ["r/a", "r/b", "r/c"]  # all delivered live
    route(router, "r/a", b"replaced", retain=True)  # a topic it holds: replaced
    route(router, "r/b", b"", retain=True)  # deleted: room for one more
    route(router, "r/c", b"now", retain=True)
    assert dict(router.retained.items()).keys() == {"r/a", "r/c"}
    # get() is None for a topic it does not hold: that fails here too.
    assert router.retained.get("r/a").payload == b"replaced"  # type: ignore[union-attr]


def test_retained_bytes_are_bounded_topic_and_properties_included() -> None:
    router = Router(max_retained_bytes=10_000)
    route(router, "r/" + "t" * 4_000, b"x", retain=True)
    route(router, "r/p", b"x", retain=True, props={"user_property": [("k", "v" * 4_000)]})
    assert len(router.retained) == 2
    route(router, "r/" + "u" * 4_000, b"x", retain=True)  # no room left
    assert len(router.retained) == 2
    assert router.retained.total_bytes <= 10_000
    big = {"user_property": [("k", "v" * 4_000)]}
    route(
        router, "r/p", b"x" * 4_000, retain=True, props=big
    )  # would pass the bound: kept as it was
    # get() is None for a topic it does not hold: that fails these too.
    assert router.retained.get("r/p").payload == b"x"  # type: ignore[union-attr]
    route(router, "r/p", b"y", retain=True, props=None)  # smaller: replaced
    assert router.retained.get("r/p").payload == b"y"  # type: ignore[union-attr]
    assert router.counters["retained_quota_refusals"] == 2


def test_a_damaged_retained_row_costs_only_itself() -> None:
    router = Router()
    router.load_retained(
        [
            RetainedRecord("a", b"fine", 1, None),
            RetainedRecord("b", b"no props", 1, b"\xc1\xc1"),  # not msgpack: kept without
            RetainedRecord(None, b"x", 1, None),  # type: ignore[arg-type]  # damaged: no topic
            RetainedRecord("c", b"fine too", 0, None),
        ]
    )
    assert sorted(t for t, _ in router.retained.items()) == ["a", "b", "c"]
    assert router.counters["retained_not_loaded"] == 1


def test_the_brokers_sys_topics_do_not_count_against_the_retained_bounds() -> None:
    router = Router(max_retained_messages=2, max_retained_bytes=10_000)
    for i in range(5):
        route(router, f"$SYS/broker/router/0/c{i}", b"x" * 5_000, retain=True)
    route(router, "a", b"1", retain=True)
    route(router, "b", b"2", retain=True)
    route(router, "c", b"3", retain=True)
    assert sorted(t for t, _ in router.retained.items() if not t.startswith("$")) == ["a", "b"]
    assert router.counters["retained_quota_refusals"] == 1
