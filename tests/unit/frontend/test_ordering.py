"""Fences and holds in the acceptor (frontend/ordering.py): one connection's
packets take effect in the order sent. A real Acceptor and ClientConnection
over a fake transport, on an event loop that is never run: what they would
send is read from the bus's outboxes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flockmq import envelopes as env
from flockmq.bus import Bus
from flockmq.envelopes import Wire
from flockmq.frontend.acceptor import Acceptor
from flockmq.frontend.codec import Packet, encode
from flockmq.frontend.codec.packets import (
    Connect,
    Disconnect,
    Publish,
    Subscribe,
    Subscription,
    Unsubscribe,
)
from flockmq.frontend.connection import ClientConnection
from flockmq.frontend.ordering import Fences
from flockmq.frontend.servers import endpoint_for
from flockmq.listeners import Listener
from tests.unit.wire import kind_of, wire, wire_all

from .acceptors import FakeTransport


def connected(acceptor: Acceptor, client_id: str = "c") -> ClientConnection:
    conn = ClientConnection(acceptor, endpoint_for(Listener()))
    # A fake with what the connection uses of an asyncio transport:
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    conn.data_received(encode(Connect(client_id, 4, True, 60), 4))
    acceptor.handle_envelope([env.Kind.CONNACK, conn.conn_id, False, 0, None])
    take(acceptor)
    return conn


def take(acceptor: Acceptor) -> tuple[list[list[Any]], list[list[Any]]]:
    """(to the router, to the workers) since the last call."""
    bus = acceptor.bus
    assert isinstance(bus, Bus)
    outboxes = bus.outboxes
    router = wire_all(outboxes["router"])
    workers = [wire(e) for key, out in outboxes.items() if key != "router" for e in out]
    for out in outboxes.values():
        out.clear()
    return router, workers


def kinds(envelopes: Iterable[Wire]) -> list[env.Kind]:
    return [kind_of(e) for e in envelopes]


def seq_of(fence: Wire) -> int:
    """A FENCE's sequence number."""
    return env.Fence._make(fence).seq


def send(conn: ClientConnection, *packets: Packet) -> None:
    conn.data_received(b"".join(encode(p, 4) for p in packets))


def fake_transport(conn: ClientConnection) -> FakeTransport:
    transport = conn.transport
    assert isinstance(transport, FakeTransport), transport
    return transport


def reading(conn: ClientConnection) -> bool:
    return bool(fake_transport(conn).reading)


SUB = Subscribe(1, (Subscription("t", 0),))


def test_a_connection_that_only_publishes_sends_no_fence(acceptor: Acceptor) -> None:
    conn = connected(acceptor)
    send(conn, *[Publish("t", b"x", 0, True) for _ in range(5)])
    router, workers = take(acceptor)
    assert kinds(router) == [env.Kind.ROUTE] * 5 and workers == []
    assert conn.session.held is None and reading(conn)
    assert acceptor.counters["fences_sent"] == 0


def test_subscribe_with_nothing_routed_goes_at_once(acceptor: Acceptor) -> None:
    conn = connected(acceptor)
    send(conn, SUB)
    router, workers = take(acceptor)
    assert router == [] and kinds(workers) == [env.Kind.SUBSCRIBE]


def test_subscribe_after_a_publish_waits_for_the_fence(acceptor: Acceptor) -> None:
    conn = connected(acceptor)
    send(conn, Publish("t", b"r", 0, True), SUB, Publish("t", b"after"))
    router, workers = take(acceptor)
    # the FENCE on the ROUTE's pipe; the SUBSCRIBE and what follows wait
    assert kinds(router) == [env.Kind.ROUTE, env.Kind.FENCE] and workers == []
    fence = router[1]
    assert fence == [env.Kind.FENCE, 0, conn.session.fence_seq]
    assert isinstance(conn.session.held, Subscribe) and not reading(conn)
    acceptor.handle_envelope([env.Kind.FENCED, seq_of(fence)])
    router, workers = take(acceptor)
    # the SUBSCRIBE went; the publish after it now waits for its SUBACK
    assert kinds(workers) == [env.Kind.SUBSCRIBE] and router == []
    assert isinstance(conn.session.held, Publish) and not reading(conn)
    acceptor.handle_envelope([env.Kind.SEND_SUBACK, conn.conn_id, 1, [0]])
    router, workers = take(acceptor)
    payloads = [env.Route._make(e).payload for e in router]
    assert payloads == [b"after"] and conn.session.held is None and reading(conn)


def test_unsubscribe_after_a_publish_waits_for_the_fence(acceptor: Acceptor) -> None:
    conn = connected(acceptor)
    send(conn, Publish("t", b"r"), Unsubscribe(2, ("t",)))
    router, workers = take(acceptor)
    assert kinds(router) == [env.Kind.ROUTE, env.Kind.FENCE] and workers == []
    acceptor.handle_envelope([env.Kind.FENCED, seq_of(router[1])])
    assert kinds(take(acceptor)[1]) == [env.Kind.UNSUBSCRIBE]


def test_publish_after_unsubscribe_waits_for_the_unsuback(acceptor: Acceptor) -> None:
    conn = connected(acceptor)
    send(conn, Unsubscribe(2, ("t",)), Publish("t", b"after"))
    router, workers = take(acceptor)
    assert router == [] and kinds(workers) == [env.Kind.UNSUBSCRIBE]
    acceptor.handle_envelope([env.Kind.SEND_UNSUBACK, conn.conn_id, 2, [0]])
    router, _ = take(acceptor)
    assert kinds(router) == [env.Kind.ROUTE] and reading(conn)


def test_a_qos2_publish_does_not_wait_for_a_suback(acceptor: Acceptor) -> None:
    """It goes to the same worker as the SUBSCRIBE, on the same pipe."""
    conn = connected(acceptor)
    send(conn, SUB, Publish("t", b"q2", 2, packet_id=5))
    _, workers = take(acceptor)
    assert kinds(workers) == [env.Kind.SUBSCRIBE, env.Kind.PUBLISH] and conn.session.held is None


def test_a_fence_answered_for_another_connection_covers_earlier_routes(
    acceptor: Acceptor,
) -> None:
    a, b = connected(acceptor, "a"), connected(acceptor, "b")
    send(a, Publish("t", b"a"))
    send(b, Publish("t", b"b"), SUB)
    router, _ = take(acceptor)
    acceptor.handle_envelope([env.Kind.FENCED, seq_of(router[-1])])
    take(acceptor)
    send(a, SUB)  # its ROUTE came before b's fence: handled
    router, workers = take(acceptor)
    assert router == [] and kinds(workers) == [env.Kind.SUBSCRIBE]


def test_closed_waits_for_the_fence_after_publishes(acceptor: Acceptor) -> None:
    """A will (or the session's end) comes after what the client published."""
    conn = connected(acceptor)
    send(conn, Publish("status", b"up", 0, True))
    take(acceptor)
    conn.connection_lost(None)
    router, workers = take(acceptor)
    assert kinds(router) == [env.Kind.FENCE] and workers == []
    acceptor.handle_envelope([env.Kind.FENCED, seq_of(router[0])])
    _, workers = take(acceptor)
    assert kinds(workers) == [env.Kind.CLOSED] and env.Closed._make(workers[0]).publish_will is True


def test_disconnect_with_expiry_also_waits(acceptor: Acceptor) -> None:
    conn = ClientConnection(acceptor, endpoint_for(Listener()))
    # A fake with what the connection uses of an asyncio transport:
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    props = {"session_expiry_interval": 10}
    conn.data_received(encode(Connect("v5", 5, True, 60, properties=props), 5))
    acceptor.handle_envelope([env.Kind.CONNACK, conn.conn_id, False, 0, None])
    take(acceptor)
    conn.data_received(
        encode(Publish("t", b"x"), 5) + encode(Disconnect(0, {"session_expiry_interval": 20}), 5)
    )
    router, workers = take(acceptor)
    assert kinds(router) == [env.Kind.ROUTE, env.Kind.FENCE] and workers == []
    acceptor.handle_envelope([env.Kind.FENCED, seq_of(router[1])])
    _, workers = take(acceptor)
    assert kinds(workers) == [env.Kind.CLOSED] and env.Closed._make(workers[0]).session_expiry == 20


def test_a_connection_closed_while_holding_drops_the_held_packet(acceptor: Acceptor) -> None:
    conn = connected(acceptor)
    send(conn, Publish("t", b"x"), SUB)
    router, _ = take(acceptor)
    conn.connection_lost(None)
    # CLOSED waits for the same fence
    assert conn.session.held is None and take(acceptor) == ([], [])
    acceptor.handle_envelope([env.Kind.FENCED, seq_of(router[1])])
    _, workers = take(acceptor)
    assert kinds(workers) == [env.Kind.CLOSED]


def test_a_fence_never_answered_is_given_up(acceptor: Acceptor) -> None:
    conn = connected(acceptor)
    send(conn, Publish("t", b"x"), SUB)
    take(acceptor)
    acceptor.check_order(acceptor.now + 11, 10.0)
    _, workers = take(acceptor)
    assert kinds(workers) == [env.Kind.SUBSCRIBE] and acceptor.counters["fences_timed_out"] == 1


def test_a_suback_never_given_lets_the_publish_go_after_the_timeout(acceptor: Acceptor) -> None:
    conn = connected(acceptor)
    send(conn, SUB, Publish("t", b"after"))
    take(acceptor)
    acceptor.check_order(acceptor.now + 11, 10.0)
    router, _ = take(acceptor)
    assert kinds(router) == [env.Kind.ROUTE] and acceptor.counters["ordering_holds_timed_out"] == 1


def test_router_restart_sends_open_fences_again_after_retried_publishes(
    acceptor: Acceptor,
) -> None:
    conn = connected(acceptor)
    send(conn, Publish("t", b"q1", 1, packet_id=3), SUB)
    router, _ = take(acceptor)
    old = seq_of(router[1])
    acceptor.handle_envelope([env.Kind.ROUTER_UP, 2, 0])
    router, _ = take(acceptor)
    assert kinds(router) == [env.Kind.ROUTE, env.Kind.FENCE]  # the QoS 1 retry, then the fence
    new = seq_of(router[1])
    assert new > old and conn.session.fence_seq == new
    acceptor.handle_envelope([env.Kind.FENCED, old])  # the old router's answer: not this one
    assert conn.session.held is not None
    acceptor.handle_envelope([env.Kind.FENCED, new])
    assert kinds(take(acceptor)[1]) == [env.Kind.SUBSCRIBE]


class Waiter:
    def __init__(self) -> None:
        self.fence_seq = 0
        self.fenced = 0

    def on_fenced(self) -> None:
        self.fenced += 1


def test_fences_number_routes_and_fences_on_one_counter() -> None:
    fences = Fences(3)
    fences.sent += 1  # a ROUTE
    assert fences.needed(1)
    w = Waiter()
    assert fences.fence(w, 0.0) == env.Fence(env.Kind.FENCE, acceptor=3, seq=2)
    assert fences.answered(2) is w and w.fence_seq == 0
    assert not fences.needed(1) and fences.done == 2
    assert fences.answered(1) is None and fences.done == 2  # never goes back


def test_fences_overdue_and_refence() -> None:
    fences = Fences(0)
    a, b = Waiter(), Waiter()
    fences.fence(a, 0.0)
    fences.fence(b, 5.0)
    assert fences.overdue(6.0, 3.0) == [a] and a.fence_seq == 0
    (again,) = fences.refence(7.0)
    assert (
        again == env.Fence(env.Kind.FENCE, acceptor=0, seq=3)
        and b.fence_seq == 3
        and list(fences.open) == [3]
    )
