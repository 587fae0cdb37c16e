"""A shard's resync is authoritative (router/resync.py): between RESYNC and
its end a shard re-sends its whole set, and at the end the router drops
that shard's subscriptions it was not re-sent (what it missed while cut
off: UNSUBSCRIBEs, sessions that ended), never before, never another
shard's, and never for an older owner's resync."""

from __future__ import annotations

from typing import Any

import pytest

from flockmq import envelopes as env
from flockmq.envelopes import make_conn_id
from flockmq.router.router import Router
from tests.unit.wire import kind_of, wire_all
from tests.unit.workers.test_shard import CONN_A, CONN_B, CONN_C, Harness
from tests.unit.workers.test_shard_ordering import subscribe

from .test_router import sub, take, targets_of


def resent(router: Router, shard: int, client_id: str, *filters: str) -> None:
    """One session's subscriptions as a resync re-sends them (no SUBACK)."""
    sub(router, shard, client_id, *((f, 1) for f in filters), conn=0, packet_id=0)


def receivers(router: Router, topic: str) -> list[str]:
    """Who a publish to `topic` reaches, over every shard."""
    take(router)
    router.handle([env.Kind.ROUTE, "pub", topic, b"p", 1, False, None, None])
    workers, _ = take(router)
    return sorted(t[0] for out in workers.values() for e in out for t in targets_of(e))


def begin(router: Router, shard: int, epoch: int = 0) -> None:
    router.handle([env.Kind.RESYNC, shard, epoch, False])


def end(router: Router, shard: int, epoch: int = 0) -> None:
    router.handle([env.Kind.RESYNC, shard, epoch, True])
    router.handle([env.Kind.SYNCED, shard])


def cut_off_router() -> Router:
    """A router that holds, for shard 0, "kept" on a and b, and "ended" on
    a; for shard 1, "other" on a. Then (unknown to it) "kept" unsubscribed
    from b and "ended" ended."""
    router = Router()
    router.expect_sync(2)
    router.handle([env.Kind.SYNCED, 0])
    router.handle([env.Kind.SYNCED, 1])
    resent(router, 0, "kept", "a", "b")
    resent(router, 0, "ended", "a")
    router.handle([env.Kind.ONLINE, "ended", make_conn_id(0, 0, 5)])
    resent(router, 1, "other", "a")
    take(router)
    return router


def test_a_resync_drops_what_the_shard_did_not_resend_at_its_synced() -> None:
    router = cut_off_router()
    begin(router, 0)
    resent(router, 0, "kept", "a")
    # Before the end nothing is dropped: a router that was never cut off
    # gets the same resync, and keeps routing to every live subscription.
    assert receivers(router, "b") == ["kept"]
    assert receivers(router, "a") == ["ended", "kept", "other"]
    end(router, 0)
    assert receivers(router, "a") == ["kept", "other"]
    assert receivers(router, "b") == []
    assert "ended" not in router.online and "ended" not in router.shard_clients[0]
    assert router.counters["resync_dropped_subscriptions"] == 2
    assert router.resyncs.noted == {}


def test_a_resync_of_what_the_router_holds_changes_nothing() -> None:
    router = cut_off_router()
    begin(router, 0)
    resent(router, 0, "kept", "a", "b")
    resent(router, 0, "ended", "a")
    end(router, 0)
    assert receivers(router, "a") == ["ended", "kept", "other"]
    assert receivers(router, "b") == ["kept"]
    assert router.counters["resync_dropped_subscriptions"] == 0


def test_a_synced_or_an_end_without_a_resync_drops_nothing() -> None:
    """A standby's SYNCED (workers/standby.py): it serves nothing, re-sends
    nothing, and the shard's subscriptions stay as they are."""
    router = cut_off_router()
    router.handle([env.Kind.SYNCED, 0])
    end(router, 0)
    assert receivers(router, "a") == ["ended", "kept", "other"]


def test_an_older_owners_resync_is_ignored() -> None:
    """After a cut link, the old owner of a shard that moved resyncs what it
    held before the move, with its older epoch: whether it comes before the
    new owner's resync, during it, or after, the new owner's set stands."""
    router = cut_off_router()
    router.resyncs.known = {0: 5}  # the new owner's SHARD_AT
    begin(router, 0, 4)  # the old owner's, whole
    resent(router, 0, "ended", "a")
    end(router, 0, 4)
    assert receivers(router, "a") == ["ended", "kept", "other"]
    assert router.counters["stale_resyncs"] == 1
    begin(router, 0, 5)  # the new owner's, with the old one's end inside it
    resent(router, 0, "kept", "a")
    end(router, 0, 4)
    assert receivers(router, "b") == ["kept"]  # not ended by the old one's end
    end(router, 0, 5)
    assert receivers(router, "a") == ["kept", "other"] and receivers(router, "b") == []
    router.resyncs.known = {}
    begin(router, 0, 4)  # older than the newest resync too
    assert router.counters["stale_resyncs"] == 2


def test_a_new_resync_starts_over_and_a_worker_up_ends_it() -> None:
    router = cut_off_router()
    begin(router, 0)
    resent(router, 0, "ended", "a")
    begin(router, 0)  # started over: "ended" not re-sent this time
    resent(router, 0, "kept", "a", "b")
    end(router, 0)
    assert receivers(router, "a") == ["kept", "other"]
    begin(router, 1)
    router.handle([env.Kind.WORKER_UP, 1, 2, False])  # shard 1 forgotten: no resync left
    assert router.resyncs.noted == {}
    resent(router, 1, "other", "a")
    end(router, 1)
    assert receivers(router, "a") == ["kept", "other"]


@pytest.mark.parametrize(
    "bad",
    [
        [env.Kind.RESYNC, 2, 0, False],
        [env.Kind.RESYNC, -1, 0, False],
        [env.Kind.RESYNC, "0", 0, False],
        [env.Kind.RESYNC, 0, -1, False],
        [env.Kind.RESYNC, 0, 0, 1],
        [env.Kind.RESYNC, 0],
    ],
)
def test_a_resync_of_a_shard_the_broker_has_not_is_refused(bad: list[object]) -> None:
    """It raises (the runtime isolates and counts it: flockmq/isolation.py),
    and no record is kept for it."""
    router = cut_off_router()
    with pytest.raises((ValueError, TypeError)):
        router.handle(bad)
    assert router.resyncs.noted == {}


def test_a_router_cut_off_from_a_shard_holds_the_shards_table_again_after_its_resync() -> None:
    """The shard (workers/subscriptions.py) and router 1 together: while
    router 1 is declared down, "c" unsubscribes from u, "d" (a clean
    session) ends and "p" (a persistent one) goes offline; what was sent to
    router 1 meanwhile is dropped (as the bus drops it); declared live
    again, router 1 holds what the shard does."""
    h = Harness(routers=2)
    router = Router(index=1, routers=2)
    router.expect_sync(1)
    router.handle([env.Kind.SYNCED, 0])

    def to_router_1() -> list[list[Any]]:
        return wire_all(h.shard.out.split_to_router()[1])

    h.connect(CONN_A, "c", clean=True)
    h.connect(CONN_C, "d", clean=True)
    h.connect(CONN_B, "p", clean=False)
    subscribe(h, 1, "t")
    subscribe(h, 2, "u")
    h.subscribe(CONN_C, "d", "u", 0)
    h.subscribe(CONN_B, "p", "u", 0)
    for e in to_router_1():
        router.handle(e)
    held = router.tree.subscriptions_of
    assert (sorted(held("c")), sorted(held("d"))) == (["t", "u"], ["u"])
    assert router.online["p"] == CONN_B
    h.shard.handle([env.Kind.ROUTERS_LIVE, [0]], h.now)
    h.shard.handle([env.Kind.UNSUBSCRIBE, CONN_A, "c", 4, ["u"]], h.now)
    h.close(CONN_C, "d")
    h.close(CONN_B, "p")  # a persistent session kept offline, with its subscription
    to_router_1()  # dropped: router 1 is cut off
    h.shard.handle([env.Kind.ROUTERS_LIVE, [0, 1]], h.now)
    resync = to_router_1()
    assert [kind_of(e) for e in (resync[0], *resync[-2:])] == [
        env.Kind.RESYNC,
        env.Kind.RESYNC,
        env.Kind.SYNCED,
    ]
    for e in resync:
        router.handle(e)
    assert (sorted(held("c")), sorted(held("d")), sorted(held("p"))) == (["t"], [], ["u"])
    assert "p" not in router.online  # its QoS 0 copies go to its shard, not to a closed connection
