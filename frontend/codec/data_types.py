"""MQTT data representation (MQTT 5.0 section 1.5, 3.1.1 section 1.5): reading
and writing integers, Variable Byte Integers, UTF-8 strings and binary data.

`Reader` reads from one packet's bytes between `pos` and `end` and never past
`end`: anything that would run past it, and any ill-formed value, raises
MalformedPacket. No other exception (IndexError, struct.error,
UnicodeDecodeError) escapes from here.
"""

from __future__ import annotations

import struct

from flockmq.mqtt.errors import MalformedPacket

U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
pack_u16 = U16.pack
pack_u32 = U32.pack

MAX_VARINT = 268_435_455  # 0xFF 0xFF 0xFF 0x7F, the largest 4-byte Variable Byte Integer

_VARINT_LIMITS = (128, 16_384, 2_097_152)  # smallest value needing 2, 3, 4 bytes


def decode_utf8(raw: bytes, what: str) -> str:
    """Strictly decode UTF-8 character data; surrogates cannot survive strict
    decoding, so [MQTT-1.5.4-1] is fully checked here, and U+0000 by hand."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket(f"[MQTT-1.5.4-1] {what} is not well-formed UTF-8") from None
    if "\x00" in text:
        raise MalformedPacket(f"[MQTT-1.5.4-2] {what} contains U+0000")
    return text


def varint_is_minimal(value: int, length: int) -> bool:
    """True when `value` needs all `length` bytes it was written with."""
    return length == 1 or value >= _VARINT_LIMITS[length - 2]


def encode_varint(value: int) -> bytes:
    if value < 128:
        if value < 0:
            raise ValueError(f"Variable Byte Integer {value} is negative")
        return bytes((value,))
    if value > MAX_VARINT:
        raise ValueError(f"Variable Byte Integer {value} is over {MAX_VARINT}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"UTF-8 string of {len(raw)} bytes is over 65535")
    return pack_u16(len(raw)) + raw


def encode_binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"binary data of {len(data)} bytes is over 65535")
    return pack_u16(len(data)) + data


class Reader:
    """A cursor over buf[pos:end] that raises MalformedPacket instead of
    reading past `end`. `what` arguments name the field for error messages."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def remaining(self) -> int:
        return self.end - self.pos

    def _take(self, n: int, what: str) -> int:
        pos = self.pos
        if pos + n > self.end:
            raise MalformedPacket(f"packet ends inside {what}")
        self.pos = pos + n
        return pos

    def u8(self, what: str) -> int:
        return self.buf[self._take(1, what)]

    def u16(self, what: str) -> int:
        pos = self._take(2, what)
        buf = self.buf
        return (buf[pos] << 8) | buf[pos + 1]

    def u32(self, what: str) -> int:
        return int(U32.unpack_from(self.buf, self._take(4, what))[0])

    def varint(self, what: str) -> int:
        """A Variable Byte Integer of at most 4 bytes, minimally encoded
        [MQTT-1.5.5-1] (only MQTT 5 has Variable Byte Integers in the body)."""
        value = 0
        for i in range(4):
            byte = self.u8(what)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if not varint_is_minimal(value, i + 1):
                    raise MalformedPacket(f"[MQTT-1.5.5-1] {what} is not minimally encoded")
                return value
        raise MalformedPacket(f"[MQTT-1.5.5] {what} is longer than 4 bytes")

    def binary(self, what: str) -> bytes:
        n = self.u16(what)
        pos = self._take(n, what)
        return self.buf[pos : pos + n]

    def utf8(self, what: str) -> str:
        return decode_utf8(self.binary(what), what)

    def rest(self) -> bytes:
        pos = self.pos
        self.pos = self.end
        return self.buf[pos : self.end]

    def expect_end(self, packet_name: str) -> None:
        if self.pos != self.end:
            raise MalformedPacket(
                f"[MQTT-2.1.4] {self.end - self.pos} bytes left over at the end of {packet_name}"
            )
