"""`workers.outbox.failed_envelope`: what a worker sends instead of each
envelope it held back for a commit that failed (the store could not write).

The envelopes are the ones a real shard holds back (`after_commit`), built by
driving it, so a change of their layout shows here: a reply unpacked with the
wrong arity once crashed the callback and the rest of that commit's held
envelopes were never sent."""

from __future__ import annotations

from typing import Any

from flockmq import envelopes as env
from flockmq.envelopes import acceptor_of
from flockmq.mqtt.packet_types import PacketType
from flockmq.workers.outbox import Destination, failed_envelope
from tests.unit.wire import kind_of, wire

from .test_shard import CONN_A, CONN_B, NEVER, Harness


def failed(dest: Destination, e: env.Envelope) -> tuple[Destination, list[Any]]:
    """failed_envelope, and what its receiver gets."""
    instead = failed_envelope(dest, e)
    assert instead is not None
    return instead[0], wire(instead[1])


def held(h: Harness) -> list[tuple[Destination, env.Envelope]]:
    """What the shard holds back for this pass's commit."""
    _ops, later = h.shard.take_durable()
    h.take()
    return later


def persistent(h: Harness, client_id: str, conn: int) -> None:
    """A persistent session subscribed to "t" at QoS 2, SUBACK sent."""
    h.connect(conn, client_id, clean=False, expiry=NEVER)
    h.subscribe(conn, client_id, "t", 2)
    h.shard.handle([env.Kind.SUBSCRIBED, client_id, conn, 1, [2], 0], h.now)
    h.take()


def test_a_qos2_publish_whose_packet_id_was_not_kept_is_not_routed_nor_acknowledged() -> None:
    h = Harness()
    persistent(h, "pub", CONN_B)
    h.publish_in(CONN_B, "pub", 7, 2, b"q2")
    ((dest, route),) = held(h)
    assert (dest, kind_of(route)) == ("router", env.Kind.ROUTE)
    reply = env.Route._make(route).reply
    assert reply is not None and len(reply) == 5  # [conn, packet_id, attempt, uid, key]
    # Not routed: the publisher's acceptor is told the publish was not stored
    # (so no PUBREC), for the attempt it is waiting on.
    assert failed(dest, route) == (
        acceptor_of(CONN_B),
        [env.Kind.STORED, CONN_B, 7, False, 0],
    )


def test_a_copy_that_was_not_stored_is_not_confirmed() -> None:
    h = Harness()
    persistent(h, "sub", CONN_A)
    h.shard.handle(
        [
            env.Kind.DELIVER,
            "t",
            b"x",
            1,
            False,
            None,
            [["sub", 1, False, [], "t"]],
            [CONN_B, 9, 3, 1, None, True],
        ],
        h.now,
    )
    ((dest, stored),) = held(h)
    assert (dest, wire(stored)) == (acceptor_of(CONN_B), [env.Kind.STORED, CONN_B, 9, True, 3])
    assert failed(dest, stored) == (dest, [env.Kind.STORED, CONN_B, 9, False, 3])


def test_a_subscription_that_was_not_stored_is_refused() -> None:
    h = Harness()
    h.connect(CONN_A, "sub", clean=False, expiry=NEVER)
    h.subscribe(CONN_A, "sub", "t", 1)
    h.take()
    h.shard.handle([env.Kind.SUBSCRIBED, "sub", CONN_A, 1, [1, 0], 0], h.now)
    ((dest, suback),) = held(h)
    assert (dest, wire(suback)) == (acceptor_of(CONN_A), [env.Kind.SEND_SUBACK, CONN_A, 1, [1, 0]])
    assert failed(dest, suback) == (dest, [env.Kind.SEND_SUBACK, CONN_A, 1, [0x80, 0x80]])


def test_a_pubrel_is_sent_as_it_is() -> None:
    h = Harness()
    persistent(h, "sub", CONN_A)
    h.deliver("sub", b"x", 2)
    h.take()
    h.ack(env.Kind.PUBREC_IN, CONN_A, "sub", 1)
    ((dest, pubrel),) = held(h)
    assert (dest, wire(pubrel)) == (
        acceptor_of(CONN_A),
        [env.Kind.SEND_ACK, CONN_A, PacketType.PUBREL, 1, 0],
    )
    assert failed(dest, pubrel) == (dest, wire(pubrel))


def test_every_kind_a_shard_holds_back_is_one_of_those() -> None:
    """The four tests above and test_shard_qos2_hold.py (a QoS 2 copy whose
    packet id this pass stores) cover every kind that reaches
    failed_envelope: one pass that produces all of them holds back nothing
    else."""
    h = Harness()
    persistent(h, "pub", CONN_B)
    persistent(h, "sub", CONN_A)
    h.deliver("sub", b"x", 2)
    h.take()
    h.deliver("sub", b"z", 2)  # held: the QoS 1 copy below waits behind it
    h.publish_in(CONN_B, "pub", 7, 2, b"q2")
    h.shard.handle(
        [
            env.Kind.DELIVER,
            "t",
            b"y",
            1,
            False,
            None,
            [["sub", 1, False, [], "t"]],
            [CONN_B, 9, 0, 1, None, True],
        ],
        h.now,
    )
    h.subscribe(CONN_A, "sub", "u", 1)
    h.shard.handle([env.Kind.SUBSCRIBED, "sub", CONN_A, 1, [1], 0], h.now)
    h.ack(env.Kind.PUBREC_IN, CONN_A, "sub", 1)
    later = held(h)
    # (the SUB was made after the held-back ROUTE: it waits too, in order)
    assert sorted(kind_of(e) for _, e in later) == sorted(
        [
            *(env.Kind.SEND_PUBLISH, env.Kind.SEND_PUBLISH),
            *(env.Kind.ROUTE, env.Kind.STORED, env.Kind.SEND_SUBACK, env.Kind.SEND_ACK),
            env.Kind.SUB,
        ]
    )
    for dest, e in later:
        failed_envelope(dest, e)  # none raises


def test_held_back_envelopes_are_told_apart_by_kind_not_by_class() -> None:
    """A shard builds STORED and a QoS 2 ROUTE as plain tuples; their
    NamedTuples (or the lists a receiver sees) are read the same way."""
    stored = env.Stored(env.Kind.STORED, CONN_B, 9, True, 3)
    reply = env.Reply(CONN_B, 7, 2, 1, env.Qos2Key("pub", 7, 42, True))
    route = env.Route(env.Kind.ROUTE, "pub", "t", b"x", 2, False, None, reply)
    forms: list[Any] = [stored, tuple(stored), wire(stored)]
    for form in forms:
        assert failed(acceptor_of(CONN_B), form) == (
            acceptor_of(CONN_B),
            [env.Kind.STORED, CONN_B, 9, False, 3],
        )
    forms = [route, tuple(route), wire(route)]
    for form in forms:
        assert failed("router", form) == (
            acceptor_of(CONN_B),
            [env.Kind.STORED, CONN_B, 7, False, 2],
        )
