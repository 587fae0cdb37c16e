"""Corpus cases of SUBSCRIBE and UNSUBSCRIBE (sections 3.8, 3.10): packet
ids, topic filters and their wildcards, UTF-8, subscription options, shared
subscriptions.
"""

from __future__ import annotations

from .case import (
    BAD_FILTERS,
    BAD_SHARED,
    BAD_UTF8,
    CLOSE,
    GOOD_FILTERS,
    LEVELS,
    MALFORMED,
    PROTOCOL,
    Corpus,
    ok,
    violation,
)
from .wire import (
    packet,
    s,
    subscribe,
    u16,
    unsubscribe,
)


# --- SUBSCRIBE and UNSUBSCRIBE (sections 3.8, 3.10) ---------------------------------------
def subscriptions(c: Corpus) -> None:
    for level in LEVELS:
        subscribe_packet(c, level)
        subscription_options(c, level)
        unsubscribe_packet(c, level)


def subscribe_packet(c: Corpus, level: int) -> None:
    """SUBSCRIBE (section 3.8): packet id, lengths, filters."""
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
    c.add(g, "no-options-byte", level, packet(0x82, head + s("a/b")), violation(level, MALFORMED))
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


def subscription_options(c: Corpus, level: int) -> None:
    """SUBSCRIBE's options byte (3.8.3.1), and MQTT 5's shared subscriptions (4.8.2)."""
    g = "subscribe"
    if level < 5:
        # Requested QoS 0-2, other bits reserved: a malformed packet [MQTT-3.8.3-4].
        for opts in (0x03, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF, 0x07):
            c.add(g, f"options-{opts:02x}", level, subscribe(level, [("a/b", opts)]), CLOSE)
        c.add(g, "share-is-an-ordinary-filter", level, subscribe(level, [("$share//a", 0)]), ok())
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


def unsubscribe_packet(c: Corpus, level: int) -> None:
    """UNSUBSCRIBE (section 3.10): packet id, lengths, filters."""
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
