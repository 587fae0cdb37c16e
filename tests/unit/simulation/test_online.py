"""Which connections the router knows (`Router.online`): it sends QoS 0 copies
straight to a subscriber's acceptor, so it must know where each subscribed
session is connected, and only those (a client that only publishes or only
connects costs the router nothing). Real acceptors (harness.py,
`acceptor_cores=True`), deterministic."""

from __future__ import annotations

from flockmq.frontend.codec import Connack, Connect, Disconnect, Publish, Suback, Subscribe
from flockmq.frontend.codec import Subscription as Filter

from .harness import MqttClient, Simulation

PERSISTENT = {"session_expiry_interval": 3600}


def connect(sim: Simulation, client_id: str, *, acceptor: int = 0) -> MqttClient:
    client = sim.mqtt_client(acceptor, 5)
    client.send(Connect(client_id, 5, False, 60, properties=PERSISTENT))
    (connack,) = client.take()
    assert isinstance(connack, Connack) and connack.reason_code == 0, connack
    return client


def online(sim: Simulation) -> dict[str, int]:
    return dict(sim.router_core.router.online)


def qos0_copies(client: MqttClient) -> list[bytes]:
    return [p.payload for p in client.take() if isinstance(p, Publish)]


def test_the_router_learns_a_connection_at_its_first_subscription_and_forgets_it_on_close() -> None:
    sim = Simulation(workers=2, acceptors=2, acceptor_cores=True)
    sub = connect(sim, "sub")
    pub = connect(sim, "pub", acceptor=1)
    assert online(sim) == {}  # connected, nothing subscribed: nothing to know
    sub.send(Subscribe(1, (Filter("t", 0),)))
    assert sub.take() == [Suback(1, (0,))]
    assert online(sim) == {"sub": sub.conn.conn_id}
    pub.send(Publish("t", b"direct", 0))
    assert qos0_copies(sub) == [b"direct"]
    sub.send(Disconnect())
    assert online(sim) == {}
    pub.send(Disconnect())
    assert online(sim) == {}


def test_a_resumed_session_with_subscriptions_is_known_at_once_wherever_it_connects() -> None:
    sim = Simulation(workers=2, acceptors=2, acceptor_cores=True)
    first = connect(sim, "sub")
    first.send(Subscribe(1, (Filter("t", 0),)))
    first.take()
    first.drop()
    assert online(sim) == {}
    again = connect(sim, "sub", acceptor=1)  # session present, subscriptions kept
    assert online(sim) == {"sub": again.conn.conn_id}
    pub = connect(sim, "pub")
    pub.send(Publish("t", b"to the new connection", 0))
    assert qos0_copies(again) == [b"to the new connection"]
    assert qos0_copies(first) == []


def test_a_restarted_router_learns_the_subscribed_connections_again() -> None:
    sim = Simulation(workers=2, acceptors=1, acceptor_cores=True)
    sub = connect(sim, "sub")
    sub.send(Subscribe(1, (Filter("t", 0),)))
    sub.take()
    connect(sim, "idle")
    sim.restart_router()
    sim.run()
    assert online(sim) == {"sub": sub.conn.conn_id}
    pub = connect(sim, "pub")
    pub.send(Publish("t", b"after the restart", 0))
    assert qos0_copies(sub) == [b"after the restart"]
