"""Hypothesis strategies for packets that are valid at a given protocol level,
and the settings every codec property test uses (no deadline, so a loaded
machine does not flake; example counts that keep the suite fast)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from flockmq.frontend.codec import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
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
)
from flockmq.frontend.codec.allowed_reason_codes import V3, V5
from flockmq.frontend.codec.data_types import MAX_VARINT
from flockmq.frontend.codec.properties import PROPERTIES, WILL, WireType

CODEC_SETTINGS = settings(
    deadline=None,
    max_examples=80,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

LEVELS = (3, 4, 5)

# Well-formed UTF-8 without U+0000 (surrogates cannot be encoded at all).
text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12)
_level_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00/+#"), max_size=6
)
topic_names = st.lists(_level_text, min_size=1, max_size=4).map("/".join).filter(bool)
packet_ids = st.integers(1, 0xFFFF)
qos_values = st.integers(0, 2)


@st.composite
def topic_filters(draw: st.DrawFn, level: int, allow_shared: bool = True) -> str:
    levels = draw(st.lists(st.one_of(_level_text, st.just("+")), min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    topic_filter = "/".join(levels)
    if not topic_filter or (level == 5 and topic_filter.startswith("$share/")):
        topic_filter = "#"
    if level == 5 and allow_shared and draw(st.booleans()):
        group = draw(_level_text.filter(bool))
        topic_filter = f"$share/{group}/{topic_filter}"
    return topic_filter


# A property's values by its wire type (binary data for the others).
_BY_WIRE_TYPE: dict[WireType, st.SearchStrategy[Any]] = {
    WireType.BYTE: st.integers(0, 1),
    WireType.TWO_BYTE_INT: st.integers(1, 0xFFFF),
    WireType.FOUR_BYTE_INT: st.integers(1, 0xFFFFFFFF),
    WireType.UTF8: text,
}


def _value(name: str, wire_type: WireType, packet_type: int) -> st.SearchStrategy[Any]:
    if name == "user_property":
        return st.lists(st.tuples(text, text), min_size=1, max_size=3).map(tuple)
    if name == "subscription_identifier":
        ids = st.integers(1, MAX_VARINT)
        if packet_type == PacketType.PUBLISH:
            return st.lists(ids, min_size=1, max_size=3).map(tuple)
        return ids
    if name == "response_topic":
        return topic_names
    return _BY_WIRE_TYPE.get(wire_type, st.binary(max_size=12))


def _add_auth_method(props: dict[str, Any]) -> dict[str, Any]:
    if "authentication_data" in props and "authentication_method" not in props:
        props["authentication_method"] = "m"
    return props


def properties(packet_type: int, level: int) -> st.SearchStrategy[dict[str, Any]]:
    if level < 5:
        return st.just({})
    optional = {
        p.name: _value(p.name, p.wire_type, packet_type)
        for p in PROPERTIES
        if packet_type in p.packet_types
    }
    return st.fixed_dictionaries({}, optional=optional).map(_add_auth_method)


def _codes(packet_type: int, level: int) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted((V5 if level == 5 else V3)[packet_type]))


@st.composite
def connects(draw: st.DrawFn, level: int) -> Connect:
    will = None
    if draw(st.booleans()):
        will = Will(
            draw(topic_names),
            draw(st.binary(max_size=20)),
            draw(qos_values),
            draw(st.booleans()),
            draw(properties(WILL, level)),
        )
    username = draw(st.none() | text)
    password = draw(st.none() | st.binary(max_size=12))
    if level < 5 and username is None:
        password = None
    return Connect(
        draw(text),
        level,
        draw(st.booleans()),
        draw(st.integers(0, 0xFFFF)),
        username,
        password,
        will,
        draw(properties(PacketType.CONNECT, level)),
    )


@st.composite
def connacks(draw: st.DrawFn, level: int) -> Connack:
    code = draw(_codes(PacketType.CONNACK, level))
    session_present = level > 3 and code == 0 and draw(st.booleans())
    return Connack(session_present, code, draw(properties(PacketType.CONNACK, level)))


@st.composite
def publishes(draw: st.DrawFn, level: int) -> Publish:
    qos = draw(qos_values)
    props = draw(properties(PacketType.PUBLISH, level))
    topic = "" if "topic_alias" in props and draw(st.booleans()) else draw(topic_names)
    return Publish(
        topic,
        draw(st.binary(max_size=40)),
        qos,
        draw(st.booleans()),
        qos > 0 and draw(st.booleans()),
        draw(packet_ids) if qos else None,
        props,
    )


@st.composite
def acks(draw: st.DrawFn, cls: type[Puback | Pubrec | Pubrel | Pubcomp], level: int) -> Packet:
    if level < 5:
        return cls(draw(packet_ids))
    ptype = cls.packet_type
    return cls(draw(packet_ids), draw(_codes(ptype, level)), draw(properties(ptype, level)))


@st.composite
def subscribes(draw: st.DrawFn, level: int) -> Subscribe:
    subs = []
    for topic_filter in draw(st.lists(topic_filters(level), min_size=1, max_size=4)):
        if level < 5:
            subs.append(Subscription(topic_filter, draw(qos_values)))
            continue
        shared = topic_filter.startswith("$share/")
        subs.append(
            Subscription(
                topic_filter,
                draw(qos_values),
                not shared and draw(st.booleans()),
                draw(st.booleans()),
                draw(st.integers(0, 2)),
            )
        )
    props = draw(properties(PacketType.SUBSCRIBE, level))
    return Subscribe(draw(packet_ids), tuple(subs), props)


@st.composite
def subacks(draw: st.DrawFn, level: int) -> Suback:
    codes = draw(st.lists(_codes(PacketType.SUBACK, level), min_size=1, max_size=5))
    props = draw(properties(PacketType.SUBACK, level))
    return Suback(draw(packet_ids), tuple(codes), props)


@st.composite
def unsubscribes(draw: st.DrawFn, level: int) -> Unsubscribe:
    filters = draw(st.lists(topic_filters(level), min_size=1, max_size=4))
    props = draw(properties(PacketType.UNSUBSCRIBE, level))
    return Unsubscribe(draw(packet_ids), tuple(filters), props)


@st.composite
def unsubacks(draw: st.DrawFn, level: int) -> Unsuback:
    if level < 5:
        return Unsuback(draw(packet_ids))
    codes = draw(st.lists(_codes(PacketType.UNSUBACK, level), min_size=1, max_size=5))
    props = draw(properties(PacketType.UNSUBACK, level))
    return Unsuback(draw(packet_ids), tuple(codes), props)


@st.composite
def disconnects(draw: st.DrawFn, level: int) -> Disconnect:
    if level < 5:
        return Disconnect()
    code = draw(_codes(PacketType.DISCONNECT, level))
    return Disconnect(code, draw(properties(PacketType.DISCONNECT, level)))


@st.composite
def auths(draw: st.DrawFn, level: int) -> Auth:
    code = draw(_codes(PacketType.AUTH, level))
    return Auth(code, draw(properties(PacketType.AUTH, level)))


def packets_of(kind: str, level: int) -> st.SearchStrategy[Packet]:
    """The strategy for one packet kind (a PacketType name) at a level."""
    builders: dict[str, Callable[[], st.SearchStrategy[Packet]]] = {
        "CONNECT": lambda: connects(level),
        "CONNACK": lambda: connacks(level),
        "PUBLISH": lambda: publishes(level),
        "PUBACK": lambda: acks(Puback, level),
        "PUBREC": lambda: acks(Pubrec, level),
        "PUBREL": lambda: acks(Pubrel, level),
        "PUBCOMP": lambda: acks(Pubcomp, level),
        "SUBSCRIBE": lambda: subscribes(level),
        "SUBACK": lambda: subacks(level),
        "UNSUBSCRIBE": lambda: unsubscribes(level),
        "UNSUBACK": lambda: unsubacks(level),
        "PINGREQ": lambda: st.just(Pingreq()),
        "PINGRESP": lambda: st.just(Pingresp()),
        "DISCONNECT": lambda: disconnects(level),
        "AUTH": lambda: auths(level),
    }
    return builders[kind]()


def kinds_at(level: int) -> list[str]:
    return [t.name for t in PacketType if level == 5 or t != PacketType.AUTH]


def any_packet(level: int) -> st.SearchStrategy[Packet]:
    """Any packet valid at `level`, except CONNECT (which would carry its own
    level; streams after a CONNECT are built by the tests that need them)."""
    return st.one_of([packets_of(k, level) for k in kinds_at(level) if k != "CONNECT"])
