"""Hand-built MQTT bytes for the malformed-packet corpus.

Everything here writes bytes directly (not through flockmq's encoder), so a
case can carry what an encoder refuses: wrong flags, lengths that lie, bad
UTF-8, properties that do not belong. Builders take the body fields as bytes
and frame them; `props` are the MQTT 5 property blocks (section 2.2.2).
"""

from __future__ import annotations

from typing import TypedDict, Unpack

PROTOCOL_NAMES = {3: b"MQIsdp", 4: b"MQTT", 5: b"MQTT"}

# Fixed-header flags each packet type must carry (3.1.1 section 2.2.2, 5.0
# section 2.1.3); PUBLISH (3) carries DUP/QoS/RETAIN instead.
REQUIRED_FLAGS = {t: 0 for t in range(1, 16)}
REQUIRED_FLAGS.update({6: 2, 8: 2, 10: 2})


def vbi(value: int) -> bytes:
    """A Variable Byte Integer, minimally encoded (section 1.5.5)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def s(data: bytes | str) -> bytes:
    """A UTF-8 string or binary data field: two length bytes, then the bytes."""
    raw = data.encode() if isinstance(data, str) else data
    return u16(len(raw)) + raw


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + vbi(len(body)) + body


def props(*items: bytes) -> bytes:
    block = b"".join(items)
    return vbi(len(block)) + block


def prop(ident: int, value: bytes) -> bytes:
    return bytes((ident,)) + value


class ConnectFields(TypedDict, total=False):
    """CONNECT's fields besides the level and client id, each with a default:
    `flags` 0x02 (clean session), `keepalive` 30, `connect_props` an empty
    property block (MQTT 5 only), `will` none, `username` and `password` none
    (each is the field already encoded), `name` the level's protocol name,
    `protocol_level` the level, `first_byte` 0x10."""

    flags: int
    keepalive: int
    connect_props: bytes
    will: bytes
    username: bytes | None
    password: bytes | None
    name: bytes | None
    protocol_level: int | None
    first_byte: int


def connect(
    level: int, client_id: bytes | str = b"corpus", **fields: Unpack[ConnectFields]
) -> bytes:
    """CONNECT (section 3.1). `will` is the will fields already encoded (will
    properties for MQTT 5, topic, payload); set the will flags in `flags`."""
    name = fields.get("name")
    protocol_level = fields.get("protocol_level")
    body = s(PROTOCOL_NAMES[level] if name is None else name)
    body += bytes((level if protocol_level is None else protocol_level, fields.get("flags", 0x02)))
    body += u16(fields.get("keepalive", 30))
    if level == 5:
        body += fields.get("connect_props", b"\x00")
    body += s(client_id) + fields.get("will", b"")
    body += fields.get("username") or b""
    body += fields.get("password") or b""
    return packet(fields.get("first_byte", 0x10), body)


def will_fields(
    level: int, topic: bytes | str, payload: bytes = b"w", wprops: bytes = b"\x00"
) -> bytes:
    return (wprops if level == 5 else b"") + s(topic) + s(payload)


def publish(
    level: int,
    topic: bytes | str,
    *,
    qos: int = 0,
    packet_id: int | None = None,
    pprops: bytes = b"\x00",
    payload: bytes = b"payload",
    flags: int | None = None,
) -> bytes:
    """PUBLISH (section 3.3); `flags` overrides DUP/QoS/RETAIN."""
    body = s(topic)
    if qos:
        body += u16(1 if packet_id is None else packet_id)
    if level == 5:
        body += pprops
    return packet(0x30 | (qos << 1 if flags is None else flags), body + payload)


def ack(ptype: int, packet_id: int, tail: bytes = b"", flags: int | None = None) -> bytes:
    """PUBACK/PUBREC/PUBREL/PUBCOMP: packet id, then (MQTT 5) reason code and properties."""
    return packet(
        ptype << 4 | (REQUIRED_FLAGS[ptype] if flags is None else flags), u16(packet_id) + tail
    )


def subscribe(
    level: int,
    filters: list[tuple[bytes | str, int]],
    *,
    packet_id: int = 1,
    sprops: bytes = b"\x00",
    flags: int = 2,
) -> bytes:
    body = u16(packet_id) + (sprops if level == 5 else b"")
    body += b"".join(s(f) + bytes((opts,)) for f, opts in filters)
    return packet(0x80 | flags, body)


def unsubscribe(
    level: int,
    filters: list[bytes | str],
    *,
    packet_id: int = 1,
    uprops: bytes = b"\x00",
    flags: int = 2,
) -> bytes:
    body = u16(packet_id) + (uprops if level == 5 else b"")
    body += b"".join(s(f) for f in filters)
    return packet(0xA0 | flags, body)


PINGREQ = b"\xc0\x00"


def disconnect(level: int, tail: bytes = b"") -> bytes:
    return packet(0xE0, tail)


def auth(tail: bytes = b"") -> bytes:
    return packet(0xF0, tail)


def valid_body(ptype: int, level: int) -> bytes:
    """A valid body for each packet type at `level` (server-only types too),
    so a case can change one thing only (its flags, say)."""
    v5 = level == 5
    bodies = {
        1: connect(level, b"again")[2:],
        2: b"\x00\x00" + (b"\x00" if v5 else b""),
        3: publish(level, "a/b")[2:],
        4: u16(7),
        5: u16(7),
        6: u16(7),
        7: u16(7),
        8: subscribe(level, [("a/b", 0)])[2:],
        9: u16(1) + (b"\x00" if v5 else b"") + b"\x00",
        10: unsubscribe(level, ["a/b"])[2:],
        11: u16(1) + (b"\x00\x00" if v5 else b""),
    }
    return bodies.get(ptype, b"")  # PINGREQ, PINGRESP, DISCONNECT, AUTH, reserved 0
