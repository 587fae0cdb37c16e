"""WORKER_UP and ROUTER_UP in the acceptor. A restarted worker gets its
connections' CONNECTs again (persistent sessions re-attached); a restarted
router gets the publishes still waiting for confirmation again. The first
WORKER_UP an acceptor hears, and the router's first start, change nothing:
they race the broker's first clients, and acting on them sent messages
twice."""

from __future__ import annotations

from flockmq import envelopes as env
from flockmq.envelopes import Kind
from flockmq.frontend.acceptor import Acceptor
from flockmq.frontend.codec import Connect, Publish, encode
from flockmq.frontend.connection import ClientConnection
from flockmq.frontend.servers import endpoint_for
from flockmq.frontend.states import CONNECTED
from flockmq.listeners import Listener
from tests.unit.wire import kind_of

from .acceptors import FakeTransport
from .test_ordering import take


def persistent(acceptor: Acceptor, client_id: str = "p") -> ClientConnection:
    conn = ClientConnection(acceptor, endpoint_for(Listener()))
    # A fake with what the connection uses of an asyncio transport:
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    conn.data_received(encode(Connect(client_id, 4, False, 60), 4))  # clean session 0
    acceptor.handle_envelope([Kind.CONNACK, conn.conn_id, False, 0, None])
    take(acceptor)
    return conn


def test_the_first_worker_up_after_a_connack_reattaches_nothing(acceptor: Acceptor) -> None:
    conn = persistent(acceptor)
    assert conn.session.worker_incarnation is None  # answered before any WORKER_UP came
    acceptor.handle_envelope(env.WorkerUp(Kind.WORKER_UP, conn.session.shard, 7))
    assert take(acceptor) == ([], [])  # no CONNECT again: its messages would come twice
    assert conn.session.state == CONNECTED and conn.session.worker_incarnation == 7


def test_a_restarted_worker_gets_a_persistent_connection_again(acceptor: Acceptor) -> None:
    conn = persistent(acceptor)
    acceptor.handle_envelope(env.WorkerUp(Kind.WORKER_UP, conn.session.shard, 7))
    take(acceptor)
    acceptor.handle_envelope(env.WorkerUp(Kind.WORKER_UP, conn.session.shard, 8))
    _, workers = take(acceptor)
    assert [kind_of(e) for e in workers if kind_of(e) == Kind.CONNECT] == [Kind.CONNECT]
    (connect,) = [e for e in workers if kind_of(e) == Kind.CONNECT]
    assert env.Connect._make(connect).clean_start is False
    assert conn.session.worker_incarnation == 8


def test_only_a_restarted_router_gets_the_unconfirmed_publishes_again(
    acceptor: Acceptor,
) -> None:
    conn = persistent(acceptor)
    conn.data_received(encode(Publish("t", b"once", 1, packet_id=1), 4))
    router, _ = take(acceptor)
    assert [kind_of(e) for e in router] == [Kind.ROUTE]
    acceptor.handle_envelope(env.RouterUp(Kind.ROUTER_UP, 0))  # its first start
    assert take(acceptor) == ([], [])
    acceptor.handle_envelope(env.RouterUp(Kind.ROUTER_UP, 1))  # restarted
    router, _ = take(acceptor)
    assert [kind_of(e) for e in router] == [Kind.ROUTE]
    reply = env.Route._make(router[0]).reply
    assert reply is not None and env.Reply._make(reply).attempt == 1
