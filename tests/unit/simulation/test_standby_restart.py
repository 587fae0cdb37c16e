"""A worker that restarts as a standby (its shard's lock taken by another
broker meanwhile: workers/ownership.py), seen from MQTT clients of real
acceptors (harness.py): every connection its previous incarnation served is
closed so its client reconnects (to the broker that serves the shard now),
none is left attached to a shard nobody here serves, and a new CONNECT is
refused with Server unavailable; the other shard is untouched."""

from __future__ import annotations

from flockmq.frontend.codec import Connack, Connect, Disconnect, Publish

from .harness import Simulation
from .test_recovery import PERSISTENT, WORKERS, connect, id_on_shard, subscribe


def test_the_connections_of_a_worker_restarted_as_a_standby_are_closed() -> None:
    sim = Simulation(workers=WORKERS, acceptors=1, acceptor_cores=True)
    persistent_v5 = connect(sim, id_on_shard("p5", 1), clean=False, level=5)
    persistent_v3 = connect(sim, id_on_shard("p3", 1), clean=False)
    clean = connect(sim, id_on_shard("clean", 1), clean=True)
    clean_v5 = sim.mqtt_client(0, 5)  # expiry 0: the session ends with the connection
    clean_v5.send(Connect(id_on_shard("c5", 1), 5, True, 60))
    assert [type(p) for p in clean_v5.take()] == [Connack]
    other = connect(sim, id_on_shard("other", 0), clean=False)
    for client in (persistent_v5, persistent_v3, clean, clean_v5, other):
        subscribe(client, "t", 1)
    sim.restart_worker_as_standby(1)
    sim.run()
    assert persistent_v5.take() == [Disconnect(0x9C)]  # Use another server
    assert clean_v5.take() == [Disconnect(0x89)]  # its session died with the worker
    assert persistent_v5.closed and persistent_v3.closed and clean.closed and clean_v5.closed
    assert sim.acceptors[0].acceptor.counters["closed_refused_reattach"] == 2
    assert sim.shard(1).counters["standby_connects_refused"] == 2  # the re-attaches

    # A new CONNECT for the shard: refused at once (3.1.1: return code 3).
    for level, code in ((5, 0x88), (4, 3)):
        again = sim.mqtt_client(0, level)
        props = PERSISTENT if level == 5 else {}
        again.send(Connect(id_on_shard("p", 1), level, False, 60, properties=props))
        (connack,) = again.take()
        assert isinstance(connack, Connack) and connack.reason_code == code
        assert again.closed

    # Shard 0 is served as before.
    other.send(Publish("t", b"still", 1, packet_id=7))
    assert not other.closed
