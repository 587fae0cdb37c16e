"""MQTT 5 properties (MQTT 5.0 section 2.2.2): the table of every property
(identifier, snake_case name, wire type, the packets that may carry it, whether
it may repeat there) and the reading, checking and writing of property sets.

Decoded property sets are plain dicts in wire order, or EMPTY_PROPERTIES when
there are none. Properties that may repeat (user_property everywhere,
subscription_identifier in PUBLISH) decode to tuples; user_property is a tuple
of (name, value) tuples. Invariant: a decoded set only holds properties allowed
in its packet type, each at most once unless it may repeat, with values inside
the ranges the spec allows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from flockmq.mqtt.errors import MalformedPacket, ProtocolError
from flockmq.mqtt.topics import validate_topic_name

from .data_types import (
    MAX_VARINT,
    Reader,
    encode_binary,
    encode_utf8,
    encode_varint,
    pack_u16,
    pack_u32,
)
from .packets import EMPTY_PROPERTIES, PacketType, Properties

WILL = 0
"""Pseudo packet type for the Will Properties in a CONNECT payload (packet type
0 is reserved on the wire, so it cannot clash)."""


class WireType(Enum):
    BYTE = "byte"
    TWO_BYTE_INT = "two byte integer"
    FOUR_BYTE_INT = "four byte integer"
    VARINT = "variable byte integer"
    UTF8 = "UTF-8 encoded string"
    BINARY = "binary data"
    UTF8_PAIR = "UTF-8 string pair"


@dataclass(frozen=True, slots=True)
class PropertySpec:
    identifier: int
    name: str
    wire_type: WireType
    packet_types: frozenset[int]
    repeatable_in: frozenset[int] = frozenset()


_P = PacketType
_ALL = frozenset(
    {
        _P.CONNECT,
        _P.CONNACK,
        _P.PUBLISH,
        WILL,
        _P.PUBACK,
        _P.PUBREC,
        _P.PUBREL,
        _P.PUBCOMP,
        _P.SUBSCRIBE,
        _P.SUBACK,
        _P.UNSUBSCRIBE,
        _P.UNSUBACK,
        _P.DISCONNECT,
        _P.AUTH,
    }
)
_MESSAGE = frozenset({_P.PUBLISH, WILL})
_REASON_STRING = frozenset(
    {
        _P.CONNACK,
        _P.PUBACK,
        _P.PUBREC,
        _P.PUBREL,
        _P.PUBCOMP,
        _P.SUBACK,
        _P.UNSUBACK,
        _P.DISCONNECT,
        _P.AUTH,
    }
)
_W = WireType

PROPERTIES: tuple[PropertySpec, ...] = (
    PropertySpec(0x01, "payload_format_indicator", _W.BYTE, _MESSAGE),
    PropertySpec(0x02, "message_expiry_interval", _W.FOUR_BYTE_INT, _MESSAGE),
    PropertySpec(0x03, "content_type", _W.UTF8, _MESSAGE),
    PropertySpec(0x08, "response_topic", _W.UTF8, _MESSAGE),
    PropertySpec(0x09, "correlation_data", _W.BINARY, _MESSAGE),
    PropertySpec(
        0x0B,
        "subscription_identifier",
        _W.VARINT,
        frozenset({_P.PUBLISH, _P.SUBSCRIBE}),
        repeatable_in=frozenset({_P.PUBLISH}),
    ),
    PropertySpec(
        0x11,
        "session_expiry_interval",
        _W.FOUR_BYTE_INT,
        frozenset({_P.CONNECT, _P.CONNACK, _P.DISCONNECT}),
    ),
    PropertySpec(0x12, "assigned_client_identifier", _W.UTF8, frozenset({_P.CONNACK})),
    PropertySpec(0x13, "server_keep_alive", _W.TWO_BYTE_INT, frozenset({_P.CONNACK})),
    PropertySpec(
        0x15, "authentication_method", _W.UTF8, frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH})
    ),
    PropertySpec(
        0x16, "authentication_data", _W.BINARY, frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH})
    ),
    PropertySpec(0x17, "request_problem_information", _W.BYTE, frozenset({_P.CONNECT})),
    PropertySpec(0x18, "will_delay_interval", _W.FOUR_BYTE_INT, frozenset({WILL})),
    PropertySpec(0x19, "request_response_information", _W.BYTE, frozenset({_P.CONNECT})),
    PropertySpec(0x1A, "response_information", _W.UTF8, frozenset({_P.CONNACK})),
    PropertySpec(0x1C, "server_reference", _W.UTF8, frozenset({_P.CONNACK, _P.DISCONNECT})),
    PropertySpec(0x1F, "reason_string", _W.UTF8, _REASON_STRING),
    PropertySpec(0x21, "receive_maximum", _W.TWO_BYTE_INT, frozenset({_P.CONNECT, _P.CONNACK})),
    PropertySpec(0x22, "topic_alias_maximum", _W.TWO_BYTE_INT, frozenset({_P.CONNECT, _P.CONNACK})),
    PropertySpec(0x23, "topic_alias", _W.TWO_BYTE_INT, frozenset({_P.PUBLISH})),
    PropertySpec(0x24, "maximum_qos", _W.BYTE, frozenset({_P.CONNACK})),
    PropertySpec(0x25, "retain_available", _W.BYTE, frozenset({_P.CONNACK})),
    PropertySpec(0x26, "user_property", _W.UTF8_PAIR, _ALL, repeatable_in=_ALL),
    PropertySpec(
        0x27, "maximum_packet_size", _W.FOUR_BYTE_INT, frozenset({_P.CONNECT, _P.CONNACK})
    ),
    PropertySpec(0x28, "wildcard_subscription_available", _W.BYTE, frozenset({_P.CONNACK})),
    PropertySpec(0x29, "subscription_identifier_available", _W.BYTE, frozenset({_P.CONNACK})),
    PropertySpec(0x2A, "shared_subscription_available", _W.BYTE, frozenset({_P.CONNACK})),
)

BY_ID: dict[int, PropertySpec] = {p.identifier: p for p in PROPERTIES}
BY_NAME: dict[str, PropertySpec] = {p.name: p for p in PROPERTIES}

# Properties whose value is a boolean-like byte: anything but 0 or 1 is a
# Protocol Error (MQTT 5.0 section 3.1.2.11 and 3.2.2.3).
_ZERO_OR_ONE = frozenset(
    {
        "payload_format_indicator",
        "request_problem_information",
        "request_response_information",
        "maximum_qos",
        "retain_available",
        "wildcard_subscription_available",
        "subscription_identifier_available",
        "shared_subscription_available",
    }
)
# Properties where 0 is a Protocol Error (3.1.2.11.3, 3.1.2.11.4, 3.3.2.3.4, 3.8.2.1.2).
_NONZERO = frozenset(
    {"receive_maximum", "maximum_packet_size", "topic_alias", "subscription_identifier"}
)


def _read_pair(r: Reader) -> tuple[str, str]:
    return (r.utf8("user property name"), r.utf8("user property value"))


_READERS: dict[WireType, Callable[[Reader], Any]] = {
    _W.BYTE: lambda r: r.u8("property value"),
    _W.TWO_BYTE_INT: lambda r: r.u16("property value"),
    _W.FOUR_BYTE_INT: lambda r: r.u32("property value"),
    _W.VARINT: lambda r: r.varint("property value"),
    _W.UTF8: lambda r: r.utf8("property value"),
    _W.BINARY: lambda r: r.binary("property value"),
    _W.UTF8_PAIR: _read_pair,
}


def _check_value(spec: PropertySpec, value: Any) -> None:
    name = spec.name
    if name in _ZERO_OR_ONE and value > 1:
        raise ProtocolError(f"[MQTT-2.2.2] {name} is {value}, not 0 or 1")
    if name in _NONZERO and value == 0:
        raise ProtocolError(f"[MQTT-2.2.2] {name} is 0")
    if name == "response_topic":
        validate_topic_name(value)


def decode_properties(r: Reader, packet_type: int) -> Properties:
    """Read a Property Length and the properties it covers [MQTT-2.2.2]."""
    length = r.varint("property length")
    if not length:
        return EMPTY_PROPERTIES
    if r.pos + length > r.end:
        raise MalformedPacket("[MQTT-2.2.2] property length runs past the packet")
    sub = Reader(r.buf, r.pos, r.pos + length)
    r.pos = sub.end
    props: dict[str, Any] = {}
    while sub.pos < sub.end:
        ident = sub.u8("property identifier")
        spec = BY_ID.get(ident)
        if spec is None:
            raise MalformedPacket(f"[MQTT-2.2.2-2] unknown property identifier 0x{ident:02x}")
        if packet_type not in spec.packet_types:
            raise MalformedPacket(
                f"[MQTT-2.2.2-2] {spec.name} is not allowed in {_name(packet_type)}"
            )
        value = _READERS[spec.wire_type](sub)
        _check_value(spec, value)
        if packet_type in spec.repeatable_in:
            props.setdefault(spec.name, []).append(value)
        elif spec.name in props:
            raise ProtocolError(f"[MQTT-2.2.2] {spec.name} appears more than once")
        else:
            props[spec.name] = value
    for name, value in props.items():
        if isinstance(value, list):
            props[name] = tuple(value)
    if "authentication_data" in props and "authentication_method" not in props:
        raise ProtocolError(
            "[MQTT-3.1.2.11.10] authentication data without an authentication method"
        )
    return props


def _name(packet_type: int) -> str:
    return "Will Properties" if packet_type == WILL else PacketType(packet_type).name


def _write_varint(value: int) -> bytes:
    if not 0 < value <= MAX_VARINT:
        raise ValueError(f"subscription identifier {value} out of range")
    return encode_varint(value)


def _write_pair(value: tuple[str, str]) -> bytes:
    name, text = value
    return encode_utf8(name) + encode_utf8(text)


# The writers, as _READERS are the readers: one per wire type.
_WRITERS: dict[WireType, Callable[[Any], bytes]] = {
    _W.BYTE: lambda value: bytes((value,)),
    _W.TWO_BYTE_INT: pack_u16,
    _W.FOUR_BYTE_INT: pack_u32,
    _W.VARINT: _write_varint,
    _W.UTF8: encode_utf8,
    _W.BINARY: encode_binary,
    _W.UTF8_PAIR: _write_pair,
}


def _write_value(wire_type: WireType, value: Any) -> bytes:
    return _WRITERS[wire_type](value)


def encode_properties(props: Mapping[str, Any] | None, packet_type: int) -> bytes:
    """Property Length followed by the properties. Raises ValueError for a
    name the table does not know or a property the packet type cannot carry."""
    if not props:
        return b"\x00"
    parts: list[bytes] = []
    for name, value in props.items():
        spec = BY_NAME.get(name)
        if spec is None:
            raise ValueError(f"unknown MQTT 5 property {name!r}")
        if packet_type not in spec.packet_types:
            raise ValueError(f"{name} is not allowed in {_name(packet_type)}")
        ident = bytes((spec.identifier,))
        values: Iterable[Any] = (
            value if packet_type in spec.repeatable_in and not isinstance(value, int) else (value,)
        )
        for one in values:
            parts.append(ident + _write_value(spec.wire_type, one))
    body = b"".join(parts)
    return encode_varint(len(body)) + body
