"""decode(encode(p, level), level) == p for every packet type valid at each
protocol level, fed whole and as a stream split at arbitrary points."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flockmq.frontend.codec import Packet, StreamDecoder, decode, encode

from .strategies import CODEC_SETTINGS, LEVELS, any_packet, connects, kinds_at, packets_of

CASES = [(level, kind) for level in LEVELS for kind in kinds_at(level)]


@pytest.mark.parametrize(("level", "kind"), CASES)
@CODEC_SETTINGS
@given(data=st.data())
def test_round_trip(level: int, kind: str, data: st.DataObject) -> None:
    packet = data.draw(packets_of(kind, level))
    wire = encode(packet, level)
    assert decode(wire, level) == packet
    if kind == "CONNECT":  # a CONNECT carries its own level: no level needed
        assert decode(wire) == packet


@pytest.mark.parametrize("level", LEVELS)
@settings(CODEC_SETTINGS, max_examples=50)
@given(data=st.data())
def test_stream_after_connect(level: int, data: st.DataObject) -> None:
    """A server-side decoder learns the level from CONNECT and decodes the
    rest of the stream at it, whatever the chunk boundaries."""
    packets: list[Packet] = [data.draw(connects(level))]
    packets += data.draw(st.lists(any_packet(level), max_size=6))
    stream = b"".join(encode(p, level) for p in packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    decoder = StreamDecoder()
    got: list[Packet] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        decoder.feed(stream[a:b])
        got.extend(decoder)
    assert got == packets
    assert decoder.protocol_level == level
    assert decoder.buffered == 0
