"""The acceptor process: listens on the shared port (SO_REUSEPORT), owns its
client connections, and writes what workers send them.

Envelopes from workers name a connection by its 64-bit id; this process maps
ids to live connections and encodes each outgoing packet for the connection's
protocol level (a QoS 0 message to many connections is encoded once per level).

With an ACL file, every delivery is checked here, where the connection's
client id and username are known: a message whose topic the connection may not
read is not written (a QoS 1/2 copy is reported DISCARDED so it does not hold a
slot of the session's window). Decisions are cached per (rules, topic).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter
from typing import Any, Protocol, cast

from flockmq import envelopes as env
from flockmq import runtime
from flockmq.config import Config
from flockmq.envelopes import Kind, Wire, make_conn_id
from flockmq.frontend.acl import ACL, READ, ACLError, DecisionCache, load_acl
from flockmq.frontend.codec import ProtocolError, ReasonCode, encode_publish
from flockmq.isolation import EnvelopeGuard, RateLimitedLog
from flockmq.runtime import Sink
from flockmq.runtime_process import CoreProcess, Role
from flockmq.shard_routes import ShardRoutes
from flockmq.sysstats import SysStats

from .acceptor_core import TIMER_INTERVAL, AcceptorCore
from .authentication import FailureThrottle
from .closing import Closing
from .confirmations import UnconfirmedTotals
from .connection import WRITE_HIGH, ClientConnection
from .hook_calls import attach_hooks, connect_auth
from .ordering import Fences
from .passwords import PasswordFile, PasswordFileError, VerifiedPasswords
from .servers import ListenerEndpoint, start_servers
from .session import ClientSession
from .states import CONNECTED, CONNECTING
from .traffic import Traffic

log = logging.getLogger("flockmq.acceptor")
# a shard's worker incarnation once it moved to another node: no real one
MOVED = -1

TAKEOVER_READ_GRACE = 0.002  # seconds a taken-over connection is still read
ACL_LOG_INTERVAL = 10.0  # seconds between log lines about one kind of ACL denial


class AcceptorBus(Sink, Protocol):
    """What an acceptor sends on (flockmq.bus.Bus in its process)."""

    @property
    def congested(self) -> bool:
        """Something waits to be sent: clients are not read until it drains."""


class Acceptor:
    def __init__(
        self, config: Config, index: int, incarnation: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.config = config
        self.index = index
        self.incarnation = incarnation
        self.loop = loop
        self.now = loop.time()
        self.acl: ACL | None = load_acl(config.acl_file) if config.acl_file else None
        self.passwords = (
            self._load_passwords(config.password_file) if config.password_file else None
        )
        self.throttle = FailureThrottle(config.auth_failure_delay, config.auth_failure_max_delay)
        # None without an ACL file: then no path checks anything.
        self.acl_decisions = DecisionCache(config.acl_cache_bytes) if self.acl else None
        self._acl_log_after: dict[str, float] = {}  # counter -> when the next line may go
        self._acl_unlogged: Counter[str] = Counter()  # denials since that counter's last line
        self.connections: dict[int, ClientConnection] = {}
        self.paused: set[ClientConnection] = set()
        self.full_writers: set[ClientConnection] = set()  # socket buffers over high-water
        self.to_flush: list[ClientConnection] = []  # written to in this loop pass
        self.closing = Closing(loop)  # closed, not yet gone: aborted after CLOSE_GRACE
        self._flush_scheduled = False
        # inbound QoS 1/2 publishes awaiting durability, by session and in bytes
        self.unconfirmed = UnconfirmedTotals()
        self.fences = Fences(index)  # one connection's order (frontend/ordering.py)
        self.holding: set[ClientSession] = set()  # a packet waits for its turn
        self.worker_incarnations: dict[int, int] = {}
        self.counters: Counter[str] = Counter()
        self.guard = EnvelopeGuard(f"acceptor {index}", self.counters, log)
        # Log lines caused by clients (refused input): rate limited, since a
        # client can cause them as fast as it can reconnect.
        self.client_log = RateLimitedLog(log, burst=50)
        self._counter = 0
        # what the acceptor sends on: its process's bus (attach), or the
        # simulation's in-memory one (tests/unit/simulation/)
        self.bus: AcceptorBus
        self.worker_keys = [runtime.worker(shard) for shard in range(config.workers)]
        # This acceptor's router: its publishes and fences go there (so one
        # publisher's messages are matched in order by one router); its
        # $SYS counters too. Every router may send it deliveries.
        self.router_index = config.router_of(index)
        self.router_key = runtime.router(self.router_index)
        self.traffic = Traffic()
        self.stats = SysStats(
            "acceptor",
            index,
            self.counters,
            gauges=self.gauges,
            process_metrics=bool(config.metrics_port),
        )
        self.servers: list[tuple[ListenerEndpoint, asyncio.Server]] = []
        self.handlers = {
            env.Kind.CONNACK: self._on_connack,
            env.Kind.SEND_PUBLISH: self._on_send_publish,
            env.Kind.SEND_PUBLISHES: self._on_send_publishes,
            env.Kind.SEND_PUBLISH_MANY: self._on_send_publish_many,
            env.Kind.SEND_ACK: self._on_send_ack,
            env.Kind.SEND_SUBACK: self._on_send_suback,
            env.Kind.SEND_UNSUBACK: self._on_send_unsuback,
            env.Kind.CLOSE: self._on_close,
            env.Kind.WORKER_UP: self._on_worker_up,
            env.Kind.ROUTER_UP: self._on_router_up,
            env.Kind.ROUTED: self._on_routed,
            env.Kind.ROUTED_MANY: self._on_routed_many,
            env.Kind.STORED: self._on_stored,
            env.Kind.FENCED: self._on_fenced,
        }
        # the auth hook's processes, if one is configured (frontend/hook_calls.py)
        self.hooks = attach_hooks(self)
        # envelopes and timers go through the runtime every core shares
        self.core = AcceptorCore(self, RateLimitedLog(log))

    # --- lifecycle -------------------------------------------------------------------------
    def attach(self, bus: AcceptorBus) -> None:
        self.bus = bus

    def role(self) -> Role:
        """What this acceptor brings to its process (flockmq/runtime_process.py)."""
        return Role(
            f"acceptor {self.index}",
            self.core,
            bus_id=self.config.acceptor_id(self.index),
            incarnation=self.incarnation,
            stats=self.stats,
            send_stats=lambda routes, _now: self.bus.extend(self.router_key, routes),
            tick_interval=TIMER_INTERVAL,
            logger=log,
            clock=self.loop.time,
            # One inbox, always read: a slow client never stops its acceptor
            # from taking envelopes for everyone else (see write_qos0,
            # check_timers); its clients wait while the bus is congested.
            on_decongested=self.resume_reading,
            stopping=self.stop,
        )

    def announce(self) -> None:
        """Tell every router and every worker that this incarnation is up."""
        hello = env.AcceptorUp(Kind.ACCEPTOR_UP, self.index, self.incarnation)
        for key in self.worker_keys:
            self.bus.send(key, hello)
        for router in range(self.config.routers):
            self.bus.send(runtime.router(router), hello)

    async def listen(self) -> None:
        self.servers = await start_servers(self, self.config.listener_list(), self.passwords)

    def _load_passwords(self, path: str) -> PasswordFile:
        passwords = PasswordFile.load(path)
        config = self.config
        passwords.recent = VerifiedPasswords(
            config.password_cache_ttl, config.password_cache_bytes, self.count
        )
        return passwords

    def reload_files(self) -> None:
        """SIGHUP: read the password and ACL files again. Connections stay;
        a client keeps the identity it authenticated with, and the new ACL
        applies to its next operation and delivery. A file that does not
        parse is refused with a log line, and the old one stays in force."""
        config = self.config
        if config.password_file is not None:
            try:
                passwords = self._load_passwords(config.password_file)
            except PasswordFileError as exc:
                log.error("SIGHUP: keeping the old password file: %s", exc)
            else:
                self.passwords = passwords
                for endpoint, _server in self.servers:
                    endpoint.authenticator.passwords = passwords
                log.info("SIGHUP: password file reloaded (%d users)", len(passwords))
        if config.acl_file is not None:
            try:
                acl = load_acl(config.acl_file)
            except (ACLError, OSError, UnicodeDecodeError) as exc:
                log.error("SIGHUP: keeping the old ACL: %s", exc)
            else:
                self.acl = acl
                self.acl_decisions = DecisionCache(config.acl_cache_bytes)
                for conn in self.connections.values():
                    session = conn.session
                    if session.acl_rules is not None:
                        session.acl_rules = acl.rules_for(session.client_id, session.username)
                log.info("SIGHUP: ACL reloaded")
        self.count("reloads")

    async def stop(self) -> None:
        """The stop signal: no new clients, every connection closed (then
        the process closes the bus)."""
        for _endpoint, server in self.servers:
            server.close()
        for conn in list(self.connections.values()):
            conn.session.close()
        await asyncio.sleep(0)  # let connection_lost report the closes

    def run_timers(self, now: float) -> None:
        """The acceptor's timers (AcceptorCore.handle_timer): every session's
        timeouts and confirmations, the ordering holds. (Its $SYS counters
        go with its process's tick.)"""
        for conn in list(self.connections.values()):
            conn.check_timers(now)
        timeout = self.config.publish_confirm_timeout
        for session in list(self.unconfirmed.sessions):
            session.check_confirmations(now, timeout)
        self.check_order(now, timeout)
        if self.acl_decisions is not None:
            self.counters["acl_decision_cache_clears"] = self.acl_decisions.clears

    def gauges(self) -> dict[str, int]:
        """Published with the counters (flockmq/sysstats.py)."""
        connected = sum(1 for c in self.connections.values() if c.session.state == CONNECTED)
        return {"clients_connected": connected, **self.traffic.as_counters()}

    def check_order(self, now: float, timeout: float) -> None:
        """Fences and holds waiting longer than `timeout` (a process died
        with what they wait for) are let go, counted (frontend/ordering.py)."""
        for waiter in self.fences.overdue(now, timeout):
            self.count("fences_timed_out")
            waiter.on_fenced()
        for session in list(self.holding):
            session.check_held(now, timeout)

    # --- used by connections and their sessions (session.Host) --------------------------------
    def next_conn_id(self) -> int:
        self._counter += 1
        return make_conn_id(self.index, self.incarnation, self._counter)

    def register(self, conn: ClientConnection) -> None:
        self.connections[conn.conn_id] = conn
        self.now = self.loop.time()
        self.counters["connections_accepted"] += 1

    def unregister(self, conn: ClientConnection) -> None:
        self.connections.pop(conn.conn_id, None)
        self.paused.discard(conn)

    def count(self, name: str) -> None:
        self.counters[name] += 1

    def reading_paused(self, conn: ClientConnection) -> None:
        """`conn` stopped reading for the bus: read again when it drains."""
        self.paused.add(conn)

    def worker_incarnation(self, shard: int) -> int | None:
        return self.worker_incarnations.get(shard)

    def shard_moved(self, shard: int) -> None:
        """The shard's worker is another process now, on another node (a
        cluster's shard moved: flockmq/shard_routes.py), whatever its
        incarnation number (a new node's worker starts at 0 too): its
        WORKER_UP is a restart's, so the shard's connections are attached
        again and its unconfirmed publishes retried."""
        self.worker_incarnations[shard] = MOVED
        for conn in self.connections.values():
            if conn.session.shard == shard and conn.session.worker_incarnation is not None:
                conn.session.worker_incarnation = MOVED

    def hold(self, session: ClientSession, holding: bool) -> None:
        if holding:
            self.holding.add(session)
        else:
            self.holding.discard(session)

    def acl_denied(self, counter: str, client_id: str, what: str, topic: str) -> None:
        """Count a denial; log at most one line per kind every ACL_LOG_INTERVAL
        (a client may send, or be sent, denied topics at any rate), saying how
        many went unlogged since the last one."""
        self.counters[counter] += 1
        self._acl_unlogged[counter] += 1
        if self.now < self._acl_log_after.get(counter, 0.0):
            return
        self._acl_log_after[counter] = self.now + ACL_LOG_INTERVAL
        count = self._acl_unlogged.pop(counter)
        log.info(
            "client %s: %s %r denied by ACL (%s: %d since the last such line)",
            client_id,
            what,
            topic,
            counter,
            count,
        )

    def websocket_ended(self, counter: str, why: str) -> None:
        """A WebSocket stream refused or broken by its client: counted, and
        logged rate-limited (a client can cause it as fast as it connects)."""
        self.counters[counter] += 1
        self.client_log.log(logging.INFO, "WebSocket: %s", why)

    def to_worker(self, shard: int, envelope: env.Envelope) -> None:
        self.bus.send(self.worker_keys[shard], envelope)

    def to_router(self, envelope: env.Route | env.RouteTuple | env.Fence) -> None:
        self.bus.send(self.router_key, envelope)

    def schedule_flush(self, conn: ClientConnection) -> None:
        """`conn` has bytes queued: they go out at the end of this loop pass."""
        self.to_flush.append(conn)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush_writes)

    def flush_writes(self) -> None:
        self._flush_scheduled = False
        conns, self.to_flush = self.to_flush, []
        for conn in conns:
            conn.flush()

    def writer_full(self, conn: ClientConnection) -> None:
        self.full_writers.add(conn)

    def writer_drained(self, conn: ClientConnection) -> None:
        self.full_writers.discard(conn)

    def qos0_buffer_cap(self) -> int:
        """How full a client's socket buffer may get with QoS 0 copies: its
        own limit, shared out of the acceptor's limit when many are full."""
        config = self.config
        share = config.max_acceptor_buffer // (len(self.full_writers) or 1)
        return max(WRITE_HIGH, min(config.max_client_buffer, share))

    def resume_reading(self) -> None:
        for conn in self.paused:
            conn.unpause()
        self.paused.clear()

    # --- envelopes from workers ----------------------------------------------------------------
    def handle_envelope(self, e: Wire) -> None:
        """One envelope held for a session, handled now (isolated alike)."""
        self.guard.handle_each(self.core.handle, (e,), self.now)

    def _on_router_up(self, e: Wire) -> None:
        """The router restarted: what it held is gone. Publishes still waiting
        for confirmation go again now, in arrival order, not after a timeout.
        Its first start (incarnation 0) held nothing of ours that could be
        lost: what was sent before its ROUTER_UP came waits in the pipe to it,
        and sending it again routed it twice (the broker's start racing its
        first publishers)."""
        up = env.RouterUp._make(e)
        if up.incarnation == 0 or up.router != self.router_index:
            return  # another acceptor's router: it held nothing of ours
        self.retry_unconfirmed("router restarted")
        # Fences sent to the old router may have died with it: again, after
        # the publishes retried above.
        for fence in self.fences.refence(self.now):
            self.to_router(fence)

    def _on_fenced(self, e: Wire) -> None:
        seq = env.Fenced._make(e).seq
        waiter = self.fences.answered(seq)
        if waiter is not None:
            waiter.on_fenced()

    def retry_unconfirmed(self, why: str) -> None:
        for session in list(self.unconfirmed.sessions):
            session.retry_unconfirmed(self.now, why)

    def _on_routed(self, e: Wire) -> None:
        # Unpacked, not built (here and in the other per-message handlers):
        # see flockmq/envelopes.py.
        _, conn_id, packet_id, shards, attempt = cast(env.Routed, e)
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.session.on_routed(packet_id, shards, attempt)

    def _on_routed_many(self, e: Wire) -> None:
        """ROUTED for several publishes (env.RoutedMany), each isolated as
        an envelope of its own would be."""
        routed: list[int] = e[1]
        connections = self.connections
        take = iter(routed)
        for conn_id, packet_id, shards, attempt in zip(take, take, take, take, strict=True):
            try:
                conn = connections.get(conn_id)
                if conn is not None:
                    conn.session.on_routed(packet_id, shards, attempt)
            except Exception:
                self.guard.failed([Kind.ROUTED, conn_id, packet_id, shards, attempt])

    def _on_stored(self, e: Wire) -> None:
        _, conn_id, packet_id, ok, attempt = cast(env.Stored, e)
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.session.on_stored(packet_id, ok, attempt)

    def _on_connack(self, e: Wire) -> None:
        _, conn_id, present, rc, props = env.Connack._make(e)
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.session.on_connack(present, rc, props)

    def _on_send_publish(self, e: Wire) -> None:
        _, conn_id, packet_id, topic, payload, qos, retain, dup, props = cast(env.SendPublish, e)
        conn = self.connections.get(conn_id)
        if conn is None or conn.session.state != CONNECTED:
            self.counters["deliveries_to_gone_connections"] += 1
            return
        self._write_publish(conn.session, packet_id, topic, payload, qos, retain, dup, props)

    def _on_send_publishes(self, e: Wire) -> None:
        """SEND_PUBLISH for several messages to one connection (env.SendPublishes),
        each isolated as an envelope of its own would be."""
        _, conn_id, publishes = cast(env.SendPublishes, e)
        conn = self.connections.get(conn_id)
        if conn is None or conn.session.state != CONNECTED:
            self.counters["deliveries_to_gone_connections"] += len(publishes) // 7
            return
        session = conn.session
        write = self._write_publish
        take = iter(publishes)
        for packet_id, topic, payload, qos, retain, dup, props in zip(
            take, take, take, take, take, take, take, strict=True
        ):
            try:
                write(session, packet_id, topic, payload, qos, retain, dup, props)
            except Exception:
                self.guard.failed(
                    [Kind.SEND_PUBLISH, conn_id, packet_id, topic, payload, qos, retain, dup, props]
                )

    def _write_publish(
        self,
        session: ClientSession,
        packet_id: int | None,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        dup: bool,
        props: dict[str, Any] | None,
    ) -> None:
        """One delivery to a connected session: ACL, encoding, size, write."""
        decisions = self.acl_decisions
        if decisions is not None and not decisions.access(session.acl_rules, topic) & READ:
            # Not written; a QoS 1/2 copy is done with as if acknowledged (as
            # Mosquitto skips it), or it would hold a slot of the window for ever.
            self.acl_denied("acl_denied_deliveries", session.client_id, "delivery of", topic)
            if qos:
                self._discarded(session, packet_id)
            return
        level = session.level
        props = props if level >= 5 else None
        data = encode_publish(topic, payload, qos, retain, dup, packet_id, props, level)
        if session.too_large(data):
            # Discarded, and done with as if sent and acknowledged
            # [MQTT-3.1.2-25], or it would hold a slot of the client's receive
            # window for ever.
            if qos:
                self._discarded(session, packet_id)
            return
        session.write(data)
        self.traffic.publishes_out += 1

    def _discarded(self, session: ClientSession, packet_id: int | None) -> None:
        discarded = env.Discarded(
            Kind.DISCARDED, session.conn_id, session.client_id, packet_id or 0
        )
        self.to_worker(session.shard, discarded)

    def _on_send_publish_many(self, e: Wire) -> None:
        _, conn_ids, topic, payload, retain, props = cast(env.SendPublishMany, e)
        encoded: dict[int, bytes] = {}
        connections = self.connections
        decisions = self.acl_decisions
        for conn_id in conn_ids:
            conn = connections.get(conn_id)
            if conn is None:
                continue
            session = conn.session
            if session.state != CONNECTED:
                if session.state == CONNECTING:
                    # The router learnt of the session before its CONNACK got
                    # here (another path): hold the message until then.
                    many = env.SendPublishMany(
                        Kind.SEND_PUBLISH_MANY, [conn_id], topic, payload, retain, props
                    )
                    session.hold_until_connack(many)
                continue
            if decisions is not None and not decisions.access(session.acl_rules, topic) & READ:
                self.acl_denied("acl_denied_deliveries", session.client_id, "delivery of", topic)
                continue
            level = 5 if session.level >= 5 else 4
            data = encoded.get(level)
            if data is None:
                data = encoded[level] = encode_publish(
                    topic, payload, 0, retain, False, None, props if level >= 5 else None, level
                )
            conn.write_qos0(data)

    def _on_send_ack(self, e: Wire) -> None:
        _, conn_id, kind, packet_id, rc = cast(env.SendAck, e)
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.session.send_ack(kind, packet_id, rc)

    def _on_send_suback(self, e: Wire) -> None:
        _, conn_id, packet_id, codes = env.SendSuback._make(e)
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.session.send_suback(packet_id, codes)

    def _on_send_unsuback(self, e: Wire) -> None:
        _, conn_id, packet_id, codes = env.SendUnsuback._make(e)
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.session.send_unsuback(packet_id, codes)

    def _on_close(self, e: Wire) -> None:
        """Taken over by a new connection. What this client sent before it is
        already in the socket's buffer (a client that reconnects at once may
        have written its last PUBACK just before): it is read and forwarded in
        the next I/O pass, ahead of the CLOSED, so it still counts; then the
        connection is closed (MQTT 5: DISCONNECT 0x8E first).

        0x9C Use another server: the shard's worker is a standby (its lock
        is held by another broker): closed at once, the client reconnects.

        Any other reason is a protocol violation the session's worker found
        (an acknowledgement of the wrong type for a message in flight): closed
        at once, as a protocol error found here would be [MQTT-4.8.0-1]."""
        _, conn_id, rc = env.Close._make(e)
        conn = self.connections.get(conn_id)
        if conn is None:
            return
        session = conn.session
        if rc == ReasonCode.SESSION_TAKEN_OVER:
            self.loop.call_later(TAKEOVER_READ_GRACE, session.close, rc)
        elif rc == ReasonCode.USE_ANOTHER_SERVER:
            # A worker that restarted as a standby (workers/standby.py): the
            # shard is not served here now; the client reconnects.
            self.count("closed_by_standby_worker")
            session.close(rc)
        else:
            session.fail(
                ProtocolError(
                    "[MQTT-4.8.0-1] the session's worker found a protocol violation", ReasonCode(rc)
                )
            )

    def _on_worker_up(self, e: Wire) -> None:
        """A restarted worker reloaded its persistent sessions from the store:
        their connections stay open and are attached again (the client sees a
        pause, and unacknowledged messages come again with DUP). Clean sessions
        lived only in the dead worker's memory: those connections are closed so
        their clients reconnect and subscribe again (ClientSession.on_worker_up)."""
        _, shard, incarnation, _after_standby = env.WorkerUp._make(e)
        previous = self.worker_incarnations.get(shard)
        self.worker_incarnations[shard] = incarnation
        restarted = previous is not None and previous != incarnation
        for conn in list(self.connections.values()):
            if conn.session.shard == shard:
                conn.session.on_worker_up(incarnation, restarted)
        if restarted:
            # Its unconfirmed copies died with it (QoS 2 retries that other
            # shards already took are dropped there). After the re-attaches
            # above, so the restarted shard knows the connections.
            self.retry_unconfirmed(f"worker {shard} restarted")


def acceptor_process(
    config: Config, index: int, incarnation: int, loop: asyncio.AbstractEventLoop
) -> tuple[Acceptor, CoreProcess]:
    """An acceptor in its process: the runtime (flockmq/runtime_process.py)
    with its bus wired, not yet started."""
    acceptor = Acceptor(config, index, incarnation, loop)
    process = CoreProcess(loop, config, None, acceptor.role())
    bus = process.bus
    acceptor.attach(bus)
    bus.bind(config.acceptor_endpoint(index), pausable=False)
    for router in range(config.routers):
        # every router's deliveries come here (and are credited); only this
        # acceptor's router is sent publishes (Acceptor.router_key)
        bus.connect(
            runtime.router(router),
            config.router_work_endpoint(router),
            config.router_id(router),
            config.router_endpoint(router),
        )
    for shard, key in enumerate(acceptor.worker_keys):
        bus.connect(
            key,
            config.worker_work_endpoint(shard),
            config.worker_id(shard),
            config.worker_endpoint(shard),
        )
    if config.placement is not None:  # a cluster's shards move (flockmq/shard_routes.py)
        keys = acceptor.worker_keys

        def moved(shard: int, now: Config) -> None:
            bus.repoint(keys[shard], now.worker_work_endpoint(shard), now.worker_endpoint(shard))
            acceptor.shard_moved(shard)

        acceptor.handlers[env.Kind.SHARD_AT] = ShardRoutes(config, moved).on_shard_at
    connect_auth(bus, config)
    return acceptor, process


def run_acceptor(config: Config, index: int, incarnation: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # SIGHUP is handled from before the files are first read: one sent
        # earlier was ignored (flockmq.app.child), but the read comes after it
        started: list[Acceptor] = []

        def reload() -> None:
            for acceptor in started:
                acceptor.reload_files()

        loop.add_signal_handler(signal.SIGHUP, reload)
        acceptor, process = acceptor_process(config, index, incarnation, loop)
        started.append(acceptor)
        process.bus.start()
        acceptor.announce()
        await acceptor.listen()
        await process.serve()

    uvloop.run(main())
