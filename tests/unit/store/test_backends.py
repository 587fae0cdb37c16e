"""Every record type through every backend: put, reload, replace, delete; the
DeleteSession cascade; message order by seq; the shard filter; one batch is
one transaction."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from flockmq.store import (
    DeleteInboundQos2,
    DeleteMessage,
    DeleteRetained,
    DeleteSession,
    DeleteSubscription,
    InboundQos2Record,
    MessageRecord,
    Op,
    PruneSeenQos2,
    PutInboundQos2,
    PutMessage,
    PutRetained,
    PutSeenQos2,
    PutSession,
    PutSubscription,
    RetainedRecord,
    SeenQos2Record,
    SessionRecord,
    Store,
    StoreError,
    SubscriptionRecord,
    UpdateMessage,
)

Reopen = Callable[[], Store]


def everyone(_cid: str) -> bool:
    return True


def test_empty_store_loads_nothing(store: Store) -> None:
    assert store.load_sessions(everyone) == []
    assert store.load_retained() == []


def test_session_round_trip(store: Store, reopen: Reopen) -> None:
    store.apply(
        [
            PutSession("c1", 3600, 5, b"\x93will", 1700000000.25),
            PutSession("c2", 0xFFFFFFFF, 4, None, None),
            PutSession("ü/ñ", 0, 3, b"", 0.0),
        ]
    )
    assert reopen().load_sessions(everyone) == [
        SessionRecord("c1", 3600, 5, b"\x93will", 1700000000.25),
        SessionRecord("c2", 0xFFFFFFFF, 4, None, None),
        SessionRecord("ü/ñ", 0, 3, b"", 0.0),
    ]
    # Put replaces the row, and leaves the session's other tables alone.
    store.apply(
        [
            PutSubscription("c1", "a/#", 1),
            PutSession("c1", 60, 5, None, None),
        ]
    )
    (c1,) = reopen().load_sessions(lambda cid: cid == "c1")
    assert c1 == SessionRecord("c1", 60, 5, None, None, (SubscriptionRecord("a/#", 1),))


def test_subscription_round_trip(store: Store, reopen: Reopen) -> None:
    store.apply(
        [
            PutSession("c", 10, 5, None, None),
            PutSubscription("c", "b/+", 2, True, True, 2, 17),
            PutSubscription("c", "a/#", 0),
            PutSubscription("c", "$share/g/x", 1, False, True, 1, None),
        ]
    )
    (s,) = reopen().load_sessions(everyone)
    assert s.subscriptions == (
        SubscriptionRecord("$share/g/x", 1, False, True, 1, None),
        SubscriptionRecord("a/#", 0, False, False, 0, None),
        SubscriptionRecord("b/+", 2, True, True, 2, 17),
    )
    assert all(isinstance(sub.no_local, bool) for sub in s.subscriptions)
    store.apply([PutSubscription("c", "a/#", 1, sub_id=3), DeleteSubscription("c", "b/+")])
    store.apply([DeleteSubscription("c", "never/subscribed")])  # no-op
    (s,) = reopen().load_sessions(everyone)
    assert s.subscriptions == (
        SubscriptionRecord("$share/g/x", 1, False, True, 1, None),
        SubscriptionRecord("a/#", 1, sub_id=3),
    )


def test_message_round_trip_update_delete(store: Store, reopen: Reopen) -> None:
    store.apply(
        [
            PutSession("c", 10, 5, None, None),
            PutMessage("c", 1, "t/1", b"one", 1, False, None, 7, 0),
            PutMessage("c", 2, "t/2", b"", 2, True, b"\x81\xa1k\x01", 8, 1),
            PutMessage("c", 3, "t/3", bytes(range(256)) * 40, 1, False, None),
        ]
    )
    (s,) = reopen().load_sessions(everyone)
    assert s.messages == (
        MessageRecord(1, "t/1", b"one", 1, False, None, 7, 0),
        MessageRecord(2, "t/2", b"", 2, True, b"\x81\xa1k\x01", 8, 1),
        MessageRecord(3, "t/3", bytes(range(256)) * 40, 1, False, None, 0, 0),
    )
    assert type(s.messages[0].payload) is bytes
    store.apply(
        [
            DeleteMessage("c", 1),
            UpdateMessage("c", 3, 9, 0),  # queued -> in flight
            UpdateMessage("c", 2, 8, 1),
            UpdateMessage("c", 99, 1, 1),  # no such message: no-op
            DeleteMessage("c", 98),  # no-op
        ]
    )
    (s,) = reopen().load_sessions(everyone)
    assert [(m.seq, m.packet_id, m.state) for m in s.messages] == [(2, 8, 1), (3, 9, 0)]
    assert s.messages[1].payload == bytes(range(256)) * 40


def test_messages_load_in_seq_order(store: Store, reopen: Reopen) -> None:
    seqs = [5, 1, 1000, 3, 2, 70000, 4]
    store.apply([PutSession("c", 10, 4, None, None)])
    store.apply([PutMessage("c", q, f"t/{q}", str(q).encode(), 1, False, None) for q in seqs])
    (s,) = reopen().load_sessions(everyone)
    assert [m.seq for m in s.messages] == sorted(seqs)
    assert [m.payload for m in s.messages] == [str(q).encode() for q in sorted(seqs)]


def test_inbound_qos2_round_trip(store: Store, reopen: Reopen) -> None:
    store.apply(
        [
            PutSession("c", 10, 5, None, None),
            PutInboundQos2("c", 65535, 2**62),
            PutInboundQos2("c", 1, 7),
            PutInboundQos2("c", 1, 8),  # twice is once: the first token stays
            PutInboundQos2("c", 300),
        ]
    )
    (s,) = reopen().load_sessions(everyone)
    assert s.inbound_qos2 == (
        InboundQos2Record(1, 7),
        InboundQos2Record(300, 0),
        InboundQos2Record(65535, 2**62),
    )
    store.apply([DeleteInboundQos2("c", 300), DeleteInboundQos2("c", 4)])
    (s,) = reopen().load_sessions(everyone)
    assert [r.packet_id for r in s.inbound_qos2] == [1, 65535]


def test_seen_qos2_round_trip_and_release(store: Store, reopen: Reopen) -> None:
    """Destinations remember the QoS 2 messages they took until the publisher's
    PUBREL (DeleteInboundQos2) or the end of its session releases them."""
    store.apply(
        [
            PutSession("pub", 10, 4, None, None),
            PutSession("other", 10, 4, None, None),
            PutSession("sub1", 10, 4, None, None),
            PutSession("sub2", 10, 4, None, None),
            PutInboundQos2("pub", 5, 111),
            PutInboundQos2("pub", 6, 222),
            PutSeenQos2("sub1", "pub", 5, 111),
            PutSeenQos2("sub2", "pub", 5, 111),
            PutSeenQos2("sub1", "pub", 6, 222),
            PutSeenQos2("sub1", "other", 5, 9),
            PutSeenQos2("sub2", "other", 1, 3),
            PutSeenQos2("sub2", "other", 1, 4),  # a newer message with that packet id
        ]
    )
    seen = {s.client_id: s.seen_qos2 for s in reopen().load_sessions(everyone)}
    assert seen == {
        "pub": (),
        "other": (),
        "sub1": (
            SeenQos2Record("other", 5, 9),
            SeenQos2Record("pub", 5, 111),
            SeenQos2Record("pub", 6, 222),
        ),
        "sub2": (SeenQos2Record("other", 1, 4), SeenQos2Record("pub", 5, 111)),
    }
    store.apply([DeleteInboundQos2("pub", 5)])  # PUBREL: released everywhere
    seen = {s.client_id: s.seen_qos2 for s in reopen().load_sessions(everyone)}
    assert seen["sub1"] == (SeenQos2Record("other", 5, 9), SeenQos2Record("pub", 6, 222))
    assert seen["sub2"] == (SeenQos2Record("other", 1, 4),)
    store.apply([DeleteSession("other")])  # the publisher's session ended
    store.apply([DeleteSession("sub2")])  # a destination's session ended
    seen = {s.client_id: s.seen_qos2 for s in reopen().load_sessions(everyone)}
    assert seen == {"pub": (), "sub1": (SeenQos2Record("pub", 6, 222),)}
    store.apply([PutSession("sub2", 10, 4, None, None)])
    (again,) = [s for s in reopen().load_sessions(everyone) if s.client_id == "sub2"]
    assert again.seen_qos2 == ()


def test_prune_drops_seen_rows_of_released_publishes(store: Store, reopen: Reopen) -> None:
    """A seen row written after its publish was released (another process's
    commit came first) matches no inbound QoS 2 row any more: pruned."""
    store.apply(
        [
            PutSession("pub", 10, 4, None, None),
            PutSession("sub", 10, 4, None, None),
            PutInboundQos2("pub", 5, 111),
            PutInboundQos2("pub", 6, 222),
            PutSeenQos2("sub", "pub", 5, 111),  # still held: kept
            PutSeenQos2("sub", "pub", 6, 999),  # packet id 6 now names another message
            PutSeenQos2("sub", "pub", 7, 333),  # released
            PutSeenQos2("sub", "gone", 1, 1),  # publisher's session ended
        ]
    )
    store.apply([PruneSeenQos2()])
    (_, sub) = reopen().load_sessions(everyone)
    assert sub.seen_qos2 == (SeenQos2Record("pub", 5, 111),)


def test_retained_round_trip(store: Store, reopen: Reopen) -> None:
    store.apply(
        [
            PutRetained("b", b"2", 1, None),
            PutRetained("a/b", b"1", 0, b"\x80"),
            PutRetained("$SYS/x", b"", 2, None),
            PutRetained("b", b"2'", 2, b"\x81\x01\x02"),
        ]
    )
    assert reopen().load_retained() == [
        RetainedRecord("$SYS/x", b"", 2, None),
        RetainedRecord("a/b", b"1", 0, b"\x80"),
        RetainedRecord("b", b"2'", 2, b"\x81\x01\x02"),
    ]
    store.apply([DeleteRetained("a/b"), DeleteRetained("nothing/here")])
    assert [r.topic for r in reopen().load_retained()] == ["$SYS/x", "b"]


def _full_session(cid: str) -> list[Op]:
    return [
        PutSession(cid, 10, 5, b"w", None),
        PutSubscription(cid, "a/#", 1),
        PutMessage(cid, 1, "a/b", b"m", 1, False, None, 4, 0),
        PutInboundQos2(cid, 9, 99),
        PutSeenQos2(cid, "someone", 3, 33),
    ]


def test_delete_session_cascades(store: Store, reopen: Reopen) -> None:
    store.apply([*_full_session("gone"), *_full_session("kept")])
    store.apply([PutRetained("r", b"x", 0, None)])
    store.apply([DeleteSession("gone")])
    fresh = reopen()
    (kept,) = fresh.load_sessions(everyone)
    assert kept.client_id == "kept"
    assert (len(kept.subscriptions), len(kept.messages)) == (1, 1)
    assert kept.inbound_qos2 == (InboundQos2Record(9, 99),)
    assert kept.seen_qos2 == (SeenQos2Record("someone", 3, 33),)
    # The router's table is not the session's.
    assert len(fresh.load_retained()) == 1
    # A session put again under the same id starts empty.
    store.apply([PutSession("gone", 10, 5, None, None)])
    gone = [s for s in reopen().load_sessions(everyone) if s.client_id == "gone"]
    assert gone == [SessionRecord("gone", 10, 5, None, None)]


def test_load_sessions_takes_only_accepted_ids(store: Store, reopen: Reopen) -> None:
    for cid in ("a1", "b1", "a2", "b2"):
        store.apply(_full_session(cid))
    mine = reopen().load_sessions(lambda cid: cid.startswith("a"))
    assert [s.client_id for s in mine] == ["a1", "a2"]
    assert all(len(s.messages) == 1 and len(s.subscriptions) == 1 for s in mine)


def test_rows_without_a_session_are_not_loaded(store: Store, reopen: Reopen) -> None:
    store.apply(
        [PutSubscription("orphan", "x", 0), PutMessage("orphan", 1, "x", b"", 0, False, None)]
    )
    assert reopen().load_sessions(everyone) == []


def test_ops_apply_in_order_within_a_batch(store: Store, reopen: Reopen) -> None:
    store.apply(
        [
            PutSession("c", 10, 5, None, None),
            PutMessage("c", 1, "t", b"v1", 1, False, None),
            DeleteSession("c"),
            PutSession("c", 20, 5, None, None),
            PutMessage("c", 1, "t", b"v2", 1, False, None),
            UpdateMessage("c", 1, 5, 0),
            PutRetained("r", b"1", 0, None),
            DeleteRetained("r"),
            PutRetained("r", b"2", 0, None),
        ]
    )
    fresh = reopen()
    (s,) = fresh.load_sessions(everyone)
    assert s.expiry == 20
    assert s.messages == (MessageRecord(1, "t", b"v2", 1, False, None, 5, 0),)
    assert fresh.load_retained() == [RetainedRecord("r", b"2", 0, None)]


def test_a_failing_batch_applies_nothing(store: Store, reopen: Reopen) -> None:
    store.apply([PutSession("before", 1, 4, None, None)])
    with pytest.raises(StoreError):  # a batch with something that is not an op:
        store.apply([PutSession("inside", 1, 4, None, None), ("not", "an", "op")])  # type: ignore[list-item]
    assert [s.client_id for s in reopen().load_sessions(everyone)] == ["before"]
    store.apply([PutSession("after", 1, 4, None, None)])  # the store still works
    assert [s.client_id for s in reopen().load_sessions(everyone)] == ["after", "before"]


def test_closed_store_raises(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.load_retained()
    with pytest.raises(StoreError, match="closed"):
        store.apply([DeleteRetained("x")])


def test_a_long_run_of_message_puts_keeps_op_order(store: Store, reopen: Reopen) -> None:
    """Hundreds of puts in one batch (PostgreSQL COPYs them): a later put of the
    same seq wins, ops after the run see it, and a second run in the same
    batch does not bring the first one's rows back."""
    first = [PutMessage("c", q, "t", f"a{q}".encode(), 1, False, None) for q in range(300)]
    again = [PutMessage("c", q, "t", f"b{q}".encode(), 2, True, b"p") for q in range(0, 300, 3)]
    second = [PutMessage("d", q, "u", b"", 0, False, None, q % 7, 0) for q in range(100)]
    store.apply(
        [
            PutSession("c", 10, 5, None, None),
            PutSession("d", 10, 5, None, None),
            *first,
            *again,
            UpdateMessage("c", 1, 11, 1),
            DeleteMessage("c", 2),
            *second,
            DeleteMessage("c", 0),
            *[PutMessage("c", q, "t", f"x{q}".encode(), 1, False, None) for q in range(290, 390)],
        ]
    )
    c, d = reopen().load_sessions(everyone)
    expected: dict[int, tuple[bytes, int, bool, bytes | None, int, int]]
    expected = {q: (f"a{q}".encode(), 1, False, None, 0, 0) for q in range(290)}
    expected.update({q: (f"b{q}".encode(), 2, True, b"p", 0, 0) for q in range(0, 290, 3)})
    expected[1] = (b"a1", 1, False, None, 11, 1)
    del expected[2], expected[0]
    expected.update({q: (f"x{q}".encode(), 1, False, None, 0, 0) for q in range(290, 390)})
    assert {
        m.seq: (m.payload, m.qos, m.retain, m.props, m.packet_id, m.state) for m in c.messages
    } == (expected)
    assert [m.seq for m in c.messages] == sorted(expected)
    assert [(m.seq, m.packet_id) for m in d.messages] == [(q, q % 7) for q in range(100)]
