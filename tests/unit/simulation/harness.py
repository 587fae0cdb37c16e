"""The broker's cores wired together in one process: a router and W shards,
each driven by the same `CoreRunner` as its real process (flockmq/runtime.py),
over an in-memory bus, one shared in-memory store and a fake clock.

Two ways to play the acceptors:
- `Simulation(...)`: the test plays them. `Client` sends what an acceptor's
  connection sends (flockmq/envelopes.py: CONNECT, ROUTE, PUBLISH, the
  acknowledgements, CLOSED) and reads what comes back for its connection.
- `Simulation(..., acceptor_cores=True)`: real acceptors (frontend/
  acceptor.py, their `AcceptorCore` driven by a `CoreRunner` as in their
  process) with real `ClientConnection`s and `ClientSession`s over an
  in-memory transport, on an event loop of the simulation's clock
  (`SimLoop`). `MqttClient` speaks MQTT packets to one and reads the packets
  written back: the whole broker, socket to socket, minus the sockets.

Deterministic: frames are delivered one at a time, pipe by pipe in the order
the pipes were first used, each as msgpack carries it (lists, not
NamedTuples); commits are applied after each frame (`auto_commit`), or when
the test says (`commit`, `fail_commits`); time moves only with `advance`.

Restarts rebuild a core from the store as its process does at start
(`RouterCore.create`/`start`, `ShardCore.start`, `Acceptor.announce`): what
was in its inbox and its uncommitted writes die with it (and an acceptor's
connections).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flockmq import envelopes as env
from flockmq import runtime
from flockmq.config import Config
from flockmq.envelopes import Envelope, Kind, Wire, make_conn_id
from flockmq.frontend.acceptor import Acceptor
from flockmq.frontend.codec import Packet, StreamDecoder, encode
from flockmq.frontend.connection import ClientConnection
from flockmq.frontend.servers import endpoint_for
from flockmq.listeners import Listener
from flockmq.mqtt.packet_types import PacketType
from flockmq.router.process import SYNC_TIMEOUT, RouterCore
from flockmq.runtime import CoreRunner, NoCommits
from flockmq.sharding import shard_of
from flockmq.store import MemoryStore, Op, StoreError
from flockmq.store.compact import compact
from flockmq.workers.process import ShardCore, limits_from
from flockmq.workers.shard import Shard
from flockmq.workers.standby import Standby
from tests.unit.frontend.acceptors import FakeTransport
from tests.unit.wire import wire

log = logging.getLogger("flockmq.simulation")

START = 1_000_000.0
NEVER = 0xFFFFFFFF


class SimCommitter:
    """store.Committer's `release` over the shared MemoryStore, settled when
    the simulation says: in order, applied in one batch, or failed whole."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.pending: list[tuple[Sequence[Op], Callable[[StoreError | None], None]]] = []

    def release(self, ops: Sequence[Op], on_done: Callable[[StoreError | None], None]) -> None:
        if ops or self.pending:
            self.pending.append((list(ops), on_done))
        else:
            on_done(None)

    def commit(self) -> None:
        batch, self.pending = self.pending, []
        ops = compact([op for submitted, _ in batch for op in submitted])
        if ops:
            self.store.apply(ops)
        for _, on_done in batch:
            on_done(None)

    def fail(self) -> None:
        batch, self.pending = self.pending, []
        for _, on_done in batch:
            on_done(StoreError("simulated: disk full"))


class Outbox:
    """A core's sink: what it sends goes into the simulation's pipes."""

    def __init__(self, sim: Simulation, sender: Hashable) -> None:
        self.sim = sim
        self.sender = sender

    def send(self, key: Hashable, envelope: Envelope) -> None:
        self.sim.post(self.sender, key, [envelope])

    def extend(self, key: Hashable, envelopes: Sequence[Envelope]) -> None:
        self.sim.post(self.sender, key, envelopes)

    @property
    def congested(self) -> bool:
        """An in-memory pipe has no backlog: an acceptor always reads."""
        return False


class SimHandle:
    """What call_soon/call_later return: cancellable."""

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SimLoop:
    """What an acceptor and its connections use of the event loop (time,
    call_soon, call_later), on the simulation's clock: callbacks run between
    frames (`run_ready`), timers once time has reached them (`run_due`)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.ready: deque[SimHandle] = deque()
        self.timers: list[tuple[float, int, SimHandle]] = []
        self.order = itertools.count()

    def time(self) -> float:
        return self.sim.now

    def call_soon(self, callback: Callable[..., object], *args: Any) -> SimHandle:
        handle = SimHandle(callback, args)
        self.ready.append(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> SimHandle:
        handle = SimHandle(callback, args)
        heapq.heappush(self.timers, (self.sim.now + delay, next(self.order), handle))
        return handle

    def run_ready(self) -> bool:
        """Run what is ready; False when nothing was."""
        ran = False
        while self.ready:
            handle = self.ready.popleft()
            if not handle.cancelled:
                handle.callback(*handle.args)
                ran = True
        return ran

    def run_due(self) -> None:
        while self.timers and self.timers[0][0] <= self.sim.now:
            _, _, handle = heapq.heappop(self.timers)
            self.ready.append(handle)


class SimTransport(FakeTransport):
    """A connection's socket: what the acceptor writes is kept; a close is
    reported to the connection (connection_lost) by the loop, as asyncio does."""

    def __init__(self, loop: SimLoop) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: ClientConnection | None = None

    def write(self, data: bytes) -> None:
        if not self.closed:
            super().write(data)

    def close(self) -> None:
        if not self.closed and self.protocol is not None:
            self.loop.call_soon(self.protocol.connection_lost, None)
        self.closed = True

    def abort(self) -> None:
        self.close()


@dataclass
class Node:
    key: Hashable
    runner: CoreRunner
    committer: SimCommitter
    incarnation: int


@dataclass
class AcceptorNode:
    acceptor: Acceptor
    runner: CoreRunner
    incarnation: int
    clients: list[MqttClient] = field(default_factory=list)


@dataclass
class Received:
    """What one connection's acceptor got for it, by kind."""

    connacks: list[Wire] = field(default_factory=list)
    publishes: list[Wire] = field(default_factory=list)  # SEND_PUBLISH, one per copy
    acks: list[tuple[int, int]] = field(default_factory=list)  # (packet type, packet id)
    subacks: list[Wire] = field(default_factory=list)
    closes: list[int] = field(default_factory=list)  # reason codes
    routed: dict[int, int] = field(default_factory=dict)  # packet id -> shards
    stored: dict[int, list[bool]] = field(default_factory=lambda: defaultdict(list))


class Simulation:
    def __init__(
        self, workers: int = 2, acceptors: int = 2, acceptor_cores: bool = False, **config: Any
    ) -> None:
        self.config = Config(workers=workers, acceptors=acceptors, **config)
        self.now = START
        self.loop = SimLoop(self)
        self.store = MemoryStore()
        self.auto_commit = True
        # (sender, receiver) -> frames, delivered in order
        self.pipes: dict[tuple[Hashable, Hashable], deque[list[Any]]] = {}
        self.clients: dict[int, Client] = {}  # conn -> the connection
        self.unclaimed: list[Wire] = []  # for connections the test did not open
        self.trace: list[tuple[Hashable, Hashable, list[Any]]] = []  # every frame delivered
        self.router = self._start_router(0)
        self.workers = [self._start_worker(i, 0) for i in range(workers)]
        self.acceptors: list[AcceptorNode] = []
        if acceptor_cores:
            self.acceptors = [self._start_acceptor(i, 1) for i in range(acceptors)]
        self.run()

    # --- the cores -------------------------------------------------------------------
    def _start_router(self, incarnation: int) -> Node:
        core = RouterCore.create(self.config, self.store.load_retained())
        committer = SimCommitter(self.store)
        runner = CoreRunner("router", core, Outbox(self, runtime.ROUTER), committer, log)
        core.start(runner.sink, incarnation, self.config.workers, self.config.acceptors)
        runner.flush()
        return Node(runtime.ROUTER, runner, committer, incarnation)

    def _start_worker(self, index: int, incarnation: int) -> Node:
        key = runtime.worker(index)
        core = ShardCore(Shard(index, limits_from(self.config), nonce=100 * index + incarnation))
        committer = SimCommitter(self.store)
        runner = CoreRunner(f"worker {index}", core, Outbox(self, key), committer, log)
        workers = self.config.workers
        records = self.store.load_sessions(lambda cid: shard_of(cid, workers) == index)
        core.start(runner.sink, incarnation, self.config.acceptors, records, self.now)
        runner.flush()
        return Node(key, runner, committer, incarnation)

    def _start_acceptor(self, index: int, incarnation: int) -> AcceptorNode:
        key = runtime.acceptor(index)
        acceptor = Acceptor(self.config, index, incarnation, self.loop)  # type: ignore[arg-type]
        outbox = Outbox(self, key)
        acceptor.attach(outbox)
        runner = CoreRunner(f"acceptor {index}", acceptor.core, outbox, NoCommits(), log)
        acceptor.announce()
        return AcceptorNode(acceptor, runner, incarnation)

    def restart_acceptor(self, index: int) -> None:
        """The acceptor dies: its connections with it (their clients see the
        socket closed), and its next incarnation says so."""
        self._die(runtime.acceptor(index))
        old = self.acceptors[index]
        for client in old.clients:
            client.transport.closed = True  # no connection_lost: the process is gone
        self.acceptors[index] = self._start_acceptor(index, old.incarnation + 1)

    def mqtt_client(self, acceptor: int = 0, level: int = 4) -> MqttClient:
        """A new connection to a real acceptor (acceptor_cores=True)."""
        node = self.acceptors[acceptor]
        client = MqttClient(self, node.acceptor, level)
        node.clients.append(client)
        return client

    def shard(self, index: int) -> Shard:
        core = self.workers[index].runner.core
        assert isinstance(core, ShardCore)
        return core.shard

    @property
    def router_core(self) -> RouterCore:
        core = self.router.runner.core
        assert isinstance(core, RouterCore)
        return core

    def _die(self, key: Hashable) -> None:
        """What was in its inbox is lost with it."""
        for sender, receiver in self.pipes:
            if receiver == key:
                self.pipes[sender, receiver].clear()

    def restart_worker(self, index: int) -> None:
        """The worker dies (its uncommitted writes and its inbox with it) and
        its next incarnation loads its sessions from the store."""
        self._die(runtime.worker(index))
        old = self.workers[index]
        old.committer.pending.clear()
        self.workers[index] = self._start_worker(index, old.incarnation + 1)

    def restart_worker_as_standby(self, index: int) -> None:
        """The worker dies, and its next incarnation did not get the shard's
        lock back (workers/ownership.py): it announces itself and answers
        as a standby (workers/standby.py), loading nothing."""
        self._die(runtime.worker(index))
        old = self.workers[index]
        old.committer.pending.clear()
        key = runtime.worker(index)
        core = ShardCore(Shard(index, limits_from(self.config), nonce=100 * index + 99))
        core.handle = Standby(index, core.shard.out, core.counters, core.guard).handle
        committer = SimCommitter(self.store)
        runner = CoreRunner(f"worker {index}", core, Outbox(self, key), committer, log)
        core.announce(runner.sink, old.incarnation + 1, self.config.acceptors)
        runner.flush()
        self.workers[index] = Node(key, runner, committer, old.incarnation + 1)

    def restart_router(self) -> None:
        self._die(runtime.ROUTER)
        old = self.router
        old.committer.pending.clear()
        self.router = self._start_router(old.incarnation + 1)

    def sync_timeout(self) -> None:
        """The router's SYNC_TIMEOUT passed without every shard answering."""
        self.now += SYNC_TIMEOUT
        self.router_core.stop_waiting_for_sync()
        self.router.runner.flush()

    # --- the bus ----------------------------------------------------------------------
    def post(self, sender: Hashable, receiver: Hashable, envelopes: Iterable[Envelope]) -> None:
        frame = wire(list(envelopes))  # as the receiver gets it; copies the core's list
        if frame:
            self.pipes.setdefault((sender, receiver), deque()).append(frame)

    def _readable(self, sender: Hashable, receiver: Hashable) -> bool:
        """A router still waiting for shards' subscriptions does not read
        acceptors (router/process.py pauses that inbox)."""
        if receiver == runtime.ROUTER and isinstance(sender, tuple) and sender[0] == "acceptor":
            return self.router_core.synced
        return True

    def step(self) -> bool:
        """Run the acceptors' ready callbacks (their writes, closes), or else
        deliver one frame; False when there is nothing to do."""
        if self.loop.run_ready():
            return True
        for (sender, receiver), frames in self.pipes.items():
            if frames and self._readable(sender, receiver):
                frame = frames.popleft()
                self.trace.append((sender, receiver, frame))
                self._deliver(receiver, frame)
                if self.auto_commit:
                    self.commit()
                return True
        return False

    def run(self, limit: int = 100_000) -> None:
        """Deliver until nothing is left to deliver."""
        for _ in range(limit):
            if not self.step():
                return
        raise AssertionError("the simulation did not settle")

    def _deliver(self, receiver: Hashable, frame: list[Wire]) -> None:
        if receiver == runtime.ROUTER:
            self.router.runner.feed(frame, self.now)
        elif isinstance(receiver, tuple) and receiver[0] == "worker":
            self.workers[receiver[1]].runner.feed(frame, self.now)
        elif self.acceptors:
            assert isinstance(receiver, tuple)
            self.acceptors[receiver[1]].runner.feed(frame, self.now)
        else:
            for e in frame:
                self._to_connection(e)

    def commit(self) -> None:
        for node in (self.router, *self.workers):
            node.committer.commit()

    def fail_commits(self) -> None:
        for node in (self.router, *self.workers):
            node.committer.fail()

    def advance(self, seconds: float) -> None:
        """Time passes: every core's timers, as its process's tick runs them."""
        self.now += seconds
        self.loop.run_due()
        runners = [node.runner for node in (self.router, *self.workers)]
        for runner in (*runners, *(node.runner for node in self.acceptors)):
            runner.tick(self.now)
        if self.auto_commit:
            self.commit()
        self.run()

    # --- the acceptors' side ---------------------------------------------------------
    def _to_connection(self, e: Wire) -> None:
        kind = e[0]
        if kind == Kind.SEND_PUBLISH_MANY:
            _, conns, topic, payload, retain, props = e
            for conn in conns:
                client = self.clients.get(conn)
                if client is not None:
                    client.received.publishes.append(
                        [Kind.SEND_PUBLISH, conn, None, topic, payload, 0, retain, False, props]
                    )
            return
        if kind in (Kind.WORKER_UP, Kind.ROUTER_UP, Kind.FENCED):
            return
        if kind == Kind.SEND_PUBLISHES:
            _, conn, publishes = e
            for i in range(0, len(publishes), 7):
                self._to_connection([Kind.SEND_PUBLISH, conn, *publishes[i : i + 7]])
            return
        if kind == Kind.ROUTED_MANY:
            routed = e[1]
            for i in range(0, len(routed), 4):
                self._to_connection([Kind.ROUTED, *routed[i : i + 4]])
            return
        client = self.clients.get(e[1])
        if client is None:
            self.unclaimed.append(e)
        else:
            client.on_envelope(e)

    def client(self, client_id: str, acceptor: int = 0) -> Client:
        """A new connection on `acceptor` (not connected yet)."""
        counter = len(self.clients) + 1
        conn = make_conn_id(acceptor, 1, counter)
        client = Client(self, client_id, conn)
        self.clients[conn] = client
        return client


class Client:
    """One client connection as its acceptor sees it: sends what the acceptor
    forwards, and keeps what comes back for it (`received`). Acknowledgements
    of its own QoS 1/2 publishes follow the acceptor's rule: ROUTED says how
    many shards confirm, each with a STORED (frontend/connection.py)."""

    def __init__(self, sim: Simulation, client_id: str, conn: int) -> None:
        self.sim = sim
        self.client_id = client_id
        self.conn = conn
        self.shard = shard_of(client_id, sim.config.workers)
        self.received = Received()
        self.uid = 0
        self.qos2_waiting: set[int] = set()  # QoS 2 publishes not yet PUBREC'd
        self.pubrecs: list[int] = []  # PUBRECs the acceptor wrote, in order

    @property
    def sender(self) -> Hashable:
        return runtime.acceptor(env.acceptor_of(self.conn))

    def _to_worker(self, e: Envelope) -> None:
        self.sim.post(self.sender, runtime.worker(self.shard), [e])

    def _to_router(self, e: Envelope) -> None:
        self.sim.post(self.sender, runtime.ROUTER, [e])

    # --- what the acceptor sends ---------------------------------------------------------
    def connect(
        self, *, clean: bool, expiry: int = 0, will: env.Will | None = None, level: int = 4
    ) -> None:
        self._to_worker(
            env.Connect(
                Kind.CONNECT,
                self.conn,
                self.client_id,
                clean,
                expiry,
                level,
                60,
                None,
                will,
                0,
                False,
            )
        )

    def subscribe(self, topic_filter: str, qos: int, packet_id: int = 1) -> None:
        entry = env.SubEntry(topic_filter, qos, False, False, 0, None)
        subscribe = env.Subscribe(Kind.SUBSCRIBE, self.conn, self.client_id, packet_id, [entry])
        self._to_worker(subscribe)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        packet_id: int = 0,
        *,
        retain: bool = False,
        props: dict[str, Any] | None = None,
        attempt: int = 0,
    ) -> None:
        """QoS 0/1 to the router as ROUTE; QoS 2 to the session's shard.
        Confirmations of an earlier transmission are forgotten (the acceptor
        ignores those of an older attempt)."""
        self.received.routed.pop(packet_id, None)
        self.received.stored.pop(packet_id, None)
        if qos < 2:
            reply = None
            if qos:
                self.uid += 1
                reply = env.Reply(self.conn, packet_id, attempt, self.uid, None)
            route = env.Route(Kind.ROUTE, self.client_id, topic, payload, qos, retain, props, reply)
            self._to_router(route)
            return
        self.uid += 1
        self.qos2_waiting.add(packet_id)
        self._to_worker(
            env.Publish(
                Kind.PUBLISH,
                self.conn,
                self.client_id,
                packet_id,
                topic,
                payload,
                qos,
                retain,
                props,
                attempt,
                attempt > 0,
                self.uid,
            )
        )

    def puback(self, packet_id: int) -> None:
        self._to_worker(env.PubackIn(Kind.PUBACK_IN, self.conn, self.client_id, packet_id, 0))

    def pubrec(self, packet_id: int) -> None:
        self._to_worker(env.PubrecIn(Kind.PUBREC_IN, self.conn, self.client_id, packet_id, 0))

    def pubrel(self, packet_id: int) -> None:
        self._to_worker(env.PubrelIn(Kind.PUBREL_IN, self.conn, self.client_id, packet_id))

    def pubcomp(self, packet_id: int) -> None:
        self._to_worker(env.PubcompIn(Kind.PUBCOMP_IN, self.conn, self.client_id, packet_id))

    def closed(self, *, will: bool = True) -> None:
        """The connection is gone (publish_will False: after a DISCONNECT)."""
        self._to_worker(env.Closed(Kind.CLOSED, self.conn, self.client_id, will, None))

    # --- what comes back -------------------------------------------------------------------
    def on_envelope(self, e: Wire) -> None:
        received = self.received
        kind = e[0]
        if kind == Kind.CONNACK:
            received.connacks.append(e)
        elif kind == Kind.SEND_PUBLISH:
            received.publishes.append(e)
        elif kind == Kind.SEND_ACK:
            received.acks.append((e[2], e[3]))
        elif kind == Kind.SEND_SUBACK:
            received.subacks.append(e)
        elif kind == Kind.CLOSE:
            received.closes.append(e[2])
        elif kind == Kind.ROUTED:
            received.routed[e[2]] = e[3]
            self._maybe_confirm_qos2(e[2])
        elif kind == Kind.STORED:
            received.stored[e[2]].append(e[3])
            self._maybe_confirm_qos2(e[2])

    def acknowledged(self, packet_id: int) -> bool:
        """Would the acceptor have sent PUBACK/PUBREC for this publish: every
        shard that holds a copy confirmed it stored (ROUTED -1: a QoS 2
        retransmission already routed)."""
        shards = self.received.routed.get(packet_id)
        if shards is None:
            return False
        stored = self.received.stored.get(packet_id, [])
        return all(stored) and len(stored) >= max(shards, 0)

    def _maybe_confirm_qos2(self, packet_id: int) -> None:
        """The acceptor writes PUBREC and tells the shard (QOS2_CONFIRMED)."""
        if packet_id in self.qos2_waiting and self.acknowledged(packet_id):
            self.qos2_waiting.discard(packet_id)
            self.pubrecs.append(packet_id)
            self._to_worker(
                env.Qos2Confirmed(Kind.QOS2_CONFIRMED, self.conn, self.client_id, packet_id)
            )

    def payloads(self) -> list[bytes]:
        return [e[4] for e in self.received.publishes]

    def take_publishes(self) -> list[Wire]:
        out, self.received.publishes = self.received.publishes, []
        return out

    def ack_all(self) -> None:
        """PUBACK every QoS 1 copy, PUBREC every QoS 2 copy received so far."""
        for e in self.received.publishes:
            if e[5] == 1:
                self.puback(e[2])
            elif e[5] == 2:
                self.pubrec(e[2])

    def pubrels(self) -> list[int]:
        return [pid for kind, pid in self.received.acks if kind == PacketType.PUBREL]


class MqttClient:
    """A client on a real acceptor: MQTT packets in, the packets the
    acceptor wrote back out (decoded as a client would)."""

    def __init__(self, sim: Simulation, acceptor: Acceptor, level: int) -> None:
        self.sim = sim
        self.level = level
        self.transport = SimTransport(sim.loop)
        self.conn = ClientConnection(acceptor, endpoint_for(Listener()))
        self.transport.protocol = self.conn
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]
        self.decoder = StreamDecoder(protocol_level=level)
        self.read = 0  # how many of the transport's writes were decoded

    def send(self, *packets: Packet, run: bool = True) -> None:
        """Packets from the client, then (unless `run` is False) the broker
        runs until nothing is left to deliver."""
        self.conn.data_received(b"".join(encode(p, self.level) for p in packets))
        if run:
            self.sim.run()

    def take(self) -> list[Packet]:
        """What the acceptor wrote since the last call."""
        written = self.transport.written
        for data in written[self.read :]:
            self.decoder.feed(data)
        self.read = len(written)
        return list(self.decoder)

    @property
    def closed(self) -> bool:
        return bool(self.transport.closed)

    def drop(self) -> None:
        """The network fails (no DISCONNECT): the acceptor sees the socket close."""
        self.transport.close()
        self.sim.run()
