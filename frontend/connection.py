"""One client connection in an acceptor: the asyncio adapter around its
sans-IO session (frontend/session.py).

Owns the transport and what is about the transport: socket options, the
writes of one loop pass coalesced into one system call (`send_bytes`,
`flush`), write backpressure (a client that reads nothing: QoS 0 copies
dropped past a cap, the slow-consumer timer), reading paused while the bus
to the other processes is congested, and a close that always completes
(aborted after CLOSE_GRACE). Everything MQTT is the session's; this class
is the `Link` it runs on. TLS and WebSocket transports plug in here, under
the session, which does not know which one it sits on.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .authentication import Verdict
from .session import ClientSession
from .tls import certificate_identity

if TYPE_CHECKING:
    from flockmq.frontend.acceptor import Acceptor

    from .servers import ListenerEndpoint

# Socket write buffer per client. Over WRITE_HIGH the client is behind: QoS 0
# copies for it are dropped (counted) once its buffer passes the acceptor's
# qos0_buffer_cap, and if it stays behind for write_timeout it is disconnected
# (QoS 1/2 copies are bounded by the in-flight window). Nothing a client does
# makes its acceptor stop serving the others.
WRITE_HIGH = 512 * 1024
WRITE_LOW = 128 * 1024


class ClientConnection(asyncio.Protocol):
    # Slotted, as its session: one per connection (asyncio.Protocol has none)
    __slots__ = (
        "acceptor",
        "conn_id",
        "counted",
        "endpoint",
        "identity",
        "lost",
        "paused",
        "pending",
        "pending_bytes",
        "session",
        "transport",
        "write_paused_at",
    )

    def __init__(self, acceptor: Acceptor, endpoint: ListenerEndpoint) -> None:
        self.acceptor = acceptor
        self.endpoint = endpoint  # the listener it came in on
        self.identity: str | None = None  # the verified client certificate's CN
        self.counted = False  # in endpoint.connections
        self.conn_id = acceptor.next_conn_id()
        self.transport: asyncio.Transport | None = None
        self.session = ClientSession(self.conn_id, acceptor, self, acceptor.loop.time())
        self.paused = False  # reading stopped while the bus is congested
        self.write_paused_at: float | None = None  # when the socket buffer passed high-water
        self.pending: list[bytes] = []  # written at the end of this loop pass (flush)
        self.pending_bytes = 0
        self.lost = False  # connection_lost was called

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        endpoint = self.endpoint
        if endpoint.full():
            self.acceptor.count("connections_over_listener_limit")
            self.lost = True  # nothing is ever written to it
            transport.abort()  # type: ignore[attr-defined]
            return
        endpoint.connections += 1
        self.counted = True
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.acceptor.count("tls_connections")
            self.identity = certificate_identity(ssl_object.getpeercert())
        # TCP_NODELAY is set by uvloop on every TCP transport (asyncio sets it
        # too): asking for the socket to set it again built a Python socket
        # object per connection (2 % of an acceptor's time per connect).
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)  # type: ignore[attr-defined]
        self.acceptor.register(self)

    def data_received(self, data: bytes) -> None:
        # (the congestion test is inline: this is once per read on the publish path)
        acceptor = self.acceptor
        acceptor.traffic.bytes_in += len(data)
        if self.session.receive_data(data, acceptor.now) and acceptor.bus.congested:
            self.check_backpressure()

    def pause_writing(self) -> None:
        self.write_paused_at = self.acceptor.loop.time()
        self.acceptor.writer_full(self)

    def resume_writing(self) -> None:
        self.write_paused_at = None
        self.acceptor.writer_drained(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.endpoint.connections -= 1
            self.counted = False
        self.lost = True
        self.pending.clear()
        self.pending_bytes = 0
        self.acceptor.closing.gone(self)
        self.acceptor.unregister(self)
        if self.write_paused_at is not None:
            self.acceptor.writer_drained(self)
        self.session.connection_lost()

    # --- used by the acceptor ---------------------------------------------------------------
    def write_qos0(self, data: bytes) -> None:
        """A QoS 0 copy: dropped (and counted) when this client is behind and
        its socket buffer is over the cap; QoS 1/2 are bounded by the window."""
        transport = self.transport
        if (
            self.write_paused_at is not None
            and transport is not None
            and transport.get_write_buffer_size() + self.pending_bytes + len(data)
            > self.acceptor.qos0_buffer_cap()
        ):
            self.acceptor.count("qos0_dropped_slow_consumer")
            return
        self.session.write(data)
        self.acceptor.traffic.publishes_out += 1

    def flush(self) -> None:
        """Write what this pass queued, in order."""
        pending = self.pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self.pending_bytes = 0
        if self.transport is not None and not self.lost:
            self.transport.write(data)
            self.acceptor.traffic.bytes_out += len(data)

    def check_timers(self, now: float) -> None:
        self.session.check_timers(now, self.write_paused_at)

    def unpause(self) -> None:
        """The bus drained: read again, unless the session still holds off."""
        self.paused = False
        self.session.resume_reading()

    # --- the session's Link -----------------------------------------------------------------
    def send_bytes(self, data: bytes) -> None:
        """Queue `data` for the socket: what one pass of the event loop writes
        to a client goes in one system call (see flush), not one per packet
        (a fan-out writes every message to every subscriber)."""
        if self.transport is None:
            return
        if not self.pending:
            self.acceptor.schedule_flush(self)
        self.acceptor.traffic.packets_out += 1
        self.pending.append(data)
        self.pending_bytes += len(data)

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.paused and self.transport is not None:
            self.transport.resume_reading()

    def check_backpressure(self) -> None:
        """Stop reading until the bus drains (Acceptor.resume_reading)."""
        if self.acceptor.bus.congested and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
            self.acceptor.reading_paused(self)

    def close_transport(self) -> None:
        """What was queued before the close goes first. A close waits for the
        socket buffer to drain, which never happens for a client that stopped
        reading: after CLOSE_GRACE the connection is aborted."""
        transport = self.transport
        if transport is None:
            return
        self.flush()
        transport.close()
        self.acceptor.closing.closed(self)  # aborted after CLOSE_GRACE (frontend/closing.py)

    def unregister(self) -> None:
        self.acceptor.unregister(self)

    def peer(self) -> str:
        if self.transport is None:
            return "?"
        addr = self.transport.get_extra_info("peername")
        return f"{addr[0]}:{addr[1]}" if addr else "?"

    def address(self) -> str:
        if self.transport is None:
            return "?"
        addr = self.transport.get_extra_info("peername")
        return str(addr[0]) if addr else "?"

    def authenticate(self, username: str | None, password: bytes | None, now: float) -> Verdict:
        return self.endpoint.authenticator.authenticate(username, password, self.identity, now)

    def peer_certificate(self) -> dict[str, Any] | None:
        """The verified client certificate as getpeercert() gives it (read
        when asked: only a CONNECT for the auth hook asks, and nothing of it
        is kept per connection); None without TLS or a certificate."""
        if self.transport is None:
            return None
        ssl_object = self.transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        cert: dict[str, Any] | None = ssl_object.getpeercert()
        return cert or None

    def abort_unless_closed(self) -> None:
        """CLOSE_GRACE after its close, the transport is still there."""
        if not self.lost and self.transport is not None:
            self.acceptor.count("closes_aborted")
            self.transport.abort()
