"""The malformed-packet corpus as data: every packet type x every field and
flag violation x MQTT 3.1, 3.1.1 and 5.0, each with the exact answer the
specifications require. Written from the spec text, not from flockmq's code.

How an answer is derived:

- MQTT 3.1 and 3.1.1 cannot say why: a protocol violation closes the network
  connection [MQTT-4.8.0-1] (3.1.1 section 4.8), inside CONNECT as after it
  [MQTT-3.1.4-1], with two exceptions that have a CONNACK return code: 0x01
  for a protocol level the server does not speak under a known name
  [MQTT-3.1.2-2], and 0x02 for a client identifier it rejects ([MQTT-3.1.3-8];
  MQTT 3.1 asks for 1 to 23 characters).
- MQTT 5.0: a bad CONNECT is answered by CONNACK with the reason code, then
  a close ([MQTT-3.1.4-1] and section 4.13 allow the CONNACK); after CONNACK,
  by DISCONNECT with the reason code, then a close [MQTT-4.13.1-1].
- Which code: the spec's own words where it names one ("... is a Malformed
  Packet", "It is a Protocol Error to ..."); elsewhere its definitions
  (section 1.2): Malformed Packet (0x81) when the packet cannot be parsed as
  the spec lays it out (lengths, encodings, reserved bits, a property
  identifier not valid for the packet type [section 2.2.2.2]), Protocol Error
  (0x82) when it parses but carries data, or arrives in a state, that the
  spec forbids (wildcards in a topic name, a zero packet id, a second CONNECT).
- No answer at all, only a close, for every level: anything before CONNECT
  [MQTT-3.1.0-1], a CONNECT whose protocol name is not MQTT [MQTT-3.1.2-1],
  and a CONNECT whose fixed header is already wrong (the server cannot know
  the level it would answer at; 5.0 makes the CONNACK optional).

Cases that the broker gets wrong today carry `xfail` with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .wire import (
    PINGREQ,
    REQUIRED_FLAGS,
    ack,
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
    unsubscribe,
    valid_body,
    vbi,
    will_fields,
)

LEVELS = (3, 4, 5)
MALFORMED = 0x81
PROTOCOL = 0x82
TOPIC_ALIAS_INVALID = 0x94
TOO_LARGE = 0x95
BAD_AUTH_METHOD = 0x8C
MAX_PACKET_SIZE = 1024 * 1024  # the broker's default, told in its CONNACK
TOPIC_ALIAS_MAXIMUM = 100  # the broker's, told in its CONNACK

FIXED_ON_MAIN = "fixed on main"
# Mismatches in frontend/connection.py (not this branch's to fix): reported.
AUTH_BUG = (
    "bug: AUTH from a client whose CONNECT had no Authentication Method is a "
    "Protocol Error (5.0 section 3.15); the broker answers DISCONNECT 0x8C, "
    "which is not a DISCONNECT reason code at all (frontend/connection.py handle_packet)"
)

Expect = tuple[object, ...]
CLOSE: Expect = ("close",)


def ok(answers: tuple[tuple[str, int], ...] | None = None) -> Expect:
    """Accepted: the connection stays open (a probe is answered). `answers`,
    when given, are exactly the packets the broker sends before the probe's
    answer, as (packet name, reason or return code)."""
    return ("ok", answers)


def connack(code: int) -> Expect:
    return ("connack", code)


def refuse(level: int, code: int) -> Expect:
    """A bad CONNECT: MQTT 5 is told with CONNACK; 3.1/3.1.1 are closed."""
    return ("connack", code) if level == 5 else CLOSE


def violation(level: int, code: int) -> Expect:
    """After CONNACK: MQTT 5 is told with DISCONNECT; 3.1/3.1.1 are closed."""
    return ("disconnect", code) if level == 5 else CLOSE


@dataclass(frozen=True)
class Case:
    """`setup`: "none" (data is the first thing sent), "connected" (after a
    valid CONNECT and its CONNACK), or "inflight" (connected, subscribed, and
    a message of QoS `inflight[0]` delivered to it, PUBREC'd and released
    when `inflight[1]`; `data` may name its packet id as 0xFFFF).
    `probe`: "ping" sends PINGREQ behind the data (the acceptor answers it
    unless it closed), "worker" a PUBREL for an unknown id (the session's
    worker answers it, after anything else it sends for the data), "none"
    waits for the close."""

    name: str
    group: str
    level: int
    data: bytes
    expect: Expect
    setup: str = "connected"
    probe: str = "ping"
    inflight: tuple[int, bool] = (0, False)
    answer_level: int = 0  # the level the broker answers at (0: `level`)
    xfail: str | None = None
    will: bool = False  # setup "will": the will must be published after the close


# --- UTF-8 (3.1.1 section 1.5.3, 5.0 section 1.5.4) -------------------------------------
# Ill-formed UTF-8 [MQTT-1.5.4-1] (surrogates and overlong forms included), and
# U+0000 [MQTT-1.5.4-2]: each is a Malformed Packet.
BAD_UTF8 = {
    "byte-ff": b"a\xff",
    "byte-fe": b"\xfe",
    "lone-continuation": b"a\x80b",
    "truncated-2-byte": b"a\xc3",
    "truncated-3-byte": b"\xe2\x82",
    "truncated-4-byte": b"\xf0\x9f\x98",
    "overlong-slash": b"a\xc0\xafb",
    "overlong-3-byte": b"\xe0\x80\xaf",
    "overlong-4-byte": b"\xf0\x80\x80\xaf",
    "overlong-nul": b"a\xc0\x80",
    "surrogate-high": b"\xed\xa0\x80",
    "surrogate-low": b"a\xed\xbf\xbf",
    "above-u10ffff": b"\xf4\x90\x80\x80",
    "five-byte-form": b"\xf8\x88\x80\x80\x80",
    "u0000": b"a\x00b",
    "u0000-alone": b"\x00",
}
FEW_BAD_UTF8 = {k: BAD_UTF8[k] for k in ("byte-ff", "overlong-slash", "surrogate-high", "u0000")}

# Topic names may not hold wildcards [MQTT-3.3.2-2] nor be empty [MQTT-4.7.3-1].
WILDCARD_TOPICS = [
    "+",
    "#",
    "a/+",
    "a/#",
    "+/a",
    "a/+/b",
    "a+",
    "a#",
    "a/b#",
    "#/a",
    "/+",
    "+/+",
    "a/b/c/#",
    "$SYS/#",
]
# Topic filters: '#' last and alone in its level [MQTT-4.7.1-1], '+' alone in
# its level [MQTT-4.7.1-2], not empty [MQTT-4.7.3-1].
BAD_FILTERS = [
    "a/b#",
    "a/#/b",
    "#/a",
    "a#",
    "#a",
    "##",
    "#/#",
    "a+",
    "+a",
    "a/+b",
    "a/b+/c",
    "++",
    "+#",
    "a/#/",
    "",
]
GOOD_FILTERS = ["#", "+", "+/+", "a/#", "/#", "a/+/c", "$share", "a//b"]
# MQTT 5 shared subscriptions: "$share/" ShareName "/" filter, ShareName at
# least one character without wildcards [MQTT-4.8.2-1], [MQTT-4.8.2-2].
BAD_SHARED = ["$share//a", "$share/g", "$share/g/", "$share/g+/a", "$share/#/a", "$share/+/a"]


# --- MQTT 5 properties (5.0 section 2.2.2.2, Table 2-4) ---------------------------------
CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 3, 4, 5, 6, 7
SUBSCRIBE, UNSUBSCRIBE, DISCONNECT, AUTH, WILL = 8, 10, 14, 15, 0
ACKS = (PUBACK, PUBREC, PUBREL, PUBCOMP)
ALL = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15, WILL})
# identifier -> (name, a valid value on the wire, the packets that may carry it)
PROPERTIES: dict[int, tuple[str, bytes, frozenset[int]]] = {
    0x01: ("payload-format", b"\x01", frozenset({PUBLISH, WILL})),
    0x02: ("message-expiry", u32(60), frozenset({PUBLISH, WILL})),
    0x03: ("content-type", s("text/plain"), frozenset({PUBLISH, WILL})),
    0x08: ("response-topic", s("r/t"), frozenset({PUBLISH, WILL})),
    0x09: ("correlation-data", s(b"\x01\x02"), frozenset({PUBLISH, WILL})),
    0x0B: ("subscription-id", vbi(5), frozenset({PUBLISH, SUBSCRIBE})),
    0x11: ("session-expiry", u32(0), frozenset({CONNECT, 2, DISCONNECT})),
    0x12: ("assigned-client-id", s("x"), frozenset({2})),
    0x13: ("server-keep-alive", u16(10), frozenset({2})),
    0x15: ("auth-method", s("SCRAM"), frozenset({CONNECT, 2, AUTH})),
    0x16: ("auth-data", s(b"d"), frozenset({CONNECT, 2, AUTH})),
    0x17: ("request-problem-info", b"\x01", frozenset({CONNECT})),
    0x18: ("will-delay", u32(5), frozenset({WILL})),
    0x19: ("request-response-info", b"\x00", frozenset({CONNECT})),
    0x1A: ("response-info", s("x"), frozenset({2})),
    0x1C: ("server-reference", s("x"), frozenset({2, DISCONNECT})),
    0x1F: ("reason-string", s("why"), frozenset({2, 4, 5, 6, 7, 9, 11, DISCONNECT, AUTH})),
    0x21: ("receive-maximum", u16(10), frozenset({CONNECT, 2})),
    0x22: ("topic-alias-maximum", u16(10), frozenset({CONNECT, 2})),
    0x23: ("topic-alias", u16(1), frozenset({PUBLISH})),
    0x24: ("maximum-qos", b"\x01", frozenset({2})),
    0x25: ("retain-available", b"\x01", frozenset({2})),
    0x26: ("user-property", s("k") + s("v"), ALL),
    0x27: ("maximum-packet-size", u32(MAX_PACKET_SIZE), frozenset({CONNECT, 2})),
    0x28: ("wildcard-sub-available", b"\x01", frozenset({2})),
    0x29: ("sub-id-available", b"\x01", frozenset({2})),
    0x2A: ("shared-sub-available", b"\x01", frozenset({2})),
}
UNKNOWN_PROPERTY_IDS = [
    0x00,
    0x04,
    0x05,
    0x07,
    0x0A,
    0x0C,
    0x10,
    0x14,
    0x1B,
    0x20,
    0x2B,
    0x7F,
    0xFF,
]
CONTEXTS = {
    CONNECT: "connect",
    WILL: "will",
    PUBLISH: "publish",
    PUBACK: "puback",
    PUBREC: "pubrec",
    PUBREL: "pubrel",
    PUBCOMP: "pubcomp",
    SUBSCRIBE: "subscribe",
    UNSUBSCRIBE: "unsubscribe",
    DISCONNECT: "disconnect",
    AUTH: "auth",
}


def in_context(ctx: int, block: bytes) -> tuple[bytes, str]:
    """A valid MQTT 5 packet of `ctx` whose property block is `block`, and
    its phase: "connect" (answered by CONNACK) or "session" (DISCONNECT)."""
    if ctx == CONNECT:
        return connect(5, "corpus-p", connect_props=block), "connect"
    if ctx == WILL:
        return connect(
            5, "corpus-w", flags=0x06, will=will_fields(5, "w/t", wprops=block)
        ), "connect"
    if ctx == PUBLISH:
        return publish(5, "a/b", pprops=block), "session"
    if ctx in ACKS:
        return ack(ctx, 0x7777, b"\x00" + block), "session"
    if ctx == SUBSCRIBE:
        return subscribe(5, [("a/b", 0)], sprops=block), "session"
    if ctx == UNSUBSCRIBE:
        return unsubscribe(5, ["a/b"], uprops=block), "session"
    if ctx == DISCONNECT:
        return disconnect(5, b"\x00" + block), "session"
    return auth(b"\x18" + block), "session"


class Corpus:
    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}

    def add(
        self, group: str, name: str, level: int, data: bytes, expect: Expect, **kw: object
    ) -> None:
        full = f"v{level}/{group}/{name}"
        if full in self.cases:
            raise ValueError(f"duplicate corpus case {full}")
        self.cases[full] = Case(full, group, level, data, expect, **kw)  # type: ignore[arg-type]

    def ctx_case(
        self, group: str, name: str, ctx: int, block: bytes, code: int, **kw: object
    ) -> None:
        data, phase = in_context(ctx, block)
        expect = connack(code) if phase == "connect" else ("disconnect", code)
        self.add(
            group,
            f"{CONTEXTS[ctx]}/{name}",
            5,
            data,
            expect,
            setup="none" if phase == "connect" else "connected",
            **kw,
        )


# --- fixed header (3.1.1 section 2.2, 5.0 section 2.1) ------------------------------------
def fixed_header(c: Corpus) -> None:
    for level in LEVELS:
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


# --- CONNECT (section 3.1) ----------------------------------------------------------------
def connect_packet(c: Corpus) -> None:
    for level in LEVELS:

        def add(name: str, data: bytes, expect: Expect, level: int = level, **kw: object) -> None:
            c.add("connect", name, level, data, expect, setup="none", **kw)

        add("valid", connect(level, f"corpus-ok-{level}"), ok())
        # Protocol name not MQTT: closed, no CONNACK [MQTT-3.1.2-1].
        for name in (b"MQTU", b"MQTX", b"mqtt", b"MQT", b"MQTTT", b"", b"MQIsdp\x00", b"MQ\x00T"):
            add(f"protocol-name-{name.hex() or 'empty'}", connect(level, name=name), CLOSE)
        for key, bad in FEW_BAD_UTF8.items():
            add(f"protocol-name-utf8-{key}", connect(level, name=bad), CLOSE)
        # A known name with a level this server does not speak: CONNACK 0x01
        # [MQTT-3.1.2-2] (3.1.1 format; 0x84 to what claims 5).
        for plevel in (0, 1, 2, 6, 7, 0x83, 0x84, 0xFF):
            add(
                f"protocol-level-{plevel}",
                connect(level, name=b"MQTT" if level > 3 else b"MQIsdp", protocol_level=plevel),
                connack(0x01),
                answer_level=4,
            )
        if level == 3:
            add("mqtt-name-level-3", connect(3, name=b"MQTT"), connack(0x01))
        else:
            add(
                "mqisdp-name", connect(level, name=b"MQIsdp"), connack(0x01 if level == 4 else 0x84)
            )
        # Reserved flag: 3.1.1/5.0 [MQTT-3.1.2-3] Malformed; MQTT 3.1 does not reserve it.
        add(
            "reserved-flag",
            connect(level, f"corpus-rf-{level}", flags=0x03),
            ok() if level == 3 else refuse(level, MALFORMED),
        )
        add(
            "reserved-flag-and-will",
            connect(level, f"corpus-rfw-{level}", flags=0x07, will=will_fields(level, "w/t")),
            ok() if level == 3 else refuse(level, MALFORMED),
        )
        # Will QoS 3 is a Malformed Packet [MQTT-3.1.2-14]; QoS or retain without the
        # will flag are not allowed [MQTT-3.1.2-11], [MQTT-3.1.2-13] (flag byte: Malformed).
        add(
            "will-qos-3",
            connect(level, flags=0x1E, will=will_fields(level, "w/t")),
            refuse(level, MALFORMED),
        )
        for flags, what in (
            (0x0A, "will-qos1-no-will"),
            (0x12, "will-qos2-no-will"),
            (0x22, "will-retain-no-will"),
            (0x3A, "will-all-no-will"),
        ):
            add(what, connect(level, flags=flags), refuse(level, MALFORMED))
        if level == 4:  # [MQTT-3.1.2-22]: 3.1.1 only (5.0 allows it)
            add("password-without-username", connect(4, flags=0x42, password=s(b"pw")), CLOSE)
        if level == 5:
            add(
                "password-without-username",
                connect(5, "corpus-pw", flags=0x42, password=s(b"pw")),
                ok(),
            )
        # Fields the flags announce but the packet lacks, or bytes after the last one.
        add("username-flag-no-username", connect(level, flags=0x82), refuse(level, MALFORMED))
        if level != 3:  # MQTT 3.1 clients may leave the password out (as mosquitto tolerates)
            add(
                "password-flag-no-password",
                connect(level, flags=0xC2, username=s("u")),
                refuse(level, MALFORMED),
            )
        add("will-flag-no-will", connect(level, flags=0x06), refuse(level, MALFORMED))
        add(
            "will-no-payload",
            connect(level, flags=0x06, will=(b"\x00" if level == 5 else b"") + s("w/t")),
            refuse(level, MALFORMED),
        )
        add("trailing-byte", connect(level, password=b"\x00"), refuse(level, MALFORMED))
        add(
            "trailing-bytes-after-password",
            connect(level, flags=0xC2, username=s("u"), password=s(b"p") + b"xx"),
            refuse(level, MALFORMED),
        )
        full = connect(
            level,
            "corpus-trunc",
            flags=0xC6,
            will=will_fields(level, "w/t"),
            username=s("u"),
            password=s(b"p"),
        )
        body = full[2:]
        name_end = 2 + len(b"MQIsdp" if level == 3 else b"MQTT")
        for cut in range(1, len(body) - 1):
            # Cut inside a field: the lengths run past the packet (Malformed). Until
            # the protocol level is read the level is unknown: only a close.
            if level == 3 and cut == len(body) - 3:
                expect = ok()  # MQTT 3.1 may leave the password out (see above)
            else:
                expect = refuse(level, MALFORMED) if cut > name_end else CLOSE
            add(f"truncated-body-{cut}", packet(0x10, body[:cut]), expect)
        add(
            "client-id-length-past-end",
            packet(0x10, connect(level, b"")[2:-2] + u16(40) + b"ab"),
            refuse(level, MALFORMED),
        )
        # UTF-8 in the client id, will topic and user name [MQTT-1.5.4-1/2].
        for key, bad in BAD_UTF8.items():
            add(f"client-id-utf8-{key}", connect(level, bad), refuse(level, MALFORMED))
            add(
                f"will-topic-utf8-{key}",
                connect(level, flags=0x06, will=will_fields(level, bad)),
                refuse(level, MALFORMED),
            )
            add(
                f"username-utf8-{key}",
                connect(level, flags=0x82, username=s(bad)),
                refuse(level, MALFORMED),
            )
        # Will topic: a topic name (no wildcards [MQTT-3.3.2-2], not empty [MQTT-4.7.3-1]).
        for topic in WILDCARD_TOPICS:
            add(
                f"will-topic-{topic}",
                connect(level, flags=0x06, will=will_fields(level, topic)),
                refuse(level, PROTOCOL),
            )
        add(
            "will-topic-empty",
            connect(level, flags=0x06, will=will_fields(level, "")),
            refuse(level, PROTOCOL),
        )
        # Client identifiers: 3.1 asks for 1-23 characters (0x02 for an empty one;
        # longer ones are accepted as Mosquitto does); 3.1.1 needs clean session
        # for an empty one [MQTT-3.1.3-8]; 5.0 assigns one [MQTT-3.1.3-6].
        empty = {3: (connack(0x02), connack(0x02)), 4: (ok(), connack(0x02)), 5: (ok(), ok())}[
            level
        ]
        add("client-id-empty-clean", connect(level, b"", flags=0x02), empty[0])
        add("client-id-empty-persistent", connect(level, b"", flags=0x00), empty[1])
        add("client-id-24-characters", connect(level, f"corpus-24-v{level}-".ljust(24, "x")), ok())
        # A CONNECT whose remaining length is not minimal: 5.0 only [MQTT-1.5.5-1].
        body = connect(level, f"corpus-nm-{level}")[2:]
        add(
            "non-minimal-length",
            b"\x10" + bytes((0x80 | len(body), 0x00)) + body,
            connack(MALFORMED) if level == 5 else ok(),
        )


# --- MQTT 5 properties, in every packet a client sends ----------------------------------
def properties(c: Corpus) -> None:
    for ctx, cname in CONTEXTS.items():
        g = f"properties-{cname}"
        for ident, (pname, value, allowed) in PROPERTIES.items():
            if ctx not in allowed:
                # Not valid for the packet type: a Malformed Packet (section 2.2.2.2).
                c.ctx_case(g, f"not-allowed-{pname}", ctx, props(prop(ident, value)), MALFORMED)
            elif ident != 0x26 and not (ctx == PUBLISH and ident == 0x0B):
                # (A Subscription Identifier may repeat in a PUBLISH to a client; from
                # a client it is not allowed at all: see publish_properties.)
                # Each of these may appear once: "It is a Protocol Error to include
                # ... more than once" (sections 3.x.2.x).
                dup = props(prop(ident, value), prop(ident, value))
                c.ctx_case(g, f"duplicate-{pname}", ctx, dup, PROTOCOL)
        for ident in UNKNOWN_PROPERTY_IDS:
            c.ctx_case(g, f"unknown-id-{ident:02x}", ctx, props(prop(ident, b"\x00")), MALFORMED)
        # Lengths: the Property Length is a minimal Variable Byte Integer of at
        # most 4 bytes [MQTT-1.5.5-1] that must hold whole properties.
        pair = prop(0x26, s("k") + s("v"))
        c.ctx_case(g, "length-past-packet", ctx, vbi(300) + pair, MALFORMED)
        c.ctx_case(g, "length-5-bytes", ctx, b"\xff\xff\xff\xff\x7f", MALFORMED)
        c.ctx_case(g, "length-non-minimal", ctx, b"\x80\x00", MALFORMED)
        c.ctx_case(
            g,
            "length-non-minimal-with-property",
            ctx,
            bytes((0x80 | len(pair), 0x00)) + pair,
            MALFORMED,
        )
        c.ctx_case(g, "user-property-without-value", ctx, props(prop(0x26, s("k"))), MALFORMED)
        c.ctx_case(
            g,
            "user-property-value-past-block",
            ctx,
            props(prop(0x26, s("k") + u16(9) + b"v")),
            MALFORMED,
        )
        c.ctx_case(g, "identifier-without-value", ctx, props(b"\x26"), MALFORMED)
        for key, bad in FEW_BAD_UTF8.items():
            c.ctx_case(
                g,
                f"user-property-name-utf8-{key}",
                ctx,
                props(prop(0x26, s(bad) + s("v"))),
                MALFORMED,
            )
            c.ctx_case(
                g,
                f"user-property-value-utf8-{key}",
                ctx,
                props(prop(0x26, s("k") + s(bad))),
                MALFORMED,
            )
            if ctx in (*ACKS, DISCONNECT, AUTH):
                c.ctx_case(
                    g, f"reason-string-utf8-{key}", ctx, props(prop(0x1F, s(bad))), MALFORMED
                )
            if ctx in (PUBLISH, WILL):
                c.ctx_case(g, f"content-type-utf8-{key}", ctx, props(prop(0x03, s(bad))), MALFORMED)
                c.ctx_case(
                    g, f"response-topic-utf8-{key}", ctx, props(prop(0x08, s(bad))), MALFORMED
                )
        if ctx in (PUBLISH, WILL):
            # Payload Format Indicator is 0 or 1 (3.3.2.3.2); the Response Topic is a
            # topic name [MQTT-3.3.2-14]: no wildcards, not empty.
            for v in (2, 3, 0x80, 0xFF):
                c.ctx_case(g, f"payload-format-{v}", ctx, props(prop(0x01, bytes((v,)))), PROTOCOL)
            for topic in ("r/#", "+", "r/+/x", ""):
                c.ctx_case(
                    g,
                    f"response-topic-{topic or 'empty'}",
                    ctx,
                    props(prop(0x08, s(topic))),
                    PROTOCOL,
                )
            c.ctx_case(
                g, "correlation-data-past-block", ctx, props(prop(0x09, u16(20) + b"x")), MALFORMED
            )
        if ctx == PUBLISH:
            # User Property may repeat, with the same name too (a control case).
            data, _ = in_context(ctx, props(pair, pair, prop(0x26, s("k") + s("w"))))
            c.add(g, f"{cname}/user-properties-repeated", 5, data, ok())


def connect_properties(c: Corpus) -> None:
    g = "properties-connect"
    # 3.1.2.11: 0 is a Protocol Error for Receive Maximum and Maximum Packet Size;
    # Request Problem / Response Information are 0 or 1.
    for v in (0,):
        c.ctx_case(g, "receive-maximum-0", CONNECT, props(prop(0x21, u16(v))), PROTOCOL)
        c.ctx_case(g, "maximum-packet-size-0", CONNECT, props(prop(0x27, u32(v))), PROTOCOL)
    for v in (2, 3, 0x80, 0xFF):
        c.ctx_case(
            g, f"request-problem-info-{v}", CONNECT, props(prop(0x17, bytes((v,)))), PROTOCOL
        )
        c.ctx_case(
            g, f"request-response-info-{v}", CONNECT, props(prop(0x19, bytes((v,)))), PROTOCOL
        )
    # Authentication Data without an Authentication Method (3.1.2.11.10).
    c.ctx_case(g, "auth-data-without-method", CONNECT, props(prop(0x16, s(b"d"))), PROTOCOL)
    # Item 12: a method the server does not support: CONNACK 0x8C (section 4.12).
    for method in ("SCRAM-SHA-1", "x"):
        c.ctx_case(
            g,
            f"auth-method-{method}",
            CONNECT,
            props(prop(0x15, s(method))),
            BAD_AUTH_METHOD,
            xfail=FIXED_ON_MAIN,
        )
    c.ctx_case(
        g,
        "auth-method-and-data",
        CONNECT,
        props(prop(0x15, s("x")), prop(0x16, s(b"d"))),
        BAD_AUTH_METHOD,
        xfail=FIXED_ON_MAIN,
    )
    # Item 17: a Maximum Packet Size too small for the CONNACK: it cannot be sent
    # [MQTT-3.1.2-25], so the connection is closed without one.
    for size in (1, 2, 4, 10):
        data = connect(5, f"corpus-mps-{size}", connect_props=props(prop(0x27, u32(size))))
        c.add(
            g,
            f"connect/maximum-packet-size-{size}-below-connack",
            5,
            data,
            CLOSE,
            setup="none",
            xfail=FIXED_ON_MAIN,
        )
    for name, block in (
        (
            "all-valid",
            props(
                prop(0x11, u32(10)),
                prop(0x21, u16(5)),
                prop(0x22, u16(3)),
                prop(0x17, b"\x00"),
                prop(0x19, b"\x01"),
                prop(0x27, u32(1000)),
            ),
        ),
        ("receive-maximum-65535", props(prop(0x21, u16(65535)))),
        ("topic-alias-maximum-0", props(prop(0x22, u16(0)))),
    ):
        c.add(
            g,
            f"connect/{name}",
            5,
            connect(5, f"corpus-{name}", connect_props=block),
            ok(),
            setup="none",
        )


def publish_properties(c: Corpus) -> None:
    g = "properties-publish"
    # Topic Alias: 0 is not permitted [MQTT-3.3.2-8]; above the server's Topic Alias
    # Maximum it is Topic Alias invalid 0x94 [MQTT-3.3.2-9]; an unknown alias with
    # an empty topic name is a Protocol Error (3.3.2.3.4).
    c.ctx_case(g, "topic-alias-0", PUBLISH, props(prop(0x23, u16(0))), PROTOCOL)
    for v in (TOPIC_ALIAS_MAXIMUM + 1, 1000, 65535):
        c.ctx_case(g, f"topic-alias-{v}", PUBLISH, props(prop(0x23, u16(v))), TOPIC_ALIAS_INVALID)
    for v in (1, 7, TOPIC_ALIAS_MAXIMUM):
        data = publish(5, "", pprops=props(prop(0x23, u16(v))))
        c.add(g, f"publish/unknown-topic-alias-{v}-empty-topic", 5, data, violation(5, PROTOCOL))
    data = publish(5, "a/b", pprops=props(prop(0x23, u16(3)))) + publish(
        5, "", pprops=props(prop(0x23, u16(3)))
    )
    c.add(g, "publish/topic-alias-set-then-used", 5, data, ok())
    # Item 11: a PUBLISH from a client must not carry a Subscription Identifier
    # [MQTT-3.3.4-6]: a Protocol Error.
    for v in (1, 5, 268_435_455):
        c.ctx_case(
            g,
            f"subscription-id-{v}",
            PUBLISH,
            props(prop(0x0B, vbi(v))),
            PROTOCOL,
            xfail=FIXED_ON_MAIN,
        )
    c.ctx_case(g, "subscription-id-0", PUBLISH, props(prop(0x0B, vbi(0))), PROTOCOL)


def subscribe_properties(c: Corpus) -> None:
    g = "properties-subscribe"
    # Subscription Identifier 1..268,435,455; 0 is a Protocol Error (3.8.2.1.2).
    c.ctx_case(g, "subscription-id-0", SUBSCRIBE, props(prop(0x0B, b"\x00")), PROTOCOL)
    c.ctx_case(
        g, "subscription-id-non-minimal", SUBSCRIBE, props(prop(0x0B, b"\x81\x00")), MALFORMED
    )
    c.ctx_case(
        g,
        "subscription-id-5-bytes",
        SUBSCRIBE,
        props(prop(0x0B, b"\x80\x80\x80\x80\x01")),
        MALFORMED,
    )
    c.ctx_case(g, "subscription-id-truncated", SUBSCRIBE, props(prop(0x0B, b"\x81")), MALFORMED)


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
        g = "acks"
        for ptype, aname in ACK_NAMES.items():
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


# --- SUBSCRIBE and UNSUBSCRIBE (sections 3.8, 3.10) ---------------------------------------
def subscriptions(c: Corpus) -> None:
    for level in LEVELS:
        g = "subscribe"
        c.add(
            g,
            "packet-id-0",
            level,
            subscribe(level, [("a/b", 0)], packet_id=0),
            violation(level, PROTOCOL),
        )
        # At least one topic filter [MQTT-3.8.3-3] (5.0: a Protocol Error).
        c.add(g, "no-filters", level, subscribe(level, []), violation(level, PROTOCOL))
        for length in (0, 1):
            c.add(
                g,
                f"remaining-length-{length}",
                level,
                packet(0x82, b"\x00" * length),
                violation(level, MALFORMED),
            )
        head = u16(1) + (b"\x00" if level == 5 else b"")  # packet id, no properties
        c.add(
            g,
            "filter-length-past-end",
            level,
            packet(0x82, head + u16(30) + b"ab\x00"),
            violation(level, MALFORMED),
        )
        c.add(
            g, "no-options-byte", level, packet(0x82, head + s("a/b")), violation(level, MALFORMED)
        )
        c.add(
            g,
            "second-filter-no-options-byte",
            level,
            packet(0x82, head + s("a/b") + b"\x00" + s("c")),
            violation(level, MALFORMED),
        )
        for i, topic_filter in enumerate(BAD_FILTERS):
            c.add(
                g,
                f"filter-{topic_filter or 'empty'}",
                level,
                subscribe(level, [(topic_filter, 0)]),
                violation(level, PROTOCOL),
            )
            c.add(
                g,
                f"second-filter-{topic_filter or 'empty'}",
                level,
                subscribe(level, [("ok/t", 1), (topic_filter, 1)], packet_id=2 + i),
                violation(level, PROTOCOL),
            )
        for key, bad in BAD_UTF8.items():
            c.add(
                g,
                f"filter-utf8-{key}",
                level,
                subscribe(level, [(bad, 0)]),
                violation(level, MALFORMED),
            )
        for topic_filter in GOOD_FILTERS:
            c.add(g, f"valid-{topic_filter}", level, subscribe(level, [(topic_filter, 1)]), ok())
        if level < 5:
            # Requested QoS 0-2, other bits reserved: a malformed packet [MQTT-3.8.3-4].
            for opts in (0x03, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF, 0x07):
                c.add(g, f"options-{opts:02x}", level, subscribe(level, [("a/b", opts)]), CLOSE)
            c.add(
                g, "share-is-an-ordinary-filter", level, subscribe(level, [("$share//a", 0)]), ok()
            )
        else:
            # 5.0 (3.8.3.1): bits 6-7 reserved (Malformed [MQTT-3.8.3-5]); Maximum QoS
            # 3 and Retain Handling 3 are Protocol Errors.
            for opts in (0x40, 0x80, 0xC0, 0x41):
                c.add(
                    g,
                    f"options-{opts:02x}",
                    5,
                    subscribe(5, [("a/b", opts)]),
                    violation(5, MALFORMED),
                )
            for opts in (0x03, 0x07, 0x0F, 0x1F):
                c.add(
                    g,
                    f"options-qos3-{opts:02x}",
                    5,
                    subscribe(5, [("a/b", opts)]),
                    violation(5, PROTOCOL),
                )
            for opts in (0x30, 0x31, 0x3E):
                c.add(
                    g,
                    f"options-retain-handling-3-{opts:02x}",
                    5,
                    subscribe(5, [("a/b", opts)]),
                    violation(5, PROTOCOL),
                )
            for opts in (0x04, 0x08, 0x0C, 0x10, 0x20, 0x2E):
                c.add(g, f"options-valid-{opts:02x}", 5, subscribe(5, [("corpus/o", opts)]), ok())
            # No Local on a shared subscription [MQTT-3.8.3-4]; shared syntax (4.8.2).
            c.add(
                g,
                "shared-no-local",
                5,
                subscribe(5, [("$share/g/a", 0x04)]),
                violation(5, PROTOCOL),
            )
            for topic_filter in BAD_SHARED:
                c.add(
                    g,
                    f"shared-{topic_filter}",
                    5,
                    subscribe(5, [(topic_filter, 0)]),
                    violation(5, PROTOCOL),
                )
            for topic_filter in ("$share/g/#", "$share/g/a/+", "$share/group-1/x"):
                c.add(g, f"shared-valid-{topic_filter}", 5, subscribe(5, [(topic_filter, 1)]), ok())
        g = "unsubscribe"
        c.add(
            g,
            "packet-id-0",
            level,
            unsubscribe(level, ["a/b"], packet_id=0),
            violation(level, PROTOCOL),
        )
        c.add(
            g, "no-filters", level, unsubscribe(level, []), violation(level, PROTOCOL)
        )  # [MQTT-3.10.3-2]
        for length in (0, 1):
            c.add(
                g,
                f"remaining-length-{length}",
                level,
                packet(0xA2, b"\x00" * length),
                violation(level, MALFORMED),
            )
        head = u16(1) + (b"\x00" if level == 5 else b"")
        c.add(
            g,
            "filter-length-past-end",
            level,
            packet(0xA2, head + u16(30) + b"ab"),
            violation(level, MALFORMED),
        )
        c.add(
            g,
            "second-filter-length-past-end",
            level,
            packet(0xA2, head + s("a") + u16(30) + b"ab"),
            violation(level, MALFORMED),
        )
        for topic_filter in BAD_FILTERS:
            c.add(
                g,
                f"filter-{topic_filter or 'empty'}",
                level,
                unsubscribe(level, [topic_filter]),
                violation(level, PROTOCOL),
            )
            c.add(
                g,
                f"second-filter-{topic_filter or 'empty'}",
                level,
                unsubscribe(level, ["ok/t", topic_filter]),
                violation(level, PROTOCOL),
            )
        for key, bad in BAD_UTF8.items():
            c.add(
                g,
                f"filter-utf8-{key}",
                level,
                unsubscribe(level, [bad]),
                violation(level, MALFORMED),
            )
        for topic_filter in GOOD_FILTERS:
            c.add(g, f"valid-{topic_filter}", level, unsubscribe(level, [topic_filter]), ok())
        if level == 5:
            for topic_filter in BAD_SHARED:
                c.add(
                    g,
                    f"shared-{topic_filter}",
                    5,
                    unsubscribe(5, [topic_filter]),
                    violation(5, PROTOCOL),
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
                xfail=AUTH_BUG,
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
                xfail=FIXED_ON_MAIN if name != "second-disconnect" else None,
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


def generate() -> dict[str, Case]:
    c = Corpus()
    fixed_header(c)
    connect_packet(c)
    properties(c)
    connect_properties(c)
    publish_properties(c)
    subscribe_properties(c)
    publish_packet(c)
    acks(c)
    subscriptions(c)
    control_packets(c)
    packet_order(c)
    return c.cases


CASES = generate()
GROUPS = sorted({case.group for case in CASES.values()})


def by_group(group: str) -> Iterator[Case]:
    return (case for case in CASES.values() if case.group == group and case.xfail is None)
