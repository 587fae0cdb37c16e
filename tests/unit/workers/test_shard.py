"""The sans-IO session shard driven with envelopes and an explicit `now`, no
processes: takeover, session present, clean-session discard, the QoS 1/2
outbound window and its ordered queue, the PUBACK/PUBREC/PUBREL/PUBCOMP state
machine, redelivery with DUP on resume, inbound QoS 2 duplicate suppression,
queue limits, wills (and their delay) and session expiry."""

from __future__ import annotations

import contextlib
from typing import TypedDict, Unpack

import pytest

from flockmq import envelopes as env
from flockmq.envelopes import Wire, make_conn_id
from flockmq.mqtt.packet_types import PacketType
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.sizes import message_size
from flockmq.workers.shard import Shard, ShardLimits
from tests.unit.wire import kind_of, of_kind, wire, wire_all

NEVER = 0xFFFFFFFF
CONN_A = make_conn_id(0, 1, 1)
CONN_B = make_conn_id(1, 1, 2)
CONN_C = make_conn_id(0, 1, 3)


class Limits(TypedDict, total=False):
    """ShardLimits' fields, as Harness passes them on."""

    max_inflight: int
    max_queued_messages: int
    max_queued_bytes: int
    max_subscriptions: int
    max_subscription_bytes: int
    queue_qos0: bool
    max_session_expiry: int
    routers: int


class ConnectOptions(TypedDict, total=False):
    """Harness.connect's options, as connected() passes them on."""

    expiry: int | None
    level: int
    will: env.Will | None
    receive_maximum: int


def connack_conn(e: Wire) -> int | None:
    """The connection a CONNACK answers; None for another kind."""
    return env.Connack._make(e).conn if kind_of(e) == env.Kind.CONNACK else None


def session_present(connack: Wire) -> bool:
    return env.Connack._make(connack).session_present


class Harness:
    """A shard plus helpers that build envelopes and collect what it sends."""

    def __init__(self, **limits: Unpack[Limits]) -> None:
        self.shard = Shard(0, ShardLimits(**limits))
        self.now = 1000.0

    # --- inputs -----------------------------------------------------------------
    def connect(
        self,
        conn: int,
        client_id: str,
        *,
        clean: bool,
        expiry: int | None = None,
        level: int = 4,
        will: env.Will | None = None,
        receive_maximum: int = 0,
    ) -> Wire:
        """CONNECT; returns the CONNACK envelope."""
        if expiry is None:
            expiry = 0 if clean else NEVER
        connect = env.Connect(
            env.Kind.CONNECT,
            conn=conn,
            client_id=client_id,
            clean_start=clean,
            session_expiry=expiry,
            level=level,
            keepalive=60,
            username=None,
            will=will,
            receive_maximum=receive_maximum,
            assigned_id=False,
        )
        self.shard.handle(wire(connect), self.now)
        return self.connack_of(conn)

    def connack_of(self, conn: int) -> Wire:
        connacks = [e for e in self.peek_acceptors() if connack_conn(e) == conn]
        assert len(connacks) == 1
        return connacks[0]

    def take_over(self, conn: int, old: int, client_id: str, *, clean: bool) -> Wire:
        """CONNECT on `conn` while `old` is attached: the shard asks to close
        `old` and attaches `conn` once `old` is reported CLOSED; returns the
        CONNACK."""
        connect = env.Connect(
            env.Kind.CONNECT,
            conn=conn,
            client_id=client_id,
            clean_start=clean,
            session_expiry=0 if clean else NEVER,
            level=4,
            keepalive=60,
            username=None,
            will=None,
            receive_maximum=0,
            assigned_id=False,
        )
        self.shard.handle(wire(connect), self.now)
        assert [env.Kind.CLOSE, old, ReasonCode.SESSION_TAKEN_OVER] in self.peek_acceptors()
        assert not [e for e in self.peek_acceptors() if connack_conn(e) == conn]
        self.close(old, client_id)
        return self.connack_of(conn)

    def close(self, conn: int, client_id: str, *, will: bool = True) -> None:
        closed = env.Closed(
            env.Kind.CLOSED, conn, client_id, publish_will=will, session_expiry=None
        )
        self.shard.handle(wire(closed), self.now)

    def subscribe(self, conn: int, client_id: str, topic_filter: str, qos: int) -> None:
        entry = env.SubEntry(
            topic_filter,
            qos,
            no_local=False,
            retain_as_published=False,
            retain_handling=0,
            sub_id=None,
        )
        subscribe = env.Subscribe(env.Kind.SUBSCRIBE, conn, client_id, 1, [entry])
        self.shard.handle(wire(subscribe), self.now)

    def deliver(
        self,
        client_id: str,
        payload: bytes,
        qos: int,
        granted: int | None = None,
        props: env.Props = None,
    ) -> None:
        """A DELIVER as the router sends it: the target names a filter the
        session holds (its first), or "t" when it holds none."""
        granted = qos if granted is None else granted
        session = self.shard.sessions.get(client_id)
        held = list(session.subscriptions) if session is not None else []
        topic_filter = held[0] if held else "t"
        target = env.Target(
            client_id,
            granted_qos=granted,
            retain_as_published=False,
            sub_ids=[],
            topic_filter=topic_filter,
        )
        deliver = env.Deliver(
            env.Kind.DELIVER,
            topic="t",
            payload=payload,
            qos=qos,
            retain=False,
            props=props,
            targets=[target],
            reply=None,
        )
        self.shard.handle(wire(deliver), self.now)

    def ack(self, kind: int, conn: int, client_id: str, packet_id: int | None, rc: int = 0) -> None:
        """packet_id: as publishes() gives it (None only at QoS 0, never acknowledged)."""
        if kind in (env.Kind.PUBACK_IN, env.Kind.PUBREC_IN):
            self.shard.handle([kind, conn, client_id, packet_id, rc], self.now)
        else:
            self.shard.handle([kind, conn, client_id, packet_id], self.now)

    def publish_in(
        self, conn: int, client_id: str, packet_id: int, qos: int, payload: bytes
    ) -> None:
        publish = env.Publish(
            env.Kind.PUBLISH,
            conn,
            client_id,
            packet_id,
            topic="in/t",
            payload=payload,
            qos=qos,
            retain=False,
            props=None,
            attempt=0,
            retry=False,
            uid=1,
        )
        self.shard.handle(wire(publish), self.now)

    # --- outputs ----------------------------------------------------------------
    def peek_acceptors(self) -> list[Wire]:
        """What the shard queued for acceptors, as they get it (tests/unit/wire.py)."""
        return [wire(e) for out in self.shard.to_acceptors.values() for e in out]

    def take(self) -> tuple[list[Wire], list[Wire]]:
        """(to_router, to_acceptors) since the last take, then cleared; what
        waited for a store commit is included, as if the commit succeeded."""
        router: list[Wire] = list(wire_all(self.shard.to_router))
        acceptors = self.peek_acceptors()
        self.ops, later = self.shard.take_durable()
        self.shard.commit_done(self.shard.hold_for_commit(later))  # as if committed
        for dest, e in later:
            to_router = dest == "router" or isinstance(dest, tuple)
            (router if to_router else acceptors).append(wire(e))
        self.shard.to_router.clear()
        for out in self.shard.to_acceptors.values():
            out.clear()
        return router, acceptors

    @staticmethod
    def connack_of_taken(acceptors: list[Wire], conn: int) -> Wire:
        (connack,) = [e for e in acceptors if connack_conn(e) == conn]
        return connack

    def take_acceptors(self) -> list[Wire]:
        return self.take()[1]

    def take_router(self) -> list[Wire]:
        return self.take()[0]


def publishes(envelopes: list[Wire]) -> list[tuple[int | None, bytes, int, bool]]:
    """(packet_id, payload, qos, dup) of each SEND_PUBLISH, in order."""
    return [(p.packet_id, p.payload, p.qos, p.dup) for p in of_kind(envelopes, env.SendPublish)]


def acks(envelopes: list[Wire]) -> list[tuple[int, int, int]]:
    """(packet_type, packet_id, rc) of each SEND_ACK, in order."""
    return [(a.packet_type, a.packet_id, a.rc) for a in of_kind(envelopes, env.SendAck)]


def routes(envelopes: list[Wire]) -> list[tuple[str, bytes, int, bool]]:
    return [(r.topic, r.payload, r.qos, r.retain) for r in of_kind(envelopes, env.Route)]


def replies(envelopes: list[Wire]) -> list[env.Reply]:
    """The reply address each ROUTE carries (whose acknowledgement waits on it)."""
    routes = of_kind(envelopes, env.Route)
    return [env.Reply._make(r.reply) for r in routes if r.reply is not None]


def duplicates_routed(envelopes: list[Wire]) -> list[int]:
    """Packet ids the shard answered as QoS 2 retransmissions (ROUTED -1)."""
    return [r.packet_id for r in of_kind(envelopes, env.Routed) if r.shards == -1]


# --- connect, session present, clean session --------------------------------------------
def test_new_session_has_no_session_present_and_goes_online() -> None:
    h = Harness()
    connack = h.connect(CONN_A, "c1", clean=False)
    assert connack == [env.Kind.CONNACK, CONN_A, False, ReasonCode.SUCCESS, None]
    assert h.shard.counters["sessions_created"] == 1
    # The router hears of a session's connection only once it subscribes
    # (a client that only publishes costs the router nothing), and ahead of
    # its first SUB, so that subscription is matched with the connection.
    assert h.take_router() == []
    h.subscribe(CONN_A, "c1", "a/#", 0)
    h.subscribe(CONN_A, "c1", "b", 0)
    router = [kind_of(e) for e in h.take_router()]
    assert router == [env.Kind.ONLINE, env.Kind.SUB, env.Kind.SUB]
    h.close(CONN_A, "c1")
    assert [env.Kind.ONLINE, "c1", 0] in h.take_router()


def test_a_session_that_never_subscribed_never_reaches_the_router() -> None:
    h = Harness()
    h.connect(CONN_A, "c1", clean=True)
    h.close(CONN_A, "c1")
    h.connect(CONN_B, "c2", clean=False)
    h.close(CONN_B, "c2")
    assert h.take_router() == []


def test_persistent_session_resumes_with_session_present_and_subscriptions() -> None:
    h = Harness()
    h.connect(CONN_A, "c1", clean=False)
    h.subscribe(CONN_A, "c1", "a/#", 1)
    h.close(CONN_A, "c1")
    router, _ = h.take()
    assert [env.Kind.ONLINE, "c1", 0] in router
    assert not any(kind_of(e) == env.Kind.UNSUB_ALL for e in router)
    assert session_present(h.connect(CONN_B, "c1", clean=False)) is True
    assert set(h.shard.sessions["c1"].subscriptions) == {"a/#"}


def test_clean_session_discards_the_old_session() -> None:
    h = Harness()
    h.connect(CONN_A, "c1", clean=False)
    h.subscribe(CONN_A, "c1", "a/#", 1)
    h.close(CONN_A, "c1")
    h.deliver("c1", b"queued", 1)
    h.take()
    assert session_present(h.connect(CONN_B, "c1", clean=True)) is False
    router, acceptors = h.take()
    assert [env.Kind.UNSUB_ALL, "c1"] in router
    assert publishes(acceptors) == []
    session = h.shard.sessions["c1"]
    assert not session.subscriptions and not session.queue and not session.inflight


def test_clean_session_ends_when_its_connection_closes() -> None:
    h = Harness()
    h.connect(CONN_A, "c1", clean=True)
    h.subscribe(CONN_A, "c1", "a", 0)
    h.take()
    h.close(CONN_A, "c1")
    assert "c1" not in h.shard.sessions
    assert [env.Kind.UNSUB_ALL, "c1"] in h.take_router()
    assert session_present(h.connect(CONN_B, "c1", clean=False)) is False


# --- takeover ---------------------------------------------------------------------------
def test_takeover_closes_old_connection_and_resumes_the_session() -> None:
    h = Harness()
    will = env.Will("w/c1", b"gone", 1, False, None, 0)
    h.connect(CONN_A, "c1", clean=False, will=will)
    h.subscribe(CONN_A, "c1", "a", 1)
    h.take()
    connack = h.take_over(CONN_B, CONN_A, "c1", clean=False)
    assert session_present(connack) is True
    router, acceptors = h.take()
    assert [env.Kind.CLOSE, CONN_A, ReasonCode.SESSION_TAKEN_OVER] in acceptors
    assert routes(router) == [("w/c1", b"gone", 1, False)]  # the old connection's will
    assert router.index([env.Kind.ONLINE, "c1", 0]) < router.index([env.Kind.ONLINE, "c1", CONN_B])
    assert h.shard.counters["takeovers"] == 1
    # Packets from the old connection no longer reach the session.
    h.publish_in(CONN_A, "c1", 5, 1, b"late")
    assert h.take() == ([], [])
    assert h.shard.counters["stale_connection_packets"] == 1
    # ... and a second CLOSED of the old connection does not detach the new one.
    h.close(CONN_A, "c1")
    assert h.shard.sessions["c1"].conn == CONN_B
    assert h.take() == ([], [])


def test_takeover_waits_for_what_the_old_connection_sent_last() -> None:
    """The old connection's PUBACK travels on its own acceptor's pipe and may
    come after the new connection's CONNECT: it still counts, so the message
    is not sent again on the new connection."""
    h = Harness()
    connected(h)
    h.deliver("c1", b"m1", 1)
    ((pid, _payload, _qos, _dup),) = publishes(h.take_acceptors())
    h.shard.handle(
        [env.Kind.CONNECT, CONN_B, "c1", False, NEVER, 4, 60, None, None, 0, False], h.now
    )
    # Sent by the new connection before its CONNACK: held, not dropped as stale.
    h.subscribe(CONN_B, "c1", "b", 1)
    assert h.take_router() == []
    h.ack(env.Kind.PUBACK_IN, CONN_A, "c1", pid)  # the old connection's last words
    h.close(CONN_A, "c1")
    router, acceptors = h.take()
    assert session_present(h.connack_of_taken(acceptors, CONN_B)) is True
    assert publishes(acceptors) == []  # m1 was acknowledged: not redelivered
    assert [s.kind for s in of_kind(router, env.Sub)] == [env.Kind.SUB]  # the held SUBSCRIBE
    assert h.shard.sessions["c1"].inflight == {}
    assert h.shard.counters["stale_connection_packets"] == 0


def test_takeover_attaches_anyway_when_the_old_acceptor_never_answers() -> None:
    h = Harness()
    connected(h)
    h.deliver("c1", b"m1", 1)
    h.take()
    h.shard.handle(
        [env.Kind.CONNECT, CONN_B, "c1", False, NEVER, 4, 60, None, None, 0, False], h.now
    )
    due = h.shard.next_timer()
    assert due is not None and h.now < due <= h.now + 10
    h.shard.handle_timer(due - 0.01)
    assert h.shard.sessions["c1"].conn == CONN_A  # still waiting
    h.shard.handle_timer(due)
    _router, acceptors = h.take()
    assert session_present(h.connack_of_taken(acceptors, CONN_B)) is True
    assert [(p, d) for _, p, _, d in publishes(acceptors)] == [(b"m1", True)]  # DUP
    assert h.shard.counters["takeovers_unconfirmed"] == 1
    # The old connection's CLOSED, when it finally comes, changes nothing.
    h.close(CONN_A, "c1")
    assert h.shard.sessions["c1"].conn == CONN_B


def test_a_waiting_connection_that_closes_is_forgotten() -> None:
    h = Harness()
    connected(h)
    h.shard.handle(
        [env.Kind.CONNECT, CONN_B, "c1", False, NEVER, 4, 60, None, None, 0, False], h.now
    )
    h.close(CONN_B, "c1")  # gave up before it was attached
    h.close(CONN_A, "c1")  # then the old one is closed as asked
    _router, acceptors = h.take()
    assert not [e for e in acceptors if kind_of(e) == env.Kind.CONNACK]
    assert h.shard.sessions["c1"].conn is None
    assert h.shard.state.takeovers.pending == {}


def test_a_third_connection_takes_over_the_waiting_one() -> None:
    h = Harness()
    connected(h)
    for conn in (CONN_B, CONN_C):
        h.shard.handle(
            [env.Kind.CONNECT, conn, "c1", False, NEVER, 4, 60, None, None, 0, False], h.now
        )
    acceptors = h.peek_acceptors()
    assert [env.Kind.CLOSE, CONN_A, ReasonCode.SESSION_TAKEN_OVER] in acceptors
    assert [env.Kind.CLOSE, CONN_B, ReasonCode.SESSION_TAKEN_OVER] in acceptors
    h.close(CONN_B, "c1")
    assert h.shard.sessions["c1"].conn == CONN_A
    h.close(CONN_A, "c1")
    _router, acceptors = h.take()
    assert [c.conn for c in of_kind(acceptors, env.Connack)] == [CONN_C]
    assert h.shard.sessions["c1"].conn == CONN_C


def test_takeover_with_clean_session_starts_fresh() -> None:
    h = Harness()
    h.connect(CONN_A, "c1", clean=False)
    h.subscribe(CONN_A, "c1", "a", 1)
    h.take()
    assert session_present(h.take_over(CONN_B, CONN_A, "c1", clean=True)) is False
    assert h.shard.sessions["c1"].subscriptions == {}
    assert h.shard.sessions["c1"].conn == CONN_B


def test_takeover_of_a_clean_connection_by_a_persistent_one() -> None:
    """The first connection's session ends with it (clean session 1): the new
    one gets a fresh session (session present 0) that it can use."""
    h = Harness()
    h.connect(CONN_A, "c1", clean=True)
    h.take()
    assert session_present(h.take_over(CONN_B, CONN_A, "c1", clean=False)) is False
    assert h.shard.sessions["c1"].conn == CONN_B
    h.take()
    h.subscribe(CONN_B, "c1", "a", 1)
    router, _ = h.take()
    assert [kind_of(e) for e in router] == [env.Kind.ONLINE, env.Kind.SUB]
    assert router[0] == [env.Kind.ONLINE, "c1", CONN_B]


# --- outbound QoS 1/2: window, queue, state machine -------------------------------------
def connected(h: Harness, client_id: str = "c1", **kwargs: Unpack[ConnectOptions]) -> None:
    """A persistent session on CONN_A subscribed to "t" (the router only
    delivers to sessions that hold a matching subscription)."""
    h.connect(CONN_A, client_id, clean=False, **kwargs)
    h.subscribe(CONN_A, client_id, "t", 2)
    h.take()


def test_qos1_window_and_ordered_queue() -> None:
    h = Harness(max_inflight=2)
    connected(h)
    for i in range(5):
        h.deliver("c1", b"m%d" % i, 1)
    sent = publishes(h.take_acceptors())
    assert [(p, q, d) for _, p, q, d in sent] == [(b"m0", 1, False), (b"m1", 1, False)]
    pids = [pid for pid, *_ in sent]
    assert len(set(pids)) == 2 and all(pids)
    session = h.shard.sessions["c1"]
    assert len(session.inflight) == 2 and len(session.queue) == 3
    h.ack(env.Kind.PUBACK_IN, CONN_A, "c1", pids[1])  # out of order: frees one slot
    assert [p for _, p, _, _ in publishes(h.take_acceptors())] == [b"m2"]
    h.ack(env.Kind.PUBACK_IN, CONN_A, "c1", pids[0])
    assert [p for _, p, _, _ in publishes(h.take_acceptors())] == [b"m3"]
    h.ack(env.Kind.PUBACK_IN, CONN_A, "c1", pids[0])  # a duplicate ack frees nothing
    assert publishes(h.take_acceptors()) == []
    assert h.shard.counters["unexpected_acks"] == 1
    assert session.queued_bytes == message_size("t", b"m4", None)


def test_pubacks_of_one_read_free_the_window_in_order() -> None:
    """PUBACKS_IN (the acknowledgements of one read): each as a PUBACK_IN,
    the window refilled once after them, in queue order."""
    h = Harness(max_inflight=3)
    connected(h)
    for i in range(7):
        h.deliver("c1", b"m%d" % i, 1)
    pids = [pid or 0 for pid, *_ in publishes(h.take_acceptors())]
    assert len(pids) == 3
    h.shard.handle(
        wire(env.PubacksIn(env.Kind.PUBACKS_IN, CONN_A, "c1", [pids[1], pids[0], 999])), h.now
    )
    out = h.take_acceptors()
    assert [kind_of(e) for e in out] == [env.Kind.SEND_PUBLISHES]  # one envelope for both
    sent = publishes(out)
    assert [p for _, p, _, _ in sent] == [b"m3", b"m4"]
    assert len(set(pids + [pid for pid, *_ in sent])) == 5  # no packet id in flight twice
    assert h.shard.counters["unexpected_acks"] == 1
    assert len(h.shard.sessions["c1"].inflight) == 3


def test_a_wrong_ack_among_pubacks_stops_the_rest() -> None:
    """A PUBACK for a QoS 2 message is a protocol violation [MQTT-4.8.0-1]:
    the session lets go of the connection, and the PUBACKs after it in the
    same envelope are not acted on."""
    h = Harness(max_inflight=4)
    connected(h)
    h.deliver("c1", b"q1", 1)
    h.deliver("c1", b"q2", 2)
    h.deliver("c1", b"q1b", 1)
    pids = [pid or 0 for pid, *_ in publishes(h.take_acceptors())]
    h.shard.handle(wire(env.PubacksIn(env.Kind.PUBACKS_IN, CONN_A, "c1", pids)), h.now)
    session = h.shard.sessions["c1"]
    assert session.conn is None and h.shard.counters["wrong_acks"] == 1
    assert list(session.inflight) == pids[1:]  # the first was acknowledged, the last was not


def test_a_refill_is_split_into_envelopes_of_about_a_frame() -> None:
    """A refill of large messages goes as several SEND_PUBLISHES of about
    MAX_FRAME_BYTES each, in order, not as one envelope of the whole window
    (one frame past the bus's limits, one long write in the acceptor)."""
    from flockmq.bus import MAX_FRAME_BYTES

    h = Harness(max_inflight=10)
    connected(h)
    for i in range(10):
        h.deliver("c1", b"s%d" % i, 1)
    pids = [pid or 0 for pid, *_ in publishes(h.take_acceptors())]
    big = [bytes([65 + i]) * 100_000 for i in range(10)]
    for payload in big:
        h.deliver("c1", payload, 1)  # queued behind the full window
    assert h.take_acceptors() == []
    h.shard.handle(wire(env.PubacksIn(env.Kind.PUBACKS_IN, CONN_A, "c1", pids)), h.now)
    out = h.take_acceptors()
    assert len(out) == 4  # 3 + 3 + 3 + 1 messages of 100 kB
    for envelope in out:
        sizes = [len(p) for _, p, _, _ in publishes([envelope])]
        assert sum(sizes) - sizes[-1] < MAX_FRAME_BYTES
    assert [p for _, p, _, _ in publishes(out)] == big


def test_pubacks_refill_the_window_even_if_a_later_entry_fails() -> None:
    """A malformed entry (an unhashable packet id) after valid ones: what
    was acknowledged still refills the window, as PUBACK_INs would have."""
    h = Harness(max_inflight=2)
    connected(h)
    for i in range(4):
        h.deliver("c1", b"m%d" % i, 1)
    pids = [pid or 0 for pid, *_ in publishes(h.take_acceptors())]
    bad = [env.Kind.PUBACKS_IN, CONN_A, "c1", [pids[0], [1]]]
    with contextlib.suppress(TypeError):
        h.shard.outbound.on_pubacks(bad, h.now)
    assert [p for _, p, _, _ in publishes(h.take_acceptors())] == [b"m2"]


def test_receive_maximum_narrows_the_window() -> None:
    h = Harness(max_inflight=10)
    connected(h, level=5, receive_maximum=1)
    h.deliver("c1", b"a", 1)
    h.deliver("c1", b"b", 1)
    assert [p for _, p, _, _ in publishes(h.take_acceptors())] == [b"a"]


def test_qos2_outbound_state_machine() -> None:
    h = Harness(max_inflight=1)
    connected(h)
    h.deliver("c1", b"one", 2)
    h.deliver("c1", b"two", 2)
    ((pid, payload, qos, dup),) = publishes(h.take_acceptors())
    assert (payload, qos, dup) == (b"one", 2, False)
    h.ack(env.Kind.PUBREC_IN, CONN_A, "c1", pid)
    assert acks(h.take_acceptors()) == [(PacketType.PUBREL, pid, 0)]
    h.ack(env.Kind.PUBCOMP_IN, CONN_A, "c1", pid)
    assert [p for _, p, _, _ in publishes(h.take_acceptors())] == [b"two"]
    assert len(h.shard.sessions["c1"].inflight) == 1


def test_pubrec_for_unknown_packet_id_answers_pubrel_not_found() -> None:
    h = Harness()
    connected(h)
    h.ack(env.Kind.PUBREC_IN, CONN_A, "c1", 99)
    assert acks(h.take_acceptors()) == [
        (PacketType.PUBREL, 99, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)
    ]


def test_failed_pubrec_for_unknown_packet_id_gets_no_pubrel() -> None:
    """A PUBREC with a failure reason code ends the flow: there is nothing to
    release, so no PUBREL 0x92 either (MQTT 5.0 section 4.3.3)."""
    h = Harness()
    connected(h, level=5)
    for rc in (0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99):
        h.ack(env.Kind.PUBREC_IN, CONN_A, "c1", 99, rc=rc)
    assert h.take_acceptors() == []
    h.ack(env.Kind.PUBREC_IN, CONN_A, "c1", 99, rc=0x10)  # 0x10 is a success code
    assert acks(h.take_acceptors()) == [
        (PacketType.PUBREL, 99, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)
    ]


# (QoS delivered, acknowledgements that come first, the wrong acknowledgement)
WRONG_ACKS = {
    "puback-for-qos2": (2, [], env.Kind.PUBACK_IN),
    "puback-after-pubrel": (2, [env.Kind.PUBREC_IN], env.Kind.PUBACK_IN),
    "pubcomp-for-qos1": (1, [], env.Kind.PUBCOMP_IN),
    "pubcomp-before-pubrel": (2, [], env.Kind.PUBCOMP_IN),
    "pubrec-for-qos1": (1, [], env.Kind.PUBREC_IN),
    "failed-pubrec-for-qos1": (1, [], env.Kind.PUBREC_IN),
}


@pytest.mark.parametrize("name", sorted(WRONG_ACKS))
@pytest.mark.parametrize("level", [4, 5])
def test_wrong_ack_for_a_message_in_flight_closes_the_connection(name: str, level: int) -> None:
    """[MQTT-4.8.0-1]: the acceptor is asked to close the connection with
    0x82 (DISCONNECT for MQTT 5); the will goes out; the session lets go of
    the connection at once, so what it sent after is ignored; the message
    stays in flight and goes again with DUP on resume."""
    qos, before, wrong = WRONG_ACKS[name]
    h = Harness()
    connected(h, level=level, will=WILL)
    h.deliver("c1", b"m", qos)
    ((pid, *_),) = publishes(h.take_acceptors())
    for kind in before:
        h.ack(kind, CONN_A, "c1", pid)
    h.take()
    h.ack(wrong, CONN_A, "c1", pid, rc=0x80 if name.startswith("failed") else 0)
    router, acceptors = h.take()
    assert acceptors == [[env.Kind.CLOSE, CONN_A, ReasonCode.PROTOCOL_ERROR]]
    assert routes(router) == [("will/c1", b"offline", 1, True)]
    assert h.shard.counters["wrong_acks"] == 1
    session = h.shard.sessions["c1"]
    assert session.conn is None and list(session.inflight) == [pid]
    for kind in (env.Kind.PUBACK_IN, env.Kind.PUBREC_IN, env.Kind.PUBCOMP_IN):
        h.ack(kind, CONN_A, "c1", pid)  # after the violation: not acted on
    assert h.take() == ([], [])
    assert list(session.inflight) == [pid]
    h.connect(CONN_B, "c1", clean=False, level=level)
    out = h.take_acceptors()
    if before:  # past PUBREC: PUBREL again
        assert acks(out) == [(PacketType.PUBREL, pid, 0)]
    else:
        assert publishes(out) == [(pid, b"m", qos, True)]


@pytest.mark.parametrize("kind", [env.Kind.PUBACK_IN, env.Kind.PUBCOMP_IN])
def test_acks_for_packet_ids_not_in_flight_are_ignored(kind: int) -> None:
    """A late duplicate (after a resume, or a retransmission) is not a violation."""
    h = Harness()
    connected(h)
    h.deliver("c1", b"m", 1)
    ((pid, *_),) = publishes(h.take_acceptors())
    assert pid is not None  # QoS 1: it has one
    h.ack(kind, CONN_A, "c1", pid + 1)
    assert h.take() == ([], [])
    assert h.shard.sessions["c1"].conn == CONN_A
    assert h.shard.counters["unexpected_acks"] == 1


def test_v5_pubrec_error_ends_the_flow() -> None:
    h = Harness(max_inflight=1)
    connected(h, level=5)
    h.deliver("c1", b"one", 2)
    h.deliver("c1", b"two", 2)
    ((pid, *_),) = publishes(h.take_acceptors())
    h.ack(env.Kind.PUBREC_IN, CONN_A, "c1", pid, rc=0x80)
    out = h.take_acceptors()
    assert acks(out) == []
    assert [p for _, p, _, _ in publishes(out)] == [b"two"]


def test_qos_is_downgraded_to_the_granted_qos() -> None:
    h = Harness()
    connected(h)
    h.deliver("c1", b"x", 2, granted=1)
    ((pid, _, qos, _),) = publishes(h.take_acceptors())
    assert (qos, pid is not None) == (1, True)


def test_qos0_to_online_session_goes_out_encoded_once() -> None:
    h = Harness()
    connected(h)
    h.deliver("c1", b"x", 0)
    assert h.take_acceptors() == [[env.Kind.SEND_PUBLISH_MANY, [CONN_A], "t", b"x", False, None]]


# --- offline queue and redelivery -------------------------------------------------------
def test_offline_messages_are_delivered_in_order_on_resume() -> None:
    h = Harness(max_inflight=100)
    connected(h)
    h.close(CONN_A, "c1")
    for i in range(50):
        h.deliver("c1", b"%d" % i, 1 + i % 2)
    h.take()
    h.connect(CONN_B, "c1", clean=False)
    sent = publishes(h.take_acceptors())
    assert [(p, q, d) for _, p, q, d in sent] == [(b"%d" % i, 1 + i % 2, False) for i in range(50)]


def test_qos0_is_not_queued_offline_by_default() -> None:
    h = Harness()
    connected(h)
    h.close(CONN_A, "c1")
    h.deliver("c1", b"q0", 0)
    h.deliver("c1", b"q1", 1)
    h.connect(CONN_B, "c1", clean=False)
    assert [p for _, p, _, _ in publishes(h.take_acceptors())] == [b"q1"]


def test_qos0_is_queued_offline_when_configured() -> None:
    h = Harness(queue_qos0=True)
    connected(h)
    h.close(CONN_A, "c1")
    h.deliver("c1", b"q0", 0)
    h.deliver("c1", b"q1", 1)
    h.connect(CONN_B, "c1", clean=False)
    sent = publishes(h.take_acceptors())
    assert [(pid is None, p, q) for pid, p, q, _ in sent] == [(True, b"q0", 0), (False, b"q1", 1)]


def test_resume_redelivers_inflight_with_dup_in_original_order_then_the_queue() -> None:
    h = Harness(max_inflight=3)
    connected(h)
    h.deliver("c1", b"a", 1)
    h.deliver("c1", b"b", 2)
    h.deliver("c1", b"c", 2)
    h.deliver("c1", b"d", 1)  # queued behind the window
    first = publishes(h.take_acceptors())
    pid_a, pid_b, pid_c = (pid for pid, *_ in first)
    h.ack(env.Kind.PUBREC_IN, CONN_A, "c1", pid_b)  # b is past PUBREC: PUBREL is what is resent
    h.take()
    h.close(CONN_A, "c1")
    h.deliver("c1", b"e", 1)
    h.take()
    assert session_present(h.connect(CONN_B, "c1", clean=False)) is True
    out = h.take_acceptors()
    resent = [
        ("PUBLISH", e.packet_id, e.payload, e.dup)
        if isinstance(e, env.SendPublish)
        else ("PUBREL", e.packet_id, None, None)
        for e in map(env.read, out)
        if isinstance(e, env.SendPublish | env.SendAck)
    ]
    assert resent == [
        ("PUBLISH", pid_a, b"a", True),
        ("PUBREL", pid_b, None, None),
        ("PUBLISH", pid_c, b"c", True),
    ]
    assert [e.conn for e in of_kind(out, env.SendPublish)] == [CONN_B, CONN_B]
    assert all(e.packet_type == PacketType.PUBREL for e in of_kind(out, env.SendAck))
    assert h.shard.counters["redeliveries"] == 3
    # Acks on the new connection free the window; d and e follow in order.
    h.ack(env.Kind.PUBACK_IN, CONN_B, "c1", pid_a)
    h.ack(env.Kind.PUBCOMP_IN, CONN_B, "c1", pid_b)
    sent = publishes(h.take_acceptors())
    assert [(p, d) for _, p, _, d in sent] == [(b"d", False), (b"e", False)]
    assert len({pid for pid, *_ in sent} | {pid_c}) == 3  # ids not in flight


# --- inbound QoS 1/2 --------------------------------------------------------------------
def test_inbound_qos1_is_routed_with_a_reply_address() -> None:
    # The PUBACK is the acceptor's, once every destination confirmed.
    h = Harness()
    connected(h)
    h.publish_in(CONN_A, "c1", 3, 1, b"x")
    router, acceptors = h.take()
    assert routes(router) == [("in/t", b"x", 1, False)]
    assert [[r.conn, r.packet_id, r.attempt, r.uid] for r in replies(router)] == [[CONN_A, 3, 0, 1]]
    assert acks(acceptors) == []


def test_inbound_qos2_duplicate_is_suppressed_until_pubrel() -> None:
    h = Harness()
    connected(h)
    h.publish_in(CONN_A, "c1", 7, 2, b"once")
    h.publish_in(CONN_A, "c1", 7, 2, b"once")  # a retransmission (DUP)
    router, acceptors = h.take()
    assert routes(router) == [("in/t", b"once", 2, False)]
    assert [[r.conn, r.packet_id, r.attempt, r.uid] for r in replies(router)] == [[CONN_A, 7, 0, 1]]
    assert duplicates_routed(acceptors) == [7]
    assert h.shard.counters["qos2_duplicates_suppressed"] == 1
    h.ack(env.Kind.PUBREL_IN, CONN_A, "c1", 7)
    assert acks(h.take_acceptors()) == [(PacketType.PUBCOMP, 7, 0)]
    # After PUBREL the id is free: the same id now carries a new message.
    h.publish_in(CONN_A, "c1", 7, 2, b"again")
    assert routes(h.take_router()) == [("in/t", b"again", 2, False)]


def test_inbound_qos2_state_survives_reconnect() -> None:
    # Confirmed (its PUBREC went out), then resent on a new connection: a
    # duplicate, acknowledged and not delivered again.
    h = Harness()
    connected(h)
    h.publish_in(CONN_A, "c1", 7, 2, b"once")
    h.shard.handle([env.Kind.QOS2_CONFIRMED, CONN_A, "c1", 7], h.now)
    h.close(CONN_A, "c1")
    h.connect(CONN_B, "c1", clean=False)
    h.take()
    h.publish_in(CONN_B, "c1", 7, 2, b"once")
    router, acceptors = h.take()
    assert routes(router) == []
    assert duplicates_routed(acceptors) == [7]


def test_unconfirmed_qos2_resent_on_a_new_connection_is_routed_again() -> None:
    # Never confirmed: its first routing may have died with the connection or a
    # process, so the resend is routed (a loss is worse than a duplicate).
    h = Harness()
    connected(h)
    h.publish_in(CONN_A, "c1", 7, 2, b"maybe lost")
    h.close(CONN_A, "c1")
    h.connect(CONN_B, "c1", clean=False)
    h.take()
    h.publish_in(CONN_B, "c1", 7, 2, b"maybe lost")
    router, acceptors = h.take()
    assert routes(router) == [("in/t", b"maybe lost", 2, False)]
    assert duplicates_routed(acceptors) == []


def test_pubrel_for_unknown_packet_id() -> None:
    h = Harness()
    connected(h)
    h.ack(env.Kind.PUBREL_IN, CONN_A, "c1", 9)
    assert acks(h.take_acceptors()) == [
        (PacketType.PUBCOMP, 9, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)
    ]


# --- queue limits -----------------------------------------------------------------------
def test_queue_limit_by_count_drops_and_counts() -> None:
    h = Harness(max_queued_messages=3)
    connected(h)
    h.close(CONN_A, "c1")
    for i in range(5):
        h.deliver("c1", b"%d" % i, 1)
    session = h.shard.sessions["c1"]
    assert [m.payload for m in session.queue] == [b"0", b"1", b"2"]
    assert session.dropped == 2
    assert h.shard.counters["queue_full_drops"] == 2


def test_queue_limit_by_bytes_drops_and_counts() -> None:
    ten = message_size("t", b"x" * 10, None)
    five = message_size("t", b"w" * 5, None)
    h = Harness(max_queued_bytes=2 * ten + five)
    connected(h)
    h.close(CONN_A, "c1")
    h.deliver("c1", b"x" * 10, 1)
    h.deliver("c1", b"y" * 10, 1)
    h.deliver("c1", b"z" * 10, 1)  # over the limit by 5 bytes: dropped
    h.deliver("c1", b"w" * 5, 1)  # fits exactly
    session = h.shard.sessions["c1"]
    assert [m.payload[:1] for m in session.queue] == [b"x", b"y", b"w"]
    assert session.queued_bytes == 2 * ten + five
    assert session.dropped == 1
    assert h.shard.counters["queue_full_drops"] == 1


def test_queue_limit_counts_properties_not_only_the_payload() -> None:
    """Item 9 of issue 9: 1-byte payloads with 600 KB of user properties
    each went through a 1 MiB limit, because only payloads were counted."""
    props = {"user_property": [("k", "v" * 600_000)]}
    h = Harness(max_queued_bytes=1024 * 1024)
    connected(h)
    h.close(CONN_A, "c1")
    for _ in range(300):
        h.deliver("c1", b"x", 1, props=props)
    session = h.shard.sessions["c1"]
    assert len(session.queue) == 1
    assert session.dropped == 299
    assert 600_000 < session.queued_bytes <= 1024 * 1024


def test_queue_accounting_after_drain() -> None:
    h = Harness(max_inflight=1, max_queued_messages=2)
    connected(h)
    for i in range(4):  # 1 in flight, 2 queued, 1 dropped
        h.deliver("c1", b"%d" % i, 1)
    ((pid, *_),) = publishes(h.take_acceptors())
    session = h.shard.sessions["c1"]
    assert session.dropped == 1
    h.ack(env.Kind.PUBACK_IN, CONN_A, "c1", pid)
    h.take()
    assert len(session.queue) == 1
    assert session.queued_bytes == message_size("t", session.queue[0].payload, None)


# --- wills ------------------------------------------------------------------------------
WILL = env.Will("will/c1", b"offline", 1, True, None, 0)


def test_will_is_published_when_the_connection_closes_without_disconnect() -> None:
    h = Harness()
    connected(h, will=WILL)
    h.close(CONN_A, "c1", will=True)
    assert routes(h.take_router()) == [("will/c1", b"offline", 1, True)]
    assert h.shard.counters["wills_published"] == 1


def test_will_is_discarded_on_disconnect() -> None:
    h = Harness()
    connected(h, will=WILL)
    h.close(CONN_A, "c1", will=False)
    assert routes(h.take_router()) == []
    # ... and does not come back with the next connection's close.
    h.connect(CONN_B, "c1", clean=False)
    h.close(CONN_B, "c1", will=True)
    assert routes(h.take_router()) == []


def test_will_delay_publishes_after_the_delay() -> None:
    h = Harness()
    connected(h, level=5, expiry=100, will=WILL._replace(delay_interval=5))
    h.close(CONN_A, "c1")
    assert routes(h.take_router()) == []
    assert h.shard.next_timer() == h.now + 5
    h.shard.handle_timer(h.now + 4.9)
    assert routes(h.take_router()) == []
    h.shard.handle_timer(h.now + 5)
    assert routes(h.take_router()) == [("will/c1", b"offline", 1, True)]
    assert h.shard.next_timer() == h.now + 100  # the session expiry is what remains


def test_reconnect_within_will_delay_cancels_the_will() -> None:
    h = Harness()
    connected(h, level=5, expiry=100, will=WILL._replace(delay_interval=5))
    h.close(CONN_A, "c1")
    h.now += 2
    h.connect(CONN_B, "c1", clean=False, level=5, expiry=100)
    h.shard.handle_timer(h.now + 10)
    assert routes(h.take_router()) == []


def test_a_clean_start_within_the_will_delay_cancels_the_will() -> None:
    """A new connection for the client id within the will delay cancels the
    will, with Clean Start 1 too: "If a new Network Connection to this Session
    is made before the Will Delay Interval has passed, the Server MUST NOT send
    the Will Message" [MQTT-3.1.3-9]; the will is published "unless ... a new
    Network Connection for the ClientID is opened before the Will Delay
    Interval has elapsed" [MQTT-3.1.2-8]. The clean start still ends the old
    session (a new one, session present 0)."""
    h = Harness()
    connected(h, level=5, expiry=100, will=WILL._replace(delay_interval=60))
    h.close(CONN_A, "c1")
    h.take()
    h.now += 2
    assert session_present(h.connect(CONN_B, "c1", clean=True, level=5, expiry=100)) is False
    router = h.take_router()
    assert routes(router) == []
    assert [env.Kind.UNSUB_ALL, "c1"] in router  # the old session ended
    assert h.shard.next_timer() is None
    h.shard.handle_timer(h.now + 100)
    assert routes(h.take_router()) == []  # and not later either


def test_will_delay_is_capped_by_session_expiry() -> None:
    """The will goes out when the session ends if that is first [MQTT-3.1.3-9]."""
    h = Harness()
    connected(h, level=5, expiry=3, will=WILL._replace(delay_interval=60))
    h.close(CONN_A, "c1")
    assert routes(h.take_router()) == []
    h.shard.handle_timer(h.now + 2.9)
    assert routes(h.take_router()) == []
    h.shard.handle_timer(h.now + 3)
    assert routes(h.take_router()) == [("will/c1", b"offline", 1, True)]
    assert "c1" not in h.shard.sessions


def test_will_delay_on_a_session_that_ends_with_the_connection_is_immediate() -> None:
    h = Harness()
    connected(h, level=5, expiry=0, will=WILL._replace(delay_interval=30))
    h.close(CONN_A, "c1")
    assert routes(h.take_router()) == [("will/c1", b"offline", 1, True)]


# --- session expiry ---------------------------------------------------------------------
def test_session_expiry_via_handle_timer() -> None:
    h = Harness()
    connected(h, level=5, expiry=10)
    h.subscribe(CONN_A, "c1", "a", 1)
    h.close(CONN_A, "c1")
    h.take()
    assert h.shard.next_timer() == h.now + 10
    h.shard.handle_timer(h.now + 9.99)
    assert "c1" in h.shard.sessions
    h.shard.handle_timer(h.now + 10)
    assert "c1" not in h.shard.sessions
    assert [env.Kind.UNSUB_ALL, "c1"] in h.take_router()
    assert h.shard.counters["sessions_expired"] == 1
    assert h.shard.next_timer() is None
    assert session_present(h.connect(CONN_B, "c1", clean=False, level=5, expiry=10)) is False


def test_online_and_never_expiring_sessions_have_no_timer() -> None:
    h = Harness()
    connected(h, level=5, expiry=10)
    assert h.shard.next_timer() is None
    h.connect(CONN_C, "c2", clean=False)  # 3.1.1 persistent: never expires
    h.close(CONN_C, "c2")
    assert h.shard.next_timer() is None
    h.shard.handle_timer(h.now + 10**9)
    assert set(h.shard.sessions) == {"c1", "c2"}


def test_v5_disconnect_can_change_session_expiry() -> None:
    h = Harness()
    connected(h, level=5, expiry=10)
    h.shard.handle([env.Kind.CLOSED, CONN_A, "c1", False, 0], h.now)
    assert "c1" not in h.shard.sessions


def test_many_offline_sessions_expire_in_order_and_a_returning_one_does_not() -> None:
    """Expiries are a heap, not a scan of every offline session per tick: each
    session ends at its own time, one that came back in between is skipped
    (its entry is stale), and reconnect cycles do not grow the heap."""
    h = Harness()
    for i in range(50):
        conn = make_conn_id(0, 1, 100 + i)
        h.connect(conn, f"s{i}", clean=False, level=5, expiry=10 + i)
        h.close(conn, f"s{i}")
    h.take()
    back = make_conn_id(0, 1, 999)
    h.connect(back, "s5", clean=False, level=5, expiry=10 + 5)  # back online
    assert h.shard.next_timer() == h.now + 10
    h.shard.handle_timer(h.now + 19.5)  # s0..s9 are due, s5 is online
    assert sorted(c for c in h.shard.sessions if c.startswith("s")) == sorted(
        ["s5"] + [f"s{i}" for i in range(10, 50)]
    )
    assert h.shard.counters["sessions_expired"] == 9
    assert h.shard.next_timer() == h.now + 20
    h.take()
    for _ in range(3000):  # reconnect cycles: stale entries are compacted
        h.close(back, "s5")
        h.connect(back, "s5", clean=False, level=5, expiry=15)
        h.take()
    assert len(h.shard.state.expiries) <= 1024 + 2 * len(h.shard.state.offline)


def test_max_session_expiry_caps_the_requested_expiry() -> None:
    h = Harness(max_session_expiry=5)
    connected(h, level=5, expiry=3600)
    h.close(CONN_A, "c1")
    assert h.shard.next_timer() == h.now + 5


@pytest.mark.parametrize(
    "kind", [env.Kind.PUBACK_IN, env.Kind.PUBREC_IN, env.Kind.PUBCOMP_IN, env.Kind.PUBREL_IN]
)
def test_acks_for_unknown_sessions_are_ignored(kind: int) -> None:
    h = Harness()
    h.ack(kind, CONN_A, "nobody", 1)
    assert h.take() == ([], [])


def test_unknown_envelope_is_counted() -> None:
    h = Harness()
    h.shard.handle([999], h.now)
    assert h.shard.counters["unknown_envelopes"] == 1


def test_delivery_routed_to_the_discarded_session_does_not_reach_the_clean_one() -> None:
    h = Harness()
    connected(h)
    h.subscribe(CONN_A, "c1", "t", 1)
    h.close(CONN_A, "c1")
    h.connect(CONN_B, "c1", clean=True)
    h.take()
    h.deliver("c1", b"routed to the old session", 1)  # was in the router->shard pipe
    assert publishes(h.take_acceptors()) == []
    assert not h.shard.sessions["c1"].queue


def test_qos2_retry_from_the_acceptor_is_routed_again() -> None:
    # The acceptor got no confirmation (a process died holding the message):
    # its retry must be routed, although the packet id is known.
    h = Harness()
    connected(h)
    h.publish_in(CONN_A, "c1", 7, 2, b"once")
    h.take()
    h.shard.handle(
        [env.Kind.PUBLISH, CONN_A, "c1", 7, "in/t", b"once", 2, False, None, 1, True, 1], h.now
    )
    router, acceptors = h.take()
    assert routes(router) == [("in/t", b"once", 2, False)]
    assert [[r.conn, r.packet_id, r.attempt, r.uid] for r in replies(router)] == [[CONN_A, 7, 1, 1]]
    assert duplicates_routed(acceptors) == []


def test_a_qos2_retry_the_shard_already_took_is_confirmed_but_not_delivered_twice() -> None:
    h = Harness()
    connected(h)
    publisher = CONN_B
    for attempt in (0, 1):  # the original, then the acceptor's retry
        h.shard.handle(
            [
                env.Kind.DELIVER,
                "t",
                b"once",
                2,
                False,
                None,
                [["c1", 2, False, [], "t"]],
                [publisher, 4, attempt, 77, None, True],
            ],
            h.now,
        )
    out = h.take_acceptors()
    assert [p for _, p, _, _ in publishes(out)] == [b"once"]
    stored = of_kind(out, env.Stored)
    assert [(e.packet_id, e.attempt) for e in stored] == [(4, 0), (4, 1)]  # both attempts confirmed
    assert h.shard.counters["qos2_retries_deduplicated"] == 1


def test_a_message_too_large_for_the_client_frees_its_window_slot() -> None:
    """The acceptor did not send it (over the client's Maximum Packet Size):
    done with as if acknowledged [MQTT-3.1.2-25], so the next one goes."""
    h = Harness()
    connected(h, receive_maximum=1)
    h.deliver("c1", b"huge", 1)
    h.deliver("c1", b"next", 1)
    ((pid, payload, _, _),) = publishes(h.take_acceptors())
    assert payload == b"huge"
    h.shard.handle([env.Kind.DISCARDED, CONN_A, "c1", pid], h.now)
    assert [p for _, p, _, _ in publishes(h.take_acceptors())] == [b"next"]
    assert h.shard.counters["discarded_over_client_maximum_packet_size"] == 1
    assert pid not in h.shard.sessions["c1"].inflight


def test_a_session_expiry_over_the_limit_is_capped_and_the_connack_says_so() -> None:
    h = Harness(max_session_expiry=3600)
    connack = h.connect(CONN_A, "c1", clean=False, level=5, expiry=86400)
    assert env.Connack._make(connack).props == {"session_expiry_interval": 3600}
    assert h.shard.sessions["c1"].session_expiry == 3600
    connack = h.connect(CONN_B, "c2", clean=False, level=5, expiry=60)
    assert env.Connack._make(connack).props is None  # within the limit: nothing to say
    # MQTT 3.1.1 has no such property: its "never expires" is capped silently
    connack = h.connect(CONN_C, "c3", clean=False, level=4)
    assert (
        env.Connack._make(connack).props is None and h.shard.sessions["c3"].session_expiry == 3600
    )
