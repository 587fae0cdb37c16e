"""A cluster's bus and heartbeats are CURVE (flockmq/curve.py; issue 14):
what an outsider who reaches a node's ports can do, on a two-host cluster
(tests/cluster/nodes.py: every cluster test runs with CURVE on).

The outsider is the test itself, in the root namespace: raw ZeroMQ
sockets, once speaking no CURVE, once with a keypair of its own and the
node's public key (which is no secret). The control is the same frame sent
with a node's real keys, which is delivered: the frame is well-formed, and
only the key makes the difference.

- A forged ROUTE envelope (a publish) sent to a node's router inbox reaches
  no subscriber; the handshake fails on the outsider's side, the node logs
  the refused key; the real clients are served meanwhile.
- An outsider's SUB on a node's heartbeat port hears nothing.
- Garbage bytes on every bus port and the heartbeat port: the node closes
  those connections, no process restarts, and it keeps serving.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from flockmq.cluster import Cluster, load_cluster
from flockmq.config import Config
from flockmq.curve import CurveKeys, connect_curve
from flockmq.envelopes import FRAME_VERSION, Kind, Route
from tests.e2e.clients import Client, connected, unique, wait_for
from tests.postgres import PostgresServer

from .netns import Network
from .nodes import ClusterNode, running_cluster

ACCEPTORS = {"ka": 1, "kb": 1}
SHARDS = 2
WAIT = 30.0
FAILED: dict[int, str] = {
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL): "no detail",
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL): "protocol",
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH): "auth",
}


@dataclass
class Curved:
    a: ClusterNode
    b: ClusterNode
    cluster: Cluster
    config: Config  # node ka's: every endpoint, and its keys (the control's)

    @property
    def keys(self) -> CurveKeys:
        assert self.config.curve is not None
        return self.config.curve


@pytest.fixture(scope="module")
def curved(
    netns_network: Network, netns_postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Curved]:
    with running_cluster(
        netns_network,
        netns_postgres,
        tmp_path_factory.mktemp("curve"),
        ACCEPTORS,
        shards=SHARDS,
        base_config="allow_anonymous = true\n",
    ) as (_hosts, (a, b), _dsn):
        cluster = load_cluster(str(a.cluster_file))
        yield Curved(a, b, cluster, Config(**cluster.config_values("ka")))


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.destroy(linger=0)


def outsider(
    ctx: zmq.Context[Any], kind: int, endpoint: str, server_key: str | None
) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
    """A socket of no node, connected to `endpoint` (CURVE with a keypair of
    its own when `server_key` is given), and a monitor of its handshakes."""
    sock: zmq.Socket[Any] = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    monitor = sock.get_monitor_socket(sum(FAILED))
    if server_key is not None:
        public, secret = zmq.curve_keypair()
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode())
    sock.connect(endpoint)
    return sock, monitor


def handshake_failed(monitor: zmq.Socket[Any]) -> str:
    """Which way the next handshake failed (waits for it)."""
    assert monitor.poll(int(WAIT * 1000)), "no handshake failure reported"
    return FAILED[int(recv_monitor_message(monitor)["event"])]


def forged_publish(topic: str, payload: bytes) -> bytes:
    """A frame as an acceptor sends it: one ROUTE of a QoS 0 publish."""
    route = Route(Kind.ROUTE, "outsider", topic, payload, 0, False, None, None)
    frame: bytes = msgpack.packb([FRAME_VERSION, -1, 0, 0, [list(route)]], use_bin_type=True)
    return frame


def test_a_forged_publish_without_a_node_s_key_reaches_no_subscriber(
    curved: Curved, ctx: zmq.Context[Any]
) -> None:
    topic = unique("curve/forged")
    subscriber = connected(curved.a, host=curved.a.host)
    subscriber.subscribe(topic, 0)  # SUBACK: every router holds it
    inbox = curved.config.router_work_endpoint(1)  # node kb's router: what its acceptors send to

    plain, plain_monitor = outsider(ctx, zmq.PUSH, inbox, None)
    stranger, stranger_monitor = outsider(ctx, zmq.PUSH, inbox, curved.keys.server_key(inbox))
    plain.send(forged_publish(topic, b"plain"), zmq.NOBLOCK)
    stranger.send(forged_publish(topic, b"stranger"), zmq.NOBLOCK)
    assert handshake_failed(plain_monitor)  # it speaks no CURVE (how it fails varies)
    assert handshake_failed(stranger_monitor) == "auth"  # the node's ZAP: not a node's key
    wait_for(lambda: "curve: refused 1 connection" in curved.b.log(), WAIT, "kb logs it")

    # The control: the same frame with a node's keys is delivered, first.
    keyed: zmq.Socket[Any] = ctx.socket(zmq.PUSH)
    keyed.setsockopt(zmq.LINGER, 0)
    connect_curve(keyed, inbox, curved.keys)
    keyed.send(forged_publish(topic, b"keyed"))
    (message,) = subscriber.expect(1, timeout=WAIT)
    assert message.payload == b"keyed"
    assert_served(curved, subscriber, topic)  # and the real clients are, next
    subscriber.expect_nothing()
    subscriber.disconnect()


def assert_served(curved: Curved, subscriber: Client, topic: str) -> None:
    """A QoS 1 publish through node kb reaches `subscriber` (on ka)."""
    publisher = connected(curved.b, host=curved.b.host)
    publisher.publish(topic, b"served", 1)
    (message,) = subscriber.expect(1, timeout=WAIT)
    assert message.payload == b"served"
    publisher.disconnect()


def test_an_outsider_hears_no_heartbeat(curved: Curved, ctx: zmq.Context[Any]) -> None:
    endpoint = curved.cluster.node("kb").heartbeat_endpoint()
    plain, plain_monitor = outsider(ctx, zmq.SUB, endpoint, None)
    stranger, stranger_monitor = outsider(ctx, zmq.SUB, endpoint, curved.keys.server_key(endpoint))
    for sock in (plain, stranger):
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    assert handshake_failed(plain_monitor)
    assert handshake_failed(stranger_monitor) == "auth"
    # The control: a node's keys hear kb's heartbeats (one a second).
    keyed: zmq.Socket[Any] = ctx.socket(zmq.SUB)
    keyed.setsockopt(zmq.LINGER, 0)
    keyed.setsockopt(zmq.SUBSCRIBE, b"")
    connect_curve(keyed, endpoint, curved.keys)
    assert keyed.poll(int(WAIT * 1000)), "no heartbeat with a node's keys"
    assert msgpack.unpackb(keyed.recv())[1] == "kb"
    # the outsiders' connections are gone for good: nothing can come to them
    assert not plain.poll(0) and not stranger.poll(0)


def inboxes_of(config: Config) -> list[str]:
    """The bus endpoints the processes of `config`'s node bind."""
    placement = config.placement
    assert placement is not None
    endpoints = []
    for router in placement.routers_here():
        endpoints += [config.router_endpoint(router), config.router_work_endpoint(router)]
    for shard in placement.workers_here():
        endpoints += [config.worker_endpoint(shard), config.worker_work_endpoint(shard)]
    endpoints += [config.acceptor_endpoint(a) for a in placement.acceptors_here()]
    return endpoints


def test_garbage_on_the_bus_and_heartbeat_ports_harms_nothing(curved: Curved) -> None:
    node = curved.cluster.node("kb")
    before = {child.pid for child in curved.b.children()}
    config = Config(**curved.cluster.config_values("kb"))
    ports = [int(e.rpartition(":")[2]) for e in inboxes_of(config)] + [node.heartbeat_port]
    greeting = b"\xff" + bytes(8) + b"\x7f\x03\x00NULL" + bytes(16)  # ZMTP 3.0, NULL
    for port in ports:
        for garbage in (os.urandom(64 * 1024), greeting + os.urandom(4096)):
            with socket.create_connection((node.address, port), timeout=WAIT) as raw:
                try:
                    raw.sendall(garbage)
                    while raw.recv(65536):  # until the node closes it
                        pass
                except ConnectionResetError:
                    pass  # closed with our bytes unread: closed all the same
    assert {child.pid for child in curved.b.children()} == before  # nothing restarted
    topic = unique("curve/after")
    subscriber = connected(curved.a, host=curved.a.host)
    subscriber.subscribe(topic, 1)
    assert_served(curved, subscriber, topic)
    subscriber.disconnect()
