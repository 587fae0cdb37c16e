"""Encoding packets to bytes (sans-IO): `encode(packet, level)` for every packet
type, and allocation-light fast paths for the acceptor's hot path:
`encode_publish` (no Publish object needed) and `encode_ack`.

Below level 5, fields with no wire form are not written (reason codes and
properties of acks, DISCONNECT, UNSUBACK); SUBACK reason codes become the
3.1.1 return codes (any v5 failure code >= 0x80 is written as 0x80); CONNACK's
reason code is written as given (callers pass the 3.1.1 return code).
Invariant: what `encode` writes for a packet valid at a level, `decode` reads
back as an equal packet. Values that cannot be written (a QoS > 0 PUBLISH
without a packet id, a 70 kB string, AUTH below level 5) raise ValueError:
they are the caller's bug, not the peer's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .data_types import encode_binary, encode_utf8, encode_varint, pack_u16
from .packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from .properties import WILL, encode_properties

_P = PacketType
_PROTOCOL_NAMES = {3: b"\x00\x06MQIsdp", 4: b"\x00\x04MQTT", 5: b"\x00\x04MQTT"}
_ACK_FIRST_BYTE: dict[int, int] = {
    _P.PUBACK: 0x40,
    _P.PUBREC: 0x50,
    _P.PUBREL: 0x62,
    _P.PUBCOMP: 0x70,
}
_EMPTY_V5_PROPERTIES = b"\x00"


def _frame(first_byte: int, body: bytes) -> bytes:
    n = len(body)
    if n < 128:
        return bytes((first_byte, n)) + body
    return bytes((first_byte,)) + encode_varint(n) + body


def encode_publish(
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    properties: Mapping[str, Any] | None,
    protocol_level: int,
) -> bytes:
    """A PUBLISH from its fields, without building a Publish. The topic is
    written as given: checking it is the caller's job."""
    raw_topic = topic.encode()
    n = len(raw_topic)
    if n > 0xFFFF:
        raise ValueError(f"topic of {n} bytes is over 65535")
    if qos:
        if qos not in (1, 2):
            raise ValueError(f"QoS {qos} is not 0, 1 or 2")
        if not packet_id or not 0 < packet_id <= 0xFFFF:
            raise ValueError(f"QoS {qos} PUBLISH needs a packet id in 1..65535, not {packet_id}")
        head = pack_u16(n) + raw_topic + pack_u16(packet_id)
    else:
        head = pack_u16(n) + raw_topic
    if protocol_level == 5:
        head += encode_properties(properties, _P.PUBLISH) if properties else b"\x00"
    first_byte = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    n = len(head) + len(payload)
    if n < 128:
        return bytes((first_byte, n)) + head + payload
    return bytes((first_byte,)) + encode_varint(n) + head + payload


def encode_ack(
    packet_type: int, packet_id: int, protocol_level: int, reason_code: int = 0
) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP without properties. The reason code
    is only written at level 5, and left off when it is 0 (section 3.4.2.1)."""
    first_byte = _ACK_FIRST_BYTE[packet_type]
    if not 0 < packet_id <= 0xFFFF:
        raise ValueError(f"packet id {packet_id} is not in 1..65535")
    if reason_code and protocol_level == 5:
        return bytes((first_byte, 3, packet_id >> 8, packet_id & 0xFF, reason_code))
    return bytes((first_byte, 2, packet_id >> 8, packet_id & 0xFF))


def _encode_connect(p: Connect, level: int) -> bytes:
    if p.protocol_level != level:
        raise ValueError(f"Connect.protocol_level {p.protocol_level} != protocol_level {level}")
    if p.password is not None and p.username is None and level < 5:
        raise ValueError("[MQTT-3.1.2-22] a password needs a user name below MQTT 5")
    flags = 0x02 if p.clean_start else 0
    parts = [b""]
    if level == 5:
        parts.append(encode_properties(p.properties, _P.CONNECT))
    parts.append(encode_utf8(p.client_id))
    will = p.will
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        if level == 5:
            parts.append(encode_properties(will.properties, WILL))
        parts.append(encode_utf8(will.topic))
        parts.append(encode_binary(will.payload))
    if p.username is not None:
        flags |= 0x80
        parts.append(encode_utf8(p.username))
    if p.password is not None:
        flags |= 0x40
        parts.append(encode_binary(p.password))
    parts[0] = _PROTOCOL_NAMES[level] + bytes((level, flags)) + pack_u16(p.keepalive)
    return _frame(0x10, b"".join(parts))


def _encode_connack(p: Connack, level: int) -> bytes:
    flags = 1 if p.session_present and level > 3 else 0
    body = bytes((flags, p.reason_code))
    if level == 5:
        body += encode_properties(p.properties, _P.CONNACK)
    return _frame(0x20, body)


def _encode_publish(p: Publish, level: int) -> bytes:
    return encode_publish(
        p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id, p.properties, level
    )


def _encode_ack(p: Puback | Pubrec | Pubrel | Pubcomp, level: int) -> bytes:
    if level < 5 or not p.properties:
        return encode_ack(p.packet_type, p.packet_id, level, p.reason_code)
    body = pack_u16(p.packet_id) + bytes((p.reason_code,))
    body += encode_properties(p.properties, p.packet_type)
    return _frame(_ACK_FIRST_BYTE[p.packet_type], body)


def _encode_subscribe(p: Subscribe, level: int) -> bytes:
    parts = [pack_u16(p.packet_id)]
    if level == 5:
        parts.append(encode_properties(p.properties, _P.SUBSCRIBE))
    for s in p.subscriptions:
        options = s.qos
        if level == 5:
            options |= (
                (4 if s.no_local else 0)
                | (8 if s.retain_as_published else 0)
                | (s.retain_handling << 4)
            )
        parts.append(encode_utf8(s.topic_filter) + bytes((options,)))
    return _frame(0x82, b"".join(parts))


def _encode_suback(p: Suback, level: int) -> bytes:
    body = pack_u16(p.packet_id)
    if level == 5:
        codes = bytes(p.reason_codes)
        body += encode_properties(p.properties, _P.SUBACK)
    else:
        codes = bytes(0x80 if code >= 0x80 else code for code in p.reason_codes)
    return _frame(0x90, body + codes)


def _encode_unsubscribe(p: Unsubscribe, level: int) -> bytes:
    parts = [pack_u16(p.packet_id)]
    if level == 5:
        parts.append(encode_properties(p.properties, _P.UNSUBSCRIBE))
    parts.extend(encode_utf8(topic_filter) for topic_filter in p.topic_filters)
    return _frame(0xA2, b"".join(parts))


def _encode_unsuback(p: Unsuback, level: int) -> bytes:
    body = pack_u16(p.packet_id)
    if level == 5:
        body += encode_properties(p.properties, _P.UNSUBACK) + bytes(p.reason_codes)
    return _frame(0xB0, body)


def _encode_pingreq(p: Pingreq, level: int) -> bytes:
    return b"\xc0\x00"


def _encode_pingresp(p: Pingresp, level: int) -> bytes:
    return b"\xd0\x00"


def _encode_disconnect(p: Disconnect, level: int) -> bytes:
    if level < 5 or (not p.reason_code and not p.properties):
        return b"\xe0\x00"
    body = bytes((p.reason_code,))
    if p.properties:
        body += encode_properties(p.properties, _P.DISCONNECT)
    return _frame(0xE0, body)


def _encode_auth(p: Auth, level: int) -> bytes:
    if level < 5:
        raise ValueError("AUTH has no wire form below MQTT 5")
    if not p.reason_code and not p.properties:
        return b"\xf0\x00"
    return _frame(0xF0, bytes((p.reason_code,)) + encode_properties(p.properties, _P.AUTH))


_ENCODERS: dict[type, Callable[[Any, int], bytes]] = {
    Connect: _encode_connect,
    Connack: _encode_connack,
    Publish: _encode_publish,
    Puback: _encode_ack,
    Pubrec: _encode_ack,
    Pubrel: _encode_ack,
    Pubcomp: _encode_ack,
    Subscribe: _encode_subscribe,
    Suback: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    Unsuback: _encode_unsuback,
    Pingreq: _encode_pingreq,
    Pingresp: _encode_pingresp,
    Disconnect: _encode_disconnect,
    Auth: _encode_auth,
}


def encode(packet: Packet, protocol_level: int) -> bytes:
    """The bytes of `packet` as written at `protocol_level` (3, 4 or 5)."""
    if protocol_level not in (3, 4, 5):
        raise ValueError(f"unknown MQTT protocol level {protocol_level}")
    return _ENCODERS[type(packet)](packet, protocol_level)
