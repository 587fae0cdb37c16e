"""What an idle connection costs an acceptor in Python objects (issue 12:
at most 3 KB of RSS per idle connection over all processes). Measured with
tracemalloc over 1,000 connected clients on a real Acceptor: the session and
the connection are slotted; the decoder's packet queue, the confirmations,
the topic aliases and what waits for the CONNACK are shared or made when
first used; the transport's own cost (uvloop's, in C) is not counted here."""

from __future__ import annotations

import gc
import tracemalloc

from flockmq.frontend.acceptor import Acceptor
from flockmq.frontend.codec import Connect, encode
from flockmq.frontend.codec.decoder import _NO_PACKETS, StreamDecoder
from flockmq.frontend.confirmations import NO_CONFIRMATIONS
from flockmq.frontend.connection import ClientConnection
from flockmq.frontend.servers import endpoint_for
from flockmq.listeners import Listener

from .acceptors import FakeTransport
from .test_ordering import take

BUDGET = 1600  # bytes of Python objects per idle connection (4,000 before)


def connect(acceptor: Acceptor, endpoint: object, i: int) -> ClientConnection:
    conn = ClientConnection(acceptor, endpoint)  # type: ignore[arg-type]
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    conn.data_received(encode(Connect(f"client-{i:06d}", 4, True, 60), 4))
    acceptor.handle_envelope([20, conn.conn_id, False, 0, None])  # CONNACK
    return conn


def test_an_idle_connection_costs_the_acceptor_under_the_budget(acceptor: Acceptor) -> None:
    endpoint = endpoint_for(Listener())
    conns = [connect(acceptor, endpoint, i) for i in range(100)]  # caches warmed
    take(acceptor)
    for conn in conns:
        assert conn.transport is not None
        conn.transport.written.clear()  # type: ignore[attr-defined]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        conns += [connect(acceptor, endpoint, i) for i in range(100, 1100)]
        take(acceptor)
        for conn in conns[100:]:
            conn.transport.written.clear()  # type: ignore[union-attr]
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown / 1000 < BUDGET, f"{grown / 1000:.0f} bytes per idle connection"
    for conn in conns:  # what an idle connection does not have of its own
        session = conn.session
        assert session.decoder._ready is _NO_PACKETS
        assert session.confirmations is NO_CONFIRMATIONS
        assert session.topic_aliases is None and session.before_connack is None


def test_the_decoder_lets_go_of_its_packet_queue_once_emptied() -> None:
    decoder = StreamDecoder(protocol_level=4)
    assert decoder._ready is _NO_PACKETS
    decoder.feed(encode(Connect("a", 4, True, 60), 4) * 3)
    assert len(list(decoder)) == 3
    assert decoder._ready is _NO_PACKETS and len(_NO_PACKETS) == 0
    decoder.feed(encode(Connect("b", 4, True, 60), 4) * 2)
    assert decoder.next_packet() is not None
    assert decoder.next_packet() is not None
    assert decoder.next_packet() is None
    assert decoder._ready is _NO_PACKETS
