"""The simulation is deterministic: the same scenario delivers the same
frames, in the same order, with the same contents (so a failure seen once
is seen again, unlike the e2e tests' races)."""

from __future__ import annotations

from typing import Any

from flockmq.frontend.codec import Connect, Publish, Subscribe, Subscription

from .harness import NEVER, Simulation


def scenario() -> list[Any]:
    sim = Simulation(workers=2, acceptors=2)
    clients = [sim.client(f"c{i}", acceptor=i % 2) for i in range(6)]
    for i, client in enumerate(clients):
        client.connect(clean=i % 2 == 0, expiry=0 if i % 2 == 0 else NEVER)
        client.subscribe("t/#", i % 3)
    sim.run()
    for i, client in enumerate(clients):
        client.publish(f"t/{i}", b"%d" % i, i % 3, packet_id=i + 1)
    sim.restart_worker(1)
    sim.advance(1.0)
    sim.restart_router()
    sim.run()
    return sim.trace


def test_the_same_scenario_delivers_the_same_frames() -> None:
    first, second = scenario(), scenario()
    assert len(first) > 50
    assert first == second


def mqtt_scenario() -> tuple[list[Any], list[list[bytes]]]:
    """With real acceptors: the frames, and every byte written to every client."""
    sim = Simulation(workers=2, acceptors=2, acceptor_cores=True)
    clients = [sim.mqtt_client(i % 2) for i in range(6)]
    for i, client in enumerate(clients):
        client.send(Connect(f"c{i}", 4, i % 2 == 0, 60))
        client.send(Subscribe(1, (Subscription("t/#", i % 3),)))
    for i, client in enumerate(clients):
        qos = i % 3
        client.send(Publish(f"t/{i}", b"%d" % i, qos, packet_id=i + 1 if qos else None))
    sim.restart_worker(1)
    sim.advance(1.0)
    sim.restart_router()
    sim.run()
    return sim.trace, [client.transport.written for client in clients]


def test_the_same_scenario_with_real_acceptors_writes_the_same_bytes() -> None:
    first, second = mqtt_scenario(), mqtt_scenario()
    assert len(first[0]) > 50 and all(first[1])
    assert first == second
