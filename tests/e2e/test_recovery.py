"""Recovery around a restarted process, seen from the clients: persistent
sessions keep their connections through a worker's kill -9 (a pause, not a
disconnect), clean sessions on that shard are closed and can reconnect, and a
router restart keeps every subscription working."""

from __future__ import annotations

import os
import queue
import signal
import zlib

import pytest

from flockmq.frontend.codec import Connack, Connect, Suback, Subscribe, Subscription

from .broker import MakeBroker
from .clients import Client, RawClient, unique


def id_on_shard(prefix: str, shard: int, workers: int = 2) -> str:
    while True:
        client_id = unique(prefix)
        if zlib.crc32(client_id.encode()) % workers == shard:
            return client_id


def test_persistent_session_keeps_its_connection_through_a_worker_kill(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker()
    topic = unique("pause")
    sub = Client(broker.port, id_on_shard("sub", 1), clean=False)
    sub.connect()
    sub.subscribe(topic, 1)
    pub = Client(broker.port, id_on_shard("pub", 0))
    pub.connect()
    pub.publish(topic, b"before", 1)
    assert sub.expect(1)[0].payload == b"before"

    old = broker.kill("worker", 1)
    broker.wait_restarted("worker", 1, old)
    pub.publish(topic, b"after", 1)

    (msg,) = sub.expect(1, timeout=30)
    while msg.payload == b"before" and msg.dup:
        # Its PUBACK may have died with the worker: sent again (QoS 1 allows it).
        (msg,) = sub.expect(1, timeout=30)
    assert msg.payload == b"after", (msg.payload, msg.dup, msg.mid, broker.log()[-4000:])
    assert not sub.disconnected.is_set(), "the subscriber's connection was dropped"
    assert "restored 1 persistent sessions" in broker.log()
    sub.disconnect()
    pub.disconnect()


def test_clean_session_on_a_killed_worker_is_closed_and_can_reconnect(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker()
    client_id = id_on_shard("clean", 1)
    c = Client(broker.port, client_id)
    c.connect()
    old = broker.kill("worker", 1)
    broker.wait_restarted("worker", 1, old)
    # Its subscriptions lived only in the dead worker: the broker closes it.
    assert c.disconnected.wait(20)
    again = Client(broker.port, client_id)
    again.connect()
    topic = unique("back")
    again.subscribe(topic, 1)
    again.publish(topic, b"works", 1)
    assert again.expect(1)[0].payload == b"works"
    again.disconnect()


def test_subscriptions_work_after_a_router_kill(make_broker: MakeBroker) -> None:
    broker = make_broker()
    topic = unique("router")
    # Sessions live in the workers, so a router restart costs no session, clean
    # or persistent: every connection stays open (a pause, not a disconnect).
    subs = [Client(broker.port, clean=False), Client(broker.port, clean=True)]
    for sub in subs:
        sub.connect()
        sub.subscribe(topic, 1)
    old = broker.kill("router", 0)
    broker.wait_restarted("router", 0, old)
    pub = Client(broker.port)
    pub.connect()
    pub.publish(topic, b"re-registered", 1)
    for sub in subs:
        assert sub.expect(1, timeout=30)[0].payload == b"re-registered"
        assert not sub.disconnected.is_set(), f"{sub.client_id} was disconnected"
        sub.disconnect()
    pub.disconnect()


def test_a_subscribe_held_by_a_dying_worker_is_answered_after_its_restart(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker()
    topic = unique("held")
    sub = Client(broker.port, id_on_shard("held", 1), clean=False)
    sub.connect()
    worker = broker.pid_of("worker", 1)
    os.kill(worker, signal.SIGSTOP)  # the SUBSCRIBE reaches a worker that will die with it
    try:
        result, _mid = sub.paho.subscribe(topic, 1)
        assert result == 0
        with pytest.raises(queue.Empty):
            sub.subacks.get(timeout=0.5)  # frozen: no answer yet
    finally:
        os.kill(worker, signal.SIGKILL)
    broker.wait_restarted("worker", 1, worker)
    (granted,) = sub.subacks.get(timeout=30)  # the SUBACK comes after the restart
    assert granted.value == 1
    pub = Client(broker.port, id_on_shard("pub", 0))
    pub.connect()
    pub.publish(topic, b"subscribed", 1)
    assert sub.expect(1, timeout=30)[0].payload == b"subscribed"
    assert not sub.disconnected.is_set()
    sub.disconnect()
    pub.disconnect()


def test_a_connect_held_by_a_dying_worker_is_answered_after_its_restart(
    make_broker: MakeBroker,
) -> None:
    """The CONNECT reaches a worker that dies with it: the acceptor sends it
    again to the restarted worker, so the client gets its CONNACK instead of
    waiting until the connect timeout closes it."""
    broker = make_broker()
    # Connections on shard 1 through both acceptors (the kernel picks one at
    # random): their pipes to worker 1 are up, so the CONNECT below is in the
    # frozen worker when it dies (not queued for whichever worker comes next).
    for _ in range(8):
        warm = Client(broker.port, id_on_shard("warm", 1))
        warm.connect()
        warm.disconnect()
    client_id = id_on_shard("late", 1)
    worker = broker.pid_of("worker", 1)
    os.kill(worker, signal.SIGSTOP)
    try:
        raw = RawClient(broker.port)
        raw.send(Connect(client_id, 4, False, 60))
        with pytest.raises(TimeoutError):
            raw.recv(timeout=0.5)  # frozen: no answer yet
    finally:
        os.kill(worker, signal.SIGKILL)
    broker.wait_restarted("worker", 1, worker)
    assert raw.recv(timeout=30) == Connack(False, 0)
    raw.send(Subscribe(1, (Subscription("late/t", 1),)))
    assert raw.recv(timeout=30) == Suback(1, (1,))
    raw.close()
