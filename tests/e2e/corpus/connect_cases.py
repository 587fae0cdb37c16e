"""Corpus cases of CONNECT (section 3.1): protocol name and level, connect
flags, every field's presence, length and UTF-8, will topics, client ids.
"""

from __future__ import annotations

from functools import partial
from typing import Unpack

from .case import (
    BAD_UTF8,
    CLOSE,
    FEW_BAD_UTF8,
    LEVELS,
    MALFORMED,
    PROTOCOL,
    WILDCARD_TOPICS,
    ContextOptions,
    Corpus,
    Expect,
    connack,
    ok,
    refuse,
)
from .wire import (
    connect,
    packet,
    s,
    u16,
    will_fields,
)


# --- CONNECT (section 3.1) ----------------------------------------------------------------
def add_connect(
    c: Corpus, level: int, name: str, data: bytes, expect: Expect, **kw: Unpack[ContextOptions]
) -> None:
    """A case of the "connect" group: `data` is the first thing sent."""
    c.add("connect", name, level, data, expect, setup="none", **kw)


def connect_packet(c: Corpus) -> None:
    for level in LEVELS:
        protocol_name_and_level(c, level)
        connect_flags(c, level)
        truncated_connect(c, level)
        client_fields(c, level)


def protocol_name_and_level(c: Corpus, level: int) -> None:
    """A valid CONNECT; protocol names and levels."""
    add = partial(add_connect, c, level)
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
        add("mqisdp-name", connect(level, name=b"MQIsdp"), connack(0x01 if level == 4 else 0x84))


def connect_flags(c: Corpus, level: int) -> None:
    """The connect flags, and the fields they announce."""
    add = partial(add_connect, c, level)
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
    # will flag are not allowed [MQTT-3.1.2-11], [MQTT-3.1.2-13], and the spec names
    # no code: the packet parses, so a Protocol Error (section 1.2).
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
        add(what, connect(level, flags=flags), refuse(level, PROTOCOL))
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


def truncated_connect(c: Corpus, level: int) -> None:
    """A CONNECT cut short at every byte of its body."""
    add = partial(add_connect, c, level)
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


def client_fields(c: Corpus, level: int) -> None:
    """UTF-8 in the client id, will topic and user name; will topics; client ids; the length."""
    add = partial(add_connect, c, level)
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
    empty = {3: (connack(0x02), connack(0x02)), 4: (ok(), connack(0x02)), 5: (ok(), ok())}[level]
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
