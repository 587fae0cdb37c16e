"""Framing and the stream decoder: bytes in, packets out (sans-IO, like h11's
`receive_data` / `next_event`).

`StreamDecoder.feed()` only buffers; `next_packet()` cuts one packet out of the
buffer using the fixed header (MQTT 5.0 section 2.1, 3.1.1 section 2.2),
checks the reserved flag bits and the maximum packet size, and hands the body to
body_parsers.py. Invariants:

- The maximum packet size is checked as soon as the fixed header is complete,
  before any of the body is buffered or joined, so announcing a huge packet
  costs nothing.
- A partial packet costs about its size in memory, however it was cut: bytes
  fed behind it go into one growing bytearray (`_tail`), not a list of small
  bytes objects (~40 bytes of overhead each, 15 MB for a 1 MiB packet fed in
  2-byte pieces).
- The tail is only joined to the parse buffer when the next packet can be
  complete, so feeding a large packet in small pieces stays linear. The one
  exception is the common case of a packet cut by a read boundary: when the
  next chunk alone completes it, that chunk is joined at once, one copy as
  before (and at most once per drain, so no feed pattern makes it quadratic).
- The parse buffer `_buf` is always immutable bytes: payloads are slices of it,
  and the topic cache is keyed by its slices.
- The only exceptions that leave this module are ProtocolError and its
  subclasses; after one, the decoder is failed and raises it again on every call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from flockmq.mqtt.errors import MalformedPacket, PacketTooLarge, ProtocolError

from .body_parsers import (
    PARSERS,
    PublishBuilder,
    parse_publish,
    topic_cache,
)
from .data_types import Reader, varint_is_minimal
from .packets import (
    EMPTY_PROPERTIES,
    Connect,
    Packet,
    PacketType,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
)

DEFAULT_MAX_PACKET_SIZE = 268_435_460  # 1 + 4 header bytes + the largest remaining length
_UNKNOWN = 1 << 62  # StreamDecoder._need before a drain has worked it out

_P = PacketType
# Fixed-header flags each packet type must carry ([MQTT-2.1.3-1], 3.1.1
# [MQTT-2.2.2-1]); PUBLISH flags are checked by its parser.
_REQUIRED_FLAGS = {ptype: 0 for ptype in range(1, 16)}
_REQUIRED_FLAGS.update({_P.PUBREL: 0b0010, _P.SUBSCRIBE: 0b0010, _P.UNSUBSCRIBE: 0b0010})
_QOS1_TYPES = frozenset({_P.PUBREL, _P.SUBSCRIBE, _P.UNSUBSCRIBE})


def _publish_flags(first_byte: int) -> tuple[int, bool, bool] | None:
    """(qos, retain, dup) for a valid PUBLISH first byte, else None."""
    qos = (first_byte >> 1) & 3
    dup = first_byte & 8 != 0
    if first_byte >> 4 != _P.PUBLISH or qos == 3 or (dup and not qos):
        return None
    return qos, first_byte & 1 != 0, dup


# Indexed by a packet's first byte: the decoder's fast path takes the
# PUBLISHes this table has flags for, everything else takes _decode_body.
_PUBLISH_FLAGS = tuple(_publish_flags(b) for b in range(256))
_NO_FAST_PATH: tuple[None, ...] = (None,) * 256
_ACKS: dict[int, type[Puback | Pubrec | Pubrel | Pubcomp]] = {
    0x40: Puback,
    0x50: Pubrec,
    0x62: Pubrel,
    0x70: Pubcomp,
}
_NO_ACKS: dict[int, type[Puback | Pubrec | Pubrel | Pubcomp]] = {}


class _NoPackets(deque[Any]):
    """The one empty queue every decoder with no packet waiting points at
    (StreamDecoder._ready): never appended to."""

    __slots__ = ()

    def append(self, item: Any) -> None:
        raise AssertionError("a decoder appended to the shared empty queue")


_NO_PACKETS: deque[Any] = _NoPackets()


class StreamDecoder:
    """Decodes a byte stream of MQTT packets of either direction.

    `protocol_level` is None until a CONNECT is decoded (server side), then
    that CONNECT's level; a client passes the level it connected with.
    """

    __slots__ = (
        "_buf",
        "_check_connect_minimal",
        "_error",
        "_max",
        "_need",
        "_pos",
        "_ready",
        "_tail",
        "protocol_level",
    )

    def __init__(
        self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE, protocol_level: int | None = None
    ) -> None:
        if protocol_level not in (None, 3, 4, 5):
            raise ValueError(f"unknown MQTT protocol level {protocol_level}")
        self.protocol_level = protocol_level
        self._max = max_packet_size
        self._buf = b""
        self._pos = 0
        self._tail = bytearray()  # fed behind _buf, not yet joined to it
        self._need = 2  # bytes needed from _pos before parsing can progress
        self._error: ProtocolError | None = None
        self._check_connect_minimal = False
        # Packets decoded, not yet taken: the shared empty _NO_PACKETS while
        # there are none (an empty deque is 600 bytes, per connection)
        self._ready: deque[Packet] = _NO_PACKETS

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet returned as packets."""
        return len(self._buf) - self._pos + len(self._tail)

    @property
    def has_input(self) -> bool:
        """Something fed is not yet taken: bytes, or packets decoded."""
        return bool(self._ready) or self.buffered > 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer `data` (copied if mutable); parsing waits for next_packet()."""
        if self._error is not None:
            raise self._error
        if not data:
            return
        left = len(self._buf) - self._pos
        if not left and not self._tail:
            self._buf = bytes(data)  # no copy for bytes: the fast path parses it in place
            self._pos = 0
        elif not self._tail and left + len(data) >= self._need:
            # A packet cut by a read boundary that this chunk completes: one
            # join now. Until the next drain says what is needed, later feeds
            # go to the tail.
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
            self._need = _UNKNOWN
        else:
            self._tail += data

    def __iter__(self) -> Iterator[Packet]:
        while True:
            ready = self._ready
            if not ready:
                self._drain()
                ready = self._ready
                if not ready:
                    self._ready = _NO_PACKETS
                    return
            yield ready.popleft()

    def next_packet(self) -> Packet | None:
        """The next complete packet, or None when more bytes are needed."""
        ready = self._ready
        if not ready:
            self._drain()
            ready = self._ready
            if not ready:
                self._ready = _NO_PACKETS
                return None
        return ready.popleft()

    def _drain(self) -> None:
        """Decode every complete packet buffered into _ready. An error after
        some packets is kept and raised once those have been taken."""
        if self._error is not None:
            raise self._error
        try:
            self._decode_complete_packets()
        except ProtocolError as exc:
            self._error = exc
            if not self._ready:
                raise

    # One flat loop on purpose: the header, the ack fast path and the PUBLISH
    # fast path are inlined, since a function call per packet would cost a
    # good part of what decoding a small PUBLISH costs (scripts/bench_codec.py).
    # Every slow path already leaves it (_long_header, _decode_body, parse_publish).
    def _decode_complete_packets(self) -> None:  # noqa: C901, PLR0912, PLR0915
        ready = self._ready
        if ready is _NO_PACKETS:
            ready = self._ready = deque()
        append: Callable[[Any], None] = ready.append
        buf = self._buf
        pos = self._pos
        n = len(buf)
        level = self.protocol_level
        max_size = self._max
        # Packets up to 129 bytes cannot break a limit of at least 129.
        check_small = max_size < 129
        cache = topic_cache
        fast = _NO_FAST_PATH if level is None else _PUBLISH_FLAGS
        acks = _NO_ACKS if level is None else _ACKS
        while True:
            if n - pos < 2:
                start, end = -1, pos + 2
            else:
                b0 = buf[pos]
                length = buf[pos + 1]
                if length < 128:
                    start = pos + 2
                    end = start + length
                    if check_small and end - pos > max_size:
                        raise self._too_large(end - pos)
                else:
                    start, end = self._long_header(buf, pos, n - pos)
                    if end - pos > max_size:
                        raise self._too_large(end - pos)
            if start < 0 or end > n:
                # Incomplete: join what was fed since, or wait for more.
                self._pos = pos
                self._need = end - pos
                if not self._tail or n - pos + len(self._tail) < self._need:
                    return
                buf = self._join()
                pos = 0
                n = len(buf)
                continue
            flags = fast[b0]
            if flags is None:
                # Ack fast path: PUBACK/PUBREC/PUBREL/PUBCOMP of just a
                # non-zero packet id (every level's common form).
                ack = acks.get(b0) if end - start == 2 else None
                if ack is not None and (buf[start] or buf[start + 1]):
                    append(ack((buf[start] << 8) | buf[start + 1]))
                    pos = end
                    continue
                append(self._decode_body(b0, buf, start, end))
                if level is None and self.protocol_level is not None:
                    level = self.protocol_level
                    fast = _PUBLISH_FLAGS
                    acks = _ACKS
                pos = end
                continue
            # PUBLISH fast path: valid flags, a cached (so already valid)
            # topic, a non-zero packet id, no properties. Anything else goes
            # to the parser that checks and reports every rule.
            qos, retain, dup = flags
            p = start + 2 + ((buf[start] << 8) | buf[start + 1]) if end - start > 1 else end + 1
            topic = cache.get(buf[start + 2 : p]) if p <= end else None
            if qos:
                packet_id = (buf[p] << 8) | buf[p + 1] if p + 2 <= end else 0
                p += 2
                if not packet_id:
                    topic = None
            else:
                packet_id = None
            if level == 5:
                if p >= end or buf[p]:
                    topic = None
                p += 1
            if topic is None:
                append(parse_publish(buf, b0 & 15, start, end, level or 4))
            else:
                packet = PublishBuilder()
                packet.topic = topic
                packet.payload = buf[p:end]
                packet.qos = qos
                packet.retain = retain
                packet.dup = dup
                packet.packet_id = packet_id
                packet.properties = EMPTY_PROPERTIES
                packet.__class__ = Publish  # type: ignore[assignment]
                append(packet)
            pos = end

    def _too_large(self, size: int) -> PacketTooLarge:
        return PacketTooLarge(
            f"[MQTT-3.2.2-15] packet of {size} bytes is over the maximum packet size {self._max}"
        )

    def _join(self) -> bytes:
        buf = self._buf[self._pos :] + self._tail  # bytes + bytearray: one copy, bytes
        self._tail = bytearray()  # a new one: clear() may keep the old allocation
        self._buf = buf
        self._pos = 0
        return buf

    def _long_header(self, buf: bytes, pos: int, avail: int) -> tuple[int, int]:
        """Parse a remaining length of 2-4 bytes: (body start, packet end), or
        (-1, bytes needed) when the header itself is incomplete."""
        value = 0
        for i in range(4):
            if i + 2 > avail:
                return -1, pos + i + 2
            byte = buf[pos + 1 + i]
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                self._check_minimal(value, i + 1)
                return pos + 2 + i, pos + 2 + i + value
        raise MalformedPacket("[MQTT-1.5.5] remaining length is longer than 4 bytes")

    def _check_minimal(self, value: int, length: int) -> None:
        # Only MQTT 5 requires the minimal encoding [MQTT-1.5.5-1]; 3.1.1
        # section 2.2.3 only bounds the length. Before CONNECT the level is
        # unknown, so the check waits for the CONNECT's own level.
        self._check_connect_minimal = False
        if varint_is_minimal(value, length):
            return
        if self.protocol_level == 5:
            raise MalformedPacket("[MQTT-1.5.5-1] remaining length is not minimally encoded")
        if self.protocol_level is None:
            self._check_connect_minimal = True

    def _decode_body(self, b0: int, buf: bytes, start: int, end: int) -> Packet:
        ptype = b0 >> 4
        flags = b0 & 15
        level = self.protocol_level
        if ptype == 0:
            raise MalformedPacket("[MQTT-2.1.2] packet type 0 is reserved")
        if level is None and ptype != _P.CONNECT:
            raise ProtocolError(
                f"[MQTT-3.1.0-1] {_P(ptype).name} before CONNECT: the protocol level is unknown"
            )
        if level == 3 and ptype in _QOS1_TYPES:
            flags &= 0b0111  # MQTT 3.1 clients may set DUP on these retries
        if ptype == _P.PUBLISH:
            assert level is not None
            return parse_publish(buf, flags, start, end, level)
        if flags != _REQUIRED_FLAGS[ptype]:
            raise MalformedPacket(
                f"[MQTT-2.1.3-1] reserved fixed header flags 0x{flags:x} in {_P(ptype).name}"
            )
        packet = PARSERS[ptype](Reader(buf, start, end), flags, level or 4)
        if isinstance(packet, Connect):
            if packet.protocol_level == 5 and self._check_connect_minimal:
                exc = MalformedPacket("[MQTT-1.5.5-1] remaining length is not minimally encoded")
                exc.protocol_level = 5  # a v5 CONNECT: told with a CONNACK [MQTT-3.1.4-1]
                raise exc
            if level is None:
                self.protocol_level = packet.protocol_level
        return packet


def decode(data: bytes, protocol_level: int | None = None) -> Packet:
    """Decode exactly one complete packet; missing or extra bytes raise."""
    decoder = StreamDecoder(protocol_level=protocol_level)
    decoder.feed(data)
    packet = decoder.next_packet()
    if packet is None:
        raise MalformedPacket(f"truncated packet: {len(data)} bytes is not a whole packet")
    if decoder.buffered or decoder.next_packet() is not None:
        raise MalformedPacket(f"{decoder.buffered} bytes left over after one packet")
    return packet
