"""What one pass of the event loop writes to a client goes out in one system
call, in order (ClientConnection.flush, Acceptor.flush_writes): a fan-out
writes every message to every subscriber, one write per copy was the
acceptor's main cost."""

from __future__ import annotations

from flockmq import envelopes as env
from flockmq.frontend.acceptor import Acceptor
from flockmq.frontend.codec import Pingreq, Publish, encode
from flockmq.frontend.connection import ClientConnection

from .acceptors import FakeTransport
from .test_ordering import connected


def written(acceptor: Acceptor, conn: ClientConnection) -> list[bytes]:
    transport = conn.transport
    assert isinstance(transport, FakeTransport)
    return transport.written


def test_one_pass_of_writes_is_one_system_call_in_order(acceptor: Acceptor) -> None:
    conn = connected(acceptor)
    acceptor.flush_writes()
    before = len(written(acceptor, conn))
    for i in range(3):
        acceptor.handle_envelope(
            [env.Kind.SEND_PUBLISH_MANY, [conn.conn_id], "t", b"%d" % i, False, None]
        )
    conn.data_received(encode(Pingreq(), 4))  # its PINGRESP after them
    assert len(written(acceptor, conn)) == before  # nothing until the pass ends
    acceptor.flush_writes()
    (data,) = written(acceptor, conn)[before:]
    expected = b"".join(encode(Publish("t", b"%d" % i, 0), 4) for i in range(3))
    assert data == expected + b"\xd0\x00"
    assert conn.pending == [] and conn.pending_bytes == 0


def test_a_close_writes_what_was_queued_before_it(acceptor: Acceptor) -> None:
    conn = connected(acceptor)
    acceptor.flush_writes()
    before = len(written(acceptor, conn))
    acceptor.handle_envelope(
        [env.Kind.SEND_PUBLISH_MANY, [conn.conn_id], "t", b"last", False, None]
    )
    conn.session.close()
    transport = conn.transport
    assert isinstance(transport, FakeTransport) and transport.closed
    assert written(acceptor, conn)[before:] == [encode(Publish("t", b"last", 0), 4)]
    acceptor.flush_writes()  # nothing twice
    assert len(written(acceptor, conn)) == before + 1
