"""MQTT 5 message expiry in the shard [MQTT-3.3.2-5, -6]: a queued copy not
sent before its deadline is dropped (and leaves the store); one sent later
carries the interval minus the time it waited; the deadline survives a
restart of the worker (it is stored with the message)."""

from __future__ import annotations

from flockmq import envelopes as env
from flockmq.envelopes import Wire
from flockmq.store import DeleteMessage, MemoryStore, PutMessage
from flockmq.workers.shard import Shard, ShardLimits
from tests.unit.wire import of_kind

from .test_shard import CONN_A, CONN_B, NEVER, Harness

INTERVAL = "message_expiry_interval"


def offline_subscriber(h: Harness, *, qos: int = 1) -> None:
    h.connect(CONN_A, "s1", clean=False, expiry=NEVER, level=5)
    h.subscribe(CONN_A, "s1", "t", qos)
    h.close(CONN_A, "s1")
    h.take()


def deliver(h: Harness, payload: bytes, qos: int, props: env.Props) -> None:
    h.shard.handle(
        [env.Kind.DELIVER, "t", payload, qos, False, props, [["s1", qos, False, [], "t"]], None],
        h.now,
    )


def sent(acceptors: list[Wire]) -> list[tuple[bytes, env.Props]]:
    """(payload, props) of each SEND_PUBLISH."""
    return [(p.payload, p.props) for p in of_kind(acceptors, env.SendPublish)]


def test_a_queued_copy_goes_with_the_interval_counted_down() -> None:
    h = Harness()
    offline_subscriber(h)
    deliver(h, b"m", 1, {INTERVAL: 10, "content_type": "text"})
    h.take()
    h.now += 3.5
    h.connect(CONN_B, "s1", clean=False, expiry=NEVER, level=5)
    # 6.5 s left: rounded up, never 0 while it has not expired
    assert sent(h.take_acceptors()) == [(b"m", {INTERVAL: 7, "content_type": "text"})]


def test_a_copy_not_sent_before_its_deadline_is_dropped_and_deleted() -> None:
    h = Harness()
    offline_subscriber(h)
    deliver(h, b"old", 1, {INTERVAL: 10})
    deliver(h, b"keeps", 1, None)
    h.take()
    assert [type(op) for op in h.ops] == [PutMessage, PutMessage]
    h.now += 10
    h.connect(CONN_B, "s1", clean=False, expiry=NEVER, level=5)
    assert sent(h.take_acceptors()) == [(b"keeps", None)]
    assert h.shard.counters["messages_expired"] == 1
    assert [(type(op), op.seq) for op in h.ops if isinstance(op, DeleteMessage)] == [
        (DeleteMessage, 1)
    ]


def test_a_message_without_the_property_never_expires() -> None:
    h = Harness()
    offline_subscriber(h, qos=0)
    h.shard.state.limits = ShardLimits(queue_qos0=True)
    deliver(h, b"q0", 0, {INTERVAL: 1})
    deliver(h, b"forever", 0, None)
    h.now += 10**6
    h.connect(CONN_B, "s1", clean=False, expiry=NEVER, level=5)
    assert sent(h.take_acceptors()) == [(b"forever", None)]


def test_the_deadline_survives_a_worker_restart() -> None:
    store = MemoryStore()
    h = Harness()
    offline_subscriber(h)
    store.apply(h.ops)
    deliver(h, b"soon", 1, {INTERVAL: 60})
    deliver(h, b"later", 1, {INTERVAL: 3600})
    h.take()
    store.apply(h.ops)

    shard = Shard(0, ShardLimits())
    shard.load(store.load_sessions(lambda _cid: True), h.now + 100)
    h2 = Harness()
    h2.shard = shard
    h2.now = h.now + 100
    h2.connect(CONN_B, "s1", clean=False, expiry=NEVER, level=5)
    # "soon" expired while the worker was down; "later" waited 100 s of its hour
    assert sent(h2.take_acceptors()) == [(b"later", {INTERVAL: 3500})]
