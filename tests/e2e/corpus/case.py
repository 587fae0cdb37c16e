"""A corpus case (the bytes a client sends and the exact answer the specs
require), the tables the case generators share (bad UTF-8, bad topics, the
MQTT 5 property table), and how every expected answer is derived. Written
from the spec text, not from flockmq's code.

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

from dataclasses import dataclass
from typing import TypedDict, Unpack

from .wire import (
    ack,
    auth,
    connect,
    disconnect,
    publish,
    s,
    subscribe,
    u16,
    u32,
    unsubscribe,
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
TOPIC_ALIAS_MAXIMUM = 10  # the broker's, told in its CONNACK


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
    return session_packet(ctx, block), "session"


def session_packet(ctx: int, block: bytes) -> bytes:
    """A valid MQTT 5 packet of `ctx`, sent after CONNACK, whose property block is `block`."""
    if ctx == PUBLISH:
        return publish(5, "a/b", pprops=block)
    if ctx in ACKS:
        return ack(ctx, 0x7777, b"\x00" + block)
    if ctx == SUBSCRIBE:
        return subscribe(5, [("a/b", 0)], sprops=block)
    if ctx == UNSUBSCRIBE:
        return unsubscribe(5, ["a/b"], uprops=block)
    if ctx == DISCONNECT:
        return disconnect(5, b"\x00" + block)
    return auth(b"\x18" + block)


class ContextOptions(TypedDict, total=False):
    """Case's fields that have defaults, but its setup (Corpus.ctx_case sets it)."""

    probe: str
    inflight: tuple[int, bool]
    answer_level: int
    xfail: str | None
    will: bool


class CaseOptions(ContextOptions, total=False):
    """Case's fields that have defaults, as Corpus.add passes them on."""

    setup: str


class Corpus:
    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}

    def add(
        self,
        group: str,
        name: str,
        level: int,
        data: bytes,
        expect: Expect,
        **kw: Unpack[CaseOptions],
    ) -> None:
        full = f"v{level}/{group}/{name}"
        if full in self.cases:
            raise ValueError(f"duplicate corpus case {full}")
        self.cases[full] = Case(full, group, level, data, expect, **kw)

    def ctx_case(
        self,
        group: str,
        name: str,
        ctx: int,
        block: bytes,
        code: int,
        **kw: Unpack[ContextOptions],
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
