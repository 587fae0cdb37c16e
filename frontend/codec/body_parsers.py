"""Parsing of each packet type's variable header and payload (MQTT 5.0 and
3.1.1 chapter 3), once the framing in decoder.py has cut out one packet's body.

Each parser takes a Reader over exactly the body, the fixed-header flags (already
checked against the reserved values) and the protocol level, checks every rule
that can be checked from the packet alone, and returns the packet. PUBLISH has
its own index-based parser because it is the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flockmq.mqtt.errors import MalformedPacket, ProtocolError, UnsupportedProtocolVersion
from flockmq.mqtt.topics import validate_topic_filter, validate_topic_name

from .allowed_reason_codes import check_reason_code
from .data_types import Reader, decode_utf8
from .packets import (
    EMPTY_PROPERTIES,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from .properties import WILL, decode_properties

_P = PacketType
_NAMES = {t.value: t.name for t in PacketType}
_PROTOCOLS = {("MQIsdp", 3), ("MQTT", 4), ("MQTT", 5)}
_PROTOCOL_NAMES = frozenset(name for name, _ in _PROTOCOLS)


class PublishBuilder:
    """An unfrozen twin of Publish with the same slots, for the decoder's hot
    path: it is filled with plain slot stores and then relabelled a Publish by
    `__class__` assignment, which CPython allows between classes with the same
    slot layout. That costs about 0.5us against 0.8us through the frozen
    class's slot descriptors, and the result is an ordinary frozen Publish."""

    __slots__ = ("topic", "payload", "qos", "retain", "dup", "packet_id", "properties")  # noqa: RUF023  (must match Publish)

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None
    properties: Properties


def _check_builder_layout() -> None:
    if PublishBuilder.__slots__ != Publish.__slots__:
        raise ImportError("PublishBuilder.__slots__ must equal Publish.__slots__")
    probe: Any = PublishBuilder()
    probe.__class__ = Publish  # raises TypeError if the layouts differ


_check_builder_layout()
# Raw topic bytes -> the topic, for topics already checked (well-formed UTF-8,
# no U+0000, non-empty, no wildcards): the decoder's fast path trusts it.
# Shared by all decoders (the value depends on the bytes only) and bounded.
topic_cache: dict[bytes, str] = {}
_TOPIC_CACHE_SIZE = 4096
_TOPIC_CACHE_MAX_LENGTH = 256  # bytes; longer topics are checked on every PUBLISH


def _publish_topic(buf: bytes, start: int, end: int) -> tuple[str, int]:
    """A PUBLISH's topic name (empty when a topic alias stands for it) and
    where the packet goes on after it. A valid name is cached by its bytes."""
    if end - start < 2:
        raise MalformedPacket("packet ends inside the PUBLISH topic name")
    pos = start + 2 + ((buf[start] << 8) | buf[start + 1])
    if pos > end:
        raise MalformedPacket("packet ends inside the PUBLISH topic name")
    raw_topic = buf[start + 2 : pos]
    topic = topic_cache.get(raw_topic)
    if topic is None:
        topic = decode_utf8(raw_topic, "topic name")
        if topic:
            validate_topic_name(topic)
            # Bounded in entries and, by leaving long topics out, in bytes
            # (at most 4096 x 256 bytes, as bytes and as str): a client
            # publishing to many distinct 64 KB topics costs nothing here.
            if len(raw_topic) <= _TOPIC_CACHE_MAX_LENGTH:
                if len(topic_cache) >= _TOPIC_CACHE_SIZE:
                    topic_cache.clear()  # crude but bounded; hot topics come back at once
                topic_cache[raw_topic] = topic
    return topic, pos


def parse_publish(buf: bytes, flags: int, start: int, end: int, level: int) -> Publish:
    """PUBLISH (section 3.3) from buf[start:end]."""
    qos = (flags >> 1) & 3
    if qos == 3:
        raise MalformedPacket("[MQTT-3.3.1-4] PUBLISH has QoS 3")
    dup = flags & 8 != 0
    if dup and not qos:
        raise ProtocolError("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH")
    topic, pos = _publish_topic(buf, start, end)
    packet_id = None
    if qos:
        if pos + 2 > end:
            raise MalformedPacket("packet ends inside the PUBLISH packet identifier")
        packet_id = (buf[pos] << 8) | buf[pos + 1]
        if not packet_id:
            raise ProtocolError("[MQTT-2.2.1-3] PUBLISH with QoS > 0 has packet identifier 0")
        pos += 2
    props = EMPTY_PROPERTIES
    if level == 5:
        if pos < end and not buf[pos]:
            pos += 1
        else:
            r = Reader(buf, pos, end)
            props = decode_properties(r, _P.PUBLISH)
            pos = r.pos
    if not topic and "topic_alias" not in props:
        raise ProtocolError("[MQTT-3.3.2-1] PUBLISH topic name is empty and has no topic alias")
    return Publish(topic, buf[pos:end], qos, flags & 1 != 0, dup, packet_id, props)


def _packet_id(r: Reader, packet_name: str) -> int:
    packet_id = r.u16("packet identifier")
    if not packet_id:
        raise ProtocolError(f"[MQTT-2.2.1-3] {packet_name} has packet identifier 0")
    return packet_id


def _properties(r: Reader, packet_type: int, level: int) -> Properties:
    return decode_properties(r, packet_type) if level == 5 else EMPTY_PROPERTIES


def parse_connect(r: Reader, flags: int, level: int) -> Connect:
    """CONNECT (section 3.1). The packet carries its own protocol level."""
    name = r.utf8("protocol name")
    if name not in _PROTOCOL_NAMES:
        # Not MQTT at all: the server may close without a CONNACK, and must not
        # go on under this specification [MQTT-3.1.2-1] (5.0 alike). CONNACK
        # 0x01 is for a known name with a level this server does not speak.
        raise ProtocolError(f"[MQTT-3.1.2-1] unknown protocol name {name!r}")
    level = r.u8("protocol level")
    if (name, level) not in _PROTOCOLS:
        raise UnsupportedProtocolVersion(
            f"[MQTT-3.1.2-2] unsupported protocol name {name!r} / level {level}",
            protocol_level=level if level in (3, 4, 5) else 4,
        )
    try:
        return _parse_connect_fields(r, level)
    except ProtocolError as exc:
        # The level is known from here on: a v5 server answers with CONNACK.
        exc.protocol_level = level
        raise


def _parse_connect_fields(r: Reader, level: int) -> Connect:
    cflags = r.u8("connect flags")
    if cflags & 0x01 and level > 3:
        # 3.1.1 and 5.0 reserve bit 0 [MQTT-3.1.2-3]; MQTT 3.1 leaves it
        # unused, so a 3.1 client that sets it is not at fault.
        raise MalformedPacket("[MQTT-3.1.2-3] reserved CONNECT flag is set")
    will_flag = cflags & 0x04
    will_qos = (cflags >> 3) & 3
    will_retain = cflags & 0x20 != 0
    if not will_flag and (will_qos or will_retain):
        # The spec names no code here, unlike for will QoS 3 ("a Malformed
        # Packet"): the packet parses, its data is not allowed, so by the
        # definitions of 5.0 section 1.2 it is a Protocol Error.
        raise ProtocolError(
            "[MQTT-3.1.2-11] [MQTT-3.1.2-13] will QoS or will retain set without the will flag"
        )
    if will_qos == 3:
        raise MalformedPacket("[MQTT-3.1.2-14] will QoS is 3")
    has_password = cflags & 0x40
    has_username = cflags & 0x80
    if level < 5 and has_password and not has_username:
        raise ProtocolError("[MQTT-3.1.2-22] password flag set without the user name flag")
    keepalive = r.u16("keep alive")
    props = _properties(r, _P.CONNECT, level)
    client_id = r.utf8("client identifier")
    will = None
    if will_flag:
        will_props = _properties(r, WILL, level)
        will_topic = r.utf8("will topic")
        validate_topic_name(will_topic)
        will = Will(will_topic, r.binary("will payload"), will_qos, will_retain, will_props)
    username = r.utf8("user name") if has_username else None
    password = None
    # MQTT 3.1 clients may set the password flag and send no password (as
    # mosquitto tolerates); every later level requires the field.
    if has_password and not (level == 3 and not r.remaining()):
        password = r.binary("password")
    r.expect_end("CONNECT")
    return Connect(client_id, level, cflags & 0x02 != 0, keepalive, username, password, will, props)


def parse_connack(r: Reader, flags: int, level: int) -> Connack:
    """CONNACK (section 3.2). In MQTT 3.1 the first byte is unused."""
    ack_flags = r.u8("connect acknowledge flags")
    if level == 3:
        ack_flags = 0
    elif ack_flags & 0xFE:
        raise MalformedPacket("[MQTT-3.2.2-1] reserved CONNACK flags are set")
    code = r.u8("connect reason code")
    check_reason_code(_P.CONNACK, code, level)
    if code and ack_flags:
        raise ProtocolError("[MQTT-3.2.2-6] session present set with a non-zero reason code")
    props = _properties(r, _P.CONNACK, level)
    r.expect_end("CONNACK")
    return Connack(ack_flags != 0, code, props)


def _parse_ack(r: Reader, level: int, packet_type: PacketType) -> tuple[int, int, Properties]:
    """PUBACK, PUBREC, PUBREL, PUBCOMP (sections 3.4-3.7): in MQTT 5 the reason
    code and the properties may each be left off from the end."""
    packet_id = _packet_id(r, _NAMES[packet_type])
    code = 0
    props = EMPTY_PROPERTIES
    if level == 5 and r.remaining():
        code = r.u8("reason code")
        check_reason_code(packet_type, code, level)
        if r.remaining():
            props = decode_properties(r, packet_type)
    r.expect_end(_NAMES[packet_type])
    return packet_id, code, props


def parse_puback(r: Reader, flags: int, level: int) -> Puback:
    return Puback(*_parse_ack(r, level, _P.PUBACK))


def parse_pubrec(r: Reader, flags: int, level: int) -> Pubrec:
    return Pubrec(*_parse_ack(r, level, _P.PUBREC))


def parse_pubrel(r: Reader, flags: int, level: int) -> Pubrel:
    return Pubrel(*_parse_ack(r, level, _P.PUBREL))


def parse_pubcomp(r: Reader, flags: int, level: int) -> Pubcomp:
    return Pubcomp(*_parse_ack(r, level, _P.PUBCOMP))


def _subscription(r: Reader, level: int) -> Subscription:
    topic_filter = r.utf8("topic filter")
    options = r.u8("subscription options")
    if level == 5:
        if options & 0xC0:
            raise MalformedPacket("[MQTT-3.8.3-5] reserved subscription option bits are set")
        if options & 3 == 3:
            raise ProtocolError("[MQTT-3.8.3] requested maximum QoS is 3")
        if options >> 4 == 3:
            raise ProtocolError("[MQTT-3.8.3] retain handling is 3")
    elif options & 0xFC or options == 3:
        raise MalformedPacket("[MQTT-3.8.3-4] reserved bits set or requested QoS 3")
    no_local = options & 0x04 != 0
    if validate_topic_filter(topic_filter, level) and no_local:
        raise ProtocolError("[MQTT-3.8.3-4] No Local set on a shared subscription")
    return Subscription(topic_filter, options & 3, no_local, options & 0x08 != 0, options >> 4)


def parse_subscribe(r: Reader, flags: int, level: int) -> Subscribe:
    """SUBSCRIBE (section 3.8)."""
    packet_id = _packet_id(r, "SUBSCRIBE")
    props = _properties(r, _P.SUBSCRIBE, level)
    subscriptions = []
    while r.remaining():
        subscriptions.append(_subscription(r, level))
    if not subscriptions:
        raise ProtocolError("[MQTT-3.8.3-3] SUBSCRIBE has no topic filter")
    return Subscribe(packet_id, tuple(subscriptions), props)


def _reason_codes(r: Reader, packet_type: PacketType, level: int) -> tuple[int, ...]:
    codes = tuple(r.rest())
    if not codes:
        raise ProtocolError(f"[MQTT-3.9.3] {packet_type.name} has no reason codes")
    for code in set(codes):
        check_reason_code(packet_type, code, level)
    return codes


def parse_suback(r: Reader, flags: int, level: int) -> Suback:
    """SUBACK (section 3.9)."""
    packet_id = _packet_id(r, "SUBACK")
    props = _properties(r, _P.SUBACK, level)
    return Suback(packet_id, _reason_codes(r, _P.SUBACK, level), props)


def parse_unsubscribe(r: Reader, flags: int, level: int) -> Unsubscribe:
    """UNSUBSCRIBE (section 3.10)."""
    packet_id = _packet_id(r, "UNSUBSCRIBE")
    props = _properties(r, _P.UNSUBSCRIBE, level)
    topic_filters = []
    while r.remaining():
        topic_filter = r.utf8("topic filter")
        validate_topic_filter(topic_filter, level)
        topic_filters.append(topic_filter)
    if not topic_filters:
        raise ProtocolError("[MQTT-3.10.3-2] UNSUBSCRIBE has no topic filter")
    return Unsubscribe(packet_id, tuple(topic_filters), props)


def parse_unsuback(r: Reader, flags: int, level: int) -> Unsuback:
    """UNSUBACK (section 3.11): only MQTT 5 has properties and reason codes."""
    packet_id = _packet_id(r, "UNSUBACK")
    if level < 5:
        r.expect_end("UNSUBACK")
        return Unsuback(packet_id)
    props = decode_properties(r, _P.UNSUBACK)
    return Unsuback(packet_id, _reason_codes(r, _P.UNSUBACK, level), props)


def parse_pingreq(r: Reader, flags: int, level: int) -> Pingreq:
    r.expect_end("PINGREQ")
    return Pingreq()


def parse_pingresp(r: Reader, flags: int, level: int) -> Pingresp:
    r.expect_end("PINGRESP")
    return Pingresp()


def _parse_reason_and_properties(
    r: Reader, level: int, packet_type: PacketType
) -> tuple[int, Properties]:
    """DISCONNECT and AUTH bodies: both fields may be left off (3.14.2.1, 3.15.2.1)."""
    code = 0
    props = EMPTY_PROPERTIES
    if r.remaining():
        code = r.u8("reason code")
        check_reason_code(packet_type, code, level)
        if r.remaining():
            props = decode_properties(r, packet_type)
    r.expect_end(_NAMES[packet_type])
    return code, props


def parse_disconnect(r: Reader, flags: int, level: int) -> Disconnect:
    """DISCONNECT (section 3.14): empty below MQTT 5."""
    if level < 5:
        r.expect_end("DISCONNECT")
        return Disconnect()
    return Disconnect(*_parse_reason_and_properties(r, level, _P.DISCONNECT))


def parse_auth(r: Reader, flags: int, level: int) -> Auth:
    """AUTH (section 3.15): packet type 15 is reserved below MQTT 5."""
    if level < 5:
        raise MalformedPacket("[MQTT-2.1.2] packet type 15 (AUTH) is reserved before MQTT 5")
    return Auth(*_parse_reason_and_properties(r, level, _P.AUTH))


BodyParser = Callable[[Reader, int, int], Packet]

PARSERS: dict[int, BodyParser] = {
    _P.CONNECT: parse_connect,
    _P.CONNACK: parse_connack,
    _P.PUBACK: parse_puback,
    _P.PUBREC: parse_pubrec,
    _P.PUBREL: parse_pubrel,
    _P.PUBCOMP: parse_pubcomp,
    _P.SUBSCRIBE: parse_subscribe,
    _P.SUBACK: parse_suback,
    _P.UNSUBSCRIBE: parse_unsubscribe,
    _P.UNSUBACK: parse_unsuback,
    _P.PINGREQ: parse_pingreq,
    _P.PINGRESP: parse_pingresp,
    _P.DISCONNECT: parse_disconnect,
    _P.AUTH: parse_auth,
}
