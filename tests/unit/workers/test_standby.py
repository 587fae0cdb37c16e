"""What a standby worker answers (workers/standby.py): every envelope gets an
answer a client can act on at once, nothing is claimed, all is counted."""

from __future__ import annotations

import logging
from collections import Counter

from flockmq import envelopes as env
from flockmq.envelopes import Kind, acceptor_of, make_conn_id
from flockmq.isolation import EnvelopeGuard
from flockmq.workers.outbox import Outbox
from flockmq.workers.shard import Shard, ShardLimits
from flockmq.workers.standby import Standby

CONN = make_conn_id(1, 3, 42)


def standby() -> tuple[Standby, Outbox, Counter[str]]:
    out, counters = Outbox(), Counter[str]()
    guard = EnvelopeGuard("shard 0", counters, logging.getLogger("test"))
    return Standby(0, out, counters, guard), out, counters


def connect(conn: int = CONN) -> env.Connect:
    return env.Connect(Kind.CONNECT, conn, "c1", False, 3600, 5, 60, None, None, 0, False)


def test_a_connect_is_refused_with_server_unavailable() -> None:
    shard, out, counters = standby()
    shard.handle(connect(), 1.0)
    assert out.to_acceptors == {
        acceptor_of(CONN): [env.Connack(Kind.CONNACK, CONN, False, 0x88, None)]
    }
    assert counters["standby_connects_refused"] == 1
    assert not out.to_router and not out.ops and not out.after_commit


def test_what_comes_from_a_connection_closes_it_with_use_another_server() -> None:
    shard, out, counters = standby()
    shard.handle(env.PubackIn(Kind.PUBACK_IN, CONN, "c1", 7, 0), 1.0)
    shard.handle(env.Subscribe(Kind.SUBSCRIBE, CONN, "c1", 8, []), 1.0)
    close = env.Close(Kind.CLOSE, CONN, 0x9C)
    assert out.to_acceptors == {acceptor_of(CONN): [close, close]}
    assert counters["standby_connections_closed"] == 2


def test_a_delivery_to_confirm_is_not_confirmed() -> None:
    shard, out, counters = standby()
    reply = env.DeliverReply(CONN, 9, 2, 77, None, True)
    shard.handle(env.Deliver(Kind.DELIVER, "t", b"x", 1, False, None, [], reply), 1.0)
    assert out.to_acceptors == {acceptor_of(CONN): [env.Stored(Kind.STORED, CONN, 9, False, 2)]}
    assert counters["standby_deliveries_refused"] == 1
    unconfirmed = env.Deliver(Kind.DELIVER, "t", b"x", 0, False, None, [], None)
    shard.handle(unconfirmed, 1.0)
    assert sum(len(v) for v in out.to_acceptors.values()) == 1


def test_a_restarted_router_is_told_at_once_there_is_nothing_to_resend() -> None:
    shard, out, _ = standby()
    shard.handle(env.RouterUp(Kind.ROUTER_UP, 2), 1.0)
    assert out.to_router == [env.Synced(Kind.SYNCED, 0)]


def test_the_rest_is_counted_and_left() -> None:
    shard, out, counters = standby()
    shard.handle(env.AcceptorUp(Kind.ACCEPTOR_UP, 1, 4), 1.0)
    assert counters["standby_envelopes_ignored"] == 1
    assert not out.to_acceptors and not out.to_router


def test_a_router_live_again_is_remembered_but_not_resynced() -> None:
    """A standby has nothing to re-send: a resync of nothing would make
    every router drop the shard's subscriptions its owner elsewhere serves
    (router/resync.py). Which routers are live is kept for when it serves."""
    shard = Shard(0, ShardLimits(routers=2))
    counters = shard.state.counters
    guard = EnvelopeGuard("shard 0", counters, logging.getLogger("test"))
    standby = Standby(0, shard.out, counters, guard, shard.subscriptions.follow_routers_live)
    standby.handle([Kind.ROUTERS_LIVE, [0]], 1.0)
    assert shard.state.routers_down == {1}
    standby.handle([Kind.ROUTERS_LIVE, [0, 1]], 2.0)
    assert shard.state.routers_down == frozenset()
    assert not shard.out.to_router and not shard.out.after_commit
