"""The batched envelopes in the acceptor (flockmq/envelopes.py): ROUTED_MANY
(the router's confirmations of several publishes) and SEND_PUBLISHES (a
worker's deliveries to one connection), each entry acted on as an envelope
of its own would be. A real Acceptor and ClientConnection over a fake
transport, on an event loop that is never run."""

from __future__ import annotations

from flockmq import envelopes as env
from flockmq.frontend.acceptor import Acceptor
from flockmq.frontend.codec import Puback, Publish, StreamDecoder, encode

from .acceptors import FakeTransport
from .test_ordering import connected, take


def written(conn_transport: FakeTransport) -> list[object]:
    decoder = StreamDecoder(protocol_level=4)
    decoder.feed(b"".join(conn_transport.written))
    conn_transport.written.clear()
    return list(decoder)


def test_routed_many_acknowledges_each_publish_in_order(acceptor: Acceptor) -> None:
    a, b = connected(acceptor, "a"), connected(acceptor, "b")
    acceptor.flush_writes()
    assert isinstance(a.transport, FakeTransport) and isinstance(b.transport, FakeTransport)
    a.transport.written.clear()
    b.transport.written.clear()
    a.data_received(encode(Publish("t", b"1", 1, packet_id=1), 4))
    a.data_received(encode(Publish("t", b"2", 1, packet_id=2), 4))
    b.data_received(encode(Publish("t", b"3", 1, packet_id=7), 4))
    gone = env.make_conn_id(0, 1, 999)
    routed = [a.conn_id, 2, 0, 0, gone, 1, 0, 0, b.conn_id, 7, 0, 0, a.conn_id, 1, 0, 0]
    acceptor.handle_envelope([env.Kind.ROUTED_MANY, routed])
    acceptor.flush_writes()
    assert written(a.transport) == [Puback(2), Puback(1)]
    assert written(b.transport) == [Puback(7)]
    assert acceptor.counters["envelope_errors"] == 0


def test_a_routed_of_an_older_attempt_acknowledges_nothing(acceptor: Acceptor) -> None:
    a = connected(acceptor, "a")
    acceptor.flush_writes()
    assert isinstance(a.transport, FakeTransport)
    a.transport.written.clear()
    a.data_received(encode(Publish("t", b"1", 1, packet_id=1), 4))
    acceptor.handle_envelope([env.Kind.ROUTED_MANY, [a.conn_id, 1, 0, 5]])
    acceptor.flush_writes()
    assert written(a.transport) == []


def test_send_publishes_writes_each_message_in_order(acceptor: Acceptor) -> None:
    a = connected(acceptor, "a")
    acceptor.flush_writes()
    assert isinstance(a.transport, FakeTransport)
    a.transport.written.clear()
    batch = [1, "t/1", b"x", 1, False, False, None, 2, "t/2", b"y", 1, True, True, None]
    acceptor.handle_envelope([env.Kind.SEND_PUBLISHES, a.conn_id, batch])
    acceptor.flush_writes()
    assert written(a.transport) == [
        Publish("t/1", b"x", 1, False, False, 1),
        Publish("t/2", b"y", 1, True, True, 2),
    ]
    assert acceptor.traffic.publishes_out == 2
    gone = env.make_conn_id(0, 1, 999)
    acceptor.handle_envelope([env.Kind.SEND_PUBLISHES, gone, batch])
    assert acceptor.counters["deliveries_to_gone_connections"] == 2


def test_send_publishes_keeps_the_clients_maximum_packet_size(acceptor: Acceptor) -> None:
    """[MQTT-3.1.2-25]: a message over it is not written, and its QoS 1 copy
    is reported DISCARDED; the messages around it are written."""
    a = connected(acceptor, "a")
    acceptor.flush_writes()
    assert isinstance(a.transport, FakeTransport)
    a.transport.written.clear()
    a.session.max_outgoing_packet = 40
    batch = [1, "t", b"x", 1, False, False, None, 2, "t", b"y" * 64, 1, False, False, None]
    batch += [3, "t", b"z", 1, False, False, None]
    acceptor.handle_envelope([env.Kind.SEND_PUBLISHES, a.conn_id, batch])
    acceptor.flush_writes()
    assert written(a.transport) == [
        Publish("t", b"x", 1, False, False, 1),
        Publish("t", b"z", 1, False, False, 3),
    ]
    _router, workers = take(acceptor)
    assert [(e[0], e[3]) for e in workers] == [(env.Kind.DISCARDED, 2)]


def test_a_malformed_routed_entry_spoils_only_itself(acceptor: Acceptor) -> None:
    """An entry whose connection id cannot even be looked up (unhashable) is
    counted as one failed ROUTED; the entries after it still act."""
    a = connected(acceptor, "a")
    acceptor.flush_writes()
    assert isinstance(a.transport, FakeTransport)
    a.transport.written.clear()
    a.data_received(encode(Publish("t", b"1", 1, packet_id=1), 4))
    acceptor.handle_envelope([env.Kind.ROUTED_MANY, [[1], 9, 0, 0, a.conn_id, 1, 0, 0]])
    acceptor.flush_writes()
    assert written(a.transport) == [Puback(1)]
    assert acceptor.counters["envelope_errors"] == 1
