"""h11's fuzz invariant: whatever bytes arrive, the decoder returns packets or
raises ProtocolError, never another exception, and feeding the bytes whole or
one at a time gives the same packets and the same error."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flockmq.frontend.codec import Connect, Packet, ProtocolError, StreamDecoder, encode

from .strategies import CODEC_SETTINGS, LEVELS, any_packet, connects

Outcome = tuple[list[Packet], tuple[type, int, str] | None]


def run(chunks: list[bytes], level: int | None, max_size: int) -> Outcome:
    decoder = StreamDecoder(max_packet_size=max_size, protocol_level=level)
    got: list[Packet] = []
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            got.extend(decoder)
    except ProtocolError as exc:
        # A failed decoder stays failed.
        try:
            decoder.next_packet()
        except ProtocolError as again:
            assert again is exc
        else:
            raise AssertionError("decoder recovered after an error") from exc
        return got, (type(exc), exc.reason_code, str(exc))
    return got, None


def check_invariant(data: bytes, level: int | None, max_size: int = 1 << 20) -> None:
    whole = run([data], level, max_size)
    bytewise = run([data[i : i + 1] for i in range(len(data))], level, max_size)
    assert whole == bytewise


levels = st.sampled_from([None, *LEVELS])
max_sizes = st.sampled_from([1 << 20, 64, 7])


@settings(CODEC_SETTINGS, max_examples=300)
@given(data=st.binary(max_size=300), level=levels, max_size=max_sizes)
def test_arbitrary_bytes(data: bytes, level: int | None, max_size: int) -> None:
    check_invariant(data, level, max_size)


@CODEC_SETTINGS
@given(data=st.binary(max_size=200), level=levels)
def test_arbitrary_bytes_after_a_valid_first_byte(data: bytes, level: int | None) -> None:
    """Random bodies behind each packet type's valid first byte go deeper
    into the body parsers than fully random bytes do."""
    for first in (0x10, 0x20, 0x30, 0x32, 0x3D, 0x40, 0x62, 0x82, 0x90, 0xA2, 0xB0, 0xE0, 0xF0):
        check_invariant(bytes((first, min(len(data), 127))) + data, level)


@st.composite
def mutated_streams(draw: st.DrawFn) -> tuple[bytes, int | None]:
    level = draw(st.sampled_from(LEVELS))
    packets: list[Packet] = draw(st.lists(any_packet(level), min_size=1, max_size=4))
    server_side = draw(st.booleans())
    if server_side:
        packets.insert(0, draw(connects(level)))
    stream = bytearray(b"".join(encode(p, level) for p in packets))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        i = draw(st.integers(0, max(len(stream) - 1, 0)))
        if op == "flip" and stream:
            stream[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and stream:
            stream[i] = draw(st.integers(0, 255))
        elif op == "insert":
            stream[i:i] = draw(st.binary(min_size=1, max_size=3))
        elif stream:
            del stream[i : i + draw(st.integers(1, 3))]
    return bytes(stream), None if server_side else level


@settings(CODEC_SETTINGS, max_examples=200)
@given(case=mutated_streams())
def test_mutated_valid_packets(case: tuple[bytes, int | None]) -> None:
    check_invariant(*case)


def test_whole_and_bytewise_agree_on_a_valid_stream() -> None:
    stream = encode(Connect("c", 5), 5) + b"\xc0\x00" * 3
    packets, error = run([stream], None, 1 << 20)
    assert error is None and len(packets) == 4
    assert run([stream[i : i + 1] for i in range(len(stream))], None, 1 << 20) == (packets, None)
