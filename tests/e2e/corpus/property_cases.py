"""Corpus cases of MQTT 5 properties (5.0 section 2.2.2) in every packet a
client sends: identifiers not valid for the packet, duplicates, lengths,
UTF-8, and the values each property may not take.
"""

from __future__ import annotations

from .case import (
    ACKS,
    AUTH,
    BAD_AUTH_METHOD,
    CLOSE,
    CONNECT,
    CONTEXTS,
    DISCONNECT,
    FEW_BAD_UTF8,
    MALFORMED,
    PROPERTIES,
    PROTOCOL,
    PUBLISH,
    SUBSCRIBE,
    TOPIC_ALIAS_INVALID,
    TOPIC_ALIAS_MAXIMUM,
    UNKNOWN_PROPERTY_IDS,
    WILL,
    Corpus,
    in_context,
    ok,
    violation,
)
from .wire import (
    connect,
    prop,
    props,
    publish,
    s,
    u16,
    u32,
    vbi,
)


# --- MQTT 5 properties, in every packet a client sends ----------------------------------
def properties(c: Corpus) -> None:
    for ctx, cname in CONTEXTS.items():
        g = f"properties-{cname}"
        property_identifiers(c, g, ctx)
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


def property_identifiers(c: Corpus, g: str, ctx: int) -> None:
    """Each known property where the packet may not carry it, or carries it twice; unknown ones."""
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
        )
    c.ctx_case(
        g,
        "auth-method-and-data",
        CONNECT,
        props(prop(0x15, s("x")), prop(0x16, s(b"d"))),
        BAD_AUTH_METHOD,
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
