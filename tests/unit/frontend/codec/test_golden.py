"""Golden byte vectors written out by hand from the MQTT 3.1, 3.1.1 and 5.0
specifications (fixed header, variable header, payload, properties), checked
both ways: encode gives exactly these bytes and decode gives the packet back."""

from __future__ import annotations

import pytest

from flockmq.frontend.codec import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
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
    decode,
    encode,
    encode_ack,
    encode_publish,
)


def h(text: str) -> bytes:
    """Hex with spaces and 'quoted ASCII' runs, as written from the spec."""
    out = b""
    for i, part in enumerate(text.split("'")):
        out += part.encode() if i % 2 else bytes.fromhex(part)
    return out


# (level, packet, wire bytes): encode(packet, level) == wire and back.
GOLDEN: list[tuple[int, Packet, str]] = [
    # CONNECT (3.1.1 section 3.1, 3.1 "MQIsdp", 5.0 with properties)
    (4, Connect("cid", 4, True, 60), "10 0f 00 04 'MQTT' 04 02 00 3c 00 03 'cid'"),
    (3, Connect("cid", 3, True, 60), "10 11 00 06 'MQIsdp' 03 02 00 3c 00 03 'cid'"),
    (
        5,
        Connect("cid", 5, True, 60, properties={"session_expiry_interval": 10}),
        "10 15 00 04 'MQTT' 05 02 00 3c 05 11 00 00 00 0a 00 03 'cid'",
    ),
    (
        4,
        Connect("c", 4, True, 10, "u", b"pw", Will("w", b"bye", 1, True)),
        "10 1c 00 04 'MQTT' 04 ee 00 0a 00 01 'c' 00 01 'w' 00 03 'bye' 00 01 'u' 00 02 'pw'",
    ),
    (
        5,
        Connect("c", 5, True, 0, will=Will("w", b"", 0, False, {"will_delay_interval": 5})),
        "10 19 00 04 'MQTT' 05 06 00 00 00 00 01 'c' 05 18 00 00 00 05 00 01 'w' 00 00",
    ),
    (5, Connect("", 5, False, 0, None, b"p"), "10 10 00 04 'MQTT' 05 40 00 00 00 00 00 00 01 'p'"),
    # CONNACK
    (4, Connack(True, 0), "20 02 01 00"),
    (4, Connack(False, 5), "20 02 00 05"),
    (3, Connack(False, 2), "20 02 00 02"),
    (5, Connack(False, 0), "20 03 00 00 00"),
    (
        5,
        Connack(
            True,
            0,
            {"topic_alias_maximum": 10, "maximum_qos": 1, "assigned_client_identifier": "ab"},
        ),
        "20 0d 01 00 0a 22 00 0a 24 01 12 00 02 'ab'",
    ),
    (5, Connack(False, 0x87), "20 03 00 87 00"),
    # PUBLISH
    (4, Publish("a/b", b"hi"), "30 07 00 03 'a/b' 'hi'"),
    (3, Publish("a/b", b"hi", 1, True, True, 10), "3b 09 00 03 'a/b' 00 0a 'hi'"),
    (4, Publish("a/b", b"", 2, False, False, 0xFFFF), "34 07 00 03 'a/b' ff ff"),
    (5, Publish("a/b", b"hi"), "30 08 00 03 'a/b' 00 'hi'"),
    (
        5,
        Publish(
            "a/b",
            b"hi",
            properties={
                "payload_format_indicator": 1,
                "message_expiry_interval": 60,
                "user_property": (("k", "v"),),
            },
        ),
        "30 16 00 03 'a/b' 0e 01 01 02 00 00 00 3c 26 00 01 'k' 00 01 'v' 'hi'",
    ),
    (5, Publish("", b"hi", properties={"topic_alias": 5}), "30 08 00 00 03 23 00 05 'hi'"),
    (
        5,
        Publish("a/b", properties={"subscription_identifier": (1, 200)}),
        "30 0b 00 03 'a/b' 05 0b 01 0b c8 01",
    ),
    (4, Publish("t", b"x" * 200), "30 cb 01 00 01 't'" + "'" + "x" * 200 + "'"),
    # PUBACK, PUBREC, PUBREL, PUBCOMP
    (4, Puback(10), "40 02 00 0a"),
    (3, Pubrec(10), "50 02 00 0a"),
    (4, Pubrel(10), "62 02 00 0a"),
    (4, Pubcomp(10), "70 02 00 0a"),
    (5, Puback(10), "40 02 00 0a"),
    (5, Puback(10, 0x10), "40 03 00 0a 10"),
    (5, Puback(10, 0, {"reason_string": "x"}), "40 08 00 0a 00 04 1f 00 01 'x'"),
    (5, Pubrel(10, 0x92), "62 03 00 0a 92"),
    (5, Pubcomp(10, 0x92), "70 03 00 0a 92"),
    # SUBSCRIBE
    (
        4,
        Subscribe(1, (Subscription("a/+", 1), Subscription("b/#", 2))),
        "82 0e 00 01 00 03 'a/+' 01 00 03 'b/#' 02",
    ),
    (3, Subscribe(1, (Subscription("a/+", 1),)), "82 08 00 01 00 03 'a/+' 01"),
    (
        5,
        Subscribe(1, (Subscription("a/+", 1, True, True, 2),), {"subscription_identifier": 5}),
        "82 0b 00 01 02 0b 05 00 03 'a/+' 2d",
    ),
    (
        5,
        Subscribe(2, (Subscription("$share/g/a/#", 0),)),
        "82 12 00 02 00 00 0c '$share/g/a/#' 00",
    ),
    # SUBACK
    (4, Suback(1, (1, 2, 0x80)), "90 05 00 01 01 02 80"),
    (5, Suback(1, (1, 2, 0x87)), "90 06 00 01 00 01 02 87"),
    # UNSUBSCRIBE, UNSUBACK
    (4, Unsubscribe(2, ("a/b",)), "a2 07 00 02 00 03 'a/b'"),
    (5, Unsubscribe(2, ("a/b",)), "a2 08 00 02 00 00 03 'a/b'"),
    (4, Unsuback(2), "b0 02 00 02"),
    (5, Unsuback(2, (0x00,)), "b0 04 00 02 00 00"),
    (5, Unsuback(2, (0x11, 0x87)), "b0 05 00 02 00 11 87"),
    # PINGREQ, PINGRESP, DISCONNECT, AUTH
    (3, Pingreq(), "c0 00"),
    (4, Pingresp(), "d0 00"),
    (4, Disconnect(), "e0 00"),
    (5, Disconnect(), "e0 00"),
    (5, Disconnect(0x04), "e0 01 04"),
    (5, Disconnect(0, {"session_expiry_interval": 0}), "e0 07 00 05 11 00 00 00 00"),
    (5, Auth(), "f0 00"),
    (
        5,
        Auth(0x18, {"authentication_method": "SCRAM", "authentication_data": b"\x01"}),
        "f0 0e 18 0c 15 00 05 'SCRAM' 16 00 01 01",
    ),
]


@pytest.mark.parametrize(("level", "packet", "wire"), GOLDEN)
def test_encode_golden(level: int, packet: Packet, wire: str) -> None:
    assert encode(packet, level).hex(" ") == h(wire).hex(" ")


@pytest.mark.parametrize(("level", "packet", "wire"), GOLDEN)
def test_decode_golden(level: int, packet: Packet, wire: str) -> None:
    assert decode(h(wire), level) == packet


# (level, wire, packet): forms only a peer writes (the encoder picks another).
DECODE_ONLY: list[tuple[int, str, Packet]] = [
    (5, "40 03 00 0a 00", Puback(10)),  # reason code without properties
    (5, "40 04 00 0a 00 00", Puback(10)),  # empty property length written out
    (5, "e0 02 00 00", Disconnect()),
    (5, "f0 01 00", Auth()),
    (4, "c0 80 00", Pingreq()),  # 3.1.1 does not require a minimal remaining length
    (
        5,
        "30 0c 00 03 'a/b' 06 26 00 01 'k' 00 00",
        Publish("a/b", properties={"user_property": (("k", ""),)}),
    ),
    (
        5,
        "30 14 00 03 'a/b' 0e 26 00 01 'k' 00 01 '1' 26 00 01 'k' 00 01 '2'",
        Publish("a/b", properties={"user_property": (("k", "1"), ("k", "2"))}),
    ),
    (3, "20 02 01 00", Connack(False, 0)),  # 3.1: the first CONNACK byte is unused
    (
        3,
        "82 08 00 01 00 03 'a/+' 01".replace("82", "8a", 1),
        Subscribe(1, (Subscription("a/+", 1),)),
    ),
]


@pytest.mark.parametrize(("level", "wire", "packet"), DECODE_ONLY)
def test_decode_only(level: int, wire: str, packet: Packet) -> None:
    assert decode(h(wire), level) == packet


def test_connect_without_level_sets_decoder_level() -> None:
    assert decode(h("10 0f 00 04 'MQTT' 04 02 00 3c 00 03 'cid'")) == Connect("cid", 4, True, 60)


def test_below_level_5_fields_without_wire_form_are_dropped() -> None:
    assert encode(Puback(10, 0x10, {"reason_string": "x"}), 4) == h("40 02 00 0a")
    assert encode(Suback(1, (0, 0x87, 0x97, 2)), 4) == h("90 06 00 01 00 80 80 02")
    assert encode(Unsuback(2, (0x11,), {"reason_string": "x"}), 4) == h("b0 02 00 02")
    assert encode(Disconnect(0x8E), 4) == h("e0 00")
    props = {"message_expiry_interval": 5}
    assert encode(Publish("a/b", b"hi", properties=props), 4) == h("30 07 00 03 'a/b' 'hi'")


@pytest.mark.parametrize("level", [3, 4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_encode_publish_fast_path_matches_encode(level: int, qos: int) -> None:
    pid = 7 if qos else None
    props = {"message_expiry_interval": 5} if level == 5 else None
    fast = encode_publish("a/b", b"hi", qos, True, qos > 0, pid, props, level)
    assert fast == encode(Publish("a/b", b"hi", qos, True, qos > 0, pid, props or {}), level)


def test_encode_ack_fast_path() -> None:
    assert encode_ack(4, 10, 4) == h("40 02 00 0a")
    assert encode_ack(5, 10, 4, 0x80) == h("50 02 00 0a")
    assert encode_ack(6, 10, 5) == h("62 02 00 0a")
    assert encode_ack(7, 10, 5, 0x92) == h("70 03 00 0a 92")
    for ptype, cls in [(4, Puback), (5, Pubrec), (6, Pubrel), (7, Pubcomp)]:
        assert decode(encode_ack(ptype, 300, 5, 0), 5) == cls(300)
