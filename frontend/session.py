"""The MQTT protocol of one client connection, sans-IO (h11-style).

`ClientSession` owns everything a connection knows about its client: the
stream decoder, the connection state (NEW -> CONNECTING -> CONNECTED ->
CLOSED, frontend/states.py), the CONNECT as sent on, topic aliases, what
waits for the CONNACK, SUBSCRIBE/UNSUBSCRIBE and PUBRELs kept until
answered, the durable acknowledgement of inbound QoS 1/2
(frontend/confirmations.py), the order of what it sends
(frontend/ordering.py), and the connect, keepalive and slow-consumer
timeouts (frontend/timeouts.py). It has no socket, no event loop and no
ZeroMQ, and does not know which transport it sits on.

Inputs are method calls, time passed in: `receive_data(bytes, now)` (True:
all of it handled, the adapter may apply backpressure), the envelopes about
this connection (`on_connack`, `on_routed`, `on_stored`, `on_fenced`,
`on_worker_up`, `send_ack`, `send_suback`, `send_unsuback`, `write` for
deliveries), the acceptor's tick (`check_timers(now, write_paused_at)`,
`check_confirmations`, `check_held`), `close`, `fail` and
`connection_lost`. Outputs go, in the order they happen, through two
narrow interfaces instead of returned lists (no allocation per message on
the publish path, and the order across connections on the pipe to the
router, which the fences rely on, is kept):

- `Link`, the connection it runs on (frontend/connection.py: TCP today, TLS
  and WebSocket later): bytes to write (coalesced there per loop pass),
  pause/resume reading, close the transport.
- `Host`, its acceptor (frontend/acceptor.py): envelopes to the router and
  to the session's shard, counters, the ACL, and the acceptor-wide state it
  shares with the others (Fences, UnconfirmedTotals: sans-IO objects).

Every protocol error of this connection is turned into its wire answer in
exactly one place, `fail`: CONNACK or DISCONNECT with the reason code for
MQTT 5, a closed socket for 3.1/3.1.1 -- plus a log line and a counter.
The per-packet handlers live in one module per concern and take the session
as their context: connect.py (CONNECT, CONNACK, DISCONNECT),
inbound_publish.py, subscribe.py.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, Protocol

from flockmq import envelopes as env
from flockmq.frontend.codec import (
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
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from flockmq.hooks import CONNECT as CONNECT_CALL
from flockmq.hooks import WILL as WILL_CALL
from flockmq.mqtt.errors import UnsupportedProtocolVersion

from .authentication import FailureThrottle, PendingRefusal, Verdict
from .confirmations import (
    NO_CONFIRMATIONS,
    PUBREC,
    Confirmations,
    PendingPublish,
    UnconfirmedTotals,
    check_confirmations,
    retry_unconfirmed,
)
from .connect import (
    drop_pending_refusal,
    handle_connack,
    handle_connect,
    handle_disconnect,
    hook_answered_connect,
    hook_answered_will,
    refuse_connect,
    waits_for_connect,
)
from .hook_calls import WaitsForHook
from .inbound_publish import handle_publish
from .states import CLOSED, CONNECTED, CONNECTING, NEW
from .subscribe import handle_subscribe, handle_unsubscribe
from .timeouts import check_timeouts
from .topic_aliases import TopicAliases
from .traffic import Traffic

if TYPE_CHECKING:
    from flockmq.config import Config
    from flockmq.frontend.acl import ACL, ClientRules, DecisionCache
    from flockmq.frontend.hook_calls import HookCalls, PendingCall
    from flockmq.frontend.ordering import Fences
    from flockmq.isolation import RateLimitedLog

log = logging.getLogger("flockmq.acceptor")

Kind = env.Kind
# The per-message kinds, bound once: an IntEnum member costs ~50 ns to look up.
_PUBACK_IN: Final = Kind.PUBACK_IN
_PUBACKS_IN: Final = Kind.PUBACKS_IN
_PUBREC_IN: Final = Kind.PUBREC_IN
_PUBREL_IN: Final = Kind.PUBREL_IN
_PUBCOMP_IN: Final = Kind.PUBCOMP_IN
_QOS2_CONFIRMED: Final = Kind.QOS2_CONFIRMED
_PUBCOMP: Final = PacketType.PUBCOMP

PINGRESP_BYTES = encode(Pingresp(), 4)

# Shared by every session while empty: most connections never forward a
# PUBREL or a SUBSCRIBE that is still unanswered, and two empty dicts are 128
# bytes a connection (an idle connection costs ~3 KiB over all processes).
# Nothing writes to them: the two places that add an entry first give the
# session dicts of its own; reading and pop() on them are safe.
_NO_PUBRELS: Final[dict[int, None]] = {}
_NO_UNANSWERED: Final[dict[int, env.Subscribe | env.Unsubscribe]] = {}


class Link(Protocol):
    """What a session asks of the connection it runs on (the adapter)."""

    def send_bytes(self, data: bytes) -> None:
        """Queue `data` for the client, in order (written once per loop pass)."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None:
        """Read again, unless the adapter has its own reason not to."""

    def check_backpressure(self) -> None:
        """Packets were handled: stop reading if downstream is full."""

    def close_transport(self) -> None:
        """Write what is queued, then close (and abort if that never completes)."""

    def unregister(self) -> None:
        """The acceptor no longer delivers to this connection."""

    def peer(self) -> str: ...

    def address(self) -> str:
        """The client's IP address (what the authentication throttle counts by)."""

    identity: str | None  # the verified client certificate's CN, if any

    def peer_certificate(self) -> dict[str, Any] | None:
        """The verified client certificate as ssl's getpeercert() gives it
        (None: none), read when asked."""

    def authenticate(self, username: str | None, password: bytes | None, now: float) -> Verdict:
        """The listener's decision on these credentials (and the client's
        certificate, where the transport has one)."""


class Host(Protocol):
    """What a session asks of its acceptor (shared by its sessions)."""

    config: Config
    now: float  # the time of this pass of the acceptor's loop
    acl: ACL | None
    acl_decisions: DecisionCache | None  # None without an ACL file
    fences: Fences
    unconfirmed: UnconfirmedTotals
    client_log: RateLimitedLog
    throttle: FailureThrottle  # delays for addresses that fail to authenticate
    traffic: Traffic  # bytes and packets each way, for $SYS
    hooks: HookCalls | None  # the auth hook (frontend/hook_calls.py); None: no hook

    def count(self, name: str) -> None: ...

    def acl_denied(self, counter: str, client_id: str, what: str, topic: str) -> None: ...

    def to_router(self, envelope: env.Route | env.RouteTuple | env.Fence) -> None: ...

    def to_worker(self, shard: int, envelope: env.Envelope) -> None: ...

    def handle_envelope(self, e: env.Wire) -> None:
        """An envelope held for this session, handled now as if just received."""

    def worker_incarnation(self, shard: int) -> int | None: ...

    def hold(self, session: ClientSession, holding: bool) -> None:
        """`session` holds a packet for its turn (timed out by the acceptor)."""


class ClientSession:
    # Slotted: an acceptor holds one per connection (1.2 KB less each than a
    # __dict__ of these fields; tests/unit/frontend/test_memory.py).
    __slots__ = (
        "acl_rules",
        "awaiting",
        "before_connack",
        "before_connack_writes",
        "client_id",
        "closed_report",
        "closing",
        "confirmations",
        "conn_id",
        "connack_wait",
        "connect_envelope",
        "created",
        "decided",
        "decoder",
        "fence_seq",
        "held",
        "held_since",
        "host",
        "keepalive",
        "last_routed",
        "last_rx",
        "level",
        "link",
        "max_outgoing_packet",
        "pubacks",
        "publishes",
        "pubrels",
        "refusal",
        "shard",
        "state",
        "topic_aliases",
        "traffic",
        "unanswered",
        "username",
        "will_on_close",
        "worker_incarnation",
    )

    def __init__(self, conn_id: int, host: Host, link: Link, now: float) -> None:
        self.conn_id = conn_id
        self.host = host
        self.link = link
        self.decoder = StreamDecoder(max_packet_size=host.config.max_packet_size)
        self.state = NEW
        self.client_id = ""
        self.username: str | None = None
        self.acl_rules: ClientRules | None = None  # with an ACL file: set at CONNECT
        self.level = 4
        self.keepalive = 0
        self.shard = 0
        self.worker_incarnation: int | None = None
        self.created = self.last_rx = now
        # made when first used: most clients never send an alias or a
        # packet before their CONNACK (100-200 bytes less per connection)
        self.topic_aliases: TopicAliases | None = None
        self.max_outgoing_packet = 0  # v5 Maximum Packet Size of the client; 0: no limit
        self.will_on_close = True
        self.before_connack: list[env.SendPublishMany] | None = None
        # written after the CONNACK, should anything be written before it
        self.before_connack_writes = b""
        self.connack_wait = False  # CONNECT sent on, CONNACK not yet: nothing read
        self.connect_envelope: env.Connect | None = None  # to re-attach after a worker restart
        # inbound QoS 1/2 awaiting durability (its own from the first one on)
        self.confirmations = NO_CONFIRMATIONS
        self.publishes = 0  # numbers this connection's QoS 1/2 publishes (reply uid)
        # PUBACKs of the read being handled, not yet forwarded (see forward_pubacks)
        self.pubacks: list[int] | None = None
        # PUBRELs forwarded, awaiting their PUBCOMP (a dict: an empty set
        # costs 216 bytes per connection, an empty dict 64; a shared one 0)
        self.pubrels = _NO_PUBRELS
        # SUBSCRIBE/UNSUBSCRIBE awaiting their ack
        self.unanswered = _NO_UNANSWERED
        self.closing = False  # close() was called: nothing more is read or written
        # Order of what this connection sends (frontend/ordering.py):
        self.last_routed = 0  # number of its last ROUTE (host.fences.sent)
        self.fence_seq = 0  # the FENCE it waits for, or 0
        self.held: Any = None  # the packet that waits (nothing after it is read)
        self.held_since = 0.0
        self.closed_report: env.Closed | None = None  # CLOSED waiting for its fence
        self.refusal: PendingRefusal | None = None  # a bad password's answer, held
        # The auth hook's call this connection waits for (frontend/hook_calls.py),
        # and its answer for the packet that waited for it
        self.awaiting: PendingCall | None = None
        self.decided: tuple[Any, dict[str, int], list[int]] | None = None
        self.traffic = host.traffic  # the acceptor's, for $SYS

    # --- bytes in ---------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> bool:
        """Bytes from the client. True: every packet in them was handled and
        the session reads on (the caller applies its backpressure then, as
        `Link.check_backpressure`; returned rather than called back because
        this is once per read on the publish path)."""
        if self.state == CLOSED or self.closing:
            return False  # after DISCONNECT or any close, nothing more is acted on
        self.last_rx = now
        self.decoder.feed(data)
        # else it waits for the CONNACK, or for its turn (see read_packets)
        if not self.connack_wait and self.held is None:
            return self.read_packets()
        if self.connack_wait:
            self.link.pause_reading()  # more came before the CONNACK: no more is read
        return False

    def read_packets(self, waited: Any = None) -> bool:
        """Act on `waited` (a packet let go: it waits no more), then the
        packets decoded so far, in order, until a CONNECT: what follows it
        waits in the decoder, and the socket is not read once anything
        follows it (that read's bytes are the most kept), until the CONNACK
        is out (nothing after a CONNECT the server refuses is acted on
        [MQTT-3.1.4-5], and the CONNACK is the first packet the server sends
        [MQTT-3.2.0-1]); or until one would overtake what the connection
        sent before it (`must_wait`, frontend/ordering.py). True when all
        were handled."""
        decoder = self.decoder
        handled = publishes = 0  # for $SYS (frontend/traffic.py), added once per call
        try:
            packet = decoder.next_packet() if waited is None else waited
            while packet is not None:
                kind = type(packet)
                if (
                    packet is not waited
                    and (self.unanswered or kind is not Publish)  # the publish path
                    and self.must_wait(packet)
                ):
                    return False
                handled += 1
                if kind is Publish:
                    publishes += 1
                self.handle_packet(packet)
                if self.state != CONNECTED or self.closing:
                    if self.state == CONNECTING and not self.closing:
                        self.connack_wait = True
                        # Reading stops once something comes behind the
                        # CONNECT, now or in the next read (receive_data):
                        # a client that waits for its CONNACK, as nearly
                        # all do, costs no pause and resume of its socket
                        # (two epoll changes per connect).
                        if decoder.has_input:
                            self.link.pause_reading()
                    return False
                packet = decoder.next_packet()
        except ProtocolError as exc:
            self.fail(exc)
            return False
        except WaitsForHook:
            # The packet waits for the auth hook's answer, held (see `hold`);
            # counted when it is handled again.
            handled -= 1
            publishes -= type(packet) is Publish
            return False
        finally:
            if self.pubacks is not None:
                self.forward_pubacks()
            traffic = self.traffic
            traffic.packets_in += handled
            traffic.publishes_in += publishes
        return True

    def handle_packet(self, packet: Any) -> None:
        kind = type(packet)
        if kind is Publish:
            handle_publish(self, packet)
        elif self.state == NEW:
            if kind is not Connect:
                raise ProtocolError("[MQTT-3.1.0-1] the first packet must be CONNECT")
            handle_connect(self, packet)
        elif kind is Puback:
            # Gathered over the read (read_packets), forwarded as one
            # envelope before anything else this session sends its shard.
            pubacks = self.pubacks
            if pubacks is None:
                self.pubacks = [packet.packet_id]
            else:
                pubacks.append(packet.packet_id)
        elif kind is Pubrec:
            pubrec: env.PubrecInTuple = (
                _PUBREC_IN,
                self.conn_id,
                self.client_id,
                packet.packet_id,
                packet.reason_code,
            )
            self.forward(pubrec)
        else:
            self._handle_other_packet(kind, packet)

    def _handle_other_packet(self, kind: type, packet: Any) -> None:
        """The packets of a connected client that are not PUBLISH/PUBACK/PUBREC."""
        if kind is Pubrel:
            # Kept until its PUBCOMP: if the session's worker dies holding it,
            # it goes again to the restarted one (a client re-sends PUBREL only
            # when it reconnects, and this connection stays open).
            if self.pubrels is _NO_PUBRELS:
                self.pubrels = {}
            self.pubrels[packet.packet_id] = None
            pubrel: env.PubrelInTuple = (_PUBREL_IN, self.conn_id, self.client_id, packet.packet_id)
            self.forward(pubrel)
        elif kind is Pubcomp:
            pubcomp: env.PubcompInTuple = (
                _PUBCOMP_IN,
                self.conn_id,
                self.client_id,
                packet.packet_id,
            )
            self.forward(pubcomp)
        elif kind is Pingreq:
            self.write(PINGRESP_BYTES)
        elif kind is Subscribe:
            handle_subscribe(self, packet)
        elif kind is Unsubscribe:
            handle_unsubscribe(self, packet)
        elif kind is Disconnect:
            handle_disconnect(self, packet)
        elif kind is Connect:
            raise ProtocolError("[MQTT-3.1.0-2] a second CONNECT is a protocol violation")
        elif kind is Auth:
            # Only a client whose CONNECT named an Authentication Method may
            # send AUTH (5.0 section 3.15), and such a CONNECT is refused.
            raise ProtocolError("[MQTT-4.12.0-1] AUTH without an Authentication Method in CONNECT")
        else:
            raise ProtocolError(f"a client may not send {kind.__name__.upper()}")

    # --- envelopes out ----------------------------------------------------------------------
    def forward(self, envelope: env.Envelope) -> None:
        """To the session's shard (after the PUBACKs read before it)."""
        if self.pubacks is not None:
            self.forward_pubacks()
        self.host.to_worker(self.shard, envelope)

    def forward_pubacks(self) -> None:
        """The PUBACKs gathered since the last send to the shard, in order:
        one PUBACKS_IN (a subscriber acknowledges in bursts: one envelope,
        one session lookup and one refill of its window in the worker), or
        a PUBACK_IN for a lone one. (The per-acknowledgement sends are
        typed plain tuples: flockmq/envelopes.py.)"""
        pubacks = self.pubacks
        assert pubacks is not None
        self.pubacks = None
        if len(pubacks) == 1:
            puback: env.PubackInTuple = (_PUBACK_IN, self.conn_id, self.client_id, pubacks[0], 0)
            self.host.to_worker(self.shard, puback)
        else:
            many: env.PubacksInTuple = (_PUBACKS_IN, self.conn_id, self.client_id, pubacks)
            self.host.to_worker(self.shard, many)

    def forward_until_answered(
        self, packet_id: int, envelope: env.Subscribe | env.Unsubscribe
    ) -> None:
        """SUBSCRIBE/UNSUBSCRIBE: kept until SUBACK/UNSUBACK, so that if the
        session's worker dies holding it, it goes again to the restarted one
        (this connection stays open; the client would wait forever)."""
        if self.unanswered is _NO_UNANSWERED:
            self.unanswered = {}
        self.unanswered[packet_id] = envelope
        self.forward(envelope)

    def route(self, envelope: env.Route | env.RouteTuple) -> None:
        """A ROUTE to the router, numbered (the only cost of ordering on
        the publish path: frontend/ordering.py)."""
        host = self.host
        fences = host.fences
        fences.sent += 1
        self.last_routed = fences.sent
        host.to_router(envelope)

    def resend_after_reattach(self) -> None:
        """What the dead worker may have held for this connection, in order."""
        for envelope in self.unanswered.values():
            self.forward(envelope)
        for packet_id in sorted(self.pubrels):
            self.forward(env.PubrelIn(_PUBREL_IN, self.conn_id, self.client_id, packet_id))

    def on_worker_up(self, incarnation: int, restarted: bool) -> None:
        """WORKER_UP from this session's shard. A restarted worker reloaded its
        persistent sessions from the store: this one is attached again (the
        client sees a pause, and unacknowledged messages come again with
        DUP). A clean session lived only in the dead worker's memory: the
        connection is closed so its client reconnects and subscribes again."""
        host = self.host
        if self.state == CONNECTING and restarted and not waits_for_connect(self):
            # Its CONNECT may have died with the old worker (or be waiting
            # there for a takeover): the new one gets it again. A CONNACK
            # that comes twice is taken once.
            host.count("connects_resent_after_worker_restart")
            assert self.connect_envelope is not None  # set when CONNECTING
            self.forward(self.connect_envelope)
            self.resend_after_reattach()
        elif self.state == CONNECTED and self.worker_incarnation != incarnation:
            self.worker_incarnation = incarnation
            if not restarted:
                # The first WORKER_UP this acceptor hears came after the
                # worker answered this connection (the start of the broker
                # racing its first clients): the same worker, nothing to
                # attach again. Re-attaching resent its messages in flight,
                # as duplicates.
                return
            connect = self.connect_envelope
            if connect is not None and connect.session_expiry > 0:  # a persistent session
                host.count("reattached_after_worker_restart")
                # clean_start False resumes the stored session; its CONNACK is
                # not forwarded (the connection is already CONNECTED).
                self.forward(connect._replace(clean_start=False, assigned_id=False))
                self.resend_after_reattach()
            else:
                host.count("closed_for_worker_restart")
                # 0x89 Server busy: 0x88 Server unavailable is a CONNACK code,
                # not one a DISCONNECT may carry (3.14.2.1)
                self.close(0x89)

    # --- order of what this connection sends (frontend/ordering.py) ------------------------
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
            if not self.host.fences.needed(self.last_routed) or self.state == NEW:
                return False
            self._send_fence()
        else:
            return False
        self.hold(packet)
        return True

    def hold(self, packet: Any) -> None:
        """`packet` waits (for its turn, or for the auth hook): nothing after
        it is read until `release_held`."""
        self.held = packet
        self.held_since = self.host.now
        self.host.hold(self, True)
        self.link.pause_reading()

    def release_held(self) -> None:
        """What held this connection is answered: go on reading."""
        packet, self.held = self.held, None
        self.host.hold(self, False)
        if packet is None or self.state == CLOSED or self.closing:
            return
        if self.read_packets(packet):
            self.link.check_backpressure()
        if self.held is None:
            self.resume_reading()

    def on_answered(self, packet_id: int) -> None:
        """Its SUBACK/UNSUBACK went out: a publish that waited for it goes."""
        self.unanswered.pop(packet_id, None)
        if (
            self.held is not None
            and not self.unanswered
            and not self.fence_seq
            and self.awaiting is None  # (a packet waiting for the hook waits on)
        ):
            self.release_held()

    def _send_fence(self) -> None:
        """A FENCE on the pipe to the router, after this connection's ROUTEs."""
        host = self.host
        host.to_router(host.fences.fence(self, host.now))
        host.count("fences_sent")

    def on_fenced(self) -> None:
        """The router has handled every ROUTE this connection sent before its FENCE."""
        if self.closed_report is not None:
            report, self.closed_report = self.closed_report, None
            self.forward(report)
        elif self.held is not None and self.awaiting is None:
            self.release_held()

    def check_held(self, now: float, timeout: float) -> None:
        """A SUBSCRIBE/UNSUBSCRIBE never answered (a process died with it):
        the publish behind it goes, rather than the connection hanging."""
        if (
            self.held is not None
            and not self.fence_seq
            and self.awaiting is None  # the hook's calls are timed by their budget
            and now - self.held_since > timeout
        ):
            self.host.count("ordering_holds_timed_out")
            self.release_held()

    def report_closed(self, envelope: env.Closed) -> None:
        """CLOSED (a will may follow, or the session's end) after the ROUTEs
        this connection sent: a retained will must not be overwritten by an
        earlier publish."""
        if self.fence_seq or self.host.fences.needed(self.last_routed):
            self.closed_report = envelope
            if not self.fence_seq:
                self._send_fence()
            return
        self.forward(envelope)

    def resume_reading(self) -> None:
        """Read again, unless another reason to stop still holds."""
        if not (self.confirmations.full or self.connack_wait or self.closing) and self.held is None:
            self.link.resume_reading()

    def connection_lost(self) -> None:
        """The transport is gone: nothing more of this connection is acted on."""
        # a CONNECT refused, held for refusal, or waiting for the auth hook
        # never reached the worker
        was_registered = (
            self.state in (CONNECTING, CONNECTED)
            and self.refusal is None
            and not waits_for_connect(self)
        )
        self.awaiting = self.decided = None  # a late answer is dropped
        drop_pending_refusal(self)
        self.state = CLOSED
        unconfirmed = self.host.unconfirmed
        unconfirmed.sessions.discard(self)
        unconfirmed.size -= self.confirmations.size
        if self.confirmations is not NO_CONFIRMATIONS:
            self.confirmations.size = 0
        self.held = None
        self.host.hold(self, False)
        if was_registered:
            self.report_closed(
                env.Closed(Kind.CLOSED, self.conn_id, self.client_id, self.will_on_close, None)
            )

    # --- durable acknowledgement of inbound QoS 1/2 (frontend/confirmations.py) -----------
    def await_confirmation(
        self, packet_id: int, ack_kind: int, envelope: env.RouteTuple | env.Publish, size: int
    ) -> bool:
        """PUBACK/PUBREC go out only when the router said how many shards hold
        copies (ROUTED) and each confirmed them durable (STORED). False: a
        retransmission of a publish still being confirmed (nothing to send)."""
        confirmations = self.confirmations
        if confirmations is NO_CONFIRMATIONS:
            confirmations = self.confirmations = Confirmations()
        host = self.host
        if not confirmations.add(packet_id, ack_kind, envelope, host.now, size):
            return False
        unconfirmed = host.unconfirmed
        unconfirmed.sessions.add(self)
        unconfirmed.size += size
        config = host.config
        if not confirmations.full and (
            confirmations.size >= config.max_unconfirmed_bytes
            or unconfirmed.size >= config.max_acceptor_unconfirmed
        ):
            # Publishes come faster than they are confirmed durable (a slow
            # store, a restarting worker): stop reading this client until
            # they catch up, instead of holding what it sends.
            confirmations.full = True
            host.count("unconfirmed_full_pauses")
            self.link.pause_reading()
        return True

    def on_routed(self, packet_id: int, shards: int, attempt: int) -> None:
        pending = self.confirmations.on_routed(packet_id, shards, attempt)
        if pending is not None:
            self._acknowledge(packet_id, pending)

    def on_stored(self, packet_id: int, ok: bool, attempt: int) -> None:
        if not ok:
            if self.confirmations.current(packet_id, attempt) is None:
                return
            self.host.count("publishes_not_stored")
            log.error(
                "client %s: publish %d could not be stored: closing the connection "
                "so the client retransmits it",
                self.client_id,
                packet_id,
            )
            self.will_on_close = True
            self.close(ReasonCode.UNSPECIFIED_ERROR)
            return
        pending = self.confirmations.on_stored(packet_id, attempt)
        if pending is not None:
            self._acknowledge(packet_id, pending)

    def _acknowledge(self, packet_id: int, pending: PendingPublish) -> None:
        confirmations = self.confirmations
        unconfirmed = self.host.unconfirmed
        unconfirmed.size -= pending.size
        if not confirmations.pending:
            unconfirmed.sessions.discard(self)
        if confirmations.full and confirmations.size <= self.host.config.max_unconfirmed_bytes // 2:
            confirmations.full = False
            self.resume_reading()
        self.write(encode_ack(pending.ack_kind, packet_id, self.level))
        if pending.ack_kind == PUBREC:
            confirmed: env.Qos2ConfirmedTuple = (
                _QOS2_CONFIRMED,
                self.conn_id,
                self.client_id,
                packet_id,
            )
            self.forward(confirmed)

    def check_confirmations(self, now: float, timeout: float) -> None:
        """Publishes unconfirmed for `timeout`: sent again, or the connection
        closed after MAX_ATTEMPTS (confirmations.check_confirmations)."""
        check_confirmations(self, now, timeout)

    def retry_unconfirmed(self, now: float, why: str) -> None:
        """Send every unconfirmed publish again now, in arrival order."""
        retry_unconfirmed(self, now, why)

    # --- bytes out --------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.state != CLOSED and not self.closing and not self.too_large(data):
            if self.state == CONNECTING:
                # The first packet the server sends is CONNACK [MQTT-3.2.0-1]:
                # a PINGRESP (or refusal PUBACK) for what the client sent
                # right after CONNECT waits for it.
                self.before_connack_writes += data
                return
            self.link.send_bytes(data)

    def too_large(self, data: bytes) -> bool:
        """Over the client's Maximum Packet Size: not sent [MQTT-3.1.2-25], counted."""
        if self.max_outgoing_packet and len(data) > self.max_outgoing_packet:
            self.host.count("dropped_over_client_maximum_packet_size")
            return True
        return False

    def send_ack(self, kind: int, packet_id: int, rc: int) -> None:
        """PUBACK/PUBREC/PUBREL/PUBCOMP from the session's worker."""
        if kind == _PUBCOMP:
            self.pubrels.pop(packet_id, None)
        self.write(encode_ack(kind, packet_id, self.level, rc if self.level >= 5 else 0))

    def send_suback(self, packet_id: int, codes: list[int]) -> None:
        self.write(encode(Suback(packet_id, tuple(codes)), self.level))
        self.on_answered(packet_id)

    def send_unsuback(self, packet_id: int, codes: list[int]) -> None:
        reason_codes = tuple(codes) if self.level >= 5 else ()
        self.write(encode(Unsuback(packet_id, reason_codes), self.level))
        self.on_answered(packet_id)

    def on_hook_answer(self, call: PendingCall, codes: list[int]) -> None:
        """The auth hook answered `call` (or it failed: frontend/hook_calls.py)."""
        if self.awaiting is not call:
            return  # not what this connection waits for (any more)
        self.awaiting = None
        if self.state == CLOSED or self.closing:
            return
        if call.action == CONNECT_CALL:
            hook_answered_connect(self, codes[0])
            return
        if call.action == WILL_CALL:
            hook_answered_will(self, codes[0])
            return
        answers = dict(zip(call.topics, codes, strict=True))
        self.decided = (call.packet, {**call.known, **answers}, call.prior)
        self.release_held()

    def hold_until_connack(self, e: env.SendPublishMany) -> None:
        """A delivery that came before this connection's CONNACK (another
        path): handled again once the CONNACK is out."""
        if self.before_connack is None:
            self.before_connack = []
        self.before_connack.append(e)

    def on_connack(self, session_present: bool, rc: int, props: dict[str, Any] | None) -> None:
        """The CONNACK from the session's worker (connect.handle_connack)."""
        handle_connack(self, session_present, rc, props)

    # --- the end ----------------------------------------------------------------------------
    def close(self, rc: int | None = None) -> None:
        """Close the connection; for v5 with a reason, send DISCONNECT first.
        Nothing the client sent after this is acted on."""
        if self.closing:
            return
        if rc is not None and self.level >= 5 and self.state == CONNECTED:
            self._write_disconnect(rc)
        self.closing = True
        self.link.close_transport()

    def _write_disconnect(self, rc: int) -> None:
        data = encode(Disconnect(rc), 5)
        if not self.closing and not self.too_large(data):
            self.link.send_bytes(data)  # not even a DISCONNECT over the client's maximum

    def fail(self, exc: ProtocolError) -> None:
        """The one place a protocol error becomes its wire answer."""
        host = self.host
        host.count("protocol_errors")
        host.count(f"protocol_errors_{exc.reason_code.name.lower()}")
        host.client_log.log(
            logging.WARNING,
            "client %s (%s): %s [%s]",
            self.client_id or "-",
            self.link.peer(),
            exc,
            exc.reason_code.name,
        )
        if isinstance(exc, UnsupportedProtocolVersion) and self.state == NEW:
            # [MQTT-3.1.2-2] CONNACK 0x01 (or 0x84) then close
            self.level = exc.protocol_level if exc.protocol_level in (3, 4, 5) else 4
            refuse_connect(self, exc.reason_code, str(exc))
            self.close()
            return
        if self.state == NEW and exc.protocol_level == 5:
            # A bad v5 CONNECT: CONNACK with the reason, then close [MQTT-3.1.4-1].
            self.level = 5
            refuse_connect(self, exc.reason_code, str(exc))
        elif self.level >= 5 and self.state == CONNECTED:
            self._write_disconnect(exc.reason_code)
        self.will_on_close = True
        self.close()

    def check_timers(self, now: float, write_paused_at: float | None) -> None:
        """Connect, slow-consumer and keepalive timeouts (frontend/timeouts.py)."""
        check_timeouts(self, now, write_paused_at)
