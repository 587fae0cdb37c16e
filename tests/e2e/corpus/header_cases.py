"""Corpus cases of the fixed header (3.1.1 section 2.2, 5.0 section 2.1), of
PINGREQ, DISCONNECT and AUTH, and of packet order (see case.py for how each
expected answer follows from the specs).
"""

from __future__ import annotations

from .case import (
    CLOSE,
    LEVELS,
    MALFORMED,
    MAX_PACKET_SIZE,
    PROTOCOL,
    TOO_LARGE,
    Corpus,
    ok,
    violation,
)
from .wire import (
    PINGREQ,
    REQUIRED_FLAGS,
    auth,
    connect,
    disconnect,
    packet,
    prop,
    props,
    publish,
    s,
    subscribe,
    u16,
    u32,
    valid_body,
    vbi,
    will_fields,
)


# --- fixed header (3.1.1 section 2.2, 5.0 section 2.1) ------------------------------------
def fixed_header(c: Corpus) -> None:
    for level in LEVELS:
        header_flags(c, level)
        publish_header(c, level)
        remaining_length(c, level)


def header_flags(c: Corpus, level: int) -> None:
    """Each packet type's reserved fixed-header flags, and the reserved type 0."""
    for ptype in range(1, 16):
        if ptype == 3:
            continue
        body = valid_body(ptype, level)
        for flags in range(16):
            if flags == REQUIRED_FLAGS[ptype]:
                continue
            if level == 3 and ptype in (6, 8, 10) and flags == REQUIRED_FLAGS[ptype] | 8:
                continue  # MQTT 3.1 sets DUP on these when it sends them again
            data = packet(ptype << 4 | flags, body)
            name = f"type-{ptype}-flags-{flags:x}"
            # Invalid reserved flags are a Malformed Packet [MQTT-2.1.3-1]; AUTH
            # below 5.0 is a reserved type whatever its flags.
            c.add("header", name, level, data, violation(level, MALFORMED))
            if ptype == 1:  # as the first packet: the fixed header already fails
                c.add("header", name + "-first", level, data, CLOSE, setup="none")
    for flags in range(16):  # packet type 0 is reserved (Forbidden)
        c.add(
            "header",
            f"type-0-flags-{flags:x}",
            level,
            packet(flags, b""),
            violation(level, MALFORMED),
        )
        c.add(
            "header",
            f"type-0-flags-{flags:x}-first",
            level,
            packet(flags, b""),
            CLOSE,
            setup="none",
        )


def publish_header(c: Corpus, level: int) -> None:
    """PUBLISH's fixed-header flags."""
    # PUBLISH: QoS 3 is a Malformed Packet [MQTT-3.3.1-4]; DUP on QoS 0 is not
    # allowed [MQTT-3.3.1-2].
    body = s("a/b") + u16(1) + (b"\x00" if level == 5 else b"") + b"p"
    for flags in (0x6, 0x7, 0xE, 0xF):
        c.add(
            "header",
            f"publish-qos3-flags-{flags:x}",
            level,
            packet(0x30 | flags, body),
            violation(level, MALFORMED),
        )
    for flags in (0x8, 0x9):
        c.add(
            "header",
            f"publish-dup-qos0-flags-{flags:x}",
            level,
            publish(level, "a/b", flags=flags),
            violation(level, PROTOCOL),
        )


def remaining_length(c: Corpus, level: int) -> None:
    """The Remaining Length: its encoding, and the maximum packet size."""
    # Remaining length: at most 4 bytes [MQTT-1.5.5]/(2.2.3).
    for i, rl in enumerate(
        [b"\xff\xff\xff\xff\x7f", b"\x80\x80\x80\x80\x00", b"\xff\xff\xff\xff\xff\x01"]
    ):
        for first in (0x30, 0xC0, 0x82):
            c.add(
                "header",
                f"remaining-length-5-bytes-{i}-{first:x}",
                level,
                bytes((first,)) + rl,
                violation(level, MALFORMED),
                probe="none",
            )
    # Non-minimal remaining length: a Malformed Packet in 5.0 [MQTT-1.5.5-1];
    # 3.1.1 section 2.2.3 has no such rule (accepted).
    for rl in (b"\x80\x00", b"\x80\x80\x00", b"\x80\x80\x80\x00"):
        expect = violation(level, MALFORMED) if level == 5 else ok()
        c.add("header", f"pingreq-non-minimal-length-{len(rl)}", level, b"\xc0" + rl, expect)
    # Over the maximum packet size the broker announces (v5 CONNACK): refused
    # from the fixed header alone, 0x95 [MQTT-3.2.2-15] / a close.
    for first in (0x30, 0x32, 0x82, 0xA2, 0xC0, 0xE0, 0x40):
        for size in (MAX_PACKET_SIZE + 1, 2 * MAX_PACKET_SIZE, 268_435_455):
            data = bytes((first,)) + vbi(size) + b"\x00\x03a/b"
            c.add(
                "header",
                f"too-large-{first:x}-{size}",
                level,
                data,
                violation(level, TOO_LARGE),
                probe="none",
            )


# --- PINGREQ, DISCONNECT, AUTH (sections 3.12, 3.14, 3.15) --------------------------------
V5_DISCONNECT_CODES = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F}
V5_DISCONNECT_CODES |= {0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C}
V5_DISCONNECT_CODES |= {0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2}


def control_packets(c: Corpus) -> None:
    for level in LEVELS:
        g = "ping-disconnect-auth"
        for extra in (b"\x00", b"\x00\x00", b"abc"):
            c.add(
                g,
                f"pingreq-trailing-{len(extra)}",
                level,
                packet(0xC0, extra),
                violation(level, MALFORMED),
            )
            if level < 5:  # 3.1.1 DISCONNECT has no variable header (3.14.2)
                c.add(g, f"disconnect-trailing-{len(extra)}", level, packet(0xE0, extra), CLOSE)
        c.add(g, "pingreq-valid", level, PINGREQ, ok())
        if level < 5:
            # Type 15 is reserved below 5.0: a malformed packet.
            for tail in (b"", b"\x00", b"\x18\x00"):
                c.add(g, f"auth-reserved-type-{len(tail)}", level, auth(tail), CLOSE)
            continue
        for code in (
            0x01,
            0x02,
            0x03,
            0x05,
            0x10,
            0x11,
            0x18,
            0x7F,
            0x84,
            0x85,
            0x86,
            0x88,
            0x8A,
            0x8C,
            0x91,
            0x92,
            0xA3,
            0xFF,
        ):
            assert code not in V5_DISCONNECT_CODES
            c.add(
                g,
                f"disconnect-reason-{code:02x}",
                5,
                disconnect(5, bytes((code,))),
                violation(5, PROTOCOL),
            )
        c.add(
            g,
            "disconnect-reason-then-trailing",
            5,
            disconnect(5, b"\x00\x00\x00"),
            violation(5, MALFORMED),
        )
        # A Session Expiry Interval in DISCONNECT when CONNECT set none is a
        # Protocol Error (3.14.2.2.2).
        for v in (1, 60, 0xFFFFFFFF):
            c.add(
                g,
                f"disconnect-session-expiry-{v}-after-none",
                5,
                disconnect(5, b"\x00" + props(prop(0x11, u32(v)))),
                violation(5, PROTOCOL),
            )
        # AUTH: reason codes 0x00, 0x18, 0x19 only (3.15.2.1); and an AUTH from a
        # client whose CONNECT had no Authentication Method is a Protocol Error (3.15).
        for code in (0x01, 0x04, 0x10, 0x80, 0x81, 0x87, 0x8C, 0xFF):
            c.add(g, f"auth-reason-{code:02x}", 5, auth(bytes((code,))), violation(5, PROTOCOL))
        for name, tail in (
            ("empty", b""),
            ("continue", b"\x18\x00"),
            ("reauthenticate-with-method", b"\x19" + props(prop(0x15, s("x")))),
            ("success", b"\x00\x00"),
        ):
            c.add(
                g,
                f"auth-without-method-{name}",
                5,
                auth(tail),
                violation(5, PROTOCOL),
            )


# --- packet order (sections 3.1.0, 4.8) -----------------------------------------------------
def packet_order(c: Corpus) -> None:
    for level in LEVELS:
        g = "order"
        # Before CONNECT, any packet closes the connection [MQTT-3.1.0-1].
        for ptype in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15):
            data = packet(ptype << 4 | REQUIRED_FLAGS[ptype], valid_body(ptype, level))
            c.add(g, f"first-packet-type-{ptype}", level, data, CLOSE, setup="none")
        for qos in (1, 2):
            c.add(
                g,
                f"first-packet-publish-qos{qos}",
                level,
                publish(level, "a/b", qos=qos),
                CLOSE,
                setup="none",
            )
        c.add(
            g,
            "first-packet-garbage",
            level,
            b"GET / HTTP/1.1\r\n\r\n".ljust(0x48, b"x"),
            CLOSE,
            setup="none",
        )
        # A second CONNECT is a Protocol Error [MQTT-3.1.0-2].
        for other in LEVELS:
            data = connect(other, "corpus-second")
            c.add(g, f"second-connect-v{other}", level, data, violation(level, PROTOCOL))
        # Malformed first: it is not parsed far enough to be a second CONNECT.
        c.add(
            g,
            "second-connect-malformed",
            level,
            connect(level, "x", flags=0x1E, will=will_fields(level, "w")),
            violation(level, MALFORMED),
        )
        # Server-to-client packets from a client (3.1.1 section 2.2.1 direction column;
        # 5.0 section 2.1.2): a protocol violation.
        for ptype in (2, 9, 11, 13):
            data = packet(ptype << 4, valid_body(ptype, level))
            c.add(g, f"server-only-type-{ptype}", level, data, violation(level, PROTOCOL))
        # A client may send packets right behind its CONNECT (control).
        c.add(
            g,
            "publish-right-behind-connect",
            level,
            connect(level, f"corpus-behind-{level}") + publish(level, "corpus/behind", qos=1),
            ok(),
            setup="none",
        )
        # After DISCONNECT the client may send nothing and the server acts on
        # nothing [MQTT-3.14.4-1], [MQTT-3.14.4-2]: no PINGRESP, SUBACK or PUBACK.
        end = disconnect(level, b"" if level < 5 else b"\x00")
        for name, after in (
            ("pingreq", PINGREQ),
            ("subscribe", subscribe(level, [("corpus/after", 1)])),
            ("publish-qos1", publish(level, "corpus/after", qos=1)),
            ("publish-qos2", publish(level, "corpus/after", qos=2)),
        ):
            c.add(g, f"{name}-after-disconnect", level, end + after, CLOSE, probe="none")
        # Item 14, seen through the will: DISCONNECT discards it [MQTT-3.14.4-3];
        # what follows, even a protocol error, must not bring it back.
        for name, after in (
            ("malformed", b"\xc1\x00"),
            ("reserved-type", b"\x00\x00"),
            ("second-connect", connect(level, "corpus-again")),
            ("publish-wildcard", publish(level, "a/#")),
            ("second-disconnect", end),
        ):
            c.add(
                g,
                f"will-kept-discarded-after-disconnect-then-{name}",
                level,
                end + after,
                CLOSE,
                setup="will",
                probe="none",
            )
        # The control: a protocol error without DISCONNECT publishes the will.
        c.add(
            g,
            "will-published-after-a-protocol-error",
            level,
            b"\xc1\x00",
            violation(level, MALFORMED),
            setup="will",
            probe="none",
            will=True,
        )
