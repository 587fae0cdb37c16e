"""A session's subscriptions are bounded by count and by the length of their
filters (workers/subscriptions.py): one client cannot grow its worker, the
router's topic tree and the store without bound by subscribing to ever more
(or ever longer) filters."""

from __future__ import annotations

import pytest

from flockmq import envelopes as env
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.store import MemoryStore
from flockmq.workers.shard import Shard, ShardLimits
from tests.unit.wire import kind_of, of_kind

from .test_shard import CONN_A, Harness, connected


def subscribe(h: Harness, *filters: str) -> list[int]:
    """SUBSCRIBE the filters at QoS 1; the SUBACK's codes (answered at once
    when nothing goes to the router, else via SUBSCRIBED)."""
    h.shard.handle(
        [env.Kind.SUBSCRIBE, CONN_A, "c1", 1, [[f, 1, False, False, 0, None] for f in filters]],
        h.now,
    )
    router, acceptors = h.take()
    for e in router:
        if kind_of(e) == env.Kind.SUB:
            return list(env.Sub._make(e).codes)
    (suback,) = of_kind(acceptors, env.SendSuback)
    return list(suback.codes)


@pytest.mark.parametrize(("level", "refused"), [(4, 0x80), (5, ReasonCode.QUOTA_EXCEEDED)])
def test_subscriptions_past_the_count_are_refused(level: int, refused: int) -> None:
    h = Harness(max_subscriptions=4)
    connected(h, level=level)  # holds "t"
    assert subscribe(h, "a", "b") == [1, 1]
    assert subscribe(h, "c", "d", "b") == [1, refused, 1]  # "b" is held already: replaced
    assert subscribe(h, "e") == [refused]
    assert h.shard.counters["subscription_quota_refusals"] == 2
    assert sorted(h.shard.sessions["c1"].subscriptions) == ["a", "b", "c", "t"]


def test_subscriptions_past_the_filter_bytes_are_refused_and_unsubscribe_frees_them() -> None:
    h = Harness(max_subscription_bytes=101)
    connected(h, level=5)  # holds "t": 1 byte
    assert subscribe(h, "x" * 60) == [1]
    assert subscribe(h, "y" * 41) == [ReasonCode.QUOTA_EXCEEDED]
    assert subscribe(h, "y" * 40) == [1]
    h.shard.handle([env.Kind.UNSUBSCRIBE, CONN_A, "c1", 2, ["x" * 60]], h.now)
    h.take()
    assert h.shard.sessions["c1"].filter_bytes == 41
    assert subscribe(h, "z" * 60) == [1]


def test_a_reloaded_session_counts_its_stored_filters() -> None:
    h = Harness()
    store = MemoryStore()
    connected(h, level=5)  # persistent, holds "t"
    store.apply(h.ops)
    assert subscribe(h, "x" * 60) == [1]
    store.apply(h.ops)
    shard = Shard(0, ShardLimits(max_subscription_bytes=101))
    shard.load(store.load_sessions(lambda _cid: True), h.now + 5)
    assert shard.sessions["c1"].filter_bytes == 61
