"""Corpus cases of PUBLISH (section 3.3) and of its acknowledgements
(sections 3.4-3.7), including acknowledgements for messages in flight.
"""

from __future__ import annotations

from .case import (
    BAD_UTF8,
    CLOSE,
    LEVELS,
    MALFORMED,
    PROTOCOL,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    WILDCARD_TOPICS,
    Corpus,
    ok,
    violation,
)
from .wire import (
    REQUIRED_FLAGS,
    ack,
    packet,
    publish,
    s,
    u16,
)


# --- PUBLISH (section 3.3) ---------------------------------------------------------------
def publish_packet(c: Corpus) -> None:
    for level in LEVELS:
        g = "publish"
        for qos in (0, 1, 2):
            for topic in WILDCARD_TOPICS:
                c.add(
                    g,
                    f"qos{qos}-topic-{topic}",
                    level,
                    publish(level, topic, qos=qos),
                    violation(level, PROTOCOL),
                )
            for key, bad in BAD_UTF8.items():
                c.add(
                    g,
                    f"qos{qos}-topic-utf8-{key}",
                    level,
                    publish(level, bad, qos=qos),
                    violation(level, MALFORMED),
                )
            # An empty topic name needs a Topic Alias (5.0) [MQTT-3.3.2-1], 3.1.1 [MQTT-4.7.3-1].
            c.add(
                g,
                f"qos{qos}-topic-empty",
                level,
                publish(level, "", qos=qos),
                violation(level, PROTOCOL),
            )
            c.add(
                g,
                f"qos{qos}-topic-length-past-end",
                level,
                packet(0x30 | qos << 1, u16(50) + b"a/b"),
                violation(level, MALFORMED),
            )
            c.add(
                g,
                f"qos{qos}-valid",
                level,
                publish(level, "corpus/valid", qos=qos, packet_id=9),
                ok(),
            )
            c.add(
                g,
                f"qos{qos}-empty-payload",
                level,
                publish(level, "corpus/valid", qos=qos, packet_id=10, payload=b""),
                ok(),
            )
            c.add(
                g,
                f"qos{qos}-retain-empty-payload",
                level,
                publish(
                    level, "corpus/retain/x", qos=qos, packet_id=11, payload=b"", flags=qos << 1 | 1
                ),
                ok(),
            )
            if qos:
                # A non-zero packet identifier [MQTT-2.2.1-3] (5.0 [MQTT-2.2.1-3]/4.6).
                c.add(
                    g,
                    f"qos{qos}-packet-id-0",
                    level,
                    publish(level, "a/b", qos=qos, packet_id=0),
                    violation(level, PROTOCOL),
                )
                c.add(
                    g,
                    f"qos{qos}-packet-id-missing",
                    level,
                    packet(0x30 | qos << 1, s("a/b")),
                    violation(level, MALFORMED),
                )
                c.add(
                    g,
                    f"qos{qos}-packet-id-half",
                    level,
                    packet(0x30 | qos << 1, s("a/b") + b"\x01"),
                    violation(level, MALFORMED),
                )
        for length in (0, 1):
            c.add(
                g,
                f"remaining-length-{length}",
                level,
                packet(0x30, b"\x00" * length),
                violation(level, MALFORMED),
            )
        if level == 5:
            c.add(g, "no-property-length", 5, packet(0x30, s("a/b")), violation(5, MALFORMED))
            c.add(
                g,
                "qos1-no-property-length",
                5,
                packet(0x32, s("a/b") + u16(3)),
                violation(5, MALFORMED),
            )
        c.add(
            g,
            "topic-with-unicode",
            level,
            publish(level, "corpus/\u00e9\u6f22\U0001f600", qos=1),
            ok(),
        )


# --- PUBACK, PUBREC, PUBREL, PUBCOMP (sections 3.4-3.7) -----------------------------------
V5_ACK_CODES = {
    PUBACK: {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99},
    PUBREC: {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99},
    PUBREL: {0x00, 0x92},
    PUBCOMP: {0x00, 0x92},
}
ACK_NAMES = {PUBACK: "puback", PUBREC: "pubrec", PUBREL: "pubrel", PUBCOMP: "pubcomp"}
WORKER_PROBE_ID = 0xFFF0


def probe_answer(level: int) -> tuple[str, int]:
    """What the worker probe (PUBREL for an id never received) gets back."""
    return ("pubcomp", 0x92 if level == 5 else 0)


def acks(c: Corpus) -> None:
    for level in LEVELS:
        for ptype, aname in ACK_NAMES.items():
            ack_fields(c, level, ptype, aname)
            unknown_packet_id(c, level, ptype, aname)
        inflight_acks(c, level)


def ack_fields(c: Corpus, level: int, ptype: int, aname: str) -> None:
    """An acknowledgement's packet id, length, trailing bytes and reason code."""
    g = "acks"
    c.add(g, f"{aname}-packet-id-0", level, ack(ptype, 0), violation(level, PROTOCOL))
    c.add(
        g,
        f"{aname}-length-0",
        level,
        packet(ptype << 4 | REQUIRED_FLAGS[ptype], b""),
        violation(level, MALFORMED),
    )
    c.add(
        g,
        f"{aname}-length-1",
        level,
        packet(ptype << 4 | REQUIRED_FLAGS[ptype], b"\x01"),
        violation(level, MALFORMED),
    )
    if level < 5:  # only the packet id (3.1.1 sections 3.4-3.7)
        for extra in (b"\x00", b"\x00\x00", b"\x10\x00\x00"):
            c.add(g, f"{aname}-trailing-{len(extra)}", level, ack(ptype, 5, extra), CLOSE)
    else:
        # A reason code not in the packet's table (sections 3.4.2.1-3.7.2.1).
        for code in (
            0x01,
            0x02,
            0x04,
            0x11,
            0x18,
            0x7F,
            0x81,
            0x82,
            0x84,
            0x8F,
            0x92,
            0x93,
            0x98,
            0x9A,
            0xA0,
            0xFF,
        ):
            if code not in V5_ACK_CODES[ptype]:
                c.add(
                    g,
                    f"{aname}-reason-{code:02x}",
                    5,
                    ack(ptype, 5, bytes((code,))),
                    violation(5, PROTOCOL),
                )
        c.add(
            g,
            f"{aname}-reason-and-no-property-length-trailing",
            5,
            ack(ptype, 5, b"\x00\x00\x00"),
            violation(5, MALFORMED),
        )


def unknown_packet_id(c: Corpus, level: int, ptype: int, aname: str) -> None:
    """An acknowledgement for a packet id not in flight, with each reason code MQTT 5 allows."""
    g = "acks"
    # For a packet id not in flight: a late duplicate, not a violation.
    # PUBREC is answered PUBREL (0x92 Packet Identifier not found in 5.0),
    # PUBREL with PUBCOMP; PUBACK and PUBCOMP with nothing.
    nf = 0x92 if level == 5 else 0
    answer = {
        PUBACK: (),
        PUBCOMP: (),
        PUBREC: (("pubrel", nf),),
        PUBREL: (("pubcomp", nf),),
    }[ptype]
    c.add(
        g,
        f"{aname}-unknown-packet-id",
        level,
        ack(ptype, 4242),
        ok((*answer, probe_answer(level))),
        probe="worker",
    )
    if level == 5:
        for code in sorted(V5_ACK_CODES[ptype]):
            if ptype == PUBREC and code >= 0x80:
                # Item 19: a failed PUBREC ends the flow; nothing to release (4.3.3).
                got: tuple[tuple[str, int], ...] = ()
            else:
                got = answer
            c.add(
                g,
                f"{aname}-unknown-packet-id-reason-{code:02x}",
                5,
                ack(ptype, 4243, bytes((code,))),
                ok((*got, probe_answer(5))),
                probe="worker",
            )


def inflight_acks(c: Corpus, level: int) -> None:
    """Acknowledgements of a message in flight to the client: wrong types, and the right ones."""
    # Item 18: an acknowledgement of the wrong type for a message in flight is
    # a protocol violation [MQTT-4.8.0-1].
    wrong = {
        "puback-for-qos2": (2, False, PUBACK),
        "puback-after-pubrel": (2, True, PUBACK),
        "pubcomp-for-qos1": (1, False, PUBCOMP),
        "pubcomp-before-pubrel": (2, False, PUBCOMP),
        "pubrec-for-qos1": (1, False, PUBREC),
        "pubrel-for-qos1-delivery": None,
    }
    for name, spec in wrong.items():
        if spec is None:
            continue
        qos, released, ptype = spec
        c.add(
            "inflight",
            name,
            level,
            ack(ptype, 0xFFFF),
            violation(level, PROTOCOL),
            setup="inflight",
            inflight=(qos, released),
            probe="none",
        )
        if level == 5:
            c.add(
                "inflight",
                name + "-with-reason",
                level,
                ack(ptype, 0xFFFF, b"\x80" if ptype != PUBCOMP else b"\x92"),
                violation(level, PROTOCOL),
                setup="inflight",
                inflight=(qos, released),
                probe="none",
            )
    # The right acknowledgements are fine (controls).
    for name, (qos, released, ptype, answer) in {
        "puback-for-qos1": (1, False, PUBACK, ()),
        "pubrec-for-qos2": (2, False, PUBREC, (("pubrel", 0),)),
        "pubcomp-after-pubrel": (2, True, PUBCOMP, ()),
        "pubrec-again-after-pubrel": (2, True, PUBREC, (("pubrel", 0),)),
    }.items():
        c.add(
            "inflight",
            name,
            level,
            ack(ptype, 0xFFFF),
            ok((*answer, probe_answer(level))),
            setup="inflight",
            inflight=(qos, released),
            probe="worker",
        )
