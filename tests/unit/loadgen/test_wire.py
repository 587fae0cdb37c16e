"""The load client's packet parser on split and merged byte streams, and the
packets it encodes, checked against bytes written out from the spec."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loadgen import wire


def packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + wire.encode_varint(len(body)) + body


STREAM_PACKETS = [
    (0x20, b"\x00\x00"),  # CONNACK
    (0x90, b"\x00\x01\x01"),  # SUBACK
    (0x40, b"\x00\x07"),  # PUBACK
    (0xD0, b""),  # PINGRESP
    (0x32, b"\x00\x03a/b\x00\x09" + bytes(200)),  # PUBLISH QoS 1, 2-byte length
    (0x30, b"\x00\x01t" + bytes(20_000)),  # PUBLISH QoS 0, 3-byte length
    (0x62, b"\x00\x09"),  # PUBREL
]
STREAM = b"".join(packet(f, b) for f, b in STREAM_PACKETS)


def feed_in_chunks(chunks: list[bytes]) -> list[tuple[int, bytes]]:
    reader = wire.PacketReader()
    out: list[tuple[int, bytes]] = []
    for chunk in chunks:
        out.extend(reader.feed(chunk))
    assert reader.pending == 0
    return out


def test_whole_stream_gives_every_packet() -> None:
    assert feed_in_chunks([STREAM]) == STREAM_PACKETS


def test_one_byte_at_a_time_gives_every_packet() -> None:
    chunks = [STREAM[i : i + 1] for i in range(len(STREAM))]
    assert feed_in_chunks(chunks) == STREAM_PACKETS


def test_split_inside_the_remaining_length() -> None:
    data = packet(0x30, b"\x00\x01t" + bytes(20_000))
    # byte 0 is the header, bytes 1-3 the varint: split between varint bytes
    for cut in (1, 2, 3):
        reader = wire.PacketReader()
        assert reader.feed(data[:cut]) == []
        assert reader.pending == cut
        assert reader.feed(data[cut:]) == [(0x30, data[4:])]


@given(st.lists(st.integers(1, len(STREAM) - 1), max_size=30))
def test_any_split_gives_the_same_packets(cuts: list[int]) -> None:
    points = [0, *sorted(set(cuts)), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert feed_in_chunks(chunks) == STREAM_PACKETS


def test_incomplete_tail_is_kept() -> None:
    reader = wire.PacketReader()
    assert reader.feed(STREAM[:-1]) == STREAM_PACKETS[:-1]
    assert reader.pending == 3
    assert reader.feed(STREAM[-1:]) == STREAM_PACKETS[-1:]


def test_five_byte_remaining_length_is_an_error() -> None:
    with pytest.raises(wire.WireError):
        wire.PacketReader().feed(b"\x30\xff\xff\xff\xff\x01")


def test_oversized_packet_is_an_error() -> None:
    with pytest.raises(wire.WireError):
        wire.PacketReader(max_size=10).feed(b"\x30\x0b")


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_varint_matches_the_spec_table(value: int, encoded: bytes) -> None:
    # the examples of [MQTT-1.5.5] table 1-1
    assert wire.encode_varint(value) == encoded
    assert wire.decode_varint(encoded, 0) == (value, len(encoded))


def test_connect_311_golden_bytes() -> None:
    got = wire.encode_connect("c1", protocol=4, clean=True, keepalive=60)
    assert got == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1"


def test_connect_5_carries_session_expiry() -> None:
    got = wire.encode_connect("c1", protocol=5, clean=False, keepalive=10, session_expiry=300)
    assert got == b"\x10\x14\x00\x04MQTT\x05\x00\x00\x0a\x05\x11\x00\x00\x01\x2c\x00\x02c1"


def test_connect_with_username_and_password() -> None:
    # flags 0xC2: username, password, clean session [MQTT-3.1.2.8, 3.1.2.9]
    got = wire.encode_connect("c1", keepalive=60, username="al", password=b"pw")
    assert got == b"\x10\x16\x00\x04MQTT\x04\xc2\x00\x3c\x00\x02c1\x00\x02al\x00\x02pw"


def test_connect_4_refuses_a_password_without_a_username() -> None:
    with pytest.raises(ValueError, match=r"MQTT-3\.1\.2-22"):
        wire.encode_connect("c1", password=b"pw")


def test_subscribe_golden_bytes() -> None:
    assert wire.encode_subscribe(1, "a/+", 1) == b"\x82\x08\x00\x01\x00\x03a/+\x01"
    assert wire.encode_subscribe(1, "a/+", 2, protocol=5) == b"\x82\x09\x00\x01\x00\x00\x03a/+\x02"


def test_pubrel_has_its_reserved_flags() -> None:
    assert wire.encode_ack(wire.PUBREL, 0x0102) == b"\x62\x02\x01\x02"
    assert wire.encode_ack(wire.PUBACK, 5) == b"\x40\x02\x00\x05"


@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_template_round_trips(protocol: int, qos: int) -> None:
    template = wire.PublishTemplate("t/1", qos, 64, protocol=protocol)
    data = template.encode(513, 3, 77, 123_456_789)
    ((first, body),) = wire.PacketReader().feed(data)
    assert first >> 4 == wire.PUBLISH
    assert (first >> 1) & 3 == qos
    pid, offset = wire.publish_payload_offset(first, body, protocol)
    assert pid == (513 if qos else 0)
    assert len(body) - offset == 64
    assert wire.PAYLOAD_HEADER.unpack_from(body, offset) == (3, 77, 123_456_789)
    # the template is reused: a second message must not carry the first's fields
    data2 = template.encode(514, 3, 78, 5)
    ((_, body2),) = wire.PacketReader().feed(data2)
    assert wire.PAYLOAD_HEADER.unpack_from(body2, offset) == (3, 78, 5)


def test_publish_offset_skips_v5_properties() -> None:
    props = b"\x01\x01" + b"\x23\x00\x05"  # payload format indicator, topic alias
    body = b"\x00\x01t" + b"\x00\x09" + bytes((len(props),)) + props + b"PAYLOAD"
    pid, offset = wire.publish_payload_offset(0x32, body, 5)
    assert (pid, body[offset:]) == (9, b"PAYLOAD")


def test_connack_properties_decode() -> None:
    body = b"\x00\x00\x08\x21\x00\x14\x12\x00\x02id"
    props, end = wire.decode_properties(body, 2)
    assert props == {0x21: 20, 0x12: b"id"}
    assert end == len(body)
