"""Retained messages and MQTT 5 message expiry [MQTT-3.3.2-5, -6]: an expired
retained message is no longer sent and is deleted (from the store too); one
sent before its deadline carries the interval minus the time it was kept; the
deadline is stored with it and survives a router restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flockmq import envelopes as env
from flockmq.message_expiry import pack_stored_props
from flockmq.router.router import Router
from flockmq.store import ExpireRetained, MemoryStore, PutRetained, open_store

from .test_router import route, sub, take

INTERVAL = "message_expiry_interval"


def retained_sent(router: Router, shard: int = 0) -> list[tuple[str, bytes, env.Props]]:
    """(topic, payload, props) of the retained DELIVERs a new subscription got."""
    sub(router, shard, "reader", ("r/#", 1))
    sent = [e for e in router.to_workers.get(shard, []) if isinstance(e, env.Deliver)]
    take(router)
    return [(d.topic, d.payload, d.props) for d in sent]


def test_a_retained_message_is_sent_with_what_is_left_of_its_interval() -> None:
    router = Router()
    router.now = 1000.0
    route(router, "r/a", b"a", retain=True, props={INTERVAL: 30, "user_property": [("k", "v")]})
    route(router, "r/b", b"b", retain=True)
    take(router)
    router.now = 1012.5
    assert sorted(retained_sent(router)) == [
        ("r/a", b"a", {INTERVAL: 18, "user_property": [("k", "v")]}),
        ("r/b", b"b", None),
    ]


def test_an_expired_retained_message_is_not_sent_and_is_deleted() -> None:
    router = Router()
    router.now = 1000.0
    route(router, "r/a", b"a", retain=True, props={INTERVAL: 5})
    route(router, "$SYS/x", b"1", retain=True, props={INTERVAL: 5})
    take(router)
    router.take_durable()
    router.now = 1005.0
    assert retained_sent(router) == []  # its deadline has come
    router.expire_retained(1004.9)
    assert "r/a" in router.retained
    router.expire_retained(1005.0)
    assert "r/a" not in router.retained and "$SYS/x" not in router.retained
    ops, _ = router.take_durable()
    # only the message that expired ($SYS is never stored)
    assert ops == [ExpireRetained("r/a", b"a", 1, pack_stored_props({INTERVAL: 5}, 1005.0))]
    assert router.counters["retained_expired"] == 2


def test_a_replaced_retained_message_keeps_its_own_deadline() -> None:
    router = Router()
    router.now = 1000.0
    route(router, "r/a", b"short", retain=True, props={INTERVAL: 5})
    router.now = 1001.0
    route(router, "r/a", b"long", retain=True, props={INTERVAL: 100})
    route(router, "r/b", b"no expiry", retain=True, props={INTERVAL: 5})
    route(router, "r/b", b"no expiry", retain=True)
    take(router)
    router.expire_retained(1010.0)
    assert router.retained.get("r/a") is not None
    assert router.retained.get("r/b") is not None
    router.now = 1010.0
    assert sorted(retained_sent(router)) == [
        ("r/a", b"long", {INTERVAL: 91}),
        ("r/b", b"no expiry", None),
    ]


def test_the_deadline_is_stored_and_reloaded() -> None:
    store = MemoryStore()
    router = Router()
    router.now = 1000.0
    route(router, "r/a", b"a", retain=True, props={INTERVAL: 60})
    ops, _ = router.take_durable()
    assert [type(op) for op in ops] == [PutRetained]
    store.apply(ops)

    again = Router()
    again.load_retained(store.load_retained())
    again.now = 1030.0
    assert retained_sent(again) == [("r/a", b"a", {INTERVAL: 30})]
    again.expire_retained(1060.0)
    assert "r/a" not in again.retained


def test_standby_routers_stale_expiry_does_not_delete_a_newer_retained(postgres_dsn: str) -> None:
    """Broker B (standby) started while topic T held m1 with a message expiry.
    Then a client of broker A (serving) replaced T with m2, no expiry: PUBACKed
    after its commit. When B's router's stale copy of m1 expires, it deletes
    T by topic from the shared store: m2 is gone from PostgreSQL (and B's
    router never saw m2 anyway: it loads retained messages only at start)."""
    store = open_store("postgres", "", "process", dsn=postgres_dsn)
    try:
        deadline = time.time() + 60
        store.apply([PutRetained("T", b"m1", 1, pack_stored_props(None, deadline))])
        router_b = Router()  # B's router at its start
        router_b.load_retained(store.load_retained())
        store.apply([PutRetained("T", b"m2", 1, None)])  # A's router: m2 acknowledged
        router_b.expire_retained(deadline + 1)  # B's tick, a minute later
        ops, _later = router_b.take_durable()
        if ops:
            store.apply(ops)  # B's committer (routers commit unfenced)
        assert [(r.topic, r.payload) for r in store.load_retained()] == [("T", b"m2")]
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "memory"])
def test_an_expiry_deletes_the_stored_message_it_expired_and_no_other(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The expiry's delete is conditional on the message (ExpireRetained):
    a loaded message with properties (their stored blob packed again must be
    the same bytes) is deleted at its deadline; a newer one is kept."""
    dsn = request.getfixturevalue("postgres_dsn") if kind == "postgres" else ""
    store = open_store(kind, str(tmp_path / "data"), "process", dsn=dsn)
    try:
        props = {INTERVAL: 30, "user_property": [("k", "v")], "correlation_data": b"\x00c"}
        old = pack_stored_props(props, 1030.5)
        store.apply([PutRetained("r/a", b"a", 1, old), PutRetained("r/b", b"b", 2, old)])
        router = Router()
        router.load_retained(store.load_retained())
        store.apply([PutRetained("r/b", b"newer", 2, old)])  # another router, same props
        router.expire_retained(1031.0)
        ops, _ = router.take_durable()
        assert len(ops) == 2
        store.apply(ops)
        assert [(r.topic, r.payload) for r in store.load_retained()] == [("r/b", b"newer")]
    finally:
        store.close()
