"""What a shard sends the router leaves in the order it was made (issue 9
item 22): a QoS 2 publish waiting for its commit is not overtaken by a SUB,
UNSUB, will or session end made after it; UNSUBACK waits for the router's
UNSUBSCRIBED; answers the router never gave come after a ROUTER_UP."""

from __future__ import annotations

from flockmq import envelopes as env
from tests.unit.wire import kind_of

from .test_shard import CONN_A, Harness


def subscribe(h: Harness, packet_id: int, topic_filter: str, client_id: str = "c") -> None:
    h.shard.handle(
        [
            env.Kind.SUBSCRIBE,
            CONN_A,
            client_id,
            packet_id,
            [[topic_filter, 0, False, False, 0, None]],
        ],
        h.now,
    )


def test_subscribe_after_a_qos2_publish_waits_behind_its_route() -> None:
    h = Harness()
    h.connect(CONN_A, "c", clean=True)
    h.take()
    h.publish_in(CONN_A, "c", 1, 2, b"q2")
    subscribe(h, 1, "in/t")
    assert h.shard.to_router == []  # nothing overtakes the ROUTE waiting for its commit
    _ops, later = h.shard.take_durable()
    assert [(dest, kind_of(e)) for dest, e in later] == [
        ("router", env.Kind.ROUTE),
        ("router", env.Kind.ONLINE),  # its first subscription: where it is
        ("router", env.Kind.SUB),
    ]


def test_what_follows_an_uncommitted_route_of_an_earlier_pass_waits_too() -> None:
    h = Harness()
    h.connect(CONN_A, "c", clean=True)
    subscribe(h, 1, "t")
    h.shard.handle([env.Kind.SUBSCRIBED, "c", CONN_A, 1, [0], 0], h.now)
    h.take()
    h.shard.out.router_commits_pending = 1  # as the process sets it for an earlier pass
    h.close(CONN_A, "c")
    _ops, later = h.shard.take_durable()
    assert h.shard.to_router == []
    assert [kind_of(e) for _, e in later] == [env.Kind.ONLINE, env.Kind.UNSUB_ALL]
    h.shard.out.router_commits_pending = 0
    h.connect(CONN_A, "c", clean=True)
    subscribe(h, 2, "t")
    assert [kind_of(e) for e in h.shard.to_router] == [env.Kind.ONLINE, env.Kind.SUB]


def test_subscribe_with_nothing_waiting_goes_at_once() -> None:
    h = Harness()
    h.connect(CONN_A, "c", clean=True)
    h.take()
    subscribe(h, 1, "t")
    assert [kind_of(e) for e in h.shard.to_router] == [env.Kind.ONLINE, env.Kind.SUB]


def test_unsuback_waits_for_the_router() -> None:
    h = Harness()
    h.connect(CONN_A, "c", clean=True)
    subscribe(h, 1, "t")
    h.shard.handle([env.Kind.SUBSCRIBED, "c", CONN_A, 1, [0], 0], h.now)
    h.take()
    h.shard.handle([env.Kind.UNSUBSCRIBE, CONN_A, "c", 2, ["t", "nope"]], h.now)
    router, acceptors = h.take()
    assert router == [[env.Kind.UNSUB, "c", ["t"], 0, CONN_A, 2, [0, 0x11]]]
    assert acceptors == []
    h.shard.handle([env.Kind.UNSUBSCRIBED, "c", CONN_A, 2, [0, 0x11], 0], h.now)
    assert h.take_acceptors() == [[env.Kind.SEND_UNSUBACK, CONN_A, 2, [0, 0x11]]]


def test_unsubscribe_of_nothing_is_answered_at_once() -> None:
    h = Harness()
    h.connect(CONN_A, "c", clean=True)
    h.take()
    h.shard.handle([env.Kind.UNSUBSCRIBE, CONN_A, "c", 2, ["nope"]], h.now)
    router, acceptors = h.take()
    assert router == [] and acceptors == [[env.Kind.SEND_UNSUBACK, CONN_A, 2, [0x11]]]


def test_answers_a_dead_router_never_gave_come_after_the_resync() -> None:
    h = Harness()
    h.connect(CONN_A, "c", clean=True)
    subscribe(h, 1, "t")
    subscribe(h, 2, "u")
    h.shard.handle([env.Kind.SUBSCRIBED, "c", CONN_A, 2, [0], 0], h.now)
    h.shard.handle([env.Kind.UNSUBSCRIBE, CONN_A, "c", 3, ["u"]], h.now)
    h.take()
    h.shard.handle([env.Kind.ROUTER_UP, 5, 0], h.now)
    router, acceptors = h.take()
    assert [kind_of(e) for e in router] == [
        env.Kind.RESYNC,
        env.Kind.ONLINE,
        env.Kind.SUB,
        env.Kind.RESYNC,
        env.Kind.SYNCED,
    ]
    assert acceptors == [
        [env.Kind.SEND_SUBACK, CONN_A, 1, [0]],
        [env.Kind.SEND_UNSUBACK, CONN_A, 3, [0]],
    ]
    assert h.shard.state.awaiting_router == {}


def test_a_router_answer_after_a_router_up_gives_no_second_ack() -> None:
    """The router's start races the first clients: a ROUTER_UP that comes
    between a SUB and its SUBSCRIBED answers the SUBSCRIBE already; the
    late SUBSCRIBED (and UNSUBSCRIBED) must not send it again."""
    h = Harness()
    h.connect(CONN_A, "c", clean=True)
    subscribe(h, 1, "t")
    h.shard.handle([env.Kind.UNSUBSCRIBE, CONN_A, "c", 2, ["t"]], h.now)
    h.take()
    h.shard.handle([env.Kind.ROUTER_UP, 0, 0], h.now)
    _, acceptors = h.take()
    assert [kind_of(e) for e in acceptors] == [env.Kind.SEND_SUBACK, env.Kind.SEND_UNSUBACK]
    h.shard.handle([env.Kind.SUBSCRIBED, "c", CONN_A, 1, [0], 0], h.now)
    h.shard.handle([env.Kind.UNSUBSCRIBED, "c", CONN_A, 2, [0], 0], h.now)
    assert h.take() == ([], [])
    assert h.shard.counters["late_router_answers"] == 2


def test_retained_messages_wait_behind_a_suback_that_waits_for_its_commit() -> None:
    """A persistent session's SUBACK waits for the commit of its
    subscription; the retained copies the router sends after SUBSCRIBED
    wait behind it (QoS 0 too, which would otherwise go at once)."""
    h = Harness()
    h.connect(CONN_A, "p", clean=False, expiry=0xFFFFFFFF)
    h.take()
    subscribe(h, 1, "t", "p")
    h.shard.handle([env.Kind.SUBSCRIBED, "p", CONN_A, 1, [0], 0], h.now)
    retained = [env.Kind.DELIVER, "t", b"r", 0, True, None, [["p", 0, True, [], "t"]], None]
    h.shard.handle(retained, h.now)
    assert h.peek_acceptors() == []
    _ops, later = h.shard.take_durable()
    assert [kind_of(e) for _, e in later] == [env.Kind.SEND_SUBACK, env.Kind.SEND_PUBLISH]
    hold = h.shard.hold_for_commit(later)
    h.shard.handle(retained, h.now)  # a later pass, before the commit is done
    assert h.peek_acceptors() == []
    h.shard.commit_done(hold)
    h.shard.take_durable()
    h.shard.handle(retained, h.now)
    assert [kind_of(e) for e in h.peek_acceptors()] == [env.Kind.SEND_PUBLISH_MANY]
