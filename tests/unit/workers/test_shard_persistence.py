"""The shard's durability contract, without processes: persistent sessions
produce store ops (clean sessions and QoS 0 never do), STORED confirmations
wait for the commit, and a shard rebuilt from the store resumes the session:
subscriptions, queue order, in-flight messages resent with DUP, QoS 2 ids, and
QoS 2 exactly-once across a restart (tokens and seen rows)."""

from __future__ import annotations

from typing import Any

import msgpack

from flockmq import envelopes as env
from flockmq.envelopes import Wire
from flockmq.mqtt.packet_types import PacketType
from flockmq.store import (
    DeleteMessage,
    MemoryStore,
    MessageRecord,
    PutMessage,
    PutSeenQos2,
    PutSession,
    PutSubscription,
    SessionRecord,
    UpdateMessage,
)
from flockmq.workers.session import Subscription
from flockmq.workers.shard import Shard, ShardLimits
from tests.unit.wire import kind_of, of_kind, wire

from .test_shard import CONN_A, CONN_B, CONN_C, NEVER, Harness, acks, publishes, session_present


def persistent_subscriber(h: Harness, conn: int = CONN_A) -> None:
    h.connect(conn, "p1", clean=False, expiry=NEVER)
    h.subscribe(conn, "p1", "t", 1)
    h.shard.handle([env.Kind.SUBSCRIBED, "p1", conn, 1, [1], 0], h.now)
    h.take()


def test_clean_sessions_and_qos0_never_touch_the_store() -> None:
    h = Harness()
    h.connect(CONN_A, "c1", clean=True)
    h.subscribe(CONN_A, "c1", "t", 1)
    h.deliver("c1", b"a", 1)
    h.take()
    assert h.ops == []
    h2 = Harness()
    persistent_subscriber(h2)
    h2.deliver("p1", b"zero", 0)
    h2.take()
    assert h2.ops == []


def test_persistent_session_records_its_state() -> None:
    h = Harness()
    h.connect(CONN_A, "p1", clean=False, expiry=NEVER)
    h.subscribe(CONN_A, "p1", "t", 1)
    h.take()
    kinds = [type(op) for op in h.ops]
    assert PutSession in kinds
    assert PutSubscription in kinds
    h.shard.handle([env.Kind.SUBSCRIBED, "p1", CONN_A, 1, [1], 0], h.now)
    _, acceptors = h.take()
    # The SUBACK promises the subscription is kept: it waited for the commit.
    assert [kind_of(e) for e in acceptors] == [env.Kind.SEND_SUBACK]
    h.deliver("p1", b"m", 1)
    h.take()
    puts = [op for op in h.ops if isinstance(op, PutMessage)]
    assert [(op.payload, op.qos) for op in puts] == [(b"m", 1)]
    h.ack(env.Kind.PUBACK_IN, CONN_A, "p1", 1)
    h.take()
    assert [type(op) for op in h.ops] == [DeleteMessage]


def test_deliver_with_reply_confirms_after_commit() -> None:
    h = Harness()
    persistent_subscriber(h)
    h.shard.handle(
        [
            env.Kind.DELIVER,
            "t",
            b"x",
            1,
            False,
            None,
            [["p1", 1, False, [], "t"]],
            [CONN_B, 9, 0, 1, None, True],
        ],
        h.now,
    )
    ops, later = h.shard.take_durable()
    assert any(isinstance(op, PutMessage) for op in ops)
    assert [(dest, wire(e)) for dest, e in later] == [(1, [env.Kind.STORED, CONN_B, 9, True, 0])]


def test_a_shard_rebuilt_from_the_store_resumes_the_session() -> None:
    store = MemoryStore()
    h = Harness()
    persistent_subscriber(h)
    store.apply(h.ops)
    h.shard.handle(
        [env.Kind.PUBLISH, CONN_A, "p1", 5, "in/t", b"q2", 2, False, None, 0, False, 1], h.now
    )
    for i in range(3):
        h.deliver("p1", b"%d" % i, 1)
    h.take()
    store.apply(h.ops)
    # 0, 1, 2 went in flight (window 64); take 0's ack, then the worker dies.
    h.ack(env.Kind.PUBACK_IN, CONN_A, "p1", 1)
    h.take()
    store.apply(h.ops)

    shard = Shard(0, ShardLimits())
    shard.load(store.load_sessions(lambda _cid: True), h.now + 5)
    router: list[Wire] = list(shard.to_router)
    assert [kind_of(e) for e in router].count(env.Kind.SUB) == 1
    restored = shard.sessions["p1"]
    assert restored.conn is None
    assert list(restored.subscriptions) == ["t"]
    assert list(restored.inbound_qos2) == [5]

    h2 = Harness()
    h2.shard = shard
    connack = h2.connect(CONN_B, "p1", clean=False, expiry=NEVER)
    assert session_present(connack) is True
    out = h2.take_acceptors()
    assert publishes(out) == [(2, b"1", 1, True), (3, b"2", 1, True)]
    # The QoS 2 packet id is still known, but not whether it was confirmed
    # before the crash: a retransmission is routed again rather than lost.
    h2.shard.handle(
        [env.Kind.PUBLISH, CONN_B, "p1", 5, "in/t", b"q2", 2, False, None, 0, False, 1], h2.now
    )
    router, acceptors = h2.take()
    assert [r.topic for r in of_kind(router, env.Route)] == ["in/t"]
    assert [e for e in acceptors if kind_of(e) == env.Kind.ROUTED] == []
    h2.ack(env.Kind.PUBREL_IN, CONN_B, "p1", 5)
    assert acks(h2.take_acceptors()) == [(PacketType.PUBCOMP, 5, 0)]


def route_to_deliver(route: Wire, target: str, confirm: bool = True) -> list[Any]:
    """The DELIVER a router makes of a shard's QoS 2 ROUTE for one target."""
    r = env.Route._make(route)
    assert r.reply is not None  # a QoS 2 ROUTE carries one
    return [
        env.Kind.DELIVER,
        r.topic,
        r.payload,
        r.qos,
        r.retain,
        r.props,
        [[target, 2, False, [], "in/#"]],
        [*r.reply, confirm],
    ]


def qos2_key(route: Wire) -> env.Qos2Key:
    """The key a shard's QoS 2 ROUTE carries in its reply."""
    reply = env.Route._make(route).reply
    assert reply is not None
    key = env.Reply._make(reply).key
    assert key is not None
    return env.Qos2Key._make(key)


def test_qos2_resend_after_the_worker_restarted_is_delivered_once() -> None:
    """Publisher and subscriber persistent, on this shard: the message reached
    the subscriber's queue and was committed, the PUBREC never went out, the
    worker died. The publisher resends on a new connection to the restarted
    worker: it is confirmed (so the publisher gets its PUBREC) and not queued
    again; the seen row goes with the publisher's PUBREL."""
    store = MemoryStore()
    h = Harness()
    h.connect(CONN_A, "pub", clean=False, expiry=NEVER)
    h.connect(CONN_C, "sub", clean=False, expiry=NEVER)
    h.subscribe(CONN_C, "sub", "in/#", 2)
    h.close(CONN_C, "sub")  # offline: the message waits in its queue
    h.take()
    store.apply(h.ops)
    h.publish_in(CONN_A, "pub", 5, 2, b"once")
    router, _ = h.take()
    store.apply(h.ops)  # the packet id (with its token) is committed, then routed
    (route,) = [e for e in router if kind_of(e) == env.Kind.ROUTE]
    h.shard.handle(route_to_deliver(route, "sub"), h.now)
    _, acceptors = h.take()
    store.apply(h.ops)  # the copy and its seen row, in one commit
    assert [kind_of(e) for e in acceptors] == [env.Kind.STORED]
    assert any(isinstance(op, PutSeenQos2) for op in h.ops)

    shard = Shard(0, ShardLimits(), nonce=99)  # the restarted worker
    shard.load(store.load_sessions(lambda _cid: True), h.now + 5)
    h2 = Harness()
    h2.shard = shard
    h2.take()
    h2.connect(CONN_B, "pub", clean=False, expiry=NEVER)
    h2.take()
    h2.shard.handle(
        [env.Kind.PUBLISH, CONN_B, "pub", 5, "in/t", b"once", 2, False, None, 0, False, 1], h2.now
    )
    router, _ = h2.take()
    (again,) = [e for e in router if kind_of(e) == env.Kind.ROUTE]
    assert qos2_key(again) == qos2_key(route)  # the same key, from the store
    h2.shard.handle(route_to_deliver(again, "sub"), h2.now)
    _, acceptors = h2.take()
    assert [kind_of(e) for e in acceptors] == [env.Kind.STORED]  # confirmed: PUBREC can go out
    assert h2.shard.counters["qos2_retries_deduplicated"] == 1
    assert [m.payload for m in shard.sessions["sub"].queue] == [b"once"]
    h2.ack(env.Kind.PUBREL_IN, CONN_B, "pub", 5)
    h2.take()
    store.apply(h2.ops)
    assert store.load_sessions(lambda cid: cid == "sub")[0].seen_qos2 == ()


def test_qos2_keys_of_clean_publishers_or_subscribers_stay_in_memory() -> None:
    h = Harness()
    h.connect(CONN_A, "pub", clean=True)
    h.connect(CONN_C, "sub", clean=False, expiry=NEVER)
    h.shard.sessions["sub"].own_subscriptions()["in/#"] = Subscription(2)
    h.take()
    h.publish_in(CONN_A, "pub", 5, 2, b"m")
    router, _ = h.take()
    (route,) = [e for e in router if kind_of(e) == env.Kind.ROUTE]
    assert qos2_key(route).durable is False  # not durable: the publisher's state dies with it
    h.shard.handle(route_to_deliver(route, "sub"), h.now)
    h.take()
    assert not any(isinstance(op, PutSeenQos2) for op in h.ops)
    h.shard.handle(route_to_deliver(route, "sub"), h.now)  # an acceptor retry
    h.take()
    assert len(h.shard.sessions["sub"].inflight) == 1


def test_tokens_differ_between_incarnations() -> None:
    a, b = Shard(0, ShardLimits(), nonce=1), Shard(0, ShardLimits(), nonce=2)
    assert a.state.next_token() != b.state.next_token()


def test_a_message_sent_in_the_pass_that_queued_it_is_one_row() -> None:
    """Queued and put in flight in one pass: one PutMessage with its packet id
    (no UpdateMessage); queued while offline, sent in a later pass: an update."""
    h = Harness()
    persistent_subscriber(h)
    h.deliver("p1", b"now", 1)
    h.take()
    assert h.ops == [PutMessage("p1", 1, "t", b"now", 1, False, None, 1, 0)]
    h.close(CONN_A, "p1")
    h.deliver("p1", b"later", 1)
    h.take()
    assert [(type(op), getattr(op, "packet_id", None)) for op in h.ops] == [
        (PutSession, None),
        (PutMessage, 0),  # queued: no packet id yet
    ]
    h.connect(CONN_B, "p1", clean=False, expiry=NEVER)
    h.take()
    assert UpdateMessage("p1", 2, 2, 0) in h.ops


def test_a_message_acknowledged_before_it_was_written_is_never_written() -> None:
    h = Harness()
    persistent_subscriber(h)
    h.deliver("p1", b"quick", 2)
    h.ack(env.Kind.PUBREC_IN, CONN_A, "p1", 1)  # same pass: the row has the new state
    _, acceptors = h.take()
    assert h.ops == [PutMessage("p1", 1, "t", b"quick", 2, False, None, 1, 1)]
    assert acks(acceptors) == [(PacketType.PUBREL, 1, 0)]  # after that commit
    h.deliver("p1", b"gone", 1)
    h.ack(env.Kind.PUBACK_IN, CONN_A, "p1", 2)
    h.take()
    assert h.ops == []


# --- damaged records: each costs only itself -------------------------------------------------
def test_a_damaged_record_costs_only_its_own_session() -> None:
    good = SessionRecord(
        "good", NEVER, 4, None, 1.0, messages=(MessageRecord(1, "t", b"kept", 1, False, None),)
    )
    damaged_props = SessionRecord(
        "props",
        NEVER,
        5,
        b"\xc1 not msgpack",  # a will that cannot be read: no will
        None,
        messages=(MessageRecord(1, "t", b"no props", 1, False, b"\xc1\xc1"),),
    )
    broken = SessionRecord(
        "broken",
        NEVER,
        4,
        None,
        1.0,
        # damaged: no sequence number
        messages=(MessageRecord(None, "t", b"x", 1, False, None),),  # type: ignore[arg-type]
    )
    shard = Shard(0, ShardLimits())
    shard.load([broken, good, damaged_props], 1000.0)
    assert sorted(shard.sessions) == ["good", "props"]
    assert shard.counters["sessions_not_loaded"] == 1
    assert [m.payload for m in shard.sessions["good"].queue] == [b"kept"]
    (msg,) = shard.sessions["props"].queue
    assert msg.payload == b"no props" and msg.props is None  # delivered, without properties
    assert "props" not in shard.state.pending_wills
    assert [kind_of(e) for e in shard.to_router][-1] == env.Kind.SYNCED  # resync not blocked


# --- the store's format of a will ------------------------------------------------------------
def test_a_will_is_stored_as_it_always_was_and_read_back() -> None:
    """The session keeps its will as a `Will` dataclass; the store keeps the
    msgpack array of env.Will's fields, as every earlier flockmq wrote it."""
    will = env.Will("w/t", b"gone", 1, True, {"user_property": [["k", "v"]]}, 30)
    h = Harness()
    h.connect(CONN_A, "p1", clean=False, expiry=NEVER, will=will)
    h.take()
    (put,) = [op for op in h.ops if isinstance(op, PutSession)]
    assert put.will == msgpack.packb(will, use_bin_type=True)
    # A worker that died with the connection attached: the stored will goes
    # out once the connection has not come back in time.
    rec = SessionRecord("p1", NEVER, 4, put.will, None)
    shard = Shard(0, ShardLimits())
    shard.load([rec], 1000.0)
    shard.to_router.clear()
    due = shard.next_timer()
    assert due is not None
    shard.handle_timer(due)
    routes = [wire(e) for e in shard.to_router if kind_of(e) == env.Kind.ROUTE]
    assert routes == [[env.Kind.ROUTE, "p1", *will[:5], None]]
