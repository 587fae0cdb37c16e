"""Every packet-level rule the decoder enforces: each bad input raises a
ProtocolError (or subclass) with the right reason code and a message citing
the rule, and the decoder stays failed afterwards."""

from __future__ import annotations

import pytest

from flockmq.frontend.codec import (
    Connect,
    MalformedPacket,
    ProtocolError,
    ReasonCode,
    StreamDecoder,
    UnsupportedProtocolVersion,
    decode,
)

from .test_golden import h

MALFORMED = ReasonCode.MALFORMED_PACKET
PROTOCOL = ReasonCode.PROTOCOL_ERROR


def connect(flags: str, rest: str = "00 01 'c'", level: str = "04", props: str = "") -> str:
    body = h(f"00 04 'MQTT' {level} {flags} 00 00 {props} {rest}")
    return f"10 {len(body):02x} {body.hex()}"


def publish5(props: str, topic: str = "00 03 'a/b'") -> str:
    body = h(f"{topic} {props}")
    return f"30 {len(body):02x} {body.hex()}"


def subscribe(filt: str, options: str = "00") -> str:
    body = filt.encode()
    return f"82 {len(body) + 5:02x} 00 01 00 {len(body):02x} '{filt}' {options}"


def subscribe5(filt: str, options: str = "00") -> str:
    body = filt.encode()
    return f"82 {len(body) + 6:02x} 00 01 00 00 {len(body):02x} '{filt}' {options}"


# (id, level, wire, reason code, text the message must contain)
BAD: list[tuple[str, int | None, str, int, str]] = [
    # fixed header
    ("puback flags", 4, "41 02 00 01", MALFORMED, "[MQTT-2.1.3-1]"),
    ("pubrel flags 0", 4, "60 02 00 01", MALFORMED, "[MQTT-2.1.3-1]"),
    ("subscribe flags 0", 4, "80 08 00 01 00 03 'a/b' 00", MALFORMED, "[MQTT-2.1.3-1]"),
    ("unsubscribe flags 0", 5, "a0 07 00 01 00 00 03 'a/b'", MALFORMED, "[MQTT-2.1.3-1]"),
    ("pingreq flags", 4, "c1 00", MALFORMED, "[MQTT-2.1.3-1]"),
    ("remaining length 5 bytes", 4, "30 ff ff ff ff 01", MALFORMED, "[MQTT-1.5.5]"),
    ("non-minimal length v5", 5, "c0 80 00", MALFORMED, "[MQTT-1.5.5-1]"),
    ("packet type 0", 4, "00 00", MALFORMED, "[MQTT-2.1.2]"),
    ("auth below v5", 4, "f0 00", MALFORMED, "[MQTT-2.1.2]"),
    ("no connect yet", None, "c0 00", PROTOCOL, "[MQTT-3.1.0-1]"),
    # lengths and trailing bytes
    ("string past packet", 4, "30 05 00 09 'a/b'", MALFORMED, "ends inside"),
    ("packet id past packet", 4, "32 05 00 03 'a/b'", MALFORMED, "ends inside"),
    ("puback trailing", 4, "40 03 00 01 00", MALFORMED, "left over"),
    ("pingreq trailing", 4, "c0 01 00", MALFORMED, "left over"),
    ("disconnect v4 trailing", 4, "e0 01 00", MALFORMED, "left over"),
    ("connack trailing", 4, "20 03 00 00 00", MALFORMED, "left over"),
    ("unsuback v4 trailing", 4, "b0 03 00 01 00", MALFORMED, "left over"),
    # PUBLISH
    ("qos 3", 4, "36 07 00 03 'a/b' 00 01", MALFORMED, "[MQTT-3.3.1-4]"),
    ("dup on qos 0", 4, "38 05 00 03 'a/b'", PROTOCOL, "[MQTT-3.3.1-2]"),
    ("publish packet id 0", 4, "32 07 00 03 'a/b' 00 00", PROTOCOL, "[MQTT-2.2.1-3]"),
    ("topic with +", 4, "30 05 00 03 'a/+'", PROTOCOL, "[MQTT-3.3.2-2]"),
    ("topic with #", 5, "30 06 00 03 'a/#' 00", PROTOCOL, "[MQTT-3.3.2-2]"),
    ("empty topic v4", 4, "30 02 00 00", PROTOCOL, "[MQTT-3.3.2-1]"),
    ("empty topic v5 no alias", 5, "30 03 00 00 00", PROTOCOL, "[MQTT-3.3.2-1]"),
    ("topic alias 0", 5, "30 06 00 00 03 23 00 00", PROTOCOL, "topic_alias is 0"),
    ("ill-formed utf-8", 4, "30 03 00 01 ff", MALFORMED, "[MQTT-1.5.4-1]"),
    ("overlong utf-8", 4, "30 04 00 02 c0 af", MALFORMED, "[MQTT-1.5.4-1]"),
    ("surrogate utf-8", 4, "30 05 00 03 ed a0 80", MALFORMED, "[MQTT-1.5.4-1]"),
    ("U+0000 in topic", 4, "30 05 00 03 61 00 62", MALFORMED, "[MQTT-1.5.4-2]"),
    ("wildcard response topic", 5, publish5("06 08 00 03 'r/#'"), PROTOCOL, "[MQTT-3.3.2-2]"),
    # properties
    ("duplicate property", 5, publish5("0a 02 00 00 00 01 02 00 00 00 02"), PROTOCOL, "once"),
    ("property not allowed", 5, publish5("05 11 00 00 00 01"), MALFORMED, "[MQTT-2.2.2-2]"),
    ("unknown property", 5, publish5("02 7f 00"), MALFORMED, "[MQTT-2.2.2-2]"),
    ("payload format 2", 5, publish5("02 01 02"), PROTOCOL, "not 0 or 1"),
    ("property length 5 bytes", 5, publish5("ff ff ff ff 7f"), MALFORMED, "[MQTT-1.5.5]"),
    ("property length past packet", 5, publish5("09 01 01"), MALFORMED, "past the packet"),
    ("property value past end", 5, publish5("03 02 00 00"), MALFORMED, "ends inside"),
    ("subscription id 0", 5, publish5("02 0b 00"), PROTOCOL, "subscription_identifier is 0"),
    ("non-minimal varint prop", 5, publish5("03 0b 81 00"), MALFORMED, "[MQTT-1.5.5-1]"),
    (
        "auth data without method",
        5,
        connect("02", level="05", props="04 16 00 01 00", rest="00 01 'c'"),
        PROTOCOL,
        "authentication method",
    ),
    # SUBSCRIBE / UNSUBSCRIBE
    ("subscribe empty", 4, "82 02 00 01", PROTOCOL, "[MQTT-3.8.3-3]"),
    ("subscribe packet id 0", 4, "82 08 00 00 00 03 'a/b' 00", PROTOCOL, "[MQTT-2.2.1-3]"),
    ("unsubscribe empty", 4, "a2 02 00 01", PROTOCOL, "[MQTT-3.10.3-2]"),
    ("filter a/b#", 4, subscribe("a/b#"), PROTOCOL, "[MQTT-4.7.1-1]"),
    ("filter a/#/b", 4, subscribe("a/#/b"), PROTOCOL, "[MQTT-4.7.1-1]"),
    ("filter a+", 4, subscribe("a+"), PROTOCOL, "[MQTT-4.7.1-2]"),
    ("filter +a/b", 5, subscribe5("+a/b"), PROTOCOL, "[MQTT-4.7.1-2]"),
    ("filter empty", 4, "82 05 00 01 00 00 00", PROTOCOL, "[MQTT-4.7.3-1]"),
    ("unsubscribe bad filter", 4, "a2 08 00 01 00 04 'a/b#'", PROTOCOL, "[MQTT-4.7.1-1]"),
    ("qos 3 v4", 4, subscribe("a", "03"), MALFORMED, "[MQTT-3.8.3-4]"),
    ("reserved bits v4", 4, subscribe("a", "04"), MALFORMED, "[MQTT-3.8.3-4]"),
    ("reserved bits v5", 5, subscribe5("a", "40"), MALFORMED, "[MQTT-3.8.3-5]"),
    ("qos 3 v5", 5, subscribe5("a", "03"), PROTOCOL, "QoS is 3"),
    ("retain handling 3", 5, subscribe5("a", "30"), PROTOCOL, "retain handling"),
    ("share empty group", 5, subscribe5("$share//a"), PROTOCOL, "[MQTT-4.8.2-1]"),
    ("share group wildcard", 5, subscribe5("$share/g+/a"), PROTOCOL, "[MQTT-4.8.2-2]"),
    ("share no filter", 5, subscribe5("$share/g"), PROTOCOL, "[MQTT-4.8.2-2]"),
    ("share empty filter", 5, subscribe5("$share/g/"), PROTOCOL, "[MQTT-4.8.2-2]"),
    ("share bad filter", 5, subscribe5("$share/g/a/#/b"), PROTOCOL, "[MQTT-4.7.1-1]"),
    ("no local on shared", 5, subscribe5("$share/g/a", "04"), PROTOCOL, "[MQTT-3.8.3-4]"),
    # CONNECT
    ("reserved connect flag", None, connect("03"), MALFORMED, "[MQTT-3.1.2-3]"),
    ("will qos without will", None, connect("0a"), PROTOCOL, "[MQTT-3.1.2-11]"),
    ("will retain without will", None, connect("22"), PROTOCOL, "[MQTT-3.1.2-13]"),
    ("will qos 3", None, connect("1e", "00 01 'c' 00 01 'w' 00 00"), MALFORMED, "[MQTT-3.1.2-14]"),
    ("password without user v4", None, connect("42", "00 01 'c' 00 01 'p'"), PROTOCOL, "-22]"),
    ("will topic wildcard", None, connect("06", "00 01 'c' 00 01 '#' 00 00"), PROTOCOL, "3.3.2-2"),
    ("connect truncated", None, connect("c2", "00 01 'c' 00 01 'u'"), MALFORMED, "ends inside"),
    ("connect trailing", None, connect("02", "00 01 'c' 00"), MALFORMED, "left over"),
    ("client id utf-8", None, connect("02", "00 01 ff"), MALFORMED, "[MQTT-1.5.4-1]"),
    # acks
    ("puback packet id 0", 4, "40 02 00 00", PROTOCOL, "[MQTT-2.2.1-3]"),
    ("puback bad reason v5", 5, "40 03 00 01 05", PROTOCOL, "[MQTT-2.4]"),
    ("pubrel bad reason v5", 5, "62 03 00 01 10", PROTOCOL, "[MQTT-2.4]"),
    ("connack reserved flags", 4, "20 02 02 00", MALFORMED, "[MQTT-3.2.2-1]"),
    ("connack code 6 v4", 4, "20 02 00 06", PROTOCOL, "[MQTT-2.4]"),
    ("session present on failure", 4, "20 02 01 05", PROTOCOL, "[MQTT-3.2.2-6]"),
    ("connack v5 no properties", 5, "20 02 00 00", MALFORMED, "ends inside"),
    ("suback code 3 v4", 4, "90 03 00 01 03", PROTOCOL, "[MQTT-2.4]"),
    ("suback no codes", 4, "90 02 00 01", PROTOCOL, "no reason codes"),
    ("unsuback v5 no codes", 5, "b0 03 00 01 00", PROTOCOL, "no reason codes"),
    ("disconnect bad reason", 5, "e0 01 01", PROTOCOL, "[MQTT-2.4]"),
    ("auth bad reason", 5, "f0 01 87", PROTOCOL, "[MQTT-2.4]"),
]


@pytest.mark.parametrize(
    ("level", "wire", "code", "text"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_packet_raises_with_reason_code(
    level: int | None, wire: str, code: int, text: str
) -> None:
    decoder = StreamDecoder(protocol_level=level)
    decoder.feed(h(wire))
    with pytest.raises(ProtocolError) as info:
        decoder.next_packet()
    assert info.value.reason_code == code
    assert text in str(info.value)
    if code == MALFORMED:
        assert isinstance(info.value, MalformedPacket)
    # A decoder that raised stays failed.
    with pytest.raises(ProtocolError) as again:
        decoder.next_packet()
    assert again.value is info.value
    with pytest.raises(ProtocolError):
        decoder.feed(b"\xc0\x00")


UNSUPPORTED = [
    ("unknown level", "00 04 'MQTT' 06", 4),
    ("MQTT with level 3", "00 04 'MQTT' 03", 3),
    ("MQIsdp with level 4", "00 06 'MQIsdp' 04", 4),
    ("level 0", "00 04 'MQTT' 00", 4),
]


@pytest.mark.parametrize(
    ("head", "answer_level"), [u[1:] for u in UNSUPPORTED], ids=[u[0] for u in UNSUPPORTED]
)
def test_unsupported_protocol(head: str, answer_level: int) -> None:
    body = h(f"{head} 02 00 3c 00 01 'c'")
    with pytest.raises(UnsupportedProtocolVersion) as info:
        decode(bytes((0x10, len(body))) + body)
    assert info.value.reason_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION
    assert info.value.protocol_level == answer_level
    assert "[MQTT-3.1.2-2]" in str(info.value)


@pytest.mark.parametrize("name", ["MQTX", "MQTU", "mqtt", "MQIsdp ", "", "MQTT\u00e9"])
@pytest.mark.parametrize("level", [3, 4, 5])
def test_unknown_protocol_name_is_not_answered_with_a_connack(name: str, level: int) -> None:
    """Not MQTT: closed without CONNACK [MQTT-3.1.2-1], whatever the level;
    no protocol level is taken from it (so no v5 CONNACK either)."""
    raw = name.encode()
    body = len(raw).to_bytes(2, "big") + raw + bytes((level,)) + h("02 00 3c 00 01 'c'")
    with pytest.raises(ProtocolError) as info:
        decode(bytes((0x10, len(body))) + body)
    assert not isinstance(info.value, UnsupportedProtocolVersion)
    assert info.value.reason_code == PROTOCOL
    assert info.value.protocol_level is None
    assert "[MQTT-3.1.2-1]" in str(info.value)


def test_level_3_has_no_reserved_connect_flag() -> None:
    """MQTT 3.1 does not reserve bit 0 of the connect flags; 3.1.1 and 5.0 do."""
    body = h("00 06 'MQIsdp' 03 03 00 3c 00 01 'c'")
    packet = decode(bytes((0x10, len(body))) + body)
    assert packet == Connect("c", 3, True, 60)


def test_password_without_user_name_is_fine_at_level_5() -> None:
    body = h("00 04 'MQTT' 05 42 00 00 00 00 01 'c' 00 01 'p'")
    packet = decode(bytes((0x10, len(body))) + body)
    assert packet == decode(bytes((0x10, len(body))) + body, 5)


def test_non_minimal_remaining_length_in_v5_connect() -> None:
    """Before CONNECT the level is unknown: the minimal-length rule of 5.0 is
    applied once the CONNECT says it is level 5, and not for 3.1.1."""
    v5 = h("00 04 'MQTT' 05 02 00 00 00 00 00")
    with pytest.raises(MalformedPacket, match=r"MQTT-1\.5\.5-1") as info:
        decode(bytes((0x10, 0x80 | len(v5), 0x00)) + v5)
    assert info.value.protocol_level == 5  # answered with a v5 CONNACK
    v4 = h("00 04 'MQTT' 04 02 00 00 00 00")
    # decode() gives any packet: one without the field fails here too.
    assert decode(bytes((0x10, 0x80 | len(v4), 0x00)) + v4).client_id == ""  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "wire",
    ["30 05 00 03 'a/", "40 02 00", "10 0f 00 04 'MQTT' 04 02 00 3c 00 03 'ci", "30", ""],
)
def test_truncated_packet(wire: str) -> None:
    with pytest.raises(MalformedPacket, match="truncated"):
        decode(h(wire), 4)


def test_bytes_left_over_after_one_packet() -> None:
    with pytest.raises(ProtocolError):
        decode(h("c0 00 c0 00"), 4)
    with pytest.raises(ProtocolError):
        decode(h("c0 00 c0"), 4)


def test_level_3_tolerates_dup_on_subscribe_and_missing_password() -> None:
    assert decode(h("8a 08 00 01 00 03 'a/+' 01"), 3).packet_type == 8
    body = h("00 06 'MQIsdp' 03 c2 00 3c 00 01 'c' 00 01 'u'")
    packet = decode(bytes((0x10, len(body))) + body)
    # decode() gives any packet: one without the fields fails here too.
    assert packet.username == "u" and packet.password is None  # type: ignore[union-attr]
    with pytest.raises(MalformedPacket):
        decode(h("8a 08 00 01 00 03 'a/+' 01"), 4)


def test_shared_subscription_syntax_only_at_level_5() -> None:
    # Below 5, "$share//a" is an ordinary (valid) filter. (decode() gives any packet: one
    # without subscriptions fails here too.)
    assert decode(h(subscribe("$share//a")), 4).subscriptions[0].topic_filter == "$share//a"  # type: ignore[union-attr]


def test_errors_inside_a_connect_carry_its_level() -> None:
    """So the acceptor can answer a bad v5 CONNECT with a v5 CONNACK."""
    with pytest.raises(MalformedPacket) as info:
        decode(h(connect("03", level="05", rest="00 00 01 'c'")))
    assert info.value.protocol_level == 5
    with pytest.raises(MalformedPacket) as info:
        decode(h(connect("03")))
    assert info.value.protocol_level == 4
    with pytest.raises(MalformedPacket) as info:
        decode(h("c0 01 00"), 5)
    assert info.value.protocol_level is None
