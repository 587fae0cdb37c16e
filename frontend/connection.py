"""One client connection in an acceptor: bytes to packets to envelopes, and back.

Answers what needs no shared state here (PINGREQ, malformed input, ACL, topic
aliases, keepalive and connect timeouts) and forwards the rest to the session's
shard. Every protocol error of this connection is turned into its wire answer
in exactly one place, `fail`: CONNACK or DISCONNECT with the reason code for
MQTT 5, a closed socket for 3.1/3.1.1 — plus a log line and a counter.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from typing import TYPE_CHECKING, Any, Final

from flockmq import envelopes as env
from flockmq.frontend.acl import WRITE
from flockmq.frontend.codec import (
    Connack,
    Connect,
    Disconnect,
    ProtocolError,
    Publish,
    ReasonCode,
    StreamDecoder,
    encode,
    encode_ack,
)
from flockmq.frontend.codec.packets import (
    Auth,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Pubrec,
    Pubrel,
    Subscribe,
    Unsubscribe,
)
from flockmq.mqtt.errors import UnsupportedProtocolVersion
from flockmq.mqtt.reason_codes import V5_TO_V3_CONNACK, ConnackReturnCode
from flockmq.mqtt.topics import SHARE_PREFIX, parse_topic_filter, topic_levels
from flockmq.sharding import shard_of
from flockmq.sizes import message_size

if TYPE_CHECKING:
    from flockmq.frontend.acceptor import Acceptor
    from flockmq.frontend.acl import ClientRules

log = logging.getLogger("flockmq.acceptor")

Kind = env.Kind
# The per-message kinds, bound once: an IntEnum member costs ~50 ns to look up.
_ROUTE: Final = Kind.ROUTE
_PUBLISH: Final = Kind.PUBLISH
_PUBACK_IN: Final = Kind.PUBACK_IN
_PUBREC_IN: Final = Kind.PUBREC_IN
_PUBREL_IN: Final = Kind.PUBREL_IN
_PUBCOMP_IN: Final = Kind.PUBCOMP_IN
_QOS2_CONFIRMED: Final = Kind.QOS2_CONFIRMED

NEW, CONNECTING, CONNECTED, CLOSED = range(4)
PUBACK, PUBREC = 4, 5  # packet types of the acknowledgements a publish waits for
NEVER_EXPIRES = 0xFFFFFFFF
# Told in the CONNACK: what a client may make us keep per connection is at
# most this many topics of up to 64 KB (Mosquitto's default max_topic_alias).
TOPIC_ALIAS_MAXIMUM = 10
PINGRESP_BYTES = encode(Pingresp(), 4)
# Socket write buffer per client. Over WRITE_HIGH the client is behind: QoS 0
# copies for it are dropped (counted) once its buffer passes the acceptor's
# qos0_buffer_cap, and if it stays behind for write_timeout it is disconnected
# (QoS 1/2 copies are bounded by the in-flight window). Nothing a client does
# makes its acceptor stop serving the others.
WRITE_HIGH = 512 * 1024
WRITE_LOW = 128 * 1024


CLOSE_GRACE = 1.0  # seconds a closing connection may flush before it is aborted
MAX_ATTEMPTS = 3  # routings of one publish before its publisher is disconnected


class PendingPublish:
    """An inbound QoS 1/2 publish waiting to be confirmed durable."""

    __slots__ = (
        "ack_kind",
        "attempt",
        "duplicates",
        "envelope",
        "expected",
        "since",
        "size",
        "stored",
    )

    def __init__(
        self, ack_kind: int, envelope: env.RouteTuple | env.Publish, now: float, size: int
    ) -> None:
        self.ack_kind = ack_kind  # PUBACK or PUBREC
        self.size = size  # message_size of the publish
        self.envelope = envelope  # what to send again (ROUTE, or PUBLISH to the shard)
        self.since = now
        self.attempt = 0
        self.expected = -1  # shards that will confirm; -1 until ROUTED says
        self.stored = 0
        self.duplicates = 0  # client retransmissions while this one is pending

    def retry(self, now: float) -> None:
        """Start a new attempt: confirmations of the old one no longer count."""
        self.attempt += 1
        self.since = now
        self.expected = -1
        self.stored = 0
        e = self.envelope
        if e[0] == env.Kind.ROUTE:  # a typed plain tuple (see ClientConnection.on_publish)
            kind, origin, topic, payload, qos, retain, props, reply = e
            assert reply is not None  # a QoS 1 ROUTE always has one
            conn, packet_id, _attempt, uid, _key = reply
            new_reply: env.ReplyTuple = (conn, packet_id, self.attempt, uid, None)
            self.envelope = (kind, origin, topic, payload, qos, retain, props, new_reply)
        else:  # PUBLISH to the session's shard: route again despite the known packet id
            self.envelope = e._replace(attempt=self.attempt, retry=True)


class ClientConnection(asyncio.Protocol):
    def __init__(self, acceptor: Acceptor) -> None:
        self.acceptor = acceptor
        self.conn_id = acceptor.next_conn_id()
        self.decoder = StreamDecoder(max_packet_size=acceptor.config.max_packet_size)
        self.transport: asyncio.Transport | None = None
        self.state = NEW
        self.client_id = ""
        self.username: str | None = None
        self.acl_rules: ClientRules | None = None  # with an ACL file: set at CONNECT
        self.level = 4
        self.keepalive = 0
        self.shard = 0
        self.worker_incarnation: int | None = None
        self.created = self.last_rx = acceptor.loop.time()
        self.topic_aliases: dict[int, str] = {}
        self.max_outgoing_packet = 0  # v5 Maximum Packet Size of the client; 0: no limit
        self.will_on_close = True
        self.paused = False
        self.before_connack: list[env.SendPublishMany] = []
        # written after the CONNACK, should anything be written before it
        self.before_connack_writes = bytearray()
        self.connack_wait = False  # CONNECT sent on, CONNACK not yet: nothing read
        self.connect_envelope: env.Connect | None = (
            None  # as sent, to re-attach after a worker restart
        )
        self.awaiting: dict[int, PendingPublish] = {}  # inbound QoS 1/2 by packet id
        self.awaiting_bytes = 0  # their message_size total: reading stops past a bound
        self.awaiting_full = False  # not reading until confirmations bring it down
        self.publishes = 0  # numbers this connection's QoS 1/2 publishes (reply uid)
        self.pubrels: set[int] = set()  # PUBRELs forwarded, awaiting their PUBCOMP
        # SUBSCRIBE/UNSUBSCRIBE awaiting their ack
        self.unanswered: dict[int, env.Subscribe | env.Unsubscribe] = {}
        self.write_paused_at: float | None = None  # when the socket buffer passed high-water
        self.closing = False  # close() was called: nothing more is read or written
        self.pending: list[bytes] = []  # written at the end of this loop pass (flush)
        self.pending_bytes = 0
        self.lost = False  # connection_lost was called
        # Order of what this connection sends (frontend/ordering.py):
        self.last_routed = 0  # number of its last ROUTE (acceptor.fences.sent)
        self.fence_seq = 0  # the FENCE it waits for, or 0
        self.held: Any = None  # the packet that waits (nothing after it is read)
        self.held_since = 0.0
        self.closed_report: env.Closed | None = None  # CLOSED waiting for its fence

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)  # type: ignore[attr-defined]
        self.acceptor.register(self)

    def data_received(self, data: bytes) -> None:
        if self.state == CLOSED or self.closing:
            return  # after DISCONNECT or any close, nothing more is acted on
        self.last_rx = self.acceptor.now
        self.decoder.feed(data)
        # else it waits for the CONNACK, or for its turn (see _read_packets)
        if not self.connack_wait and self.held is None:
            self._read_packets()

    def _read_packets(self, waited: Any = None) -> None:
        """Act on `waited` (a packet let go: it waits no more), then the
        packets decoded so far, in order, until a CONNECT: what follows it
        waits in the decoder, and the socket is not read, until the CONNACK
        is out (nothing after a CONNECT the server refuses is acted on
        [MQTT-3.1.4-5], and the CONNACK is the first packet the server sends
        [MQTT-3.2.0-1]); or until one would overtake what the connection
        sent before it (`must_wait`, frontend/ordering.py)."""
        decoder = self.decoder
        try:
            packet = decoder.next_packet() if waited is None else waited
            while packet is not None:
                if (
                    packet is not waited
                    and (self.unanswered or type(packet) is not Publish)  # the publish path
                    and self.must_wait(packet)
                ):
                    return
                self.handle_packet(packet)
                if self.state != CONNECTED or self.closing:
                    if self.state == CONNECTING and not self.closing:
                        self.connack_wait = True
                        if self.transport is not None:
                            self.transport.pause_reading()
                    return
                packet = decoder.next_packet()
        except ProtocolError as exc:
            self.fail(exc)
            return
        if self.acceptor.bus.congested and not self.paused and self.transport is not None:
            self.paused = True  # backpressure: stop reading until the bus drains
            self.transport.pause_reading()
            self.acceptor.paused.add(self)

    def must_wait(self, packet: Any) -> bool:
        """Hold `packet` (and stop reading) when it would overtake what this
        connection sent before it: a SUBSCRIBE/UNSUBSCRIBE behind ROUTEs the
        router may not have handled (a FENCE goes), a QoS 0/1 PUBLISH behind
        an unanswered SUBSCRIBE/UNSUBSCRIBE."""
        kind = type(packet)
        if kind is Publish:
            if not self.unanswered or packet.qos == 2:
                return False
        elif kind is Subscribe or kind is Unsubscribe:
            acceptor = self.acceptor
            if not acceptor.fences.needed(self.last_routed) or self.state == NEW:
                return False
            self._send_fence()
        else:
            return False
        self.held = packet
        self.held_since = self.acceptor.now
        self.acceptor.holding.add(self)
        if self.transport is not None:
            self.transport.pause_reading()
        return True

    def release_held(self) -> None:
        """What held this connection is answered: go on reading."""
        packet, self.held = self.held, None
        self.acceptor.holding.discard(self)
        if packet is None or self.state == CLOSED or self.closing:
            return
        self._read_packets(packet)
        if self.held is None:
            self.resume_reading()

    def on_answered(self, packet_id: int) -> None:
        """Its SUBACK/UNSUBACK went out: a publish that waited for it goes."""
        self.unanswered.pop(packet_id, None)
        if self.held is not None and not self.unanswered and not self.fence_seq:
            self.release_held()

    def _send_fence(self) -> None:
        """A FENCE on the pipe to the router, after this connection's ROUTEs."""
        acceptor = self.acceptor
        acceptor.to_router(acceptor.fences.fence(self, acceptor.now))
        acceptor.count("fences_sent")

    def on_fenced(self) -> None:
        """The router has handled every ROUTE this connection sent before its FENCE."""
        if self.closed_report is not None:
            report, self.closed_report = self.closed_report, None
            self.acceptor.to_worker(self.shard, report)
        elif self.held is not None:
            self.release_held()

    def check_held(self, now: float, timeout: float) -> None:
        """A SUBSCRIBE/UNSUBSCRIBE never answered (a process died with it):
        the publish behind it goes, rather than the connection hanging."""
        if self.held is not None and not self.fence_seq and now - self.held_since > timeout:
            self.acceptor.count("ordering_holds_timed_out")
            self.release_held()

    def report_closed(self, envelope: env.Closed) -> None:
        """CLOSED (a will may follow, or the session's end) after the ROUTEs
        this connection sent: a retained will must not be overwritten by an
        earlier publish."""
        acceptor = self.acceptor
        if self.fence_seq or acceptor.fences.needed(self.last_routed):
            self.closed_report = envelope
            if not self.fence_seq:
                self._send_fence()
            return
        acceptor.to_worker(self.shard, envelope)

    def resume_reading(self) -> None:
        """Read again, unless another reason to stop still holds."""
        if (
            not (self.paused or self.awaiting_full or self.connack_wait or self.closing)
            and self.held is None
            and self.transport is not None
        ):
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused_at = self.acceptor.loop.time()
        self.acceptor.writer_full(self)

    def resume_writing(self) -> None:
        self.write_paused_at = None
        self.acceptor.writer_drained(self)

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
        self.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pending.clear()
        self.pending_bytes = 0
        was_registered = self.state in (CONNECTING, CONNECTED)
        self.state = CLOSED
        self.acceptor.unregister(self)
        self.acceptor.awaiting_conns.discard(self)
        self.acceptor.awaiting_bytes -= self.awaiting_bytes
        self.awaiting_bytes = 0
        if self.write_paused_at is not None:
            self.acceptor.writer_drained(self)
        self.held = None  # nothing more of this connection is acted on
        self.acceptor.holding.discard(self)
        if was_registered:
            self.report_closed(
                env.Closed(Kind.CLOSED, self.conn_id, self.client_id, self.will_on_close, None)
            )

    # --- inbound packets ----------------------------------------------------------------------
    def handle_packet(self, packet: Any) -> None:
        kind = type(packet)
        if kind is Publish:
            self.on_publish(packet)
        elif self.state == NEW:
            if kind is not Connect:
                raise ProtocolError("[MQTT-3.1.0-1] the first packet must be CONNECT")
            self.on_connect(packet)
        elif kind is Puback:
            # The per-acknowledgement sends are typed plain tuples (flockmq/envelopes.py).
            puback: env.PubackInTuple = (
                _PUBACK_IN,
                self.conn_id,
                self.client_id,
                packet.packet_id,
                packet.reason_code,
            )
            self._forward(puback)
        elif kind is Pubrec:
            pubrec: env.PubrecInTuple = (
                _PUBREC_IN,
                self.conn_id,
                self.client_id,
                packet.packet_id,
                packet.reason_code,
            )
            self._forward(pubrec)
        elif kind is Pubrel:
            # Kept until its PUBCOMP: if the session's worker dies holding it,
            # it goes again to the restarted one (a client re-sends PUBREL only
            # when it reconnects, and this connection stays open).
            self.pubrels.add(packet.packet_id)
            pubrel: env.PubrelInTuple = (_PUBREL_IN, self.conn_id, self.client_id, packet.packet_id)
            self._forward(pubrel)
        elif kind is Pubcomp:
            pubcomp: env.PubcompInTuple = (
                _PUBCOMP_IN,
                self.conn_id,
                self.client_id,
                packet.packet_id,
            )
            self._forward(pubcomp)
        elif kind is Pingreq:
            self.write(PINGRESP_BYTES)
        elif kind is Subscribe:
            self.on_subscribe(packet)
        elif kind is Unsubscribe:
            self._forward_until_answered(
                packet.packet_id,
                env.Unsubscribe(
                    Kind.UNSUBSCRIBE,
                    self.conn_id,
                    self.client_id,
                    packet.packet_id,
                    list(packet.topic_filters),
                ),
            )
        elif kind is Disconnect:
            self.on_disconnect(packet)
        elif kind is Connect:
            raise ProtocolError("[MQTT-3.1.0-2] a second CONNECT is a protocol violation")
        elif kind is Auth:
            # Only a client whose CONNECT named an Authentication Method may
            # send AUTH (5.0 section 3.15), and such a CONNECT is refused.
            raise ProtocolError("[MQTT-4.12.0-1] AUTH without an Authentication Method in CONNECT")
        else:
            raise ProtocolError(f"a client may not send {kind.__name__.upper()}")

    def _forward(self, envelope: env.Envelope) -> None:
        self.acceptor.to_worker(self.shard, envelope)

    def _forward_until_answered(
        self, packet_id: int, envelope: env.Subscribe | env.Unsubscribe
    ) -> None:
        """SUBSCRIBE/UNSUBSCRIBE: kept until SUBACK/UNSUBACK, so that if the
        session's worker dies holding it, it goes again to the restarted one
        (this connection stays open; the client would wait forever)."""
        self.unanswered[packet_id] = envelope
        self._forward(envelope)

    def resend_after_reattach(self) -> None:
        """What the dead worker may have held for this connection, in order."""
        for envelope in self.unanswered.values():
            self._forward(envelope)
        for packet_id in sorted(self.pubrels):
            self._forward(env.PubrelIn(_PUBREL_IN, self.conn_id, self.client_id, packet_id))

    def on_connect(self, packet: Connect) -> None:
        self.level = level = packet.protocol_level
        self.keepalive = packet.keepalive
        self.username = packet.username
        props = packet.properties
        client_id = packet.client_id
        assigned = False
        if not client_id:
            if level == 3 or (level == 4 and not packet.clean_start):
                # 3.1.1: a zero-length id needs clean session 1 [MQTT-3.1.3-8];
                # 3.1 requires 1-23 characters (longer ones are accepted, as
                # Mosquitto does): CONNACK 0x02 Identifier Rejected.
                self.refuse_connect(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "empty client id")
                return
            client_id = "auto-" + uuid.uuid4().hex
            assigned = level >= 5
        self.client_id = client_id
        if level >= 5 and "authentication_method" in props:
            # Enhanced authentication is not supported: refuse it rather than
            # accept a client that believes it authenticated [MQTT-4.12.0-1].
            self.refuse_connect(
                ReasonCode.BAD_AUTHENTICATION_METHOD,
                f"authentication method {props['authentication_method']!r} not supported",
            )
            return
        acl = self.acceptor.acl
        if acl is not None:
            self.acl_rules = acl.rules_for(client_id, packet.username)
        will = packet.will
        will_env = None
        if will is not None:
            self.check_topic_depth(will.topic)
            if not self.may_publish(will.topic):
                self.acceptor.count("acl_denied_wills")
                self.refuse_connect(ReasonCode.NOT_AUTHORIZED, f"will topic {will.topic!r} denied")
                return
            will_props = dict(will.properties)
            delay = will_props.pop("will_delay_interval", 0)
            will_env = env.Will(
                will.topic, will.payload, will.qos, will.retain, will_props or None, delay
            )
        if level >= 5:
            expiry = props.get("session_expiry_interval", 0)
            self.max_outgoing_packet = props.get("maximum_packet_size", 0)
        else:
            expiry = 0 if packet.clean_start else NEVER_EXPIRES
        self.shard = shard_of(client_id, self.acceptor.config.workers)
        self.state = CONNECTING
        self.acceptor.count("connects")
        self.connect_envelope = env.Connect(
            Kind.CONNECT,
            self.conn_id,
            client_id,
            packet.clean_start,
            expiry,
            level,
            packet.keepalive,
            packet.username,
            will_env,
            props.get("receive_maximum", 0),
            assigned,
        )
        self._forward(self.connect_envelope)

    def on_publish(self, packet: Publish) -> None:
        if self.state != CONNECTED and self.state != CONNECTING:
            raise ProtocolError("[MQTT-3.1.0-1] the first packet must be CONNECT")
        topic = packet.topic
        props: dict[str, Any] | None = None  # None when empty, as on the wire
        if packet.properties:
            if "subscription_identifier" in packet.properties:
                raise ProtocolError(
                    "[MQTT-3.3.4-6] a PUBLISH from a client carries a Subscription Identifier"
                )
            props = dict(packet.properties)
            alias = props.pop("topic_alias", None)
            if alias is not None:
                topic = self.resolve_alias(alias, topic)
        self.check_topic_depth(topic)
        qos = packet.qos
        if not self.may_publish(topic):
            # Acknowledged and dropped, as 3.1.1 requires [MQTT-3.3.5-2]; v5 says why.
            self.acceptor.acl_denied("acl_denied_publishes", self, "publish to", topic)
            if qos:
                kind = 4 if qos == 1 else 5
                rc = ReasonCode.NOT_AUTHORIZED if self.level >= 5 else 0
                self.write(encode_ack(kind, packet.packet_id or 0, self.level, rc))
            return
        if qos < 2:
            # QoS 0 and 1 need no session state on the way in: straight to the
            # router, and a QoS 1 PUBACK once the message is on its way (the
            # PUSH socket does not drop it). QoS 2 goes to the session's shard,
            # which holds packet ids until PUBREL for exactly-once.
            payload, retain = packet.payload, packet.retain
            if not qos:  # the hottest send: a plain tuple (see flockmq/envelopes.py)
                self.route((_ROUTE, self.client_id, topic, payload, 0, retain, props, None))
                return
            self.publishes += 1
            reply: env.ReplyTuple = (self.conn_id, packet.packet_id or 0, 0, self.publishes, None)
            route: env.RouteTuple = (
                _ROUTE,
                self.client_id,
                topic,
                payload,
                qos,
                retain,
                props,
                reply,
            )
            size = message_size(topic, payload, props)
            if not self.await_confirmation(packet.packet_id or 0, PUBACK, route, size):
                return  # the first transmission is still being confirmed
            self.route(route)
        else:
            publish = env.Publish(
                _PUBLISH,
                self.conn_id,
                self.client_id,
                packet.packet_id or 0,
                topic,
                packet.payload,
                qos,
                packet.retain,
                props or None,
                0,
                False,
                self.publishes + 1,
            )
            size = message_size(topic, packet.payload, props)
            if self.await_confirmation(packet.packet_id or 0, PUBREC, publish, size):
                self.publishes += 1
            self._forward(publish)

    def route(self, envelope: env.Route | env.RouteTuple) -> None:
        """A ROUTE to the router, numbered (the only cost of ordering on
        the publish path: frontend/ordering.py)."""
        fences = self.acceptor.fences
        fences.sent += 1
        self.last_routed = fences.sent
        self.acceptor.to_router(envelope)

    # --- durable acknowledgement of inbound QoS 1/2 -----------------------------------
    def await_confirmation(
        self, packet_id: int, ack_kind: int, envelope: env.RouteTuple | env.Publish, size: int
    ) -> bool:
        """PUBACK/PUBREC go out only when the router said how many shards hold
        copies (ROUTED) and each confirmed them durable (STORED). False: a
        retransmission of a publish still being confirmed (nothing to send)."""
        pending = self.awaiting.get(packet_id)
        if pending is not None:
            pending.duplicates += 1
            return False
        self.awaiting[packet_id] = PendingPublish(ack_kind, envelope, self.acceptor.now, size)
        self.acceptor.awaiting_conns.add(self)
        self.awaiting_bytes += size
        self.acceptor.awaiting_bytes += size
        if not self.awaiting_full and (
            self.awaiting_bytes >= self.acceptor.config.max_unconfirmed_bytes
            or self.acceptor.awaiting_bytes >= self.acceptor.config.max_acceptor_unconfirmed
        ):
            # Publishes come faster than they are confirmed durable (a slow
            # store, a restarting worker): stop reading this client until
            # they catch up, instead of holding what it sends.
            self.awaiting_full = True
            self.acceptor.count("unconfirmed_full_pauses")
            if self.transport is not None:
                self.transport.pause_reading()
        return True

    def on_routed(self, packet_id: int, shards: int, attempt: int) -> None:
        """shards < 0: the session's shard saw a QoS 2 retransmission of a
        packet id it already routed; acknowledge it, unless an earlier
        transmission is still being confirmed (that one acknowledges)."""
        pending = self.awaiting.get(packet_id)
        if pending is None or attempt != pending.attempt:
            return  # confirmation of an attempt that was given up
        if shards < 0:
            if pending.duplicates:
                pending.duplicates -= 1
                return
            shards = 0
        pending.expected = shards
        self._maybe_acknowledge(packet_id, pending)

    def on_stored(self, packet_id: int, ok: bool, attempt: int) -> None:
        pending = self.awaiting.get(packet_id)
        if pending is None or attempt != pending.attempt:
            return
        if not ok:
            self.acceptor.count("publishes_not_stored")
            log.error(
                "client %s: publish %d could not be stored: closing the connection "
                "so the client retransmits it",
                self.client_id,
                packet_id,
            )
            self.will_on_close = True
            self.close(ReasonCode.UNSPECIFIED_ERROR)
            return
        pending.stored += 1
        self._maybe_acknowledge(packet_id, pending)

    def _maybe_acknowledge(self, packet_id: int, pending: PendingPublish) -> None:
        if pending.expected >= 0 and pending.stored >= pending.expected:
            del self.awaiting[packet_id]
            self.awaiting_bytes -= pending.size
            self.acceptor.awaiting_bytes -= pending.size
            if not self.awaiting:
                self.acceptor.awaiting_conns.discard(self)
            if (
                self.awaiting_full
                and self.awaiting_bytes <= self.acceptor.config.max_unconfirmed_bytes // 2
            ):
                self.awaiting_full = False
                self.resume_reading()
            self.write(encode_ack(pending.ack_kind, packet_id, self.level))
            if pending.ack_kind == PUBREC:
                confirmed: env.Qos2ConfirmedTuple = (
                    _QOS2_CONFIRMED,
                    self.conn_id,
                    self.client_id,
                    packet_id,
                )
                self._forward(confirmed)

    def check_confirmations(self, now: float, timeout: float) -> None:
        """A publish left unconfirmed (a router or worker died holding it) is
        sent again as a new attempt; after MAX_ATTEMPTS the connection is
        closed, so the client retransmits it itself. Never acknowledged
        unconfirmed."""
        for packet_id, pending in list(self.awaiting.items()):
            if now - pending.since <= timeout:
                continue
            self.acceptor.count("publish_confirm_timeouts")
            if pending.attempt + 1 >= MAX_ATTEMPTS:
                log.warning(
                    "client %s: publish %d not confirmed durable after %d attempts: "
                    "closing the connection so the client retransmits it",
                    self.client_id,
                    packet_id,
                    MAX_ATTEMPTS,
                )
                self.close(ReasonCode.UNSPECIFIED_ERROR)
                return
            self._retry(packet_id, pending, now, f"not confirmed in {timeout:.0f}s")

    def retry_unconfirmed(self, now: float, why: str) -> None:
        """Send every unconfirmed publish again now, in arrival order."""
        for packet_id, pending in list(self.awaiting.items()):
            self._retry(packet_id, pending, now, why)

    def _retry(self, packet_id: int, pending: PendingPublish, now: float, why: str) -> None:
        pending.retry(now)
        self.acceptor.count("publish_retries")
        log.info(
            "client %s: publish %d %s: attempt %d",
            self.client_id,
            packet_id,
            why,
            pending.attempt + 1,
        )
        e = pending.envelope
        if e[0] == env.Kind.ROUTE:
            self.route(e)
        else:
            self._forward(e)

    def may_publish(self, topic: str) -> bool:
        """Whether the ACL lets this client publish to `topic`. `$SYS` belongs
        to the broker: a client may publish there only when an ACL line grants
        that topic by name (`#` and `+` never match a `$` topic at the first
        level, so no ordinary grant does)."""
        decisions = self.acceptor.acl_decisions
        if decisions is not None and self.acl_rules is not None:
            return bool(decisions.access(self.acl_rules, topic) & WRITE)
        if topic == "$SYS" or topic.startswith("$SYS/"):
            self.acceptor.count("sys_publishes_refused")
            return False
        return True

    def check_topic_depth(self, topic: str) -> None:
        """A topic name over `max_topic_levels` levels: TOPIC_NAME_INVALID
        (DISCONNECT 0x90, or CONNACK 0x90 for a will; 3.1.1: closed)."""
        limit = self.acceptor.config.max_topic_levels
        if topic_levels(topic) > limit:
            self.acceptor.count("topics_too_deep")
            exc = ProtocolError(
                f"topic name has {topic_levels(topic)} levels, more than max_topic_levels "
                f"({limit})",
                ReasonCode.TOPIC_NAME_INVALID,
            )
            exc.protocol_level = self.level  # a will's: answered with CONNACK in v5
            raise exc

    def resolve_alias(self, alias: int, topic: str) -> str:
        if not 0 < alias <= TOPIC_ALIAS_MAXIMUM:
            raise ProtocolError(
                f"[MQTT-3.3.2-9] topic alias {alias} out of range", ReasonCode.TOPIC_ALIAS_INVALID
            )
        if topic:
            self.topic_aliases[alias] = topic
            return topic
        known = self.topic_aliases.get(alias)
        if known is None:
            raise ProtocolError(f"[MQTT-3.3.4-?] unknown topic alias {alias}")
        return known

    def on_subscribe(self, packet: Subscribe) -> None:
        rules = self.acl_rules
        sub_id = packet.properties.get("subscription_identifier")
        entries: list[env.SubEntry] = []
        max_levels = self.acceptor.config.max_topic_levels
        for sub in packet.subscriptions:
            qos = sub.qos
            refused = self.refuse_filter(sub.topic_filter, max_levels)
            if refused:
                qos = refused
            elif rules is not None and not rules.can_subscribe(sub.topic_filter):
                # Only a filter no readable topic can match; what a granted one
                # matches is checked message by message on delivery.
                self.acceptor.acl_denied(
                    "acl_denied_subscriptions", self, "subscription to", sub.topic_filter
                )
                qos = ReasonCode.NOT_AUTHORIZED if self.level >= 5 else 0x80
            elif sub.topic_filter.startswith("$share/") and sub.no_local:
                raise ProtocolError("[MQTT-3.8.3-4] no local on a shared subscription")
            entries.append(
                env.SubEntry(
                    sub.topic_filter,
                    int(qos),
                    sub.no_local,
                    sub.retain_as_published,
                    sub.retain_handling,
                    sub_id,
                )
            )
        self._forward_until_answered(
            packet.packet_id,
            env.Subscribe(Kind.SUBSCRIBE, self.conn_id, self.client_id, packet.packet_id, entries),
        )

    def refuse_filter(self, topic_filter: str, max_levels: int) -> int:
        """The SUBACK code refusing a filter this broker does not take, or 0.
        MQTT 3.1/3.1.1 have no shared subscriptions: `$share/...` is refused
        (0x80) rather than taken as an ordinary filter nothing can publish
        to. A filter deeper than `max_topic_levels` is refused (v5: 0x8F)."""
        if self.level < 5 and topic_filter.startswith(SHARE_PREFIX):
            self.acceptor.count("shared_subscriptions_refused")
            return 0x80
        if topic_levels(topic_filter) > max_levels + (2 if self.level >= 5 else 0):
            # (+2: `$share/{group}/` before a v5 shared filter's own levels)
            real = parse_topic_filter(topic_filter, self.level).filter
            if topic_levels(real) > max_levels:
                self.acceptor.count("topics_too_deep")
                return ReasonCode.TOPIC_FILTER_INVALID if self.level >= 5 else 0x80
        return 0

    def on_disconnect(self, packet: Disconnect) -> None:
        expiry = packet.properties.get("session_expiry_interval")
        connect = self.connect_envelope
        if expiry and connect is not None and connect.session_expiry == 0:
            # Not a valid DISCONNECT: the will stays, the session ends as agreed.
            raise ProtocolError(
                "MQTT 5 section 3.14.2.2.2: DISCONNECT sets a Session Expiry Interval "
                "after CONNECT set none"
            )
        # A DISCONNECT discards the will [MQTT-3.14.4-3], unless v5 asks for it (0x04).
        self.will_on_close = packet.reason_code == ReasonCode.DISCONNECT_WITH_WILL_MESSAGE
        if expiry is not None and self.state in (CONNECTING, CONNECTED):
            self.report_closed(
                env.Closed(Kind.CLOSED, self.conn_id, self.client_id, self.will_on_close, expiry)
            )
            self.state = CLOSED  # connection_lost must not report it again
            self.acceptor.unregister(self)
        self.close()

    # --- outbound ----------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if (
            self.transport is not None
            and self.state != CLOSED
            and not self.closing
            and not self.too_large(data)
        ):
            if self.state == CONNECTING:
                # The first packet the server sends is CONNACK [MQTT-3.2.0-1]:
                # a PINGRESP (or refusal PUBACK) for what the client sent
                # right after CONNECT waits for it.
                self.before_connack_writes += data
                return
            self._send_bytes(data)

    def _send_bytes(self, data: bytes) -> None:
        """Queue `data` for the socket: what one pass of the event loop writes
        to a client goes in one system call (see flush), not one per packet
        (a fan-out writes every message to every subscriber)."""
        if not self.pending:
            self.acceptor.schedule_flush(self)
        self.pending.append(data)
        self.pending_bytes += len(data)

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

    def _write_connack(self, data: bytes) -> None:
        """The CONNACK, and what waited for it: written as they are."""
        if self.transport is not None and not self.closing:
            self._send_bytes(data)

    def too_large(self, data: bytes) -> bool:
        """Over the client's Maximum Packet Size: not sent [MQTT-3.1.2-25], counted."""
        if self.max_outgoing_packet and len(data) > self.max_outgoing_packet:
            self.acceptor.count("dropped_over_client_maximum_packet_size")
            return True
        return False

    def on_connack(self, session_present: bool, rc: int, props: dict[str, Any] | None) -> None:
        if self.state != CONNECTING:
            return
        if rc == 0:
            self.state = CONNECTED
            self.worker_incarnation = self.acceptor.worker_incarnations.get(self.shard)
        if self.level >= 5:
            props = dict(props or {})
            props.setdefault("topic_alias_maximum", TOPIC_ALIAS_MAXIMUM)
            props.setdefault("maximum_packet_size", self.acceptor.config.max_packet_size)
            props.setdefault("shared_subscription_available", 1)
            if self.keepalive > self.acceptor.config.max_keepalive:
                self.keepalive = self.acceptor.config.max_keepalive
                props["server_keep_alive"] = self.keepalive
            data = encode(Connack(session_present, rc, props), 5)
            if self.too_large(data):
                # Not even the CONNACK fits the client's Maximum Packet Size
                # [MQTT-3.1.2-24]: the connection cannot work, close it.
                self.acceptor.count("connack_over_client_maximum_packet_size")
                self.close()
                return
            self._write_connack(data)
        else:
            code = V5_TO_V3_CONNACK.get(rc, ConnackReturnCode.SERVER_UNAVAILABLE)
            self._write_connack(encode(Connack(session_present and rc == 0, code), self.level))
        early, self.before_connack_writes = self.before_connack_writes, bytearray()
        if rc != 0:
            self.close()
            return
        if early:  # each checked against the client's Maximum Packet Size already
            self._write_connack(bytes(early))
        if self.before_connack:
            held, self.before_connack = self.before_connack, []
            for e in held:
                self.acceptor.handle_envelope(e)
        self.connack_wait = False
        self._read_packets()  # what the client sent after its CONNECT
        self.resume_reading()

    def refuse_connect(self, rc: ReasonCode, why: str) -> None:
        self.acceptor.count("connects_refused")
        self.acceptor.client_log.log(
            logging.INFO, "refusing CONNECT from %s: %s (%s)", self.peer(), why, rc.name
        )
        self.state = CONNECTING  # so on_connack writes the answer, then close
        self.on_connack(False, rc, None)
        self.state = CLOSED
        self.acceptor.unregister(self)

    def close(self, rc: int | None = None) -> None:
        """Close the connection; for v5 with a reason, send DISCONNECT first.
        Nothing the client sent after this is acted on. A close waits for the
        socket buffer to drain, which never happens for a client that stopped
        reading: after CLOSE_GRACE the connection is aborted."""
        transport = self.transport
        if transport is None or self.closing:
            return
        if rc is not None and self.level >= 5 and self.state == CONNECTED:
            self._write_disconnect(rc)
        self.closing = True
        self.flush()  # what was queued before the close goes first
        transport.close()
        self.acceptor.loop.call_later(CLOSE_GRACE, self._abort_unless_closed)

    def _write_disconnect(self, rc: int) -> None:
        data = encode(Disconnect(rc), 5)
        if self.transport is not None and not self.closing and not self.too_large(data):
            self._send_bytes(data)  # not even a DISCONNECT over the client's maximum

    def _abort_unless_closed(self) -> None:
        if not self.lost and self.transport is not None:
            self.acceptor.count("closes_aborted")
            self.transport.abort()

    def fail(self, exc: ProtocolError) -> None:
        """The one place a protocol error becomes its wire answer."""
        self.acceptor.count("protocol_errors")
        self.acceptor.count(f"protocol_errors_{exc.reason_code.name.lower()}")
        self.acceptor.client_log.log(
            logging.WARNING,
            "client %s (%s): %s [%s]",
            self.client_id or "-",
            self.peer(),
            exc,
            exc.reason_code.name,
        )
        if isinstance(exc, UnsupportedProtocolVersion) and self.state == NEW:
            # [MQTT-3.1.2-2] CONNACK 0x01 (or 0x84) then close
            self.level = exc.protocol_level if exc.protocol_level in (3, 4, 5) else 4
            self.refuse_connect(exc.reason_code, str(exc))
            self.close()
            return
        if self.state == NEW and exc.protocol_level == 5:
            # A bad v5 CONNECT: CONNACK with the reason, then close [MQTT-3.1.4-1].
            self.level = 5
            self.refuse_connect(exc.reason_code, str(exc))
        elif self.level >= 5 and self.state == CONNECTED:
            self._write_disconnect(exc.reason_code)
        self.will_on_close = True
        self.close()

    def check_timers(self, now: float) -> None:
        """Connect timeout and keepalive [MQTT-3.1.2-24]: 1.5 x keepalive."""
        if self.state == NEW or self.state == CONNECTING:
            if now - self.created > self.acceptor.config.connect_timeout:
                self.acceptor.count("connect_timeouts")
                log.info(
                    "%s: no CONNECT/CONNACK within %.0fs: closing",
                    self.peer(),
                    self.acceptor.config.connect_timeout,
                )
                self.close()
        elif (
            self.write_paused_at is not None
            and now - self.write_paused_at > self.acceptor.config.write_timeout
        ):
            # A client that reads nothing is disconnected on time, so neither
            # its buffer nor its session's window is held for ever.
            self.acceptor.count("slow_consumers_disconnected")
            self.acceptor.client_log.log(
                logging.INFO,
                "client %s read nothing for %.0fs: closing",
                self.client_id,
                self.acceptor.config.write_timeout,
            )
            self.close()
        elif self.keepalive and now - self.last_rx > 1.5 * self.keepalive:
            self.acceptor.count("keepalive_timeouts")
            log.info("client %s: keepalive of %ds expired: closing", self.client_id, self.keepalive)
            self.close(ReasonCode.KEEP_ALIVE_TIMEOUT)

    def peer(self) -> str:
        if self.transport is None:
            return "?"
        addr = self.transport.get_extra_info("peername")
        return f"{addr[0]}:{addr[1]}" if addr else "?"
