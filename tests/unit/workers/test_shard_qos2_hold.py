"""A QoS 2 copy for a persistent session leaves only once its packet id is
stored (workers/outbound.py `pump`, workers/outbox.py `send_held`).

Why: a client that holds a QoS 2 packet id the store does not know can get
the same message twice. If the shard dies (or its host is cut off) before
the commit, its successor does not know that copy; the publisher, never
acknowledged, resends; the successor delivers it under another packet id
and the client releases both. What follows to that connection waits
behind the held copy, in order; what the commit could not store is not sent
(`failed_envelope`)."""

from __future__ import annotations

from typing import Any

from flockmq import envelopes as env
from flockmq.store import PutMessage, UpdateMessage
from flockmq.workers.outbox import failed_envelope
from tests.unit.wire import kind_of, wire

from .test_shard import CONN_A, NEVER, Harness


def subscribed(h: Harness, client_id: str, *, clean: bool = False) -> None:
    """A session on CONN_A subscribed to "t" at QoS 2, SUBACK sent."""
    h.connect(CONN_A, client_id, clean=clean, expiry=None if clean else NEVER)
    h.subscribe(CONN_A, client_id, "t", 2)
    h.shard.handle([env.Kind.SUBSCRIBED, client_id, CONN_A, 1, [2], 0], h.now)
    h.take()


def publishes(envelopes: list[Any]) -> list[tuple[Any, ...]]:
    """(packet id, payload, qos, dup) of every PUBLISH in `envelopes`."""
    out: list[tuple[Any, ...]] = []
    for e in map(wire, envelopes):
        if kind_of(e) == env.Kind.SEND_PUBLISH:
            out.append((e[2], e[4], e[5], e[7]))
        elif kind_of(e) == env.Kind.SEND_PUBLISH_MANY:  # QoS 0, encoded once for several
            out.append((None, e[3], 0, False))
        elif kind_of(e) == env.Kind.SEND_PUBLISHES:
            fields = e[2]
            for i in range(0, len(fields), 7):
                one = fields[i : i + 7]
                out.append((one[0], one[2], one[3], one[5]))
    return out


def test_a_qos2_copy_waits_for_the_commit_that_stores_its_packet_id() -> None:
    h = Harness()
    subscribed(h, "sub")
    h.deliver("sub", b"m", 2)
    assert h.peek_acceptors() == []  # not before its commit
    ops, later = h.shard.take_durable()
    assert [(op.packet_id, op.payload) for op in ops if isinstance(op, PutMessage)] == [(1, b"m")]
    assert publishes([e for _, e in later]) == [(1, b"m", 2, False)]


def test_a_queued_qos2_message_going_in_flight_waits_for_its_update() -> None:
    h = Harness(max_inflight=1)
    subscribed(h, "sub")
    h.deliver("sub", b"first", 2)
    h.deliver("sub", b"second", 2)  # queued: the window is full
    h.take()
    h.ack(env.Kind.PUBREC_IN, CONN_A, "sub", 1)
    h.take()
    h.ack(env.Kind.PUBCOMP_IN, CONN_A, "sub", 1)  # the window opens: "second" goes
    assert publishes(h.peek_acceptors()) == []
    ops, later = h.shard.take_durable()
    assert [op for op in ops if isinstance(op, UpdateMessage)] == [
        UpdateMessage("sub", 2, 2, 0)  # seq 2, packet id 2, awaiting PUBREC
    ]
    assert publishes([e for _, e in later]) == [(2, b"second", 2, False)]


def test_what_follows_to_that_connection_waits_behind_it_until_the_commit() -> None:
    h = Harness()
    subscribed(h, "sub")
    h.deliver("sub", b"q2", 2)
    h.deliver("sub", b"q0", 0)
    assert h.peek_acceptors() == []
    _ops, later = h.shard.take_durable()
    hold = h.shard.hold_for_commit(later)
    # A later pass, before that commit is done: still behind it.
    h.deliver("sub", b"q0-next", 0)
    _ops2, later2 = h.shard.take_durable()
    hold2 = h.shard.hold_for_commit(later2)
    assert publishes([e for _, e in later]) == [(1, b"q2", 2, False), (None, b"q0", 0, False)]
    assert publishes([e for _, e in later2]) == [(None, b"q0-next", 0, False)]
    h.shard.commit_done(hold)
    h.shard.commit_done(hold2)
    h.deliver("sub", b"q0-free", 0)  # nothing waits any more: at once
    assert publishes(h.peek_acceptors()) == [(None, b"q0-free", 0, False)]


def test_qos1_copies_and_clean_sessions_do_not_wait() -> None:
    persistent, clean = Harness(), Harness()
    subscribed(persistent, "sub")
    subscribed(clean, "sub", clean=True)
    persistent.deliver("sub", b"q1", 1)
    clean.deliver("sub", b"q2", 2)  # nothing of it is stored: nothing to wait for
    assert publishes(persistent.peek_acceptors()) == [(1, b"q1", 1, False)]
    assert publishes(clean.peek_acceptors()) == [(1, b"q2", 2, False)]


def test_a_resend_on_resume_does_not_wait() -> None:
    """Its packet id is stored already: it goes with DUP at once."""
    h = Harness()
    subscribed(h, "sub")
    h.deliver("sub", b"m", 2)
    h.take()
    h.close(CONN_A, "sub")
    h.take()
    h.connect(CONN_A + 1, "sub", clean=False, expiry=NEVER)
    assert publishes(h.peek_acceptors()) == [(1, b"m", 2, True)]


def test_a_held_copy_whose_commit_failed_is_not_sent() -> None:
    h = Harness()
    subscribed(h, "sub")
    h.deliver("sub", b"q2", 2)
    ((dest, one),) = h.shard.take_durable()[1]
    assert failed_envelope(dest, one) is None


def test_a_held_batch_whose_commit_failed_keeps_its_qos1_copies_only() -> None:
    """A QoS 1 copy may go (a duplicate is allowed at QoS 1), a new QoS 2
    one may not; a stored QoS 2 one resent (DUP) goes as it is."""
    batch: env.SendPublishesTuple = (
        env.Kind.SEND_PUBLISHES,
        CONN_A,
        [5, "t", b"a", 1, False, False, None, 6, "t", b"b", 2, False, False, None],
    )
    instead = failed_envelope(0, batch)
    assert instead is not None
    assert publishes([instead[1]]) == [(5, b"a", 1, False)]
    only_qos2: env.SendPublishesTuple = (env.Kind.SEND_PUBLISHES, CONN_A, batch[2][7:])
    assert failed_envelope(0, only_qos2) is None
    resend: env.SendPublishTuple = (
        *(env.Kind.SEND_PUBLISH, CONN_A, 7, "t", b"c"),
        *(2, False, True, None),  # QoS 2, no retain, DUP
    )
    assert failed_envelope(0, resend) == (0, resend)
