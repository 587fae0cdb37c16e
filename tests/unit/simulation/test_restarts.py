"""A worker or the router rebuilt from the store (a process restarted by the
supervisor), with the other cores still running (harness.py): what was
acknowledged survives, the router's topic tree is rebuilt from what the
shards re-send, and publishes wait while it is."""

from __future__ import annotations

from flockmq.sharding import shard_of

from .harness import NEVER, Simulation


def test_a_restarted_worker_keeps_its_offline_sessions_and_their_queues() -> None:
    sim = Simulation(workers=2, acceptors=1)
    sub = sim.client("sub")
    sub.connect(clean=False, expiry=NEVER)
    sub.subscribe("q/#", 1)
    sub.closed()
    pub = sim.client("pub")
    pub.connect(clean=True)
    sim.run()
    pub.publish("q/1", b"before", 1, packet_id=1)
    sim.run()
    assert pub.acknowledged(1)  # its copy is committed in the subscriber's queue

    sim.restart_worker(shard_of("sub", 2))
    sim.run()
    # The restarted shard re-sent the subscription: new publishes still reach it.
    pub.publish("q/2", b"after", 1, packet_id=2)
    sim.run()
    assert pub.acknowledged(2)
    back = sim.client("sub")
    back.connect(clean=False, expiry=NEVER)
    sim.run()
    assert back.received.connacks[0][2] is True  # session present
    assert back.payloads() == [b"before", b"after"]


def test_a_write_that_was_not_committed_was_never_acknowledged() -> None:
    """The worker dies between taking a copy and committing it: the
    publisher got no PUBACK (so the client still has the message to send
    again), and nothing half-done is reloaded."""
    sim = Simulation(workers=1, acceptors=1)
    sub = sim.client("sub")
    sub.connect(clean=False, expiry=NEVER)
    sub.subscribe("q", 1)
    sub.closed()
    pub = sim.client("pub")
    pub.connect(clean=True)
    sim.run()
    sim.auto_commit = False
    pub.publish("q", b"lost", 1, packet_id=1)
    sim.run()
    assert not pub.acknowledged(1)
    sim.restart_worker(0)
    sim.auto_commit = True
    sim.run()
    assert not pub.acknowledged(1)
    # The acceptor's retry (a new attempt) after the restart is taken once.
    pub.publish("q", b"lost", 1, packet_id=1, attempt=1)
    sim.run()
    assert pub.acknowledged(1)
    back = sim.client("sub")
    back.connect(clean=False, expiry=NEVER)
    sim.run()
    assert back.payloads() == [b"lost"]


def test_a_restarted_router_holds_publishes_until_every_shard_resynced() -> None:
    sim = Simulation(workers=2, acceptors=1)
    subs = [sim.client(f"sub{i}") for i in range(4)]
    for client in subs:
        client.connect(clean=True)
        client.subscribe("news", 0)
    pub = sim.client("pub")
    pub.connect(clean=True)
    pub.publish("news", b"kept", 0, retain=True)
    sim.run()
    assert [c.payloads() for c in subs] == [[b"kept"]] * 4

    sim.restart_router()
    assert not sim.router_core.synced
    # A publish sent while the shards re-send their subscriptions waits in
    # its pipe: not matched against a half-rebuilt tree.
    pub.publish("news", b"during", 0)
    sim.run()
    assert sim.router_core.synced
    assert [c.payloads() for c in subs] == [[b"kept", b"during"]] * 4
    # The retained message was reloaded from the store.
    late = sim.client("late")
    late.connect(clean=True)
    late.subscribe("news", 0)
    sim.run()
    assert late.payloads() == [b"kept"]


def test_a_router_whose_shard_never_answers_routes_after_the_timeout() -> None:
    sim = Simulation(workers=2, acceptors=1)
    sub = sim.client("sub")
    sub.connect(clean=True)
    sub.subscribe("t", 0)
    pub = sim.client("pub")
    pub.connect(clean=True)
    sim.run()
    silent = 1 - shard_of("sub", 2)
    sim.restart_router()
    sim.pipes["router", ("worker", silent)].clear()  # that worker is hung: it never answers
    pub.publish("t", b"m", 0)
    sim.run()
    assert sim.router_core.router.unsynced == {silent}
    assert sub.payloads() == []  # the publish waits in its pipe
    sim.sync_timeout()
    sim.run()
    assert sim.router_core.synced
    assert sub.payloads() == [b"m"]
