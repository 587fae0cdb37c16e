"""The heartbeats of a cluster node (issue 14), over ZeroMQ: the I/O around
flockmq/membership.py.

A cluster node's supervisor makes one `Heartbeats` at start and calls
`poll` from its watch loop (every pass, ~0.1 s), through
flockmq/app/cluster_moves.py, which hands the changes to the shard manager
(flockmq/shard_manager.py) and a dead node to store/shard_evict.py
(when flockmq/dead_nodes.py allows).

Sockets: each node binds one PUB on its heartbeat endpoint (cluster.py
`Node.heartbeat_endpoint`: the port just past its bus ports) and connects
one SUB to every other node's. PUB/SUB because a heartbeat must never wait:
PUB drops what a subscriber it cannot reach would have had (PUSH would queue
it, and a node coming back would read a burst of old heartbeats as fresh
ones), and the send high-water mark is a few heartbeats, so at most those
few arrive late after a stall of the link. ZeroMQ's own heartbeats
(ZMQ_HEARTBEAT_IVL/TIMEOUT) drop a TCP connection whose peer went silent,
so a link that comes back, or a node restarted at the same address, is
connected again within RECONNECT_MAX seconds.

Every message is one HEARTBEAT envelope (flockmq/envelopes.py), at most
MAX_MESSAGE bytes, checked on receipt; a larger or malformed one is counted
(`malformed`) and changes nothing. Not ZMQ_MAXMSGSIZE: after a message over
it libzmq (4.3.5, measured) drops the connection and never connects to that
endpoint again, not even to a restarted peer, so one bad frame would make a
node dead for good. Only the peers can send here (the SUB connects out to
the endpoints they bind; with CURVE, `curve`, only the node that holds the key
of that endpoint's node), so the size is checked after receipt. At
most MAX_PER_POLL messages are read per `poll`, so a flood from a broken
peer cannot stall the supervisor's loop (the rest wait for the next poll,
and ZeroMQ's receive high-water mark bounds the queue).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgpack
import zmq

from flockmq.cluster import Cluster
from flockmq.curve import CurveKeys, bind_curve, connect_curve
from flockmq.envelopes import Heartbeat, Kind, check_heartbeat
from flockmq.membership import Change, Membership

log = logging.getLogger("flockmq.heartbeats")

SNDHWM = 4  # heartbeats queued towards one subscriber at most
RCVHWM = 1000
MAX_MESSAGE = 512  # bytes: a heartbeat is under 100
MAX_PER_POLL = 256
RECONNECT = 0.1  # seconds: ZeroMQ's first reconnect interval
RECONNECT_MAX = 1.0

_packer = msgpack.Packer(use_bin_type=True)


class Heartbeats:
    def __init__(
        self,
        membership: Membership,
        incarnation: int,
        broker: str,
        bind: str,
        peers: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
        context: zmq.Context[Any] | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        """`bind`: this node's heartbeat endpoint; `peers`: every other
        node's, by name. Sends its first heartbeat at the first `poll`.
        `curve`: the cluster's keys: the PUB admits only the nodes, and the
        SUB hears only the node that holds each endpoint's key
        (flockmq/curve.py)."""
        self.membership = membership
        self.clock = clock
        self.message: bytes = _packer.pack(
            Heartbeat(Kind.HEARTBEAT, membership.me, incarnation, broker)
        )
        ctx = context if context is not None else zmq.Context.instance()
        interval_ms = int(membership.interval * 1000)
        self.pub: zmq.Socket[Any] = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, SNDHWM)
        self.pub.setsockopt(zmq.LINGER, 0)
        self._keep_alive(self.pub, interval_ms)
        bind_curve(self.pub, bind, curve)
        self.sub: zmq.Socket[Any] = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, RCVHWM)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RECONNECT_IVL, int(RECONNECT * 1000))
        self.sub.setsockopt(zmq.RECONNECT_IVL_MAX, int(RECONNECT_MAX * 1000))
        self._keep_alive(self.sub, interval_ms)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        for endpoint in peers.values():
            connect_curve(self.sub, endpoint, curve)
        self.sent = 0
        self.received = 0
        self.malformed = 0

    @classmethod
    def for_node(
        cls,
        cluster: Cluster,
        me: str,
        incarnation: int,
        broker: str,
        clock: Callable[[], float] = time.monotonic,
        curve: CurveKeys | None = None,
    ) -> Heartbeats:
        """The heartbeats of node `me` of `cluster`, on the endpoints the
        cluster file gives (cluster.py `Node.heartbeat_endpoint`), CURVE
        with `curve` (Config.curve)."""
        node = cluster.node(me)
        membership = Membership(
            me, cluster.node_names, cluster.heartbeat_interval, cluster.heartbeat_timeout, clock()
        )
        peers = {n.name: n.heartbeat_endpoint() for n in cluster.nodes if n.name != me}
        return cls(
            membership, incarnation, broker, node.heartbeat_endpoint(), peers, clock, curve=curve
        )

    @staticmethod
    def _keep_alive(sock: zmq.Socket[Any], interval_ms: int) -> None:
        # ZeroMQ's heartbeats (ZMTP PING): a connection silent for three
        # intervals is dropped, and the SUB side connects again
        sock.setsockopt(zmq.HEARTBEAT_IVL, interval_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * interval_ms)
        sock.setsockopt(zmq.HEARTBEAT_TTL, 3 * interval_ms)

    @property
    def live(self) -> frozenset[str]:
        return self.membership.live

    def poll(self) -> list[Change]:
        """Send this node's heartbeat if due, read what arrived, and declare
        dead whoever was silent too long: the changes of the live set."""
        membership = self.membership
        now = self.clock()
        if membership.heartbeat_due(now):
            try:
                self.pub.send(self.message, zmq.NOBLOCK)
                self.sent += 1
            except zmq.Again:  # PUB does not block; kept for safety: it is only late
                pass
        changes: list[Change] = []
        for _ in range(MAX_PER_POLL):
            try:
                raw = self.sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            changes.extend(self._on_message(raw, self.clock()))
        changes.extend(membership.tick(self.clock()))
        for change in changes:
            log.warning(
                "cluster: node %s %s (incarnation %d)",
                change.node,
                change.kind.value,
                change.incarnation,
            )
        return changes

    def _on_message(self, raw: bytes, now: float) -> list[Change]:
        if len(raw) > MAX_MESSAGE:
            self.malformed += 1
            return []
        try:
            heartbeat = check_heartbeat(msgpack.unpackb(raw, raw=False, use_list=True))
        except (ValueError, TypeError) as exc:  # msgpack's errors are ValueErrors
            self.malformed += 1
            log.debug("dropping a malformed heartbeat (%d bytes): %s", len(raw), exc)
            return []
        self.received += 1
        return self.membership.heard(heartbeat.node, heartbeat.incarnation, heartbeat.broker, now)

    def wait(self, seconds: float) -> None:
        """Block until a heartbeat arrives or `seconds` pass (for a loop with
        nothing else to do, such as the tests')."""
        self.sub.poll(int(seconds * 1000), zmq.POLLIN)

    def close(self) -> None:
        self.pub.close(0)
        self.sub.close(0)
