"""A fast asyncio MQTT client for load: one `asyncio.Protocol` per connection.

It publishes pre-encoded PUBLISH packets as fast as its in-flight window (QoS
1/2), the transport's write buffer and an optional rate allow, and counts what
it receives into per-publisher sequence trackers. Both QoS flows are complete
on both sides: PUBACK; PUBREC/PUBREL/PUBCOMP, with the receiver holding a QoS 2
packet id until PUBREL so that a re-sent PUBLISH is not delivered twice
[MQTT-4.3.3]. Invariants: at most `window` QoS 1/2 messages are unacknowledged
per publisher; a message is marked completed only when its flow finished.

With `Settings.cafile`, every connection speaks TLS (the event loop's `ssl`
transport over `ssl.SSLObject`, one context per process): the client writes
the same batched buffers, so a batch of 64 messages costs one TLS write.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import cast

from loadgen import wire
from loadgen.scenarios import ClientSpec, Settings
from loadgen.stats import LatencyHistogram, SequenceTracker, new_bitmap

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
PUMP_BATCH = 512  # messages per pump before yielding to the loop
WRITE_HIGH_WATER = 256 * 1024


class ClientError(Exception):
    """The broker refused or dropped this client."""


@dataclass(slots=True)
class Counters:
    """Per-process totals that the progress reports carry."""

    sent: int = 0
    completed: int = 0
    received: int = 0
    unique: int = 0  # first arrivals (received minus duplicates and strays)
    last_receive_ns: int = 0
    rejected: int = 0  # v5 PUBACK/PUBREC with a failure reason code
    unexpected: int = 0  # messages from a publisher this subscriber does not track
    dropped: int = 0  # connections the broker closed during the run
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


def new_future(loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
    """A future whose exception counts as retrieved: a client that fails after
    nobody waits on it any more is counted, not logged as an asyncio error."""
    fut: asyncio.Future[None] = loop.create_future()
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
    return fut


class LoadClient(asyncio.Protocol):
    def __init__(self, spec: ClientSpec, settings: Settings, counters: Counters) -> None:
        self.spec = spec
        self.settings = settings
        self.protocol = settings.protocol
        self.counters = counters
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.reader = wire.PacketReader()
        self.connack = new_future(self.loop)
        self.suback: asyncio.Future[None] | None = None
        self.closed = new_future(self.loop)
        self.stopping = False
        self.last_write = 0.0
        # subscriber side
        self.trackers = {p: SequenceTracker(0) for p in spec.expects}
        self.awaiting_pubrel: set[int] = set()
        # publisher side
        self.window = settings.inflight
        self.template: wire.PublishTemplate | None = None
        self.next_seq = 0
        self.next_pid = 1
        self.inflight: dict[int, int] = {}  # packet id -> sequence number
        self.completed = new_bitmap(spec.count)
        self.n_completed = 0
        self.paused = False
        self.publishing = False
        self.started_ns = 0
        self.timer: asyncio.TimerHandle | None = None
        self.pump_scheduled = False
        self.done = new_future(self.loop)

    def track(self, counts: dict[int, int]) -> None:
        """Size the subscriber's trackers to each expected publisher's count."""
        self.trackers = {p: SequenceTracker(counts[p]) for p in self.spec.expects}

    # --- asyncio.Protocol --------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        established = self.connack.done() and not self.connack.exception()
        if established and not self.stopping:
            self.counters.dropped += 1
        error = ClientError(f"{self.spec.client_id}: connection closed ({exc})")
        for fut in (self.connack, self.suback, self.done):
            if fut is not None and not fut.done():
                fut.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)
        if self.timer is not None:
            self.timer.cancel()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.schedule_pump()

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.reader.feed(data)
        except wire.WireError:
            self.abort()
            return
        out: list[bytes] = []
        for first, body in packets:
            kind = first >> 4
            if kind == wire.PUBLISH:
                self.on_publish(first, body, out)
            elif kind == wire.PUBACK:
                self.on_complete(body)
            elif kind == wire.PUBREC:
                self.on_pubrec(body, out)
            elif kind == wire.PUBREL:
                pid = int.from_bytes(body[:2], "big")
                self.awaiting_pubrel.discard(pid)
                out.append(wire.encode_ack(wire.PUBCOMP, pid))
            elif kind == wire.PUBCOMP:
                self.on_complete(body)
            elif kind == wire.CONNACK:
                self.on_connack(body)
            elif kind == wire.SUBACK:
                self.on_suback(body)
            elif kind == wire.DISCONNECT:
                self.abort()
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    # --- connection ----------------------------------------------------------
    def on_connack(self, body: bytes) -> None:
        code = body[1] if len(body) >= 2 else 0xFF
        if code != 0:
            self.connack.set_exception(ClientError(f"{self.spec.client_id}: CONNACK code {code}"))
            return
        if self.protocol == 5 and len(body) > 2:
            props, _ = wire.decode_properties(body, 2)
            receive_maximum = props.get(0x21)
            if isinstance(receive_maximum, int):
                self.window = min(self.window, receive_maximum)
        if not self.connack.done():
            self.connack.set_result(None)

    def on_suback(self, body: bytes) -> None:
        assert self.suback is not None
        pos = 2
        if self.protocol == 5:
            _, pos = wire.decode_properties(body, 2)
        codes = body[pos:]
        if not codes or codes[0] >= 0x80:
            self.suback.set_exception(ClientError(f"{self.spec.client_id}: SUBACK {codes!r}"))
        elif not self.suback.done():
            self.suback.set_result(None)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)
        self.last_write = self.loop.time()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def disconnect(self) -> None:
        """DISCONNECT and close once written; the broker sees a clean end."""
        self.stopping = True
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(wire.DISCONNECT_BYTES)
            self.transport.close()

    # --- subscriber ------------------------------------------------------------
    def on_publish(self, first: int, body: bytes, out: list[bytes]) -> None:
        counters = self.counters
        pid, offset = wire.publish_payload_offset(first, body, self.protocol)
        qos = (first >> 1) & 3
        if qos == 2:
            out.append(wire.encode_ack(wire.PUBREC, pid))
            if pid in self.awaiting_pubrel:
                return  # a re-sent PUBLISH of a message already received [MQTT-4.3.3]
            self.awaiting_pubrel.add(pid)
        elif qos == 1:
            out.append(wire.encode_ack(wire.PUBACK, pid))
        publisher_id, seq, sent_ns = wire.PAYLOAD_HEADER.unpack_from(body, offset)
        counters.received += 1
        tracker = self.trackers.get(publisher_id)
        if tracker is None or seq >= len(tracker.seen) * 8:
            counters.unexpected += 1
            return
        if tracker.record(seq, bool(first & 0x08)):
            now = time.monotonic_ns()
            counters.latency.record(now - sent_ns)
            counters.last_receive_ns = now
            counters.unique += 1

    # --- publisher -------------------------------------------------------------
    def start_publishing(self, start_ns: int) -> None:
        """Begin at `start_ns` (time.monotonic_ns) as the origin of the rate."""
        spec = self.spec
        self.template = wire.PublishTemplate(
            spec.topic, self.settings.qos, self.settings.payload, protocol=self.protocol
        )
        self.started_ns = start_ns
        self.publishing = True
        if spec.count == 0:
            self.done.set_result(None)
        self.schedule_pump()

    def schedule_pump(self) -> None:
        if self.publishing and not self.pump_scheduled:
            self.pump_scheduled = True
            self.loop.call_soon(self.pump)

    def pump(self) -> None:
        """Send what the window, the write buffer and the rate allow."""
        self.pump_scheduled = False
        template = self.template
        if template is None or self.transport is None or self.transport.is_closing():
            return
        spec = self.spec
        qos = template.qos
        limit = self.pump_limit()
        out: list[bytes] = []
        budget = PUMP_BATCH
        publisher_id = spec.publisher_id
        inflight = self.inflight
        seq = self.next_seq
        while seq < limit and budget and not self.paused:
            pid = 0
            if qos:
                if len(inflight) >= self.window:
                    break
                pid = self.next_pid
                while pid in inflight:
                    pid = pid % 65535 + 1
                self.next_pid = pid % 65535 + 1
                inflight[pid] = seq
            out.append(template.encode(pid, publisher_id, seq, time.monotonic_ns()))
            if not qos:
                self.mark_completed(seq)
            seq += 1
            budget -= 1
            if len(out) >= 64:
                self.write(b"".join(out))
                out.clear()
        self.counters.sent += seq - self.next_seq
        self.next_seq = seq
        if out:
            self.write(b"".join(out))
        self.pump_again(seq, limit, qos, more=budget == 0)

    def pump_limit(self) -> int:
        """Messages the rate allows by now, all of them without a rate."""
        spec = self.spec
        if not spec.rate:
            return spec.count
        elapsed = (time.monotonic_ns() - self.started_ns) / 1e9
        return min(spec.count, int(elapsed * spec.rate) + 1)

    def pump_again(self, seq: int, limit: int, qos: int, *, more: bool) -> None:
        """After a pump that stopped at `seq`: go on at once when it stopped
        for its batch budget (`more`), at the time the rate allows the next
        message when the rate stopped it; at QoS 0, sent is done."""
        spec = self.spec
        if more:
            self.schedule_pump()
        elif seq == limit < spec.count:
            self.wake_at(seq / spec.rate)
        if qos == 0 and seq >= spec.count and not self.done.done():
            self.done.set_result(None)

    def wake_at(self, offset: float) -> None:
        """Pump again `offset` seconds after the start (rate pacing)."""
        if self.timer is not None:
            self.timer.cancel()
        elapsed = (time.monotonic_ns() - self.started_ns) / 1e9
        self.timer = self.loop.call_later(max(offset - elapsed, 0.0), self.schedule_pump)

    def mark_completed(self, seq: int) -> None:
        self.completed[seq >> 3] |= 1 << (seq & 7)
        self.n_completed += 1
        self.counters.completed += 1

    def on_pubrec(self, body: bytes, out: list[bytes]) -> None:
        pid = int.from_bytes(body[:2], "big")
        if len(body) > 2 and body[2] >= 0x80:  # v5: refused, the flow ends here
            self.counters.rejected += 1
            self.inflight.pop(pid, None)
            self.check_done()
            self.schedule_pump()
            return
        out.append(wire.encode_ack(wire.PUBREL, pid))

    def on_complete(self, body: bytes) -> None:
        """PUBACK (QoS 1) or PUBCOMP (QoS 2): the message's flow is finished."""
        pid = int.from_bytes(body[:2], "big")
        seq = self.inflight.pop(pid, None)
        if seq is None:
            return
        if len(body) > 2 and body[2] >= 0x80:
            self.counters.rejected += 1
        else:
            self.mark_completed(seq)
        self.check_done()
        self.schedule_pump()

    def check_done(self) -> None:
        if self.next_seq >= self.spec.count and not self.inflight and not self.done.done():
            self.done.set_result(None)


@functools.cache
def client_context(cafile: str) -> ssl.SSLContext:
    """The TLS context of every client of this process: verify the broker's
    certificate against `cafile` and its name (TLS 1.2 or later)."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def open_client(
    spec: ClientSpec, settings: Settings, counters: Counters, timeout: float = 10.0
) -> LoadClient:
    """Connect (over TLS with `settings.cafile`), send CONNECT (with the
    spec's credentials) and wait for a successful CONNACK, all within
    `timeout` (one timer for the whole: connect-rate opens thousands)."""
    loop = asyncio.get_running_loop()
    client = LoadClient(spec, settings, counters)
    context = client_context(settings.cafile) if settings.cafile else None
    user = spec.credentials
    host = spec.host or settings.host
    connect = wire.encode_connect(
        spec.client_id,
        protocol=settings.protocol,
        clean=settings.clean,
        keepalive=settings.keepalive,
        session_expiry=0 if settings.clean else 3600,
        username=user[0] if user else None,
        password=user[1].encode() if user else None,
    )
    try:
        async with asyncio.timeout(timeout):
            if spec.source_ip:
                sock = await connect_from(spec.source_ip, host, settings.port)
                try:
                    await loop.create_connection(
                        lambda: client,
                        sock=sock,
                        ssl=context,
                        server_hostname=host if context else None,
                    )
                except BaseException:
                    sock.close()
                    raise
            else:
                await loop.create_connection(lambda: client, host, settings.port, ssl=context)
            client.write(connect)
            await client.connack
    except BaseException:
        client.stopping = True
        client.abort()
        raise
    return client


async def connect_from(source_ip: str, host: str, port: int) -> socket.socket:
    """A TCP socket bound to `source_ip`, connected to host:port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Pick the source port at connect time, by the 4-tuple, not at bind
        # time, so ports stay shared across destinations.
        sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source_ip, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def subscribe(client: LoadClient, timeout: float = 10.0) -> None:
    client.suback = new_future(client.loop)
    client.write(
        wire.encode_subscribe(
            1, client.spec.topic_filter, client.settings.qos, protocol=client.protocol
        )
    )
    await asyncio.wait_for(asyncio.shield(client.suback), timeout)
