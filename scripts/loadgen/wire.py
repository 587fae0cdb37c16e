"""Sans-IO MQTT wire code for the load client: the packets it sends, pre-encoded
where it matters, and a minimal stream parser for the packets it receives.

This is deliberately not the broker's codec: a load tester that shares the
broker's codec would share its bugs. It covers MQTT 3.1.1 (level 4) and 5.0
(level 5) for CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH and its QoS 1/2
acknowledgements, PINGREQ/PINGRESP and DISCONNECT. Invariants: `PacketReader`
returns exactly the packets in the bytes fed so far, in order, however the
stream was split; it never returns a partial packet.
"""

from __future__ import annotations

import struct

# Fixed-header packet types [MQTT-2.1.2].
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

MAX_REMAINING_LENGTH = 268_435_455  # four varint bytes [MQTT-2.2.3]

# Message payload header: publisher id, sequence number, send time in
# nanoseconds of CLOCK_MONOTONIC (time.monotonic_ns), which is one clock for
# every process on a Linux host, so latency across processes is valid.
PAYLOAD_HEADER = struct.Struct(">IIQ")
PAYLOAD_HEADER_SIZE = PAYLOAD_HEADER.size


class WireError(Exception):
    """The peer sent bytes that are not MQTT, or a packet this client cannot take."""


def encode_varint(value: int) -> bytes:
    """The variable byte integer of `value` [MQTT-1.5.5]."""
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_varint(len(body)) + body


def encode_connect(
    client_id: str,
    *,
    protocol: int = 4,
    clean: bool = True,
    keepalive: int = 60,
    session_expiry: int = 0,
    receive_maximum: int = 0,
    username: str | None = None,
    password: bytes | None = None,
) -> bytes:
    """CONNECT [MQTT-3.1]; at level 5 `session_expiry` and `receive_maximum`
    (0: left out) go in the properties. A password needs a username at level 4
    [MQTT-3.1.2-22]."""
    if password is not None and username is None and protocol == 4:
        raise ValueError("[MQTT-3.1.2-22] a password needs a username at level 4")
    flags = 0x02 if clean else 0x00
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = _utf8("MQTT") + bytes((protocol, flags)) + keepalive.to_bytes(2, "big")
    if protocol == 5:
        props = b""
        if session_expiry:
            props += b"\x11" + session_expiry.to_bytes(4, "big")
        if receive_maximum:
            props += b"\x21" + receive_maximum.to_bytes(2, "big")
        body += encode_varint(len(props)) + props
    body += _utf8(client_id)
    if username is not None:
        body += _utf8(username)
    if password is not None:
        body += len(password).to_bytes(2, "big") + password
    return _packet(CONNECT << 4, body)


def encode_subscribe(packet_id: int, topic_filter: str, qos: int, *, protocol: int = 4) -> bytes:
    """SUBSCRIBE with one filter [MQTT-3.8]; the reserved flags are 0b0010."""
    body = packet_id.to_bytes(2, "big")
    if protocol == 5:
        body += b"\x00"
    body += _utf8(topic_filter) + bytes((qos,))
    return _packet((SUBSCRIBE << 4) | 0x02, body)


def encode_ack(packet_type: int, packet_id: int) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP with reason Success, which at level 5
    may be left out when there are no properties [MQTT-3.4.2.1]. PUBREL's
    reserved flags are 0b0010 [MQTT-3.6.1-1]."""
    flags = 0x02 if packet_type == PUBREL else 0x00
    return bytes(((packet_type << 4) | flags, 2)) + packet_id.to_bytes(2, "big")


PINGREQ_BYTES = bytes((PINGREQ << 4, 0))
DISCONNECT_BYTES = bytes((DISCONNECT << 4, 0))


class PublishTemplate:
    """PUBLISH packets of one topic, QoS and payload size, pre-encoded: only
    the packet id and the payload header change from one message to the next."""

    __slots__ = ("_buffer", "_header_offset", "_pid_offset", "qos")

    def __init__(self, topic: str, qos: int, payload_size: int, *, protocol: int = 4) -> None:
        if payload_size < PAYLOAD_HEADER_SIZE:
            raise ValueError(f"payload must be at least {PAYLOAD_HEADER_SIZE} bytes")
        self.qos = qos
        variable = _utf8(topic)
        pid_at = len(variable)
        if qos:
            variable += b"\x00\x00"
        if protocol == 5:
            variable += b"\x00"  # no properties
        fixed = bytes(((PUBLISH << 4) | (qos << 1),)) + encode_varint(len(variable) + payload_size)
        self._pid_offset = len(fixed) + pid_at if qos else -1
        self._header_offset = len(fixed) + len(variable)
        self._buffer = bytearray(fixed + variable + bytes(payload_size))

    def encode(self, packet_id: int, publisher_id: int, seq: int, sent_ns: int) -> bytes:
        buf = self._buffer
        if self._pid_offset >= 0:
            buf[self._pid_offset] = packet_id >> 8
            buf[self._pid_offset + 1] = packet_id & 0xFF
        PAYLOAD_HEADER.pack_into(buf, self._header_offset, publisher_id, seq, sent_ns)
        return bytes(buf)


class PacketReader:
    """A stream parser: `feed(data)` returns the complete packets in the stream
    so far as (first byte, body) pairs and keeps the incomplete rest."""

    __slots__ = ("_buffer", "max_size")

    def __init__(self, max_size: int = MAX_REMAINING_LENGTH) -> None:
        self._buffer = b""
        self.max_size = max_size

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buffer + data if self._buffer else data
        packets: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            # Remaining length: up to four bytes, 7 bits each, low first [MQTT-2.2.3].
            length = 0
            shift = 0
            i = pos + 1
            while True:
                if i >= end:
                    self._buffer = buf[pos:]
                    return packets
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if not byte & 0x80:
                    break
                shift += 7
                if shift >= 28:
                    raise WireError("remaining length is longer than four bytes")
            if length > self.max_size:
                raise WireError(f"packet of {length} bytes is over the limit {self.max_size}")
            if end - i < length:
                break
            packets.append((buf[pos], buf[i : i + length]))
            pos = i + length
        self._buffer = buf[pos:]
        return packets

    @property
    def pending(self) -> int:
        """Bytes held back as the start of an incomplete packet."""
        return len(self._buffer)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A variable byte integer at `pos`: (value, position after it)."""
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated variable byte integer")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 28:
            raise WireError("variable byte integer is longer than four bytes")


# Property identifier -> wire size, or a negative kind: -1 varint, -2 two-byte
# length prefixed (string/binary), -3 string pair [MQTT-2.2.2.2].
_PROPERTY_SIZES = {
    0x01: 1, 0x02: 4, 0x03: -2, 0x08: -2, 0x09: -2, 0x0B: -1, 0x11: 4, 0x12: -2,
    0x13: 2, 0x15: -2, 0x16: -2, 0x17: 1, 0x18: 4, 0x19: 1, 0x1A: -2, 0x1C: -2,
    0x1F: -2, 0x21: 2, 0x22: 2, 0x23: 2, 0x24: 1, 0x25: 1, 0x26: -3, 0x27: 4,
    0x28: 1, 0x29: 1, 0x2A: 1,
}  # fmt: skip


def decode_properties(data: bytes, pos: int) -> tuple[dict[int, int | bytes], int]:
    """Level-5 properties at `pos`: ({identifier: value}, position after them).
    Integers are decoded; strings and binaries are left as raw bytes."""
    length, pos = decode_varint(data, pos)
    end = pos + length
    if end > len(data):
        raise WireError("properties run past the packet")
    props: dict[int, int | bytes] = {}
    while pos < end:
        ident = data[pos]
        pos += 1
        size = _PROPERTY_SIZES.get(ident)
        if size is None:
            raise WireError(f"unknown property 0x{ident:02x}")
        if size > 0:
            props[ident] = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        elif size == -1:
            props[ident], pos = decode_varint(data, pos)
        else:
            for _ in range(1 if size == -2 else 2):
                n = int.from_bytes(data[pos : pos + 2], "big")
                props[ident] = data[pos + 2 : pos + 2 + n]
                pos += 2 + n
    if pos != end:
        raise WireError("properties overrun their length")
    return props, end


def publish_payload_offset(first_byte: int, body: bytes, protocol: int) -> tuple[int, int]:
    """For a PUBLISH body: (packet id or 0, offset of the payload)."""
    pos = 2 + ((body[0] << 8) | body[1])
    packet_id = 0
    if first_byte & 0x06:
        packet_id = (body[pos] << 8) | body[pos + 1]
        pos += 2
    if protocol == 5:
        if body[pos] < 0x80:  # the usual case: a one-byte property length
            pos += 1 + body[pos]
        else:
            length, pos = decode_varint(body, pos)
            pos += length
    return packet_id, pos
